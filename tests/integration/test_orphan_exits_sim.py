"""Exits left working after a position was closed by hand (a plain market order, not "Exit at
Mkt & Cxl"), with the real Tradovate client against the simulator over real sockets: the
reconciler cancels them on its second pass that sees them, through intents, before one fills
and opens a position nobody asked for; an entry still working and an order placed by hand are
left alone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.integration.test_engine import buy, sell, send, wait_for
from tests.integration.test_protect_exits_sim import _net, _sim_world, _view_net, _view_orders
from tests.simutil import SimHandle


async def _close_by_hand(w: dict[str, Any], side: Side, qty: int) -> None:
    [p] = [p for p in w["broker"].positions(w["bid"]) if p.net_pos]
    await w["broker"].place_order(OrderRequest(SubAccount(w["bid"], "PX1"), p.symbol, side, qty))
    await _view_net(w, 0)


async def _sweep_twice(engine: Engine) -> tuple[int, int]:
    sweeper = engine.reconciler.orphans
    return await sweeper.sweep(), await sweeper.sweep()


async def _cancel_intents(database: Database) -> list[tuple[str, str]]:
    rows = await database.pool.fetch(
        "SELECT kind, state FROM order_intents WHERE cl_ord_id LIKE 'jt-o-%' ORDER BY id"
    )
    return [(r["kind"], r["state"]) for r in rows]


@asynccontextmanager
async def _long_1_with_exits(
    database: Database, settings: Settings
) -> AsyncIterator[tuple[SimHandle, Engine, dict[str, Any]]]:
    """A strategy long 1 at the simulator, with its take-profit and stop working."""
    async with _sim_world(database, settings, size=1, tp=[{"target": "20"}], sl=Decimal(40)) as (
        sim,
        engine,
        w,
    ):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 2)
        yield sim, engine, w


async def _then_prices_cross_the_old_levels(sim: SimHandle) -> None:
    for price in ("21530", "21460", "21500"):
        await sim.set_price("MNQ", price)
        assert _net(sim) == 0, f"a left-over exit opened a position at {price}"


async def test_a_strategy_s_exits_are_cancelled_after_a_close_by_hand(
    database: Database, settings: Settings
) -> None:
    tp = [{"target": "20"}]  # 5 points
    async with _sim_world(database, settings, size=2, tp=tp, sl=Decimal(40)) as (sim, engine, w):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 2)  # the strategy's take-profit and stop
        await _close_by_hand(w, Side.SELL, 2)
        assert len(sim.working_orders("PX1")) == 2  # what Tradovate does too: they stay

        assert await _sweep_twice(engine) == (0, 2)  # seen, then cancelled
        assert sim.working_orders("PX1") == []
        assert await _cancel_intents(database) == [("cancel", "done")] * 2
        await _then_prices_cross_the_old_levels(sim)


async def test_a_dca_s_re_placed_exits_are_cancelled_after_a_close_by_hand(
    database: Database, settings: Settings
) -> None:
    """A DCA add re-places the exits as one OCO per take-profit plus a stop for the rest, each
    named as an exit by its clOrdId (the OCO's second leg through its link)."""
    risk: dict[str, Any] = {"size": 1, "add_size": 1, "same_direction": "add", "dca": True}
    tp = [{"target": "20", "qty": 1}, {"target": "40"}]
    async with _sim_world(database, settings, tp=tp, sl=Decimal(40), **risk) as (sim, engine, w):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 4)  # two OCOs: a take-profit and its stop each
        await _close_by_hand(w, Side.SELL, 2)

        assert await _sweep_twice(engine) == (0, 4)
        assert sim.working_orders("PX1") == []
        await _then_prices_cross_the_old_levels(sim)


async def test_a_working_entry_and_an_order_by_hand_are_left_alone(
    database: Database, settings: Settings
) -> None:
    async with _sim_world(database, settings, size=1, tp=[{"target": "20"}], sl=Decimal(40)) as (
        sim,
        engine,
        w,
    ):
        limit_entry = buy("21500", order_type="limit", limit_price=Decimal("21400"))
        out = await send(engine, database.pool, w["rec"], limit_entry)
        assert out.orders == 1
        account = SubAccount(w["bid"], "PX1")
        symbol = sim.contract("MNQ").name
        by_hand = OrderRequest(account, symbol, Side.SELL, 1, OrderType.LIMIT, price=Decimal(21600))
        await w["broker"].place_order(by_hand)

        async def both_seen() -> bool:
            return len(w["broker"].working_orders(w["bid"])) >= 2

        await wait_for(both_seen, "the entry and the order by hand in the live view")
        before = sorted(o["id"] for o in sim.working_orders("PX1"))

        assert await _sweep_twice(engine) == (0, 0)
        assert sorted(o["id"] for o in sim.working_orders("PX1")) == before
        assert await _cancel_intents(database) == []


async def test_a_closed_long_s_exits_do_not_add_to_a_short_opened_before_the_sweep(
    database: Database, settings: Settings
) -> None:
    """Closed by hand, then a sell alert opens a short before the second pass: its plan cancels
    the old exits (they would add to the short), and a pass finds nothing left."""
    async with _long_1_with_exits(database, settings) as (sim, engine, w):
        old = {o["id"] for o in sim.working_orders("PX1")}
        await _close_by_hand(w, Side.SELL, 1)
        assert await engine.reconciler.orphans.sweep() == 0

        await send(engine, database.pool, w["rec"], sell("21500"))
        await _view_net(w, -1)
        await _view_orders(w, 2)  # the short's own take-profit and stop
        assert not old & {o["id"] for o in sim.working_orders("PX1")}
        assert await engine.reconciler.orphans.sweep() == 0
        await sim.set_price("MNQ", "21506")  # the old sell take-profit's level
        assert _net(sim) == -1


async def test_a_reversal_by_hand_leaves_no_exit_that_adds_to_the_new_side(
    database: Database, settings: Settings
) -> None:
    """Long 1 reversed by hand (sell 2): the long's sell exits work on a short 1, a contract
    never flat; the reconciler's passes cancel them."""
    async with _long_1_with_exits(database, settings) as (sim, engine, w):
        [p] = [p for p in w["broker"].positions(w["bid"]) if p.net_pos]
        await w["broker"].place_order(
            OrderRequest(SubAccount(w["bid"], "PX1"), p.symbol, Side.SELL, 2)
        )
        await _view_net(w, -1)
        for _ in range(2):
            await engine.reconciler.tick()
        assert [o["action"] for o in sim.working_orders("PX1")] != ["Sell", "Sell"]
        await sim.set_price("MNQ", "21506")
        assert _net(sim) == -1


async def test_an_oco_stop_whose_take_profit_is_gone_is_still_an_exit(
    database: Database, settings: Settings
) -> None:
    """An OCO's second order (placeoco ``other``) carries its own clOrdId, and the same id in
    its text: the DCA's stop is known as ours once its take-profit was cancelled by hand."""
    risk: dict[str, Any] = {"size": 1, "add_size": 1, "same_direction": "add", "dca": True}
    tp = [{"target": "20", "qty": 1}, {"target": "40"}]
    async with _sim_world(database, settings, tp=tp, sl=Decimal(40), **risk) as (sim, engine, w):
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 4)
        for o in sim.working_orders("PX1"):
            if o["orderType"] == "Limit":  # by hand: let the trade run
                await w["broker"].cancel_order(o["id"])
        await _view_orders(w, 2)
        await _close_by_hand(w, Side.SELL, 2)

        assert await _sweep_twice(engine) == (0, 2)
        await sim.set_price("MNQ", "21480")
        assert _net(sim) == 0
