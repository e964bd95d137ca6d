"""A fill that came before its order, then a lookup of that order by clOrdId: the fill is
published with its account, exactly once.

Fills carry no account (TRADOVATE.md: map them through ``orderId``), and events may come in any
order: a fill ahead of its order waits in the view and goes out account-less. Merging the order
attributes it; the stream publishes that. A lookup by clOrdId (the reconciler's, after a lost
answer) merged the order through ``absorb`` and dropped what it returned: the waiting fill left
the view's orphans without ever being published with its account, and the mirror, which skips an
account-less fill, dropped it after a minute (its P&L missing). Simulator over real sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from jtrades.broker.base import BrokerEvent, Fill, WorkingOrder
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.errors import TransientBrokerError
from jtrades.sim.api import Api
from jtrades.sim.faults import Refusal
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, market_order, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        await handle.set_price("MNQ", 21500)
        yield handle


@pytest.fixture
async def pool(sim: SimHandle) -> AsyncIterator[TradovatePool]:
    pool = TradovatePool(sim_tradovate_defaults(sim))
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def broker(pool: TradovatePool) -> TradovateBroker:
    return await pool.broker("demo", LOGIN, PASSWORD)


async def _collect(sub: AsyncIterator[BrokerEvent], into: list[BrokerEvent]) -> None:
    async for ev in sub:
        into.append(ev)


async def _fill_first(sim: SimHandle, pool: TradovatePool, cl: str) -> tuple[int, list[Any]]:
    """An order placed behind the client's back (its answer lost to us), and of its events
    only the fill delivered: it reaches the view before its order. The order's id, and the
    events still held back."""
    world = sim.world
    token = pool.tokens.peek("demo", LOGIN)
    assert token is not None
    answer = Api(world).call("order/placeorder", {}, market_order(sim, clOrdId=cl), token.token)
    assert answer.status == 200, answer
    pending, world._pending = list(world._pending), []
    fills = [e for e in pending if e[1] == "fill"]
    rest = [e for e in pending if e[1] != "fill"]
    assert fills
    assert rest
    world.queue(fills)
    await world.flush()
    return int(answer.data["orderId"]), rest


def _fills(events: list[BrokerEvent]) -> list[BrokerEvent]:
    return [e for e in events if e.kind == "fill"]


async def test_the_lookup_publishes_the_waiting_fill_with_its_account_once(
    sim: SimHandle, pool: TradovatePool, broker: TradovateBroker
) -> None:
    sid = sim.account_id("SIM1")
    events: list[BrokerEvent] = []
    reader = asyncio.create_task(_collect(broker.events(), events))
    try:
        oid, rest = await _fill_first(sim, pool, "lost-1")
        await until(lambda: bool(_fills(events)), within_s=5)
        assert [e.account_id for e in _fills(events)] == [None]  # not attributable yet

        found = await broker.order_by_cl_ord_id(sid, "lost-1")
        assert found is not None
        assert found.order_id == oid
        await asyncio.sleep(0.1)
        attributed = [e for e in _fills(events) if e.account_id == sid]
        assert len(attributed) == 1
        fill = attributed[0].entity
        assert isinstance(fill, Fill)
        assert fill.order_id == oid
        # the order went out as the view now holds it, with our clOrdId
        orders = [e.entity for e in events if e.kind == "order" and e.account_id == sid]
        assert orders
        assert all(isinstance(o, WorkingOrder) for o in orders)
        assert {o.cl_ord_id for o in orders if isinstance(o, WorkingOrder)} == {"lost-1"}

        # the order's own events, late: the fill is not published a second time
        sim.world.queue(rest)
        await sim.world.flush()
        await asyncio.sleep(0.5)
        assert [e.account_id for e in _fills(events)] == [None, sid]
        assert [f.account_id for f in broker.fills(sid)] == [sid]
    finally:
        reader.cancel()


async def test_a_lookup_whose_version_read_fails_still_publishes_the_fill(
    sim: SimHandle, pool: TradovatePool, broker: TradovateBroker
) -> None:
    """The order's versions are read after the order is merged; that read refused (a 4xx),
    the lookup concludes nothing, but the fill its order attributed has gone out already:
    its orphan entry is gone, so it was then or never."""
    sid = sim.account_id("SIM1")
    events: list[BrokerEvent] = []
    reader = asyncio.create_task(_collect(broker.events(), events))
    try:
        await _fill_first(sim, pool, "lost-2")
        await until(lambda: bool(_fills(events)), within_s=5)
        sim.faults.refusals.append(
            Refusal("orderversion/deps", 404, '"Not found: orderVersion/deps"')
        )
        with pytest.raises(TransientBrokerError):
            await broker.order_by_cl_ord_id(sid, "lost-2")
        await asyncio.sleep(0.1)
        assert [e.account_id for e in _fills(events)] == [None, sid]
    finally:
        reader.cancel()
