"""Webhook body → ``Signal``: JSON or plain text, in our own, TradersPost's or PickMyTrade's words.

Pure: bytes in, a ``Signal`` or an ``InvalidSignal`` (400 for a body that is not JSON/text at
all, 422 for one that is readable but does not make an order) out, never any other exception,
because the webhook handler answers TradingView with whatever this raises.

Why so lenient about spelling: traders move their existing alerts here, and the drop-in promise
(DESIGN.md §4) is that TradersPost and PickMyTrade messages work unchanged. Field names are
matched case- and separator-insensitively with the aliases below. Why so strict about values: an
order built from a half-understood alert is worse than a 422 with a reason, so unknown actions,
fractional or negative contracts, unsubstituted ``{{placeholders}}`` and quantity types that
only make sense for stocks are refused, naming the field.

Sources for the two foreign dialects (field names and example messages):

- TradersPost: docs.traderspost.io/docs/core-concepts/signals/webhooks (Signal Message Reference,
  TradingView strategy template with ``sentiment: {{strategy.market_position}}``),
  docs.traderspost.io/docs/developer-resources/webhook-reference (ticker + action required),
  traderspost.io/reference/webhook-message/invalid-quantity-type (``quantityType`` values),
  and the strategy-field pages cited in ``parse_exits``.
- PickMyTrade: docs.pickmytrade.trade/docs/tradingview-json-alert-configuration (strategy JSON:
  ``symbol``, ``date``, ``data``, ``quantity``, ``risk_percentage``, ``price``, ``tp``,
  ``percentage_tp``, ``dollar_tp``, ``sl``, ``dollar_sl``, ``percentage_sl``, ``trail*``,
  ``update_tp``, ``update_sl``, ``token``, ``pyramid``, ``reverse_order_close``,
  ``multiple_accounts``) and pickmytrade.io/pages/alert.html (``data`` buy | sell | close).

The body ``token`` is lifted into ``Signal.token`` and never kept in ``extra`` (nor are tokens
nested in PickMyTrade's ``multiple_accounts``). Note that a PickMyTrade message carries
PickMyTrade's token, not ours: the server should authenticate by the URL token when there is one.
"""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

from jtrades.broker.base import TimeInForce
from jtrades.engine.filters import is_exit
from jtrades.engine.instruments import split_symbol
from jtrades.engine.parse_exits import (
    order_type,
    pickmytrade_exits,
    plain_stop_only,
    traderspost_stop_loss,
    traderspost_take_profit,
)
from jtrades.engine.parse_text import TextFields, parse_text
from jtrades.engine.parse_values import (
    Fields,
    check_placeholders,
    norm_key,
    same_value,
    short,
    storable,
    storable_tree,
    to_action,
    to_decimal,
    to_flag,
    to_position,
    to_price,
    to_quantity,
    to_text,
    to_word,
)
from jtrades.engine.signal import Action, ExitSpec, MarketPosition, Signal
from jtrades.errors import InvalidSignal

# Alias groups, compared with ``norm_key`` (case and _-. ignored). Two different values in one
# group are refused (``Fields.get``), except the token's, where the first alias wins.
ACTION = ("action", "side", "signal", "data", "order_action", "strategy.order.action")
SENTIMENT = ("sentiment",)
MARKET_POSITION = ("market_position", "strategy.market_position")
PREV_MARKET_POSITION = ("prev_market_position", "strategy.prev_market_position")
TICKER = ("ticker", "symbol", "instrument", "contract")
QUANTITY = ("quantity", "contracts", "qty", "size", "order_contracts", "strategy.order.contracts")
QUANTITY_TYPE = ("quantity_type",)
PRICE = ("price", "signal_price", "close", "entry_price")
ALERT_ID = ("id", "alert_id", "signal_id", "idempotency_key")
ORDER_TYPE = ("order_type",)
LIMIT_PRICE = ("limit_price",)
STOP_PRICE = ("stop_price",)
TAKE_PROFIT = ("take_profit",)
STOP_LOSS = ("stop_loss",)
TOKEN = ("token", "key", "secret", "passphrase", "password", "webhook_token")
RISK_PERCENTAGE = ("risk_percentage",)
TIME_IN_FORCE = ("time_in_force", "tif")
# PickMyTrade's requests to change the exits of the open position instead of trading
UPDATE_EXITS = ("update_tp", "update_sl")
# PickMyTrade's move of the stop to the entry once the trade is that far in profit
BREAKEVEN = ("breakeven",)

_TRADERSPOST_KEYS = {
    norm_key(k)
    for k in ("sentiment", "takeProfit", "stopLoss", "quantityType", "signalPrice", "limitPrice")
}
_PICKMYTRADE_KEYS = {
    norm_key(k)
    for k in (
        "data",
        "dollar_tp",
        "dollar_sl",
        "percentage_tp",
        "percentage_sl",
        "trail_stop",
        "risk_percentage",
        "multiple_accounts",
        "reverse_order_close",
    )
}
_TOKEN_KEYS = {norm_key(k) for k in TOKEN}

# What an entry can be sent as (TradersPost ``timeInForce``: day, gtc, gtd, opg, cls, ioc, fok).
# DAY is what every entry was; GTC both brokers take (the exits of a held position are GTC).
# The others change when the order goes away (at once, at the open or close): placed DAY, an
# IOC limit entry rested all session, so they are refused rather than done differently.
_TIME_IN_FORCE = {"day": TimeInForce.DAY, "gtc": TimeInForce.GTC}

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_INT64_DIGITS = 19  # 2**63 has 19 digits

# No alert needs more than a few levels (PickMyTrade's ``multiple_accounts`` has three).
# json.loads goes ~1000 deep, deeper than the recursive walks over its result can and than
# orjson writes (255), which encodes the dedup key and the stored fields: such bodies were
# answered 503, and re-sent, and never stored.
MAX_JSON_DEPTH = 64
_TOO_DEEP = f"JSON nested more than {MAX_JSON_DEPTH} levels deep"


def parse_payload(body: bytes, content_type: str | None) -> Signal:
    """Parse one webhook delivery. The content type is ignored on purpose: TradingView sends
    ``text/plain`` for anything it does not recognise as JSON, and people paste JSON anyway."""
    del content_type
    text = _decode(body)
    stripped = text.strip()
    if not stripped:
        raise InvalidSignal(
            "empty body: expected a JSON object or a text such as 'buy MNQ1! 1'", status=400
        )
    if stripped[0] in "{[":
        try:
            return parse_object(_load_json(stripped), source=None)
        except RecursionError:  # a walk below went deeper than the stack (never past the cap)
            raise InvalidSignal(_TOO_DEEP, status=400) from None
    fields = parse_text(storable(stripped))
    return parse_object(fields, source="text")


def _decode(body: bytes) -> str:
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidSignal("body is not UTF-8 text", status=400) from None


class _NotANumber(ValueError):
    """An unquoted NaN or Infinity: valid to ``json.loads``, not to JSON, nor to an order."""


def _reject_constant(name: str) -> Any:
    # TradingView writes NaN for a value that is na ({{plot_0}}, {{strategy.position_avg_price}}
    # when flat): said so, not "unreadable"
    raise _NotANumber(f"{name} is not a number (TradingView sends NaN for a value that is na)")


def _same_instrument(a: Any, b: Any) -> bool:
    """Two names of the alert's instrument name one contract when they take apart alike
    (``MNQ1!`` and ``CME_MINI:MNQ1!``, ``NQ`` and ``NQ1!``, ``ES1`` and ``ES1!``, ``MNQZ6`` and
    ``MNQZ2026``): ``{{ticker}}`` beside ``{{exchange}}:{{ticker}}`` is one instrument, not a
    conflict. A name that is no futures symbol is compared as written."""
    if same_value(a, b):
        return True
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    try:
        pa, pb = split_symbol(a), split_symbol(b)
    except InvalidSignal:
        return False
    return (pa.root, pa.nth, pa.month) == (pb.root, pb.nth, pb.month) and (
        pa.year is None or pb.year is None or pa.year % 10 == pb.year % 10
    )


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refused when one key is given twice with different values: ``json.loads``
    keeps the last, so {"action":"buy","action":"sell"} was a sell, without a word."""
    obj = dict(pairs)
    if len(obj) == len(pairs):
        return obj
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen and not same_value(seen[key], value):
            raise InvalidSignal(
                storable(
                    f"field {short(key)!r} given twice with different values:"
                    f" {short(seen[key])}, {short(value)}"
                )
            )
        seen.setdefault(key, value)
    return obj


# Decimal, not float: 21500.25 must stay 21500.25 on its way to a tick-rounded order. One
# decoder for every alert: ``json.loads`` with hooks builds a new one (and its scanner) per call.
_DECODER = json.JSONDecoder(
    parse_float=Decimal,
    parse_constant=_reject_constant,
    object_pairs_hook=_one_value_per_key,
)


def _load_json(text: str) -> dict[str, Any]:
    try:
        data = _DECODER.decode(text)
    except RecursionError:
        raise InvalidSignal(_TOO_DEEP, status=400) from None
    except ArithmeticError:  # a number past Decimal's range (1e99999999999999999999)
        raise InvalidSignal("malformed JSON: a number out of range", status=400) from None
    except ValueError as exc:
        placeholder = _placeholder_in(text)
        if placeholder:
            raise InvalidSignal(
                f"the TradingView placeholder {placeholder} was not substituted "
                "(it is only filled in by a strategy alert, or it is misspelt)"
            ) from None
        if isinstance(exc, json.JSONDecodeError):
            reason = f" at line {exc.lineno} column {exc.colno}: {exc.msg}"
        elif isinstance(exc, _NotANumber):
            reason = f": {exc}"
        else:
            reason = ": unreadable"
        raise InvalidSignal(f"malformed JSON{reason}", status=400) from None
    # Only a body with that many brackets can nest that deep: an alert's two are not walked.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and _deeper_than(data, MAX_JSON_DEPTH):
        raise InvalidSignal(_TOO_DEEP, status=400)
    if "\\u" in text:  # only an escape can put NUL or a lone surrogate in a JSON string
        data = storable_tree(data)
    if not isinstance(data, dict):
        raise InvalidSignal("expected a JSON object, got a JSON " + type(data).__name__)
    return data


def _deeper_than(value: Any, levels: int) -> bool:
    """Whether ``value`` nests more than ``levels`` arrays and objects (itself included); the
    walk stops there, so it never recurses deeper than the cap."""
    if isinstance(value, dict):
        items: Any = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    return levels == 0 or any(_deeper_than(item, levels - 1) for item in items)


def _placeholder_in(text: str) -> str | None:
    start = text.find("{{")
    end = text.find("}}", start)
    if start < 0 or end < 0:
        return None
    return short(text[start : end + 2])


def _source(data: dict[str, Any]) -> str:
    keys = {norm_key(k) for k in data if isinstance(k, str)}
    if keys & _PICKMYTRADE_KEYS:
        return "pickmytrade"
    if keys & _TRADERSPOST_KEYS:
        return "traderspost"
    return "native"


def parse_object(data: dict[str, Any] | TextFields, source: str | None) -> Signal:
    """Build the Signal from a decoded JSON object (or the fields a text body spelled out)."""
    check_placeholders(data)
    fields = Fields(data)
    token = _token(fields)
    action, market_position, closes_only = _action_and_position(fields)
    prev_key, prev_value = fields.get(*PREV_MARKET_POSITION)
    ticker_key, ticker_value = fields.get(*TICKER, same=_same_instrument)
    id_key, id_value = fields.get(*ALERT_ID)
    _check_quantity_type(fields)
    quantity_key, quantity_value = fields.get(*QUANTITY)
    price_key, price_value = fields.get(*PRICE)
    price = to_price(price_key, price_value)
    kind, limit_price, stop_price = _order_type(fields, price)
    quantity = to_quantity(quantity_key, quantity_value)
    # a sell's target is below the entry: 100 % or more of it is at or past zero
    take_profit, stop_loss, plain_stop = _exits(fields, below_entry=action is Action.SELL)
    signal = Signal(
        action=action,
        ticker=to_text(ticker_key, ticker_value, limit=64),
        quantity=quantity,
        partial_exit=_partial_exit(fields, market_position, quantity),
        closes_only=closes_only,
        price=price,
        market_position=market_position,
        prev_market_position=to_position(prev_key, prev_value),
        alert_id=to_text(id_key, id_value),
        order_type=kind,
        limit_price=limit_price,
        stop_price=stop_price,
        take_profit=(take_profit,) if take_profit else (),
        stop_loss=stop_loss,
        plain_stop=plain_stop,
        token=token,
        time_in_force=_time_in_force(fields),
        source=source or _source(dict(data)),
        extra=_scrub(fields.rest()),
    )
    _check_exit_order_type(signal)
    return signal


def _token(fields: Fields) -> str | None:
    # the first alias, not one value of all: ``key`` is an ordinary word beside a ``token``
    # ({"key": "MNQ-long", "token": …}), and ``body_tokens`` attributes a refused body by the
    # same order
    key, value = fields.first(*TOKEN)
    if value is None:
        return None
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise InvalidSignal(f"field {key!r} must be text")
    return str(value).strip()


def _time_in_force(fields: Fields) -> TimeInForce | None:
    """DAY or GTC for the entry; None when not given (the entry goes out DAY)."""
    key, value = fields.get(*TIME_IN_FORCE)
    word = to_word(key, value)
    if word is None:
        return None
    tif = _TIME_IN_FORCE.get(word)
    if tif is None:
        raise InvalidSignal(
            f"field {key!r}: time in force {short(value)} is not supported;"
            " send day or gtc (or leave it out for day)"
        )
    return tif


def _check_exit_order_type(signal: Signal) -> None:
    """Exits go at market (a liquidation, a market reduce): a close or a reduce asking for a
    limit or a stop went at market at once, where TradersPost rests it (a "get out at 21400"
    stop flattened the position at the market). Refused, as an order we cannot place is."""
    kind = signal.order_type
    if kind not in (None, "market") and is_exit(signal):
        raise InvalidSignal(
            f"a {kind} exit is not supported: exits go at market; send orderType market"
            " (or leave it out)"
        )


def _partial_exit(
    fields: Fields, market_position: MarketPosition | None, quantity: int | None
) -> bool:
    """TradersPost's ``exit`` with a quantity exits that many of the position ("Partial
    Exits": long 5, exit 2 leaves 3); jtrades liquidated all 5. Only the word ``exit``, with
    no target position: ``close``, ``flat`` and a target of flat close everything."""
    if not quantity or market_position is not None:
        return False
    words = {to_word(key, value) for key, value in fields.all(*ACTION)}
    return words == {"exit"}


def _action_and_position(
    fields: Fields,
) -> tuple[Action, MarketPosition | None, MarketPosition | None]:
    """The action, the position the sender says it will hold afterwards, and the one side a
    close may exit.

    TradersPost's ``sentiment`` is that target position, and with ``flat`` the action names the
    side it exits: a buy covers a short only, a sell exits a long only (a buy flattening a long
    sold it without a word). ``market_position`` (TradingView's) is the target alone: ``flat``
    closes whatever is held (DESIGN §4). With no action at all, a target position alone is the
    instruction (long = buy, flat = close)."""
    actions = {
        (key, action)
        for key, value in fields.all(*ACTION)
        if (action := to_action(key, value)) is not None
    }
    if len({a for _, a in actions}) > 1:
        listed = ", ".join(f"{k}={a.value}" for k, a in sorted(actions))
        raise InvalidSignal(f"conflicting actions: {listed}")
    pos_key, pos_value = fields.get(*MARKET_POSITION)
    position = to_position(pos_key, pos_value)
    sent_key, sent_value = fields.get(*SENTIMENT)
    sentiment = to_position(sent_key, sent_value)
    target = position or sentiment
    if actions:
        action = next(iter(actions))[1]
        covers = None
        if position is None and sentiment is MarketPosition.FLAT:
            covers = {Action.BUY: MarketPosition.SHORT, Action.SELL: MarketPosition.LONG}.get(
                action
            )
        return action, target, covers
    if target is not None:
        implied = {
            MarketPosition.LONG: Action.BUY,
            MarketPosition.SHORT: Action.SELL,
            MarketPosition.FLAT: Action.CLOSE,
        }
        return implied[target], target, None
    raise InvalidSignal(
        'missing action: send "action": "buy" | "sell" | "close" (or a text like \'buy\')'
    )


def _check_quantity_type(fields: Fields) -> None:
    key, value = fields.get(*QUANTITY_TYPE)
    kind = to_word(key, value)
    if kind is not None and norm_key(kind) != "fixedquantity":
        raise InvalidSignal(
            f"field {key!r}: {short(value)} is not supported for futures; "
            "send whole contracts with fixed_quantity (or leave quantityType out)"
        )
    risk_key, risk_value = fields.get(*RISK_PERCENTAGE)
    risk = to_decimal(risk_key, risk_value)
    if risk is not None and risk != 0:
        raise InvalidSignal(
            f"field {risk_key!r}: sizing by account risk is not supported; "
            "send quantity (or 0 for the configured size) and risk_percentage 0"
        )
    be_key, be_value = fields.get(*BREAKEVEN)
    if (be := to_decimal(be_key, be_value)) is not None and be != 0:
        # kept in ``extra`` and ignored, the position went without the move to breakeven
        raise InvalidSignal(
            f"field {be_key!r}: a breakeven move by alert is not supported; send {be_key} 0"
            " (the recorder's --breakeven applies)"
        )
    for alias in UPDATE_EXITS:
        key, value = fields.get(alias)
        if to_flag(key, value):
            # read as an entry, it bought another contract (with DCA) or did nothing while
            # the alert meant to move the open position's exit
            raise InvalidSignal(
                f"field {key!r}: moving the exits of an open position by alert is not"
                f" supported; send {key} false (the alert's tp/sl apply to its entry, the"
                " recorder's settings to the rest)"
            )


def _order_type(
    fields: Fields, price: Decimal | None
) -> tuple[str | None, Decimal | None, Decimal | None]:
    key, value = fields.get(*ORDER_TYPE)
    kind = order_type(key, value)
    limit_key, limit_value = fields.get(*LIMIT_PRICE)
    stop_key, stop_value = fields.get(*STOP_PRICE)
    limit_price = to_price(limit_key, limit_value)
    stop_price = to_price(stop_key, stop_value)
    if kind in ("limit", "stop_limit") and limit_price is None:
        if kind == "stop_limit" or price is None:
            raise InvalidSignal(f"a {kind} order needs limitPrice")
        limit_price = price  # both services place a bare limit order at the alert's price
    if kind in ("stop", "stop_limit") and stop_price is None:
        raise InvalidSignal(f"a {kind} order needs stopPrice")
    return kind, limit_price, stop_price


def _exits(fields: Fields, *, below_entry: bool) -> tuple[ExitSpec | None, ExitSpec | None, bool]:
    """(take profit, stop loss, whether the stop loss asked only for a plain stop)."""
    tp_key, tp_value = fields.get(*TAKE_PROFIT)
    sl_key, sl_value = fields.get(*STOP_LOSS)
    take_profit = traderspost_take_profit(tp_key, tp_value, below_entry=below_entry)
    stop_loss = traderspost_stop_loss(sl_key, sl_value)
    pmt_tp, pmt_sl = pickmytrade_exits(fields, tp_below_entry=below_entry)
    if take_profit and pmt_tp:
        raise InvalidSignal(f"give the take profit once: {tp_key} or the PickMyTrade tp fields")
    if stop_loss and pmt_sl:
        raise InvalidSignal(f"give the stop loss once: {sl_key} or the PickMyTrade sl fields")
    plain = plain_stop_only(sl_value) and pmt_sl is None
    return take_profit or pmt_tp, stop_loss or pmt_sl, plain


def _scrub(value: Any) -> Any:
    """Unknown fields minus anything that looks like a credential, at any depth, as plain JSON
    values (decimals back to int/float) so that whoever stores ``extra`` can serialise it.

    A number no int64 or float holds is kept as its text: the jsonb encoder (orjson) refuses
    an int beyond 64 bits, which failed the signal's insert (a 503, re-sent and refused again),
    and ``int()`` of a whole ``1e999999999`` would build a billion-digit int on the event loop.
    """
    if isinstance(value, dict):
        return {
            k: _scrub(v)
            for k, v in value.items()
            if not (isinstance(k, str) and norm_key(k) in _TOKEN_KEYS)
        }
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            number = float(value)
            return number if math.isfinite(number) else str(value)
        if value.adjusted() < _INT64_DIGITS:  # bounds the digits before int() makes them
            value = int(value)
        else:
            return str(value)
    if isinstance(value, int) and not _INT64_MIN <= value <= _INT64_MAX:
        return str(value)
    return value
