"""Protection of a position whose trader trails its stop (``--sl-type trailing``): the stop it
places trails by the configured distance. Before, protection placed every stop plain: a
trailing stop over the position (it cannot be shrunk) came back as a plain Stop, and a naked
position of a trailing trader got a plain one, so a rally the trailing stop would have locked
in was given back."""

from __future__ import annotations

from decimal import Decimal

import asyncpg

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.integration.test_engine import buy
from tests.integration.test_protect_exits import opened


def _net(paper: PaperBroker, bid: int) -> int:
    return sum(p.net_pos for p in paper.positions(bid))


async def _trail(engine: Engine, pool: asyncpg.Pool, trader: int) -> None:
    """The trader's stop loss turned on: 40 ticks (10 points of MNQ), trailing."""
    await pool.execute(
        "UPDATE traders SET sl = 40, sl_type = 'trailing', updated_at = now() WHERE id = $1",
        trader,
    )
    await engine.config.refresh()


async def test_a_trailing_stop_over_the_position_keeps_trailing(
    database: Database, settings: Settings
) -> None:
    """Long 2 under a trailing stop for 2; 1 sold by hand. The stop is brought down to 1 and
    still trails: a rally of 50 points then a fall of 15 closes the long 1 on the way down."""
    async with opened(
        database, settings, buy("21500"), size=2, sl=Decimal(40), sl_type="trailing"
    ) as (engine, w, paper, symbol):
        before = [o for o in paper.working_orders(w["bid"]) if o.side is Side.SELL]
        assert [(o.order_type, o.qty) for o in before] == [(OrderType.TRAILING_STOP, 2)]
        await paper.place_order(
            OrderRequest(SubAccount(w["bid"], "px"), symbol, Side.SELL, 1, OrderType.MARKET)
        )
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        assert await engine.reconciler.protect_positions() == 1

        stops = [o for o in paper.working_orders(w["bid"]) if o.side is Side.SELL]
        assert [(o.order_type, o.qty) for o in stops] == [(OrderType.TRAILING_STOP, 1)]
        assert await engine.reconciler.protect_positions() == 0  # covered now: left alone

        paper.on_price(symbol, Decimal("21550"))  # the stop trails up to 21540
        assert _net(paper, w["bid"]) == 1
        paper.on_price(symbol, Decimal("21535"))
        assert _net(paper, w["bid"]) == 0
        assert paper.working_orders(w["bid"]) == []


async def test_a_naked_position_of_a_trailing_trader_gets_a_trailing_stop(
    database: Database, settings: Settings
) -> None:
    """Long 2 without a stop; then the trader's stop loss is turned on, trailing: the stop
    protection places trails from the configured level."""
    async with opened(database, settings, buy("21500"), size=2) as (engine, w, paper, symbol):
        assert paper.working_orders(w["bid"]) == []
        await _trail(engine, database.pool, w["trader"])
        assert await engine.reconciler.protect_positions() == 0
        assert await engine.reconciler.protect_positions() == 1

        (s,) = paper.working_orders(w["bid"])
        assert (s.order_type, s.qty, s.side) == (OrderType.TRAILING_STOP, 2, Side.SELL)
        assert s.stop_price == Decimal("21490")

        paper.on_price(symbol, Decimal("21530"))  # trails up to 21520
        paper.on_price(symbol, Decimal("21519"))
        assert _net(paper, w["bid"]) == 0
        assert paper.working_orders(w["bid"]) == []
