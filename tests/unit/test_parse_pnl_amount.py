"""TradersPost ``pnlAmount``: a take profit or stop loss in dollars for the whole position.

TradersPost (traderspost.io/reference/strategy-field/stop-loss-pnl-amount, take-profit-pnl-amount)
calls it a portfolio loss cap (profit target) in dollars, converted into a price "using the
quantity calculated for the planned entry" and the point value; it is not used for trailing
stops. Read per contract, a 3-lot's stop was three times as far as the alert allowed.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import Contract, OcoRequest, StrategyRequest, SubAccount
from jtrades.engine.parsing import parse_payload
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings, SameDirection
from jtrades.engine.signal import Signal
from jtrades.errors import InvalidSignal

D = Decimal
ACCT = SubAccount(101, "DEMO101")
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)
FLAT = AccountState(0, None)


def alert(**fields: Any) -> Signal:
    body = {
        "ticker": "MNQZ2026", "action": "buy", "sentiment": "long",
        "quantityType": "fixed_quantity", "signalPrice": 21500.25, **fields,
    }  # fmt: skip
    return parse_payload(json.dumps(body).encode(), "application/json")


def plan(
    sig: Signal,
    s: RiskSettings,
    state: AccountState = FLAT,
    mult: str = "1",
) -> AccountPlan:
    return plan_account(
        sig, s, D(mult), ACCT, MNQ, state, signal_price=sig.price, cl_ord_prefix="s1-101"
    )


def brackets(p: AccountPlan) -> StrategyRequest:
    assert p.action is PositionAction.OPEN, p.reason
    (o,) = p.orders
    assert isinstance(o.request, StrategyRequest)
    return o.request


def test_pnl_amount_caps_the_whole_positions_loss_and_profit() -> None:
    sig = alert(quantity=3, stopLoss={"type": "stop", "pnlAmount": 300},
                takeProfit={"pnlAmount": 600})  # fmt: skip
    req = brackets(plan(sig, RiskSettings(size=1)))
    assert req.entry.qty == 3
    # $300 over 3 MNQ at $2 a point: 50 points; $600: 100 points
    assert {(b.stop_loss, b.profit_target) for b in req.brackets} == {(D(-50), D(100))}
    loss = sum(-b.stop_loss * b.qty * MNQ.value_per_point for b in req.brackets if b.stop_loss)
    assert loss == 300


@pytest.mark.parametrize("mult", ["0.5", "1", "2", "3"])
def test_every_follower_stops_at_the_same_price(mult: str) -> None:
    """Spread over the alert's quantity, before this follower's multiplier: a ×2 follower holds
    6 and risks $600, at the same stop as the alert's 3-lot."""
    sig = alert(quantity=3, stopLoss={"type": "stop", "pnlAmount": 300})
    req = brackets(plan(sig, RiskSettings(size=1), mult=mult))
    assert {b.stop_loss for b in req.brackets} == {D(-50)}


def test_without_a_quantity_the_configured_size_counts() -> None:
    sig = alert(stopLoss={"type": "stop", "pnlAmount": 300})
    req = brackets(plan(sig, RiskSettings(size=2)))
    assert req.entry.qty == 2
    assert {b.stop_loss for b in req.brackets} == {D(-75)}


def test_a_stop_limit_stop_loss_takes_it_too() -> None:
    sig = alert(quantity=2, stopLoss={"type": "stop_limit", "pnlAmount": "100"})
    assert {b.stop_loss for b in brackets(plan(sig, RiskSettings())).brackets} == {D(-25)}


def test_rounded_toward_the_entry_never_beyond_the_cap() -> None:
    sig = alert(quantity=3, stopLoss={"type": "stop", "pnlAmount": 100})  # 16.67 points
    (b,) = brackets(plan(sig, RiskSettings())).brackets
    assert b.stop_loss == D("-16.50")


def test_a_dca_add_spreads_it_over_the_whole_averaged_position() -> None:
    """The re-placed exits cover the averaged position (long 2 + 1): the cap is for all of it,
    not for the one contract the add alert asks for."""
    s = RiskSettings(size=1, dca=True, same_direction=SameDirection.ADD)
    sig = alert(quantity=1, stopLoss={"type": "stop", "pnlAmount": 300})
    p = plan(sig, s, AccountState(2, D("21500.25")))
    assert p.action is PositionAction.ADD, p.reason
    (stop,) = [o.request for o in p.orders if o.kind == "order" and o.request is not None][1:]
    assert not isinstance(stop, (OcoRequest, StrategyRequest))
    assert (stop.qty, stop.stop_price) == (3, D("21450.25"))  # 50 points × 3 × $2 = $300


def test_a_trailing_stop_refuses_it() -> None:
    with pytest.raises(InvalidSignal, match=r"pnlAmount.*trailing"):
        alert(quantity=1, stopLoss={"type": "trailing_stop", "pnlAmount": 300})


def test_pickmytrade_dollars_stay_per_contract() -> None:
    """PickMyTrade's ``dollar_sl`` is dollars a contract (no documentation says otherwise)."""
    body = {"symbol": "MNQ1!", "data": "buy", "quantity": 3, "price": 21500.25, "dollar_sl": 100}
    sig = parse_payload(json.dumps(body).encode(), "application/json")
    assert {b.stop_loss for b in brackets(plan(sig, RiskSettings())).brackets} == {D(-50)}
