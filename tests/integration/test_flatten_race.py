"""``jtrades halt --flatten`` racing an entry that passed the kill switch just before it.

The alert's plan ran under the sub-account's lock before the halt and sent its entry;
Tradovate answered before the entry's events arrived (TRADOVATE.md: the answer may come
first). A flatten that read the live view then saw nothing, marked the request done on an
empty pass, and the events landed after it: long 1 with its stop, the kill switch on, the
request "done". Real Postgres, the engine and the Tradovate client against the simulator.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_engine import buy, send, wait_for
from tests.integration.test_flatten import flatten_flag, request_flatten, wait_done
from tests.integration.test_protect_exits_sim import _net, _sim_world


@pytest.mark.parametrize("late_ms", [100, 800])
async def test_a_flatten_waits_for_the_entry_a_signal_sent_just_before_it(
    database: Database, settings: Settings, late_ms: int
) -> None:
    """The events come within the dispatcher's settle wait, which holds the sub-account's lock:
    the flatten reads the account under that lock, so it sees the position and closes it."""
    pool = database.pool
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        sim.fault("events_after", on=True, ms=late_ms)
        out = await send(engine, pool, w["rec"], buy("21500"))
        assert out.orders == 1  # the entry went: it passed the gate before the halt
        await request_flatten(engine, pool)  # jtrades halt --flatten, heard at once
        await wait_done(pool, limit_s=10)
        sim.fault("clear")
        await asyncio.sleep(1.0)
        await sim.flush()
        flag = await flatten_flag(pool)
        assert _net(sim) == 0, (
            f"request done at {flag.get('done_at')} (progress {flag.get('progress')}) "
            f"but SIM holds net {_net(sim)} with orders {sim.working_orders('PX1')}"
        )
        assert sim.working_orders("PX1") == []  # its stop went with it
        assert flag["progress"]["closed"] == 1


async def test_a_flatten_is_not_done_while_an_entry_sent_before_it_is_still_in_flight(
    database: Database, settings: Settings
) -> None:
    """The events come after the dispatcher's settle wait gave up (2 s) and let the lock go:
    the view is still empty when the flatten reads it, but the entry's intent is still open
    (sent, not yet seen), so the request stays pending, saying why, until the entry shows; then
    it is closed and the request is done."""
    pool = database.pool
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        sim.fault("events_after", on=True, ms=3500)
        out = await send(engine, pool, w["rec"], buy("21500"))
        assert out.orders == 1
        await request_flatten(engine, pool)

        async def waiting() -> bool:
            progress: dict[str, Any] = (await flatten_flag(pool)).get("progress") or {}
            return any("not in the broker's view yet" in x["why"] for x in progress.get("left", []))

        await wait_for(waiting, "the request saying it waits for the order in flight", 5)
        assert not (await flatten_flag(pool)).get("done_at")
        sim.fault("clear")  # the liquidation's events come at once; the entry's still late
        await wait_done(pool, limit_s=20)
        await sim.flush()
        flag = await flatten_flag(pool)
        assert _net(sim) == 0, f"progress {flag.get('progress')}, net {_net(sim)}"
        assert sim.working_orders("PX1") == []
