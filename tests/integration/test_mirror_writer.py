"""The mirror's writer on a live event stream: how the events an alert brings back are batched."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from jtrades.broker.base import BrokerEvent, Fill, OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.mirror import Mirror
from tests.integration.test_engine import (
    account_of,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
)
from tests.integration.test_reconcile import _mirroring, _world
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


async def test_the_writer_waits_for_a_burst_of_events_to_pause(
    database: Database, settings: Settings
) -> None:
    """An alert's orders come back as a burst of events: the writer lets the batch grow while
    events keep coming and writes it once the stream pauses (``quiet_s``), or once it is
    ``coalesce_s`` old; with no wait each event is written as it arrives. The ``>= 2`` bounds
    leave room for a slow machine merging two writes."""
    w = await _world(database.pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        mirror = engine.reconciler.mirror
        await until(lambda: mirror.batches == 0)

        # events 20 ms apart never pause for 0.5 s: one batch
        mirror.coalesce_s, mirror.quiet_s = 5.0, 0.5
        await _orders_spread_out(paper, w["bid"], 5, 0.02)
        assert await _written(database, mirror, 5) == 1

        # the same burst against a 1 ms pause: the stream pauses between events
        mirror.quiet_s = 0.001
        await _orders_spread_out(paper, w["bid"], 5, 0.02)
        assert await _written(database, mirror, 10) - 1 >= 2

        # a batch never waits past coalesce_s, however busy the stream
        mirror.coalesce_s, mirror.quiet_s = 0.03, 0.5
        before = mirror.batches
        await _orders_spread_out(paper, w["bid"], 5, 0.02)
        assert await _written(database, mirror, 15) - before >= 2

        mirror.coalesce_s = 0.0
        before = mirror.batches
        await _orders_spread_out(paper, w["bid"], 5, 0.02)
        assert await _written(database, mirror, 20) - before >= 2


async def test_a_batch_naming_a_deleted_sub_account_still_records_the_others(
    database: Database, settings: Settings
) -> None:
    """One batch carries every login's events. A sub-account deleted after the snapshot was
    read fails the batch's statement (its foreign keys): the batch is written again against a
    fresh snapshot, the deleted account's events left out, and the other account's round trip
    is recorded and counted in the day's P&L instead of being lost with the batch."""
    pool = database.pool
    uid = await make_user(pool, "mw")
    rec = await make_recorder(pool, uid, "mw-rec")
    kept, gone = await make_paper_account(pool, uid, "mw-paper", subs=2)
    await make_trader(pool, uid, rec, [(kept, 1), (gone, 1)])
    aid, kept_bid = await account_of(pool, kept)
    _, gone_bid = await account_of(pool, gone)
    async with _mirroring(database, settings, {"aid": aid}) as (engine, paper):
        mirror = engine.reconciler.mirror
        # deleted without the daemon hearing of it: its snapshot still maps the broker account
        async with pool.acquire() as conn:
            await conn.execute("SET session_replication_role = replica")  # no NOTIFY, no cascade
            await conn.execute("DELETE FROM sub_accounts WHERE id = $1", gone)
            await conn.execute("RESET session_replication_role")
        assert engine.config.snapshot.sub_account_id(aid, gone_bid) == gone

        t0 = datetime.now(UTC)
        events = [
            _fill_of(kept_bid, 1, 10, Side.BUY, "100", t0),
            _fill_of(gone_bid, 2, 20, Side.BUY, "100", t0),
            _fill_of(kept_bid, 3, 11, Side.SELL, "110", t0),
        ]
        await mirror.write([(aid, paper, ev) for ev in events])

        fills = await pool.fetch("SELECT sub_account_id, broker_fill_id FROM fills ORDER BY 2")
        assert [(r["sub_account_id"], r["broker_fill_id"]) for r in fills] == [(kept, 1), (kept, 3)]
        assert engine.reconciler.pnl.realized([kept], t0) == Decimal(20)  # 10 points, $2/pt
        assert engine.config.snapshot.sub_account_id(aid, gone_bid) is None


def _fill_of(
    bid: int, fill_id: int, order_id: int, side: Side, price: str, at: datetime
) -> BrokerEvent:
    f = Fill(fill_id, order_id, bid, 1000, "MNQ1!", side, 1, Decimal(price), at)
    return BrokerEvent("fill", bid, f)
