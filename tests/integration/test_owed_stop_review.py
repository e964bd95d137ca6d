"""The second review of the owed stop (``engine.owed_stop``): a stop is owed only when the
plan's cancel of a live stop took effect and the stop it planned in its place failed to reach
the broker. Neither a step the dispatcher chose not to send (a DCA take-profit leg whose
contracts went to another leg) nor a plan killed before anything of it was sent owes a stop,
and a stop a person then cancels by hand stays cancelled (the commit's own
``test_the_stop_put_back_then_cancelled_by_hand_stays_cancelled``)."""

from __future__ import annotations

import contextlib
from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.dispatch import NOT_SENT_ON_PURPOSE
from jtrades.engine.signal import ExitSpec, Units
from tests.cut_short_world import deliver, deliver_and_die_at, delivery, sim_world
from tests.integration.test_engine import buy, send, wait_for
from tests.integration.test_protect_exits_sim import _sim_world, _view_net, _view_orders

D = Decimal
ALERT_STOP = ExitSpec(D(40), Units.TICKS)  # the entry alert's own stop: 10 points
DCA: dict[str, Any] = {"size": 1, "add_size": 1, "dca": True, "same_direction": "add"}

LADDER: dict[str, Any] = {
    "size": 1,
    "add_size": 1,
    "dca": True,
    "same_direction": "add",
    "tp": [{"target": "8", "qty": 1}, {"target": "40"}],  # no --sl
}


async def _covered_after_dca_with_a_passed_leg(
    database: Database, settings: Settings, sim: Any, engine: Any, w: dict[str, Any]
) -> None:
    pool = database.pool
    await send(engine, pool, w["rec"], buy("21500", stop_loss=ALERT_STOP))
    await _view_net(w, 1)
    await sim.set_price("MNQ", "21496")
    await sim.flush()
    out = await send(engine, pool, w["rec"], buy("21502"))  # DCA add: avg 21498 at the broker
    await _view_net(w, 2)

    async def replaced() -> bool:
        orders = sim.working_orders("PX1")
        return len(orders) == 2 and all(o["qty"] == 2 for o in orders)

    await wait_for(replaced, "one take-profit leg with its stop, for 2")
    msgs = [m for a in out.detail["accounts"].values() for m in a["messages"]]
    assert any("already reached" in m for m in msgs), msgs
    stops = [o for o in sim.working_orders("PX1") if o["orderType"] == "Stop"]
    assert [(D(str(o["stopPrice"])), o["qty"]) for o in stops] == [(D(21490), 2)]
    passed = await pool.fetch(
        "SELECT state, reason FROM order_intents WHERE kind = 'oco' AND state = 'expired'"
    )
    assert len(passed) == 1
    assert "a leg fewer" in passed[0]["reason"]
    assert passed[0]["reason"].startswith(NOT_SENT_ON_PURPOSE)  # skipped, not failed


async def test_exits_cancelled_by_hand_after_a_dca_with_a_passed_leg_stay_cancelled(
    database: Database, settings: Settings
) -> None:
    """A DCA add whose first take-profit leg was deliberately not sent (reached at the broker's
    average: its contracts go to the next leg) went out whole otherwise. A person cancels the
    exits by hand: the skipped leg is not a stop the daemon failed to place."""
    async with _sim_world(database, settings, **LADDER) as (sim, engine, w):
        await _covered_after_dca_with_a_passed_leg(database, settings, sim, engine, w)
        # the position is covered: nothing owed, nothing placed
        for _ in range(2):
            await engine.reconciler.tick()
        # a person cancels the exits by hand in Tradovate's app (no clOrdId, no intent)
        for o in list(sim.working_orders("PX1")):
            if o["status"] == "Working":
                with contextlib.suppress(Exception):  # the OCO partner went with the first
                    await w["broker"].cancel_order(o["id"])
        await _view_orders(w, 0)
        assert sim.working_orders("PX1") == []
        for _ in range(3):  # passes of the reconciliation loop
            await engine.reconciler.tick()
        await sim.flush()
        # the person's cancel stands: no stop comes back
        assert sim.working_orders("PX1") == [], sim.working_orders("PX1")


async def test_a_stop_cancelled_by_hand_after_a_dca_that_never_left_stays_cancelled(
    database: Database, settings: Settings
) -> None:
    """A DCA add killed before its first call: nothing of it left (reconciliation closes its
    cancel as 'outcome not confirmed'). The entry's stop is cancelled later by a person: the dead
    plan's stop for 2 is not owed."""
    async with sim_world(database, settings, ["KA"], **DCA) as w:
        await w.start()
        out = await deliver(w, await delivery(w, buy("21500", stop_loss=ALERT_STOP), "e1"))
        assert out.orders == 1, out
        await w.view_net("KA", 1)
        await w.view_orders("KA", 1)
        assert w.stops("KA") == [(21490, 1)]

        went = await deliver_and_die_at(w, await delivery(w, buy("21500"), "a1"), 1)
        assert went == [], went  # nothing of the add left: killed before its first call
        assert w.net("KA") == 1
        assert w.stops("KA") == [(21490, 1)]

        e = await w.restart()
        await w.view_net("KA", 1)
        await w.view_orders("KA", 1)
        for _ in range(2):
            await e.reconciler.tick()
        await w.sim.flush()
        assert w.stops("KA") == [(21490, 1)]  # covered: nothing placed

        (stop,) = w.orders("KA")
        await w.broker.cancel_order(stop["id"])  # a person, in Tradovate's app
        await w.view_orders("KA", 0)
        for _ in range(3):
            await e.reconciler.tick()
        await w.sim.flush()
        assert w.stop_qty("KA") == 0, w.orders("KA")
