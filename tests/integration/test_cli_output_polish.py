"""What a new user reads in the CLI's tables: money with two decimals, prices without trailing
zeros, warnings for a symbol jtrades does not know, broker sessions by their account's label."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from jtrades.store import status as status_store
from tests.cli import ainvoke
from tests.integration.test_cli_listings import seed

NOW = datetime.now(UTC)


def table_rows(text: str) -> list[list[str]]:
    """The cells of each body row of a rich table (its header is drawn with ┃, left out)."""
    return [
        [c.strip() for c in line.strip().strip("│").split("│")]
        for line in text.splitlines()
        if line.strip().startswith("│")
    ]


async def _table(db_url: str, data_dir: Path, *args: str) -> list[list[str]]:
    r = await ainvoke(list(args), db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    return table_rows(r.stdout)


async def test_money_has_two_decimals_and_prices_no_trailing_zeros(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """P&L printed as stored (``27.000``, ``24.0``, ``-1.500``) and prices likewise
    (``21500.0`` next to ``21501``): money is always two decimals, a price its shortest form."""
    ids = await seed(pool)
    await pool.execute("DELETE FROM trades")
    for n, (entry, exit_, pnl) in enumerate(
        [("21500.0", "21501.00", "27.000"), ("21500.25", "21500.50", "24.0"),
         ("6000", "6000", "0.00"), ("21500", "21499.5", "-1.500"), ("21500", "21503", "6.00")]
    ):  # fmt: skip
        await pool.execute(
            "INSERT INTO trades (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl,"
            " opened_at, closed_at) VALUES ($1, 'MNQZ6', 'long', 1, $2, $3, $4, $5, $5)",
            ids["apex-1"],
            Decimal(entry),
            Decimal(exit_),
            Decimal(pnl),
            NOW - timedelta(minutes=10 - n),
        )
    rows = await _table(db_url, data_dir, "trades", "list")
    assert [(r[8], r[9], r[10]) for r in reversed(rows)] == [
        ("21500", "21501", "27.00"),
        ("21500.25", "21500.5", "24.00"),
        ("6000", "6000", "0.00"),
        ("21500", "21499.5", "-1.50"),
        ("21500", "21503", "6.00"),
    ]
    r = await ainvoke(["trades", "list", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.json()[0]["pnl"] == "6.00"  # JSON: the exact value, as stored (newest first)

    await pool.execute("DELETE FROM positions")
    for symbol, price in (("MNQZ6", "21500.0"), ("MESZ6", "21501"), ("MYMZ6", "21500.25")):
        await pool.execute(
            "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
            " VALUES ($1, $2, 1, $3)",
            ids["apex-1"],
            symbol,
            Decimal(price),
        )
    expected = {("MNQZ6", "1", "21500"), ("MESZ6", "1", "21501"), ("MYMZ6", "1", "21500.25")}
    rows = await _table(db_url, data_dir, "positions", "list")
    assert {(r[3], r[4], r[5]) for r in rows} == expected
    status = await ainvoke(["status"], db_url=db_url, data_dir=data_dir)
    assert status.exit_code == 0, status.stderr
    tables = status.stdout.split("open positions")
    assert {(r[3], r[4], r[5]) for r in table_rows(tables[-1])} == expected


async def test_status_names_broker_sessions_by_account_label(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """The sessions table said "account id 1": the label the user gave it is what they know."""
    await seed(pool)
    ids = dict(await pool.fetch("SELECT label, id FROM accounts"))  # type: ignore[arg-type]
    await status_store.heartbeat(
        pool,
        pid=4244,
        started_at=NOW,
        detail={"state": "running", "ready": True, "host": "127.0.0.1", "port": 8080,
                "sessions": [{"account_id": ids["apex-1"], "env": "paper", "up": True},
                             {"account_id": ids["bob-demo"], "env": "demo", "up": False},
                             {"account_id": 987654, "env": "demo", "up": True},
                             {"account_id": 987655, "env": "demo", "up": False,
                              "held": "rate_limit", "held_until": "2026-12-01T16:00:10+00:00"}]},
    )  # fmt: skip
    r = await ainvoke(["status"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    sessions = table_rows(r.stdout.split("broker sessions")[1].split("open positions")[0])
    assert [row[:3] for row in sessions] == [
        ["apex-1", "paper", "up"],
        ["bob-demo", "demo", "down (reconnecting)"],
        ["#987654 (removed)", "demo", "up"],
        # connected, but sending nothing (a 429 or a penalty ticket): said, not "reconnecting"
        ["#987655 (removed)", "demo", "held (rate_limit until 2026-12-01T16:00:10+00:00)"],
    ]
    r = await ainvoke(["status", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.json()["daemon"]["sessions"][0]["account_id"] == ids["apex-1"]


async def test_a_symbol_of_no_built_in_product_is_kept_with_a_warning(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """``--symbol FOO1!`` was accepted silently: paper accounts cannot trade it."""
    await seed(pool)
    args = ["recorder", "create", "foo", "--user", "alice", "--symbol", "FOO1!"]
    r = await ainvoke(args, db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    warning = "warning: FOO is not a built-in product: paper accounts cannot trade it"
    assert warning in r.stderr
    assert await pool.fetchval("SELECT symbol FROM recorders WHERE name = 'foo'") == "FOO1!"

    r = await ainvoke(["recorder", "edit", "foo", "--size", "2"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert "warning" not in r.stderr  # the symbol was not changed here
    edit = ["recorder", "edit", "foo", "--symbol", "MBTZ6"]
    r = await ainvoke(edit, db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert "warning: MBT is not a built-in product" in r.stderr

    for known in ("MNQ1!", "CME_MINI:ES1!", "MESZ6"):
        r = await ainvoke(
            ["recorder", "edit", "foo", "--symbol", known], db_url=db_url, data_dir=data_dir
        )
        assert r.exit_code == 0, r.stderr
        assert "warning" not in r.stderr, known


async def test_a_symbol_that_is_no_futures_symbol_is_refused(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """``BTCUSD`` or ``AAPL`` passed the ticker pattern and got the "Tradovate must know it"
    warning, but every alert of such a recorder is refused as no futures symbol (review)."""
    await seed(pool)
    for symbol in ("BTCUSD", "AAPL", "MNQ!"):
        args = ["recorder", "create", "x", "--user", "alice", "--symbol", symbol]
        r = await ainvoke(args, db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 1, (symbol, r.stdout, r.stderr)
        assert "expected a futures ticker like MNQ1!" in r.stderr, r.stderr
        assert "Tradovate must know it" not in r.stderr
    assert await pool.fetchval("SELECT count(*) FROM recorders WHERE name = 'x'") == 0
