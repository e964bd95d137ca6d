"""A DCA add cancels the long's stop and places one for the averaged position; the broker
accepts that stop (answers its orderId) and then rejects it through its events (a risk check:
TRADOVATE.md, the simulator's ``reject_order after_accept``). The dispatcher counted the step as
sent and never handed the position to the protector (``on_uncovered`` was only for a step that
failed in its answer): the long 2 stayed with no stop until the protector's second sighting, one
to two reconcile intervals later. A stop refused in its answer gets a pass at once
(tests/integration/test_uncovered_after_failed_plan.py); one refused just after must too."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_engine import buy, send, wait_for
from tests.integration.test_protect_exits_sim import _sim_world, _view_net, _view_orders

RISK: dict[str, Any] = {
    "size": 1, "add_size": 1, "same_direction": "add", "dca": True, "sl": Decimal(40),
}  # fmt: skip


async def test_a_dca_stop_rejected_after_acceptance_is_protected_at_once(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with _sim_world(database, settings, **RISK) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 1)  # the entry's stop

        sim.fault("reject_order", text="risk check", after_accept=True, order_type="Stop")
        out = await send(engine, pool, w["rec"], buy("21500"))
        assert out.orders >= 2, out  # the add and its exits went
        await _view_net(w, 2)

        def stopped() -> int:
            return sum(o["qty"] for o in sim.working_orders("PX1") if o["orderType"] == "Stop")

        async def covered() -> bool:
            return stopped() == 2

        # well inside one reconcile interval (30 s): no pass is run by the test
        await wait_for(covered, "the long 2 stopped again by the protector", 10)
        await sim.flush()
        assert stopped() == 2  # one stop for the position, not two
