"""A working trailing stop (the entry alert's own: TradersPost ``stopLoss`` of type
trailing_stop, PickMyTrade ``trail``) re-placed by a trim or a DCA add, with no stop loss
configured, goes on trailing by its own distance. It went back as a plain stop at its level:
the rest of the trade's stop no longer followed the price."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from jtrades.broker.base import OrderRequest, OrderStatus, OrderType, Side, WorkingOrder
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction
from jtrades.engine.risk import RiskSettings, SameDirection
from jtrades.engine.signal import Action, MarketPosition, Signal
from tests.unit.test_resize_market import plan, stops


def _trailing(side: Side, qty: int, stop: str, trail: str | None) -> WorkingOrder:
    return WorkingOrder(
        12, 101, 42, "MNQZ6", side, qty, OrderType.TRAILING_STOP, OrderStatus.WORKING,
        stop_price=D(stop), trail=None if trail is None else D(trail),
    )  # fmt: skip


def _trim(long: bool, trail: str | None) -> AccountPlan:
    """Held 2, its trailing stop 5 points from the market; the strategy sells 1 (still in)."""
    exit_side, sig_action = (Side.SELL, Action.SELL) if long else (Side.BUY, Action.BUY)
    sign = 1 if long else -1
    market = D(21512)
    state = AccountState(
        2 * sign, D(21500), (_trailing(exit_side, 2, str(market - 5 * sign), trail),)
    )
    still = MarketPosition.LONG if long else MarketPosition.SHORT
    sig = Signal(sig_action, quantity=1, market_position=still, price=market)
    return plan(sig, RiskSettings(), state, market)


def _add(long: bool) -> AccountPlan:
    sign = 1 if long else -1
    exit_side = Side.SELL if long else Side.BUY
    market = D(21512)
    state = AccountState(
        2 * sign, D(21500), (_trailing(exit_side, 2, str(market - 5 * sign), "5"),)
    )
    s = RiskSettings(same_direction=SameDirection.ADD, dca=True)
    return plan(
        Signal(Action.BUY if long else Action.SELL, quantity=1, price=market), s, state, market
    )


@pytest.mark.parametrize("long", [True, False])
def test_a_trim_keeps_a_working_trailing_stop_trailing_by_its_distance(long: bool) -> None:
    p = _trim(long, "5")
    assert p.action is PositionAction.REDUCE, p.reason
    (stop,) = stops(p)
    assert isinstance(stop, OrderRequest)
    assert (stop.qty, stop.order_type) == (1, OrderType.TRAILING_STOP), p.reason
    # Tradovate's pegDifference: negative below a long's market, positive above a short's
    assert stop.peg_difference == (D(-5) if long else D(5))
    assert stop.stop_price == D(21512) + (D(-5) if long else D(5))


@pytest.mark.parametrize("long", [True, False])
def test_a_dca_add_keeps_a_working_trailing_stop_trailing_for_the_averaged_position(
    long: bool,
) -> None:
    p = _add(long)
    assert p.action is PositionAction.ADD, p.reason
    (stop,) = stops(p)
    assert (stop.qty, stop.order_type) == (3, OrderType.TRAILING_STOP), p.reason
    assert stop.peg_difference == (D(-5) if long else D(5))


def test_a_trailing_stop_of_unknown_distance_goes_back_as_a_plain_stop_at_its_level() -> None:
    """Without the distance a TrailingStop would be refused after the old one was cancelled."""
    p = _trim(True, None)
    (stop,) = stops(p)
    assert (stop.qty, stop.order_type, stop.stop_price) == (1, OrderType.STOP, D(21507))
