"""Trades made by hand at the broker beside jtrades' exits, with the real Tradovate client
against the simulator over real sockets (reviewed 2026-12-01):

- a take-profit-only trader (no stop loss) long 2 with its take-profit for 2, sold 1 by hand:
  the take-profit stayed for 2 and, when it filled, flipped the account short 1, naked. It is
  shrunk to the position (``protection.trim_take_profits``);
- a re-placement refused after its cancels is carried to its retries (``_carry``); the trade
  was then closed by hand and another opened lower down by hand: the carried stop price (above
  the new long) closed it at once. A carry ends when its position is seen flat or covered."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine import protector as protector_mod
from tests.integration.test_engine import buy, send
from tests.integration.test_protect_exits_sim import _net, _sim_world, _view_net, _view_orders


async def _by_hand(w: dict[str, Any], side: Side, qty: int, then: int) -> None:
    symbol = w["sim"].contract("MNQ").name
    await w["broker"].place_order(OrderRequest(SubAccount(w["bid"], "PX1"), symbol, side, qty))
    await _view_net(w, then)


async def test_a_take_profit_over_a_position_sold_by_hand_is_shrunk_without_a_stop_loss(
    database: Database, settings: Settings
) -> None:
    async with _sim_world(database, settings, size=2, tp=[{"target": "20"}]) as (sim, engine, w):
        w["sim"] = sim
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 1)  # the take-profit for 2, no stop
        await _by_hand(w, Side.SELL, 1, then=1)
        for _ in range(2):  # seen twice before it is acted on
            await engine.reconciler.protect_positions()
        await sim.flush()
        limits = [(o["orderType"], o["qty"]) for o in sim.working_orders("PX1")]
        assert limits == [("Limit", 1)]
        await sim.set_price("MNQ", "21506")  # through the take-profit at 21505
        assert _net(sim) == 0


async def test_a_carried_re_placement_ends_with_its_trade(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(protector_mod, "RETRY_WAITS_S", (0.01, 0.01, 0.01))
    pool = database.pool
    ladder = [{"target": "20", "qty": 1}, {"target": "40"}]
    async with _sim_world(database, settings, size=2, tp=ladder) as (sim, engine, w):
        w["sim"] = sim
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 2)  # two take-profits, no stop
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id = $1", w["trader"]
        )
        await engine.config.refresh()
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        sim.fault("reject_order", reason="InvalidPrice", text="stop price through the market",
                  endpoint="placeoco", count=8)  # fmt: skip
        await engine.reconciler.protect_positions()  # the take-profits cancelled, OCOs refused
        sim.fault("clear")
        assert sim.working_orders("PX1") == []

        await _by_hand(w, Side.SELL, 2, then=0)  # the naked long closed by hand
        await engine.reconciler.protect_positions()  # seen flat: the carry ends
        await sim.set_price("MNQ", "21400")
        await _by_hand(w, Side.BUY, 1, then=1)  # a new trade, lower down
        for _ in range(2):
            await engine.reconciler.protect_positions()
        await sim.flush()
        assert _net(sim) == 1  # a carried stop at 21490 closed it at once
        stops = [(o["orderType"], o["stopPrice"], o["qty"]) for o in sim.working_orders("PX1")]
        assert stops == [("Stop", 21390, 1)]  # the trader's 40 ticks below 21400


async def test_a_limit_placed_by_hand_beside_the_take_profit_is_left_alone(
    database: Database, settings: Settings
) -> None:
    """Long 2 with its take-profit for 2; the user rests a sell limit for 4 higher up by hand
    (to reverse there): the protector cancelled it as a take-profit over the position."""
    async with _sim_world(database, settings, size=2, tp=[{"target": "20"}]) as (sim, engine, w):
        w["sim"] = sim
        await send(engine, database.pool, w["rec"], buy("21500"))
        await _view_net(w, 2)
        await _view_orders(w, 1)
        symbol = sim.contract("MNQ").name
        hand = OrderRequest(
            SubAccount(w["bid"], "PX1"), symbol, Side.SELL, 4, OrderType.LIMIT, price=Decimal(21530)
        )
        await w["broker"].place_order(hand)
        await _view_orders(w, 2)
        for _ in range(2):
            await engine.reconciler.protect_positions()
        await sim.flush()
        assert sorted((o["qty"], o["price"]) for o in sim.working_orders("PX1")) == [
            (2, 21505),
            (4, 21530),
        ]
