"""`trader delete` while the trader's resting limit entry is still working at the broker.

The held check (``traders.held_positions``) looks at positions only. A TradersPost limit entry
resting below the market is no position yet, so the delete goes through silently; the order
stays working, fills later, and opens a position on a sub-account no trader links: no alert of
the recorder reaches it (its close goes nowhere), and the protector and orphan sweep walk only
linked sub-accounts. `accounts remove` refuses the same exposure ("working order").
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

from jtrades.broker.base import OrderStatus, Side
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.parsing import parse_payload
from tests.cli import ainvoke
from tests.integration.test_engine import (
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    working,
)


def alert(body: dict[str, Any]) -> Any:
    return parse_payload(json.dumps(body).encode(), "application/json")


async def test_a_trader_whose_resting_entry_is_working_is_not_deleted_silently(
    database: Database, settings: Settings
) -> None:
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "trend", size=1, sl=Decimal(80))
    sub, other = await make_paper_account(pool, u, "ap", subs=2)
    tid = await make_trader(pool, u, rec, [(sub, 1)])
    await make_trader(pool, u, rec, [(other, 1)], enabled=False)  # keeps the login's market
    engine = Engine(database, settings)
    await engine.start()
    try:
        limit = {"ticker": "MNQ1!", "action": "buy", "sentiment": "bullish",
                 "signalPrice": 21500, "orderType": "limit", "limitPrice": 21400}  # fmt: skip
        assert (await send(engine, pool, rec, alert(limit))).orders >= 1
        resting = [o for o in await working(engine, pool, sub)
                   if o.side is Side.BUY and o.status is OrderStatus.WORKING]  # fmt: skip
        assert resting, "the limit entry rests"

        async def mirrored() -> bool:
            return bool(await pool.fetchval(
                "SELECT count(*) FROM orders WHERE sub_account_id=$1 AND status='Working'", sub
            ))  # fmt: skip

        for _ in range(500):
            if await mirrored():
                break
            await asyncio.sleep(0.01)

        r = await ainvoke(["trader", "delete", str(tid)], **cli)
        assert r.exit_code == 1, r.stdout + r.stderr
        assert "buy 1 working" in r.stderr, r.stderr  # refused, naming the resting entry
        # the market trades down through the limit, and the strategy exits: its recorder's
        # alert at 21390 (the paper market of alice's login)
        exit_ = {"ticker": "MNQ1!", "action": "exit", "signalPrice": 21390}
        await send(engine, pool, rec, alert(exit_))
        assert await net_pos(engine, pool, sub) == 0, (
            f"`trader delete {tid}` answered exit {r.exit_code} ({r.stderr.strip()!r}) while "
            "its limit entry still worked on ap-1: the entry filled and ap-1 is left long with "
            "no trader, so the strategy's exit never reached it"
        )
    finally:
        await engine.close()
