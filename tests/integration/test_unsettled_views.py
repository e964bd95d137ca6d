"""An account whose live view lags what a signal sent it is not planned from that view (DESIGN.md
§5 rules 3 and 6), with the real Tradovate client against the simulator's late events.

Found in review: once the dispatcher's settle wait (2 s) gave up on Tradovate's late events, the
next alert planned from a view without the first one's fill: a reversal opened short 1 beside a
long 1 that read "flat" (two stops), and a close sent nothing, its row "accepted" with no
reason. Waiting for the view under the account's lock was reverted (it held healthy followers
behind it); the account is now refused at once, the row says why, and it is planned again as
soon as the view shows what was sent (``engine.unsettled``)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.account_plans import lock_key
from jtrades.engine.unsettled import GRACE_S, Unsettled, UnsettledViews
from tests.integration.test_engine import buy, close, sell, send, wait_for
from tests.integration.test_protect_exits_sim import (
    TP_LADDER,
    _net,
    _sim_world,
    _view_net,
    take_profits_only_then_a_stop_loss,
)

# later than the settle wait (2 s), with room for a busy machine between the two
LATE_MS = 4000
LAGS = "not traded: the broker's view does not show yet what was sent to the account before"


async def _last_row(database: Database) -> dict[str, Any]:
    row = await database.pool.fetchrow(
        "SELECT verdict, filter, reason, orders FROM signals ORDER BY id DESC LIMIT 1"
    )
    return dict(row)


def _stops(sim: Any) -> list[dict[str, Any]]:
    return [o for o in sim.working_orders("PX1") if o.get("orderType") == "Stop"]


async def _warm(database: Database, engine: Any, w: dict[str, Any], size: int = 1) -> None:
    """A round trip first, events on time: the contract is looked up and cached (a look-up
    would wait for the late events too)."""
    await send(engine, database.pool, w["rec"], buy("21500"))
    await _view_net(w, size)
    await send(engine, database.pool, w["rec"], close("21500"))
    await _view_net(w, 0)


async def test_a_reversal_after_late_events_is_not_planned_from_flat(
    database: Database, settings: Settings
) -> None:
    """The reversal behind a fill the view does not show yet sends nothing (planned from
    "flat" it opened short 1 beside the long 1, with a second stop), and says why; once the
    view shows the fill, the next one reverses."""
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        await _warm(database, engine, w)
        sim.fault("events_after", on=True, ms=LATE_MS)
        first = await send(engine, database.pool, w["rec"], buy("21500"))
        assert first.orders >= 1, first.detail["accounts"]
        second = await send(engine, database.pool, w["rec"], sell("21500"))
        sim.fault("clear")
        await _view_net(w, 1)
        await sim.flush()
        assert _net(sim) == 1, f"net {_net(sim)}: {second.detail['accounts']}"
        assert len(_stops(sim)) == 1, sim.working_orders("PX1")
        assert second.orders == 0, second.detail["accounts"]
        row = await _last_row(database)
        assert (row["verdict"], row["orders"]) == ("accepted", 0), row
        assert (row["reason"] or "").startswith(LAGS), row

        third = await send(engine, database.pool, w["rec"], sell("21500"))
        assert third.orders >= 1, third.detail["accounts"]
        await _view_net(w, -1)
        assert _net(sim) == -1
        assert len(_stops(sim)) == 1, sim.working_orders("PX1")


async def test_a_close_after_late_events_says_why_it_did_not_close(
    database: Database, settings: Settings
) -> None:
    """The close behind a fill the view does not show yet was planned "already flat": it
    sent nothing and its row said accepted, no reason. It is refused with its cause, and the
    next close closes."""
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        await _warm(database, engine, w)
        sim.fault("events_after", on=True, ms=LATE_MS)
        await send(engine, database.pool, w["rec"], buy("21500"))
        out = await send(engine, database.pool, w["rec"], close("21500"))
        sim.fault("clear")
        await _view_net(w, 1)
        assert out.orders == 0, out.detail["accounts"]
        row = await _last_row(database)
        assert (row["reason"] or "").startswith(LAGS), row
        front = sim.contract("MNQ").name
        assert f"({front}: it holds 0 where they make 1" in row["reason"], row

        again = await send(engine, database.pool, w["rec"], close("21500"))
        assert again.orders >= 1, again.detail["accounts"]
        await _view_net(w, 0)
        await sim.flush()
        assert _net(sim) == 0


async def test_an_entry_refused_after_acceptance_frees_the_account_once_shown(
    database: Database, settings: Settings
) -> None:
    """The broker took the entry, then refused it (a risk check), its events late: once the
    view shows the refusal, the position it holds is the broker's, and the next alert is
    planned from it, not held off until the record's grace runs out."""
    async with _sim_world(database, settings, size=1) as (sim, engine, w):
        await _warm(database, engine, w)
        sim.fault("events_after", on=True, ms=LATE_MS)
        sim.fault("reject_order", reason="MaxPosLimitReached", text="limit", after_accept=True)
        first = await send(engine, database.pool, w["rec"], buy("21500"))
        assert first.orders == 1, first.detail["accounts"]
        link = next(iter(engine.config.snapshot.subs.values()))
        async with engine.dispatcher.lock_for(link):  # the settle wait gave up
            lags = engine.dispatcher.view_lags(link, w["broker"], "MNQ")
        assert lags is not None  # its events are late
        assert "not shown" in lags, lags
        sim.fault("clear")

        async def refusal_shown() -> bool:
            return not w["broker"].working_orders(w["bid"]) and any(
                o.reason for o in _orders_known(w)
            )

        await wait_for(refusal_shown, "the view shows the entry refused")
        second = await send(engine, database.pool, w["rec"], buy("21500"))
        assert second.orders == 1, second.detail["accounts"]
        await _view_net(w, 1)
        assert _net(sim) == 1


def _orders_known(w: dict[str, Any]) -> list[Any]:
    view = w["broker"].session.view
    return [o for oid in view.order_ids(w["bid"]) if (o := view.order(oid)) is not None]


async def test_a_close_during_a_reconnect_says_not_traded(
    database: Database, settings: Settings
) -> None:
    """A close while the session is down plans nothing (missing is not flat), and its row
    says so: it was "accepted" with no reason at all."""
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        sim.fault("drop", after=0, sticky=True)  # every new connection drops too
        await wait_for(_unsynced(w), "the session is down")
        out = await send(engine, database.pool, w["rec"], close("21500"))
        assert (out.orders, _net(sim)) == (0, 1), out.detail["accounts"]
        row = await _last_row(database)
        assert row["verdict"] == "accepted", row
        assert (row["reason"] or "").startswith("not traded: broker view not synced"), row
        sim.fault("clear")


def _unsynced(w: dict[str, Any]) -> Any:
    async def down() -> bool:
        return not w["broker"].is_synced(w["bid"])

    return down


async def test_protection_waits_for_a_lagging_view_and_the_record_ends_with_its_grace(
    database: Database, settings: Settings
) -> None:
    """A position whose view lags an order sent to it is not protected from that view (read
    from it, a position looked naked while its stop was on the way, and a second one went
    beside it). A record the view never shows (an order that never reached the broker) is
    dropped after ``GRACE_S``, and the account is read as the view has it."""
    pool = database.pool
    async with _sim_world(database, settings, size=2, tp=TP_LADDER) as (sim, engine, w):
        await take_profits_only_then_a_stop_loss(pool, engine, w)
        now = [1000.0]
        engine.dispatcher.views = views = UnsettledViews(clock=lambda: now[0])
        link = next(iter(engine.config.snapshot.subs.values()))
        views.note(
            lock_key(link),
            Unsettled(
                sub_account_id=link.sub_account_id,
                contract=await w["broker"].find_contract(sim.contract("MNQ").name),
                made_pos=None,
                placed=((None, "jt-never-shown"),),  # an order the view never shows
                cancelled=(),
                movers=(),
                unanswered=(),
                liquidated=False,
                noted_at=now[0],
            ),
        )
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        assert await engine.reconciler.protect_positions() == 0  # the view lags: not read
        assert not _stops(sim)
        now[0] += GRACE_S
        assert await engine.reconciler.protect_positions() == 1
        await asyncio.sleep(0)
        assert sorted((o["stopPrice"], o["qty"]) for o in _stops(sim)) == [(21490, 1), (21490, 1)]
