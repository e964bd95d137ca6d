"""`trader delete` refuses while an entry still works on its sub-account (c7c09c2): an order
the mirror holds as PendingReplace (a resting limit entry being modified, in Tradovate's
words still open: ``OrderStatus.is_open``) is as live as a Working one, and fills later into a
position no alert closes."""

from __future__ import annotations

import pytest

from jtrades.config import Settings
from jtrades.db import Database
from tests.cli import ainvoke
from tests.integration.test_engine import (
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
)


@pytest.mark.parametrize("status", ["Working", "PendingReplace"])
async def test_trader_delete_refuses_an_open_entry(
    database: Database, settings: Settings, status: str
) -> None:
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "trend", size=1)
    (sub,) = await make_paper_account(pool, u, "ap")
    tid = await make_trader(pool, u, rec, [(sub, 1)])
    await pool.execute(
        "INSERT INTO orders (sub_account_id, broker_order_id, cl_ord_id, symbol, side, qty,"
        " order_type, price, status) VALUES ($1, 7, 'jt-1-1-1', 'MNQZ6', 'Buy', 1, 'Limit',"
        " 21000, $2)",
        sub,
        status,
    )
    r = await ainvoke(["trader", "delete", str(tid)], **cli)
    assert r.exit_code == 1, f"{status} entry not counted as held: {r.stdout}"
