"""Whoever holds a sub-account's lock keeps it until the live view shows what it did.

Tradovate sends an order's events before its answer or after it (TRADOVATE.md); the simulator's
``events_after`` fault sends them 300 ms after. The lock used to pass on once the answers (and a
market order's position) were in, so the next plan read a view without the stop or the limit
just placed: stops for 5 on a long 3, a closed strategy's limit entry left working, a
protective stop doubled by the DCA add behind it.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import buy, close, send
from tests.integration.test_protect_exits_sim import _net, _sim_world, _view_net, _view_orders
from tests.simutil import SimHandle


def _stops(sim: SimHandle) -> list[tuple[float, int]]:
    return [
        (o["stopPrice"], o["qty"]) for o in sim.working_orders("PX1") if o["orderType"] == "Stop"
    ]


async def _settle(sim: SimHandle) -> None:
    sim.fault("clear")
    await asyncio.sleep(0.6)  # the lagging events are out
    await sim.flush()


async def test_two_dca_adds_back_to_back_leave_stops_for_exactly_the_position(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    risk = {"size": 1, "add_size": 1, "sl": Decimal(40), "dca": True, "same_direction": "add"}
    async with _sim_world(database, settings, **risk) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 1)  # the bracket's stop
        sim.fault("events_after", on=True, ms=300)
        await asyncio.gather(
            send(engine, pool, w["rec"], buy("21500")),
            send(engine, pool, w["rec"], buy("21500")),
        )
        await _settle(sim)
        assert _net(sim) == 3
        assert sum(q for _, q in _stops(sim)) == 3, _stops(sim)  # was stops for 2 and 3
        await sim.set_price("MNQ", "21490")
        await sim.flush()
        assert _net(sim) == 0  # stopped out flat, not into a short


async def test_a_close_right_after_a_limit_entry_cancels_the_limit(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        sim.fault("events_after", on=True, ms=300)
        entry = Signal(
            Action.BUY,
            ticker="MNQ1!",
            price=Decimal("21500"),
            order_type="limit",
            limit_price=Decimal("21490"),
        )
        await send(engine, pool, w["rec"], entry)
        out = await send(engine, pool, w["rec"], close("21500"))
        assert out.detail["accounts"]["1"]["reason"] != "already flat"  # it saw the limit
        await _settle(sim)
        assert sim.working_orders("PX1") == []
        await sim.set_price("MNQ", "21490")
        await sim.flush()
        assert _net(sim) == 0  # the closed strategy's entry did not fill later


async def test_a_dca_add_right_after_a_protection_pass_counts_its_stop(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    risk = {"size": 1, "add_size": 1, "dca": True, "same_direction": "add"}
    async with _sim_world(database, settings, **risk) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))  # no stop loss yet: a plain entry
        await _view_net(w, 1)
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id = $1", w["trader"]
        )
        await engine.config.refresh()
        assert await engine.reconciler.protect_positions() == 0  # the first sighting waits
        sim.fault("events_after", on=True, ms=300)
        assert await engine.reconciler.protect_positions() == 1  # a stop for the naked long
        await send(engine, pool, w["rec"], buy("21500"))  # the DCA add right behind it
        await _settle(sim)
        assert _net(sim) == 2
        assert sum(q for _, q in _stops(sim)) == 2, _stops(sim)  # was stops for 1 and 2
