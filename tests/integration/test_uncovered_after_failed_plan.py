"""A plan that cancelled a position's exits and then failed hands the position to the protector
at once.

A trim cancels the working exits, sends the market reduce, then re-places the exits for what
is left. When the broker refused the reduce (a risk check, the session closed) or it was past
the signal's TTL on a slow broker, the re-placement was not sent either, and the long 2 held
nothing until the protector's second sighting, one or two reconcile intervals later (30 s
each by default). Now the dispatch asks for a pass at once, the position counting as sighted.
Simulator over real sockets.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import send, wait_for
from tests.integration.test_protect_exits_sim import _sim_world, _view_net, _view_orders
from tests.simutil import SimHandle

RISK: dict[str, Any] = {"size": 2, "tp": [{"target": "40"}], "sl": Decimal(100)}
TRIM = Signal(Action.SELL, ticker="MNQ1!", price=Decimal(21500), quantity=1, source="native")


def _stopped(sim: SimHandle) -> int:
    return sum(o["qty"] for o in sim.working_orders("PX1") if o["orderType"] == "Stop")


async def _trim_fails(database: Database, settings: Settings, kind: str, **fault: Any) -> None:
    pool = database.pool
    async with _sim_world(database, settings, **RISK) as (sim, engine, w):
        await send(engine, pool, w["rec"], Signal(Action.BUY, "MNQ1!", price=Decimal(21500)))
        await _view_net(w, 2)
        await _view_orders(w, 2)  # its take-profit and stop
        sim.fault(kind, **fault)
        out = await send(engine, pool, w["rec"], TRIM)
        sim.fault("clear")
        assert out.orders == 2, out  # the two cancels went, nothing after them
        assert sum(sim.positions("PX1").values()) == 2

        async def stopped() -> bool:
            return _stopped(sim) == 2

        await wait_for(stopped, "the long 2 stopped again by the protector", 10)


async def test_a_trim_the_broker_refuses_leaves_the_position_stopped(
    database: Database, settings: Settings
) -> None:
    await _trim_fails(
        database, settings, "reject_order", endpoint="placeorder", reason="SessionClosed",
        text="Market is closed",
    )  # fmt: skip


async def test_a_trim_past_its_ttl_leaves_the_position_stopped(
    database: Database, settings: Settings
) -> None:
    ttl = settings.model_copy(
        update={"trading": settings.trading.model_copy(update={"signal_ttl_s": 1})}
    )
    await _trim_fails(database, ttl, "delay", ms=600)
