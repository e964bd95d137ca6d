"""Out-of-range input is one line and exit 1 or 2, never a traceback: spans and times past what
a date can hold, amounts past what a decimal can hold, ids past what Postgres can hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import invoke

SETUP = [
    ["users", "register", "alice", "--email", "alice@x.io"],
    ["users", "approve", "alice"],
    ["accounts", "add", "ap", "--user", "alice", "--env", "paper"],
]
RECORDER = ["recorder", "create", "r1", "--user", "alice", "--symbol", "MNQ1!"]
HUGE_ID = "99999999999999999999"


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
