"""What listings print: every digit of a price, times that say which hour when the clocks go
back, and no terminal control sequences from alert text.

- rich cut what did not fit with "…": at 80 columns, or piped (``trades list | less``, a cron
  mail: rich assumes 80), a trade read entry "215…", exit "2151…", P&L "-12…". tests/cli.py
  sets COLUMNS=200 for every in-process run, which hid it.
- In the hour the clocks go back two instants printed as one time, and ``--since`` refuses
  either without the offset the table never showed.
- An alert's ticker or a refusal quoting its value reached the operator's terminal with its ESC
  sequences (clear the screen, erase rows, set the clipboard).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from jtrades.config import Settings
from tests.cli import ainvoke, invoke_process
from tests.integration.test_server import Stack, serving

ESC = "\x1b"


async def _seed_trade(pool: asyncpg.Pool) -> None:
    uid = await pool.fetchval(
        "INSERT INTO users (name, email, status) VALUES ('alice', 'a@x.io', 'approved') RETURNING id"
    )
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, 'apex-1', 'paper') RETURNING id",
        uid,
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name) "
        "VALUES ($1, 1, 'apex-sub') RETURNING id",
        aid,
    )
    now = datetime.now(UTC)
    await pool.execute(
        "INSERT INTO trades (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl,"
        " opened_at, closed_at) VALUES ($1, 'MNQZ6', 'long', 1, 21500.25, 21510.5, -1234.50,"
        " $2, $3)",
        sub,
        now - timedelta(hours=1),
        now,
    )


async def test_piped_trades_list_shows_whole_prices_and_pnl(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await _seed_trade(pool)
    # stdout is a pipe, as in `jtrades trades list | less` (no COLUMNS: rich uses 80)
    r = invoke_process(["trades", "list"], db_url=db_url, data_dir=data_dir, env={"COLUMNS": None})
    assert r.exit_code == 0, r.stderr
    for value in ("21500.25", "21510.5", "-1234.50"):
        assert value in r.stdout, f"{value} not shown whole:\n{r.stdout}"


async def test_an_80_column_terminal_shows_whole_prices(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await _seed_trade(pool)
    r = await ainvoke(["trades", "list"], db_url=db_url, data_dir=data_dir, env={"COLUMNS": "80"})
    assert r.exit_code == 0, r.stderr
    for value in ("21500.25", "21510.5", "-1234.50"):
        assert value in r.stdout, f"{value} not shown whole:\n{r.stdout}"


async def _seed_two_trades_in_the_repeated_hour(pool: asyncpg.Pool) -> None:
    uid = await pool.fetchval(
        "INSERT INTO users (name, email, status, timezone) "
        "VALUES ('alice', 'a@x.io', 'approved', 'America/Chicago') RETURNING id"
    )
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, 'ap', 'paper') RETURNING id", uid
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name) "
        "VALUES ($1, 1, 'ap-1') RETURNING id",
        aid,
    )
    # 2026-11-01: Chicago goes from CDT (-05) back to CST (-06) at 07:00 UTC
    for closed in (
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),
        datetime(2026, 11, 1, 7, 30, tzinfo=UTC),
    ):
        await pool.execute(
            "INSERT INTO trades (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl,"
            " opened_at, closed_at) VALUES ($1, 'MNQZ6', 'long', 1, 1, 2, 2, $2, $2)",
            sub,
            closed,
        )


async def test_two_trades_an_hour_apart_do_not_print_the_same_time(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await _seed_two_trades_in_the_repeated_hour(pool)
    r = await ainvoke(["trades", "list"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    closed = [line.split("│")[2].strip() for line in r.stdout.splitlines() if "MNQZ6" in line]
    assert len(closed) == 2, r.stdout
    assert closed[0] != closed[1], f"two instants an hour apart shown as one time: {closed}"
    assert sorted(closed) == ["2026-11-01 01:30:00-05:00", "2026-11-01 01:30:00-06:00"]


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with serving(settings, pool) as s:
        yield s


async def test_alert_text_cannot_send_escape_sequences_to_the_operators_terminal(
    stack: Stack, db_url: str, data_dir: Path
) -> None:
    # an unknown action is refused (422) and its reason quotes the value (<= 20 chars)
    status, _ = await stack.post(b'{"action":"\\u001b[2J\\u001b[1A","ticker":"MNQ1!"}')
    assert 400 <= status < 500
    # a ticker with an OSC title sequence: stored as the signal's symbol
    status, _ = await stack.post(b'{"action":"buy","ticker":"\\u001b]0;owned\\u0007"}')
    rows = await stack.pool.fetch("SELECT symbol, reason FROM signals ORDER BY id")
    assert any(ESC in (r["symbol"] or "") + (r["reason"] or "") for r in rows), rows

    r = await ainvoke(["signals", "list"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert ESC not in r.stdout, f"raw escape sequences reach the terminal: {r.stdout!r}"
