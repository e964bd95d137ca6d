"""Protective stops with the real Tradovate client against the simulator, over real sockets:
take-profit legs left without a stop get one OCO stop share each (never a stop that closes
more than is held once a leg has filled), and a bracket strategy that is whole is left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import OcoRequest, PlaceResult
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine import protector as protector_mod
from jtrades.engine.engine import Engine
from jtrades.errors import TransientBrokerError
from tests.integration.test_engine import buy, make_recorder, make_trader, make_user, send, wait_for
from tests.sim_worlds import sim_tradovate
from tests.simutil import SimHandle, running_sim

TP_LADDER = [{"target": "20", "qty": 1}, {"target": "40"}]  # ticks: 5 and 10 points


@asynccontextmanager
async def _sim_world(
    database: Database, settings: Settings, **risk: Any
) -> AsyncIterator[tuple[SimHandle, Engine, dict[str, Any]]]:
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("px_tv", "px-pw", ["PX1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "px_tv", "px-pw")
            u = await make_user(pool, "pxs")
            rec = await make_recorder(pool, u, "pxs-rec", **risk)
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'px-demo', 'demo', 'px_tv') RETURNING id",
                u,
            )
            bid = sim.account_id("PX1")
            sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'PX1') RETURNING id",
                aid,
                bid,
            )
            trader = await make_trader(pool, u, rec, [(sub, 1)])
            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            try:
                yield sim, engine, {"rec": rec, "trader": trader, "bid": bid, "broker": broker}
            finally:
                await engine.close()
        finally:
            await tv.close()


def _net(sim: SimHandle) -> int:
    return sum(sim.positions("PX1").values())


async def _view_net(w: dict[str, Any], expected: int) -> None:
    async def seen() -> bool:
        return sum(p.net_pos for p in w["broker"].positions(w["bid"])) == expected

    await wait_for(seen, f"the live view shows net {expected}")


async def _view_orders(w: dict[str, Any], count: int) -> None:
    async def seen() -> bool:
        return len(w["broker"].working_orders(w["bid"])) == count

    await wait_for(seen, f"the live view shows {count} working orders")


async def take_profits_only_then_a_stop_loss(pool: Any, engine: Engine, w: dict[str, Any]) -> None:
    """Long 2 with the strategy's two take-profits and no stop, then the trader given a stop
    loss: a position protection owes a stop (the world of ``_sim_world(size=2, tp=TP_LADDER)``)."""
    out = await send(engine, pool, w["rec"], buy("21500"))
    assert out.orders == 1
    await _view_net(w, 2)
    await _view_orders(w, 2)  # the strategy's two take-profits, no stop
    await pool.execute("UPDATE traders SET sl = 40, updated_at = now() WHERE id=$1", w["trader"])
    await engine.config.refresh()


async def test_tp_legs_without_a_stop_end_flat_at_the_simulator(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with _sim_world(database, settings, size=2, tp=TP_LADDER) as (sim, engine, w):
        await take_profits_only_then_a_stop_loss(pool, engine, w)
        assert await engine.reconciler.protect_positions() == 0
        assert await engine.reconciler.protect_positions() == 1

        orders = sim.working_orders("PX1")
        limits = sorted((o["price"], o["qty"]) for o in orders if o["orderType"] == "Limit")
        stops = sorted((o["stopPrice"], o["qty"]) for o in orders if o["orderType"] == "Stop")
        assert limits == [(21505, 1), (21510, 1)]
        assert stops == [(21490, 1), (21490, 1)]
        assert all(o["ocoId"] for o in orders)

        await sim.set_price("MNQ", "21505")  # TP1
        assert _net(sim) == 1
        await _view_net(w, 1)
        await _view_orders(w, 2)
        assert await engine.reconciler.protect_positions() == 0  # exactly covered

        await sim.set_price("MNQ", "21490")  # the stop
        assert _net(sim) == 0
        assert sim.working_orders("PX1") == []
        await sim.set_price("MNQ", "21515")
        assert _net(sim) == 0


async def test_a_whole_bracket_strategy_is_left_alone(
    database: Database, settings: Settings
) -> None:
    """The simulator's multi-leg strategy shares one stop between its TP legs (no ocoId on
    them: the strategy links them); it covers the position, so nothing is cancelled or added."""
    pool = database.pool
    async with _sim_world(database, settings, size=2, tp=TP_LADDER, sl=Decimal(40)) as (
        sim,
        engine,
        w,
    ):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 3)
        before = sorted(o["id"] for o in sim.working_orders("PX1"))
        assert await engine.reconciler.protect_positions() == 0
        assert await engine.reconciler.protect_positions() == 0
        assert sorted(o["id"] for o in sim.working_orders("PX1")) == before


async def test_a_retry_waits_for_what_the_failed_attempt_placed(
    database: Database, settings: Settings
) -> None:
    """Long 2 with two take-profits and no stop; the re-placement cancels them, places the
    first OCO, and the second never leaves. The stream shows an order's events 0.8 s after its
    answer (Tradovate does either): the retry 0.5 s later read a view without the OCO just
    placed and stopped the whole position again (stops for 3 on a long 2: the stop took the
    long to a short 1). It waits for what was placed to show, then covers only the rest."""
    pool = database.pool
    async with _sim_world(database, settings, size=2, tp=TP_LADDER) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 2)
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id = $1", w["trader"]
        )
        await engine.config.refresh()
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        broker = w["broker"]
        real, calls = broker.place_oco, []

        async def second_lost(req: OcoRequest) -> PlaceResult:
            calls.append(req)
            if len(calls) == 2:
                raise TransientBrokerError("connection lost")
            return await real(req)

        broker.place_oco = second_lost
        sim.fault("events_after", on=True, ms=800)
        await engine.reconciler.protect_positions()
        sim.fault("clear")
        await sim.flush()

        stops = [o for o in sim.working_orders("PX1") if o["orderType"] == "Stop"]
        assert sum(o["qty"] for o in stops) == 2, stops
        await sim.set_price("MNQ", "21490")  # down through the stops
        assert _net(sim) == 0


async def test_a_partly_filled_strategy_entry_is_waited_for_not_stopped_twice(
    database: Database, settings: Settings
) -> None:
    """A limit entry for 3 (a Tradovate order strategy with a 40-tick stop) fills 1 and keeps
    working. Its brackets do not exist yet (Tradovate creates a strategy's brackets once the
    entry fills; the view has no Suspended legs to wait for, unlike paper's), so protection
    adds a stop for the 1 held. When the entry completes, the strategy's stop for 3 comes on
    top: stops for 4 on a long 3, and a drop through them ends short 1."""
    pool = database.pool
    async with _sim_world(database, settings, size=3, sl=Decimal(40)) as (sim, engine, w):
        out = await send(
            engine, pool, w["rec"], buy("21500", order_type="limit", limit_price=Decimal("21490"))
        )
        assert out.orders == 1
        await _view_orders(w, 1)
        ex = sim.world.exchange
        (entry,) = [o for o in ex.orders.values() if o.role == "entry" and o.status == "Working"]
        # a thin market fills 1 of the 3 at the limit; the rest keeps working
        ex._out = []
        ex._fill_lot(entry, Decimal("21490"), 1)
        sim.world.queue(ex._out)
        await sim.flush()
        await _view_net(w, 1)

        await engine.reconciler.protect_positions()  # first sighting
        await engine.reconciler.protect_positions()  # a pass later, still 1 filled

        # the remaining 2 fill: the strategy's brackets are created for its whole 3
        ex._out = []
        entry.spec.qty = 2
        ex._fill(entry, Decimal("21490"))
        entry.spec.qty = 3
        sim.world.queue(ex._out)
        await sim.flush()
        assert _net(sim) == 3
        stops = [o for o in sim.working_orders("PX1") if o["orderType"] == "Stop"]
        await sim.set_price("MNQ", "21479")  # through the stop level (21480)
        assert _net(sim) == 0, f"stops {[(s['stopPrice'], s['qty']) for s in stops]} on long 3"


async def test_take_profits_come_back_after_the_broker_refused_their_re_placement_for_a_pass(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long 2 with a TP ladder (21505 / 21510) and no stop; the trader then sets a 40-tick stop
    loss. Protection cancels both take-profits to re-place them as OCOs with a stop share, and
    the broker refuses the OCOs (InvalidPrice) for the pass and its retries. The next pass
    planned from the view alone, and the take-profits were never put back."""
    monkeypatch.setattr(protector_mod, "RETRY_WAITS_S", (0.01, 0.01, 0.01))
    pool = database.pool
    ladder = [{"target": "20", "qty": 1}, {"target": "40"}]
    async with _sim_world(database, settings, size=2, tp=ladder) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 2)
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id=$1", w["trader"]
        )
        await engine.config.refresh()
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        sim.fault("reject_order", reason="InvalidPrice", text="stop price through the market",
                  endpoint="placeoco", count=8)  # fmt: skip
        await engine.reconciler.protect_positions()
        sim.fault("clear")
        await engine.reconciler.protect_positions()
        await engine.reconciler.protect_positions()
        await sim.flush()
        limits = sorted(
            (o["price"], o["qty"]) for o in sim.working_orders("PX1") if o["orderType"] == "Limit"
        )
        assert limits == [(21505, 1), (21510, 1)], f"take-profits lost: {sim.working_orders('PX1')}"
