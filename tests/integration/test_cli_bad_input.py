"""Out-of-range input is one line and exit 1 or 2, never a traceback: spans and times past what
a date can hold, amounts past what a decimal can hold, ids past what Postgres can hold."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from jtrades.errors import InvalidInput
from jtrades.store import translate_errors
from tests.cli import invoke

SETUP = [
    ["users", "register", "alice", "--email", "alice@x.io"],
    ["users", "approve", "alice"],
    ["accounts", "add", "ap", "--user", "alice", "--env", "paper"],
    ["recorder", "create", "base", "--user", "alice", "--symbol", "MNQ1!"],
]
RECORDER = ["recorder", "create", "r1", "--user", "alice", "--symbol", "MNQ1!"]
TRADER = ["trader", "create", "--user", "alice", "--recorder", "base"]
HUGE_ID = "99999999999999999999"


async def test_a_value_postgres_cannot_hold_is_invalid_input(pool: asyncpg.Pool) -> None:
    """The backstop behind the parsers: asyncpg's DataError (a numeric past Postgres' 16383
    decimal places) passed through translate_errors, a traceback in the CLI."""
    with pytest.raises(InvalidInput, match="cannot be stored"), translate_errors():
        await pool.fetchval("SELECT $1::numeric", Decimal("1e-20000"))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["signals", "list", "--since", "99999999d"], "--since"),
        (["trades", "list", "--since", "9999999999w"], "--since"),
        (["orders", "list", "--since", "99999999999999999999d"], "--since"),
        (["trades", "list", "--since", "0001-01-01T00:00:00+05:00"], "--since"),
        (["signals", "list", "--since", "9999-12-31T23:59:59-05:00"], "--since"),
        ([*RECORDER, "--sl", "1e999999999"], "--sl"),
        ([*RECORDER, "--max-daily-loss", "1e9999999"], "--max-daily-loss"),
        ([*RECORDER, "--tp", "1e999999999:1,40"], "--tp"),
        ([*RECORDER, "--breakeven", "1e999999999:1"], "--breakeven"),
        # tiny but finite: past the 16383 decimal places a Postgres numeric holds
        ([*RECORDER, "--sl", "1e-20000"], "--sl"),
        ([*RECORDER, "--max-daily-loss", "1e-20000"], "--max-daily-loss"),
        ([*RECORDER, "--tp", "1e-20000:1,40"], "--tp"),
        ([*RECORDER, "--breakeven", "10:1e-20000"], "--breakeven"),
        ([*RECORDER, "--trail-trigger", "0.00000000001"], "--trail-trigger"),
        ([*TRADER, "--account", "ap*1e-20000"], "--account"),
        (["trader", "show", HUGE_ID], "ID"),
        (["trader", "enable", HUGE_ID], "ID"),
        (["trader", "delete", HUGE_ID], "ID"),
        (["accounts", "add-sub", "ap", "--id", HUGE_ID, "--name", "Z"], "--id"),
    ],
)
def test_out_of_range_input_is_an_error_not_a_crash(
    db_url: str, data_dir: Path, args: list[str], says: str
) -> None:
    for step in SETUP:
        assert invoke(step, db_url=db_url, data_dir=data_dir).exit_code == 0
    result = invoke(args, db_url=db_url, data_dir=data_dir)  # a crash is re-raised here
    text = result.stdout + result.stderr
    assert result.exit_code in (1, 2), text
    assert says in text
    assert "Traceback" not in text


def test_an_out_of_range_database_port_is_one_line(db_url: str, data_dir: Path) -> None:
    bad = "postgresql://postgres:canary-pw@127.0.0.1:99999/postgres"
    result = invoke(["users", "list"], db_url=bad, data_dir=data_dir)  # a crash is re-raised here
    assert result.exit_code == 1
    assert "database.url" in result.error_line()
    assert "canary-pw" not in result.stdout + result.stderr


def test_a_keyword_form_database_url_is_refused_without_its_password(
    db_url: str, data_dir: Path
) -> None:
    """libpq's "host=… password=…" (what psql and hosting dashboards hand out) is no URL: the
    refusal quoted it, password and all (rule 8)."""
    dsn = "host=127.0.0.1 user=postgres password=canary-pw dbname=postgres"
    result = invoke(["users", "list"], db_url=dsn, data_dir=data_dir)
    assert result.exit_code == 1
    assert "database.url" in result.error_line()
    assert "canary-pw" not in result.stdout + result.stderr
