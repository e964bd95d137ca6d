"""What reconciliation sent and the view does not show yet holds the next alert's plan too.

A protective stop or an orphan's cancel the broker answered, whose events came after the
reconciler's wait (``CANCEL_WAIT_S``), was remembered by the protector alone. The next alert
planned from a view without it: a DCA add placed a stop for the averaged 2 beside the unshown
stop for 1 (stops for 3 on a long 2: short 1 once they triggered), and an entry cancelled the
orphan's stop again, was refused "TooLate" and was not sent. Now the account is not planned
until its view shows what went ("not traded", as after a dispatch), then trades as before.
Simulator over real sockets; its stream delayed by a fault.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import Side
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine import protect_waits
from tests.integration.test_engine import buy, send, wait_for
from tests.integration.test_orphan_exits_sim import _close_by_hand
from tests.integration.test_protect_exits_sim import _sim_world, _view_net, _view_orders
from tests.simutil import SimHandle

LAG_MS = 1500  # the stream's delay: past the reconciler's wait, shortened to 0.3 s


@pytest.fixture(autouse=True)
def _short_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(protect_waits, "CANCEL_WAIT_S", 0.3)


def _stops(sim: SimHandle) -> list[tuple[float, int]]:
    return sorted(
        (o["stopPrice"], o["qty"]) for o in sim.working_orders("PX1") if o["orderType"] == "Stop"
    )


def _not_shown(out: Any) -> bool:
    return out.orders == 0 and "does not show yet" in (out.reason or "")


async def test_an_add_waits_for_a_protective_stop_the_view_does_not_show_yet(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    risk = {"size": 1, "add_size": 1, "same_direction": "add", "dca": True}
    async with _sim_world(database, settings, **risk) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id=$1", w["trader"]
        )
        await engine.config.refresh()
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        sim.fault("events_after", on=True, ms=LAG_MS)
        assert await engine.reconciler.protect_positions() == 1  # placed, not shown
        sim.fault("clear")
        assert _stops(sim) == [(21490, 1)]

        out = await send(engine, pool, w["rec"], buy("21500"))
        assert _not_shown(out), out
        assert sum(sim.positions("PX1").values()) == 1
        assert _stops(sim) == [(21490, 1)]  # no second stop beside it

        await _view_orders(w, 1)  # the stop's events arrive
        out = await send(engine, pool, w["rec"], buy("21500"))
        assert out.orders > 0, out
        await _view_net(w, 2)

        async def covered_once() -> bool:
            return sum(q for _p, q in _stops(sim)) == 2

        await wait_for(covered_once, "the averaged long 2 stopped once")


async def test_an_entry_waits_for_an_orphan_cancel_the_view_does_not_show_yet(
    database: Database, settings: Settings
) -> None:
    async with _sim_world(database, settings, size=1, sl=Decimal(40)) as (sim, engine, w):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 1)
        await _close_by_hand(w, Side.SELL, 1)
        sweeper = engine.reconciler.orphans
        assert await sweeper.sweep() == 0  # first sighting
        sim.fault("events_after", on=True, ms=LAG_MS)
        assert await sweeper.sweep() == 1  # cancelled at the broker, working in the view
        sim.fault("clear")
        assert sim.working_orders("PX1") == []

        out = await send(engine, database.pool, w["rec"], buy("21500"))
        assert _not_shown(out), out  # not "rejected: TooLate" from cancelling it again

        await _view_orders(w, 0)
        out = await send(engine, database.pool, w["rec"], buy("21500"))
        assert out.orders > 0, out
        assert sum(sim.positions("PX1").values()) == 1
