"""A sub-account is planned from a live view that is synced and shows what was sent to it before
(DESIGN.md §5 rules 3 and 6), with the real Tradovate client against the simulator.

Found in review: once the dispatcher's settle wait (2 s) gave up on Tradovate's late events, the
next alert planned from a view without the first one's fill (a reversal opened short 1 from a
"flat" that was long 1; a close sent nothing); and an alert during a reconnect (~1 s) was stored
"accepted" and never traded. The plan now waits for the view, bounded by the signal's TTL, and
past it plans nothing and says why: never from "flat"."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_engine import buy, close, sell, send, wait_for
from tests.integration.test_protect_exits_sim import _net, _sim_world, _view_net


def _short_ttl(settings: Settings, ttl_s: float) -> Settings:
    trading = settings.trading.model_copy(update={"signal_ttl_s": ttl_s})
    return settings.model_copy(update={"trading": trading})


async def _last_row(database: Database) -> dict[str, Any]:
    row = await database.pool.fetchrow(
        "SELECT verdict, filter, reason, orders FROM signals ORDER BY id DESC LIMIT 1"
    )
    return dict(row)


async def _synced(w: dict[str, Any]) -> None:
    async def back() -> bool:
        return bool(w["broker"].is_synced(w["bid"]))

    await wait_for(back, "the session is synced again", 15)


async def test_a_reversal_after_late_events_waits_for_the_fill(
    database: Database, settings: Settings
) -> None:
    """Fill events 2.6 s after the answer: the reversal plans from long 1, not from flat."""
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        sim.fault("events_after", on=True, ms=2600)
        first = await send(engine, database.pool, w["rec"], buy("21500"))
        assert first.orders == 1
        second = await send(engine, database.pool, w["rec"], sell("21500"))
        sim.fault("clear")
        await asyncio.sleep(3.5)
        await sim.flush()
        accounts = second.detail["accounts"]
        assert _net(sim) == -1, f"net {_net(sim)}; reversal: {accounts}"
        assert (second.verdict, second.reason) == ("accepted", None), accounts
        stops = [o for o in sim.working_orders("PX1") if o.get("orderType") == "Stop"]
        assert len(stops) <= 1, f"two stops on a short 1: {sim.working_orders('PX1')}"


async def test_a_close_after_late_events_closes(database: Database, settings: Settings) -> None:
    """The close after late fill events plans from long 1: it was planned "already flat"."""
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        sim.fault("events_after", on=True, ms=2600)
        await send(engine, database.pool, w["rec"], buy("21500"))
        out = await send(engine, database.pool, w["rec"], close("21500"))
        sim.fault("clear")
        await asyncio.sleep(3.5)
        await sim.flush()
        assert _net(sim) == 0, f"net {_net(sim)} after the close: {out.detail['accounts']}"
        assert out.orders >= 1, out.detail["accounts"]


async def test_an_earlier_fill_not_shown_within_the_ttl_plans_nothing(
    database: Database, settings: Settings
) -> None:
    """Events later than the signal's TTL: the reversal is not planned from "flat" (it opened
    short 1 beside the long 1), and its row says why instead of a silent "accepted"."""
    settings = _short_ttl(settings, 3)
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        # a round trip first: the contract is looked up and cached (the socket answers one
        # request at a time, and each waits for its late events: only the entry may)
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await send(engine, database.pool, w["rec"], close("21500"))
        await _view_net(w, 0)
        sim.fault("events_after", on=True, ms=6000)
        first = await send(engine, database.pool, w["rec"], buy("21500"))
        assert first.orders == 1
        second = await send(engine, database.pool, w["rec"], sell("21500"))
        sim.fault("clear")
        await _view_net(w, 1)
        await sim.flush()
        assert second.orders == 0, second.detail["accounts"]
        assert _net(sim) == 1, f"net {_net(sim)}: {second.detail['accounts']}"
        row = await _last_row(database)
        assert (row["verdict"], row["orders"]) == ("accepted", 0), row
        assert row["reason"].startswith("not traded: "), row
        assert "did not show the orders of an earlier signal" in row["reason"], row
        # the view shows the fill now: the next alert is planned from it
        third = await send(engine, database.pool, w["rec"], sell("21500"))
        assert third.orders >= 1, third.detail["accounts"]
        await asyncio.sleep(1.0)
        await sim.flush()
        assert _net(sim) == -1, f"net {_net(sim)}: {third.detail['accounts']}"


async def test_a_reversal_during_a_reconnect_waits_for_the_sync(
    database: Database, settings: Settings
) -> None:
    """An alert while the session reconnects (~1 s) is traded once the view is synced: it was
    stored "accepted", "not traded: broker view not synced", and the follower kept long."""
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        sim.fault("drop", after=0)  # a network blip
        await asyncio.sleep(0.05)
        out = await send(engine, database.pool, w["rec"], sell("21500"))
        await _synced(w)
        await asyncio.sleep(1.0)
        await sim.flush()
        row = await _last_row(database)
        assert _net(sim) == -1, f"net {_net(sim)}; row {row}; {out.detail['accounts']}"
        assert (row["verdict"], row["reason"]) == ("accepted", None), row


async def test_a_close_while_unsynced_past_the_ttl_says_not_traded(
    database: Database, settings: Settings
) -> None:
    """A session that does not come back within the signal's TTL: nothing is planned (missing
    is not flat), and the close's row says so (it was "accepted" with no reason at all)."""
    settings = _short_ttl(settings, 1.5)
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        sim.fault("drop", after=0, sticky=True)  # every new connection drops too
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        out = await send(engine, database.pool, w["rec"], close("21500"))
        waited = loop.time() - t0
        assert (out.orders, _net(sim)) == (0, 1), out.detail["accounts"]
        assert waited < 5, f"held {waited:.1f}s, past the 1.5s TTL"
        row = await _last_row(database)
        assert row["verdict"] == "accepted", row
        assert (row["reason"] or "").startswith("not traded: broker view not synced"), row
        sim.fault("clear")
