"""Protection re-places an alert's trailing stop at the alert's own distance (the view's
pegDifference): it was re-placed at the trader's configured distance, and a 20-point trail
became a 10-point one that a 15-point dip stopped out."""

from __future__ import annotations

from decimal import Decimal

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.signal import ExitSpec, Units
from tests.integration.test_engine import buy
from tests.integration.test_protect_exits import opened


def _net(paper: PaperBroker, bid: int) -> int:
    return sum(p.net_pos for p in paper.positions(bid))


async def test_an_alerts_trailing_stop_keeps_its_own_distance_when_re_placed(
    database: Database, settings: Settings
) -> None:
    """The TradersPost example: stopLoss trailing_stop trailAmount 20 points. The trader's own
    stop loss is a fixed 40 ticks (10 points). Long 2 under the alert's 20-point trailing stop;
    1 sold by hand; protection brings the stop down to 1. It must still trail 20 points: a
    rally to 21550 and a dip to 21535 (15 points) must not stop it out."""
    alert_sl = ExitSpec(Decimal(20), Units.POINTS, trailing=True)
    async with opened(
        database, settings, buy("21500", stop_loss=alert_sl), size=2, sl=Decimal(40)
    ) as (engine, w, paper, symbol):
        before = [o for o in paper.working_orders(w["bid"]) if o.side is Side.SELL]
        assert [(o.order_type, o.qty, o.stop_price) for o in before] == [
            (OrderType.TRAILING_STOP, 2, Decimal("21480"))
        ]
        await paper.place_order(
            OrderRequest(SubAccount(w["bid"], "px"), symbol, Side.SELL, 1, OrderType.MARKET)
        )
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        assert await engine.reconciler.protect_positions() == 1
        (s,) = [o for o in paper.working_orders(w["bid"]) if o.side is Side.SELL]
        assert (s.order_type, s.qty) == (OrderType.TRAILING_STOP, 1)

        paper.on_price(symbol, Decimal("21550"))  # the alert's stop trails up to 21530
        (s,) = [o for o in paper.working_orders(w["bid"]) if o.side is Side.SELL]
        assert s.stop_price == Decimal("21530"), (
            f"re-placed trailing stop trails at {21550 - s.stop_price} points, the alert asked"
            " for 20"
        )
        paper.on_price(symbol, Decimal("21535"))
        assert _net(paper, w["bid"]) == 1, (
            "stopped out 15 points off the high under a 20-point trail"
        )
