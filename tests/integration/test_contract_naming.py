"""Contracts the live view first meets on the stream, unnamed: a trade placed elsewhere (the
Tradovate website, a copier) in a contract no snapshot listed and nobody looked up. Unnamed, its
position read as no position of that symbol and its fills could not be priced or mirrored; the
session asks Tradovate for the names and publishes the renamed positions."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from jtrades.broker.base import OrderRequest, Position, Side, SubAccount
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
async def broker(sim: SimHandle) -> AsyncIterator[TradovateBroker]:
    settings = sim_tradovate_defaults(sim, request_timeout_s=5)
    pool = TradovatePool(settings)
    try:
        yield await pool.broker("demo", LOGIN, PASSWORD)
    finally:
        await pool.close()


async def test_a_contract_first_seen_on_the_stream_gets_its_name(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    aid = sim.account_id("SIM1")
    name = sim.contract("MES").name
    events = broker.events()
    # placed by symbol, as a trade from elsewhere arrives: nobody looked the contract up
    await broker.place_order(OrderRequest(SubAccount(aid, "SIM1"), name, Side.BUY, 1))

    await until(lambda: [p.symbol for p in broker.positions(aid)] == [name])
    published: list[Position] = []
    while not any(p.symbol == name for p in published):  # the renamed position went out too
        ev = await events.__anext__()
        if isinstance(ev.entity, Position):
            published.append(ev.entity)
    assert broker.session.view.unknown_contract_ids() == set()


async def test_a_refused_name_lookup_is_asked_again_after_a_wait(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    """A refused ``contract/items`` (a 429 here) left the contract unnamed until some later
    event of it came, which a quiet position never sends; it is asked again after a wait."""
    aid = sim.account_id("SIM1")
    name = sim.contract("MES").name
    sim.faults.events_after_answer = True  # the order's answer first, its events 0.3 s later
    sim.faults.events_after_ms = 300
    await broker.place_order(OrderRequest(SubAccount(aid, "SIM1"), name, Side.BUY, 1))
    sim.faults.too_many = 1  # the name lookup the position event starts is refused

    await until(lambda: [p.symbol for p in broker.positions(aid)] == [name])
    assert sim.stats()["by_endpoint"]["contract/items"] == 2


async def test_a_penalised_name_lookup_waits_its_p_time(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    """A penalty ticket on ``contract/items``: the namer asked again after its first wait (1 s),
    well within p-time (refused by the session's hold, but logged as a failed lookup each
    time); it waits the p-time, then names the contract."""
    aid = sim.account_id("SIM1")
    name = sim.contract("MES").name
    sim.faults.events_after_answer = True  # the order's answer first, its events 0.3 s later
    sim.faults.events_after_ms = 300
    with capture_logs() as logs:
        await broker.place_order(OrderRequest(SubAccount(aid, "SIM1"), name, Side.BUY, 1))
        sim.fault("request_penalty", endpoint="contract/items", p_time=2)
        await until(lambda: [p.symbol for p in broker.positions(aid)] == [name], within_s=6)
    waits = [e["retry_s"] for e in logs if e["event"] == "tradovate.session.contracts_unnamed"]
    assert waits == [2.0]
    assert sim.stats()["by_endpoint"]["contract/items"] == 2
