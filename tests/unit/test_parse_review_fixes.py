"""Parse review fixes: what an alert asks for that jtrades would otherwise have done differently.

Each case here was read silently before: a TradersPost ``timeInForce`` dropped (every entry went
out DAY), two values for one field settled by a guess (the first alias, or the last of two
identical JSON keys), unclear reasons for a ``NaN`` or a placeholder in a text alert, and
PickMyTrade's own ``percentage_tp: 100`` on a buy refused as an exit "past zero".
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import (
    Contract,
    OcoRequest,
    OrderRequest,
    OrderType,
    StrategyRequest,
    SubAccount,
    TimeInForce,
)
from jtrades.engine.body_tokens import find_token
from jtrades.engine.parsing import parse_payload
from jtrades.engine.planning import AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings, SameDirection, parse_tp
from jtrades.engine.signal import Action, ExitSpec, Signal, Units
from jtrades.errors import InvalidSignal

D = Decimal
ACCT = SubAccount(101, "DEMO101")
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)


def parse(payload: Any) -> Signal:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_payload(body, "application/json")


def refused(payload: Any, match: str) -> InvalidSignal:
    with pytest.raises(InvalidSignal, match=match) as info:
        parse(payload)
    assert info.value.status == 422
    return info.value


# --- TradersPost timeInForce ------------------------------------------------------------------

LIMIT_BUY = {
    "ticker": "MNQZ2026",
    "action": "buy",
    "orderType": "limit",
    "limitPrice": 21499.75,
    "quantity": 1,
}


@pytest.mark.parametrize("key", ["timeInForce", "time_in_force", "TIF"])
@pytest.mark.parametrize("value", ["day", "DAY", " Day "])
def test_time_in_force_day_is_read_as_day(key: str, value: str) -> None:
    assert parse({**LIMIT_BUY, key: value}).time_in_force is TimeInForce.DAY


def test_time_in_force_gtc_is_carried_on_the_signal() -> None:
    sig = parse({**LIMIT_BUY, "timeInForce": "gtc"})
    assert sig.time_in_force is TimeInForce.GTC
    assert "timeInForce" not in sig.extra


def test_no_time_in_force_leaves_it_to_the_entry() -> None:
    assert parse(LIMIT_BUY).time_in_force is None


@pytest.mark.parametrize("value", ["ioc", "fok", "opg", "cls", "gtd", "IOC", "week", 1])
def test_a_time_in_force_jtrades_does_not_place_is_refused_naming_it(value: object) -> None:
    """Before, it was kept in ``extra`` and the entry went out DAY: an IOC limit entry rested
    all session."""
    err = refused({**LIMIT_BUY, "timeInForce": value}, "timeInForce")
    assert str(value).lower() in str(err).lower()


def test_time_in_force_given_twice_with_different_values_is_refused() -> None:
    refused({**LIMIT_BUY, "timeInForce": "day", "tif": "gtc"}, "conflicting")


def _plan(sig: Signal) -> Any:
    s = RiskSettings(size=1, tp=parse_tp("40"), sl=D(20))
    return plan_account(
        sig, s, D(1), ACCT, MNQ, AccountState(0, None), signal_price=D(21500),
        cl_ord_prefix="s1-101",
    )  # fmt: skip


def test_a_gtc_limit_entry_goes_out_gtc() -> None:
    sig = parse({**LIMIT_BUY, "timeInForce": "gtc"})
    p = _plan(sig)
    assert p.action is PositionAction.OPEN, p.reason
    entry = p.orders[0].request
    assert isinstance(entry, StrategyRequest)
    assert (entry.entry.order_type, entry.entry.time_in_force) == (
        OrderType.LIMIT,
        TimeInForce.GTC,
    )


@pytest.mark.parametrize("body", [LIMIT_BUY, {**LIMIT_BUY, "timeInForce": "day"}])
def test_a_limit_entry_without_gtc_goes_out_day_as_before(body: dict[str, Any]) -> None:
    p = _plan(parse(body))
    entry = p.orders[0].request
    assert isinstance(entry, StrategyRequest)
    assert entry.entry.time_in_force is TimeInForce.DAY


def test_a_gtc_market_entry_goes_out_day() -> None:
    """A market order fills at once: GTC would change nothing but what the broker is asked."""
    sig = parse({"ticker": "MNQZ2026", "action": "buy", "quantity": 1, "timeInForce": "gtc"})
    entry = _plan(sig).orders[0].request
    assert isinstance(entry, StrategyRequest)
    assert (entry.entry.order_type, entry.entry.time_in_force) == (
        OrderType.MARKET,
        TimeInForce.DAY,
    )


# --- two values for one field ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "keys"),
    [
        ({"action": "buy", "ticker": "MNQ1!", "quantity": "2", "contracts": "6"},
         ("quantity", "contracts")),
        ({"action": "buy", "ticker": "MNQ1!", "qty": 1, "Quantity": 5}, ("qty", "Quantity")),
        ({"action": "buy", "ticker": "MNQ1!", "symbol": "MES1!"}, ("ticker", "symbol")),
        ({"action": "buy", "price": 21500, "close": 21400}, ("price", "close")),
        ({"action": "buy", "id": "a", "alert_id": "b"}, ("id", "alert_id")),
        ({"action": "buy", "orderType": "limit", "order_type": "market", "price": 1},
         ("orderType", "order_type")),
        ({"action": "buy", "stopLoss": {"type": "stop", "Type": "trailing_stop", "amount": 5}},
         ("type", "Type")),
        (b"buy MNQ1! qty=3 2", ("qty", "quantity")),
        (b"buy MNQ1! 2 contracts=5", ("contracts", "quantity")),
        (b"buy MNQ1! symbol=MES1!", ("symbol", "ticker")),
    ],
)  # fmt: skip
def test_two_different_values_for_one_field_are_refused_naming_both(
    body: Any, keys: tuple[str, str]
) -> None:
    """Before, the first alias won (the text pair over the word): 2 contracts traded where the
    alert also said 6, MNQ where it also said MES."""
    err = refused(body, "conflicting")
    assert all(k in str(err) for k in keys), str(err)


@pytest.mark.parametrize(
    "body",
    [
        {"action": "buy", "ticker": "MNQ1!", "quantity": "2", "contracts": 2.0},
        {"action": "buy", "ticker": "MNQ1!", "symbol": " MNQ1! "},
        {"action": "buy", "price": "21500.25", "close": 21500.250},
        {"action": "buy", "quantity": 2, "qty": None, "contracts": ""},
        b"buy MNQ1! qty=2 2",
        b"buy MNQ1! ticker=MNQ1!",
    ],
)
def test_the_same_value_given_twice_is_read(body: Any) -> None:
    sig = parse(body)
    assert sig.action is Action.BUY


def test_a_text_alert_still_refuses_one_key_given_twice() -> None:
    refused(b"buy MNQ1! 2 quantity=3", "given twice")


# --- repeated JSON keys -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        b'{"ticker": "MNQ1!", "action": "buy", "action": "sell"}',
        b'{"action": "buy", "quantity": 2, "quantity": 20}',
        b'{"action": "buy", "stopLoss": {"type": "stop", "amount": 5, "amount": 50}}',
        b'{"action": "buy", "x": [{"a": 1, "a": 2}]}',
    ],
)
def test_a_json_key_repeated_with_another_value_is_refused(raw: bytes) -> None:
    """``json.loads`` keeps the last: a sell where the alert also said buy, 20 contracts where
    it also said 2, without a word."""
    refused(raw, "given twice")


def test_a_json_key_repeated_with_the_same_value_is_read() -> None:
    sig = parse(b'{"action": "buy", "action": "buy", "quantity": 2, "quantity": 2.0}')
    assert (sig.action, sig.quantity) == (Action.BUY, 2)


# --- reasons that name the problem ------------------------------------------------------------


def test_an_unquoted_nan_is_named_in_the_reason() -> None:
    """Before: 400 "malformed JSON: unreadable"."""
    with pytest.raises(InvalidSignal) as info:
        parse(b'{"action": "buy", "ticker": "MNQ1!", "price": NaN}')
    assert info.value.status == 400
    assert "NaN" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [b"buy MNQ1! {{strategy.order.contracts}}", b"sell {{ticker}} 1", b"buy MNQ1! @{{close}}x"],
)
def test_a_placeholder_in_a_text_alert_is_named_as_one(text: bytes) -> None:
    """Before: "text alert: cannot read {{…}}" (or "must start with an action")."""
    with pytest.raises(InvalidSignal, match="placeholder"):
        parse_payload(text, "text/plain")


# --- percent exits of 100 or more ------------------------------------------------------------

PICKMYTRADE_EXAMPLE = {
    "symbol": "NQM5", "date": "2026-11-25T14:30:00Z", "data": "buy", "quantity": 10,
    "risk_percentage": 0, "price": "21500.25", "tp": 0, "percentage_tp": 100,
    "dollar_tp": 0, "sl": 0, "dollar_sl": 0, "percentage_sl": 50, "order_type": "MKT",
    "update_tp": False, "update_sl": False, "token": "x", "reverse_order_close": True,
}  # fmt: skip


def test_pickmytrade_documented_percentage_tp_100_on_a_buy_is_read() -> None:
    """docs.pickmytrade.io's own example: a long's target at twice the price is a price."""
    sig = parse(PICKMYTRADE_EXAMPLE)
    assert sig.take_profit == (ExitSpec(D(100), Units.PERCENT),)


@pytest.mark.parametrize(
    "body",
    [
        {**PICKMYTRADE_EXAMPLE, "data": "sell"},
        {"action": "sell", "takeProfit": {"percent": 100}},
        {"sentiment": "short", "takeProfit": {"percent": 150}},
        {"action": "buy", "percentage_sl": 100},
        {"action": "buy", "stopLoss": {"type": "trailing_stop", "trailPercent": 100}},
    ],
)
def test_a_percent_exit_past_zero_is_still_refused(body: dict[str, Any]) -> None:
    refused(body, "at or past zero")


def test_an_add_to_a_short_with_a_take_profit_at_zero_is_not_planned() -> None:
    """An add's side is the position's: the short's 100 % target would be a limit at 0."""
    sig = Signal(Action.ADD, quantity=1, price=D(21500), take_profit=(ExitSpec(D(100), Units.PERCENT),))  # fmt: skip
    s = RiskSettings(size=1, sl=D(20), dca=True, same_direction=SameDirection.ADD)
    p = plan_account(
        sig, s, D(1), ACCT, MNQ, AccountState(-1, D(21500)), signal_price=D(21500),
        cl_ord_prefix="s1-101",
    )  # fmt: skip
    prices = [
        r.first.price if isinstance(r, OcoRequest) else r.price
        for r in (o.request for o in p.orders)
        if isinstance(r, OcoRequest | OrderRequest)
    ]
    assert all(pr is None or pr > 0 for pr in prices), (p.action, prices)
    assert p.action is PositionAction.IGNORE, p.reason
    assert "zero" in p.reason


# --- the body's token, as the parser reads it -------------------------------------------------


@pytest.mark.parametrize(
    ("body", "token"),
    [
        (b'{"key": "MNQ-long", "token": "tok-real-1", "action": "buyy"}', "tok-real-1"),
        (b'{"passphrase": "tok-pass", "token": "tok-first", "action": "x"}', "tok-first"),
        (b'{"token": 12345678, "action": "buyy"}', "12345678"),
        (b'{"token": "", "key": "tok-key", "action": "buyy"}', "tok-key"),
    ],
)
def test_a_refused_body_s_token_is_found_in_the_parser_s_alias_order(
    body: bytes, token: str
) -> None:
    """Before: the first token-named key in the body's order (``key``), and text values only."""
    assert find_token(body) == token
    readable = body.replace(b"buyy", b"buy").replace(b'"x"', b'"buy"')
    assert parse_payload(readable, None).token == token
