"""The mirror's writer on a live event stream: how the events an alert brings back are batched."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.mirror import Mirror
from tests.integration.test_reconcile import _mirroring, _world
from tests.integration.test_reconcile import database as database  # the fixture
from tests.polling import until


async def _orders_spread_out(paper: PaperBroker, bid: int, n: int, gap_s: float) -> None:
    """``n`` limit orders that stay working (no market price crosses them), ``gap_s`` apart: each
    publishes its order event in a loop iteration of its own."""
    account = SubAccount(bid, "rc-paper")
    for _ in range(n):
        await paper.place_order(
            OrderRequest(account, "MNQ1!", Side.BUY, 1, OrderType.LIMIT, price=Decimal(1))
        )
        await asyncio.sleep(gap_s)


async def _written(database: Database, mirror: Mirror, n: int) -> int:
    """Wait until ``n`` orders are mirrored; the statements the writer took until then."""
    stored = 0
    for _ in range(500):
        stored = int(await database.pool.fetchval("SELECT count(*) FROM orders"))
        if stored >= n:
            return mirror.batches
        await asyncio.sleep(0.01)
    raise AssertionError(f"{stored} of {n} orders mirrored")


async def test_events_arriving_while_a_batch_gathers_take_one_statement(
    database: Database, settings: Settings
) -> None:
    """An alert's orders come back as events spread over a few milliseconds: the writer waits
    ``coalesce_s`` after the first and writes them together. Without the wait each is written
    as it arrives, one statement apiece (the ``>= 2`` leaves room for a slow machine merging
    two)."""
    w = await _world(database.pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        mirror = engine.reconciler.mirror
        await until(lambda: mirror.batches == 0 and mirror.coalesce_s > 0)

        mirror.coalesce_s = 1.0  # far longer than five orders 20 ms apart, even on a slow host
        await _orders_spread_out(paper, w["bid"], 5, 0.02)
        assert await _written(database, mirror, 5) == 1

        mirror.coalesce_s = 0.0
        await _orders_spread_out(paper, w["bid"], 5, 0.02)
        assert await _written(database, mirror, 10) - 1 >= 2
