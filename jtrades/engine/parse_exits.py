"""Per-alert take-profit, stop-loss and order type, in the TradersPost and PickMyTrade spellings.

TradersPost (docs.traderspost.io "Signal Message Reference"; traderspost.io/reference
strategy-field pages "Allow signal take profit", "Allow signal stop loss", "Stop loss type",
"Exit order type"):

- ``takeProfit``: one of ``limitPrice`` (a price), ``percent`` (from entry), ``amount`` (a price
  distance from entry: "a takeProfit.limitPrice of $110 is calculated from the takeProfit.amount of
  $10 and the entry price of $100", so *points* for futures) or ``pnlAmount``.
- ``stopLoss``: ``type`` stop | stop_limit | trailing_stop; ``stopPrice``, ``percent``, ``amount``
  or ``pnlAmount`` for stop and stop_limit; ``trailAmount`` (points) or ``trailPercent`` for
  trailing_stop.
- ``pnlAmount`` is dollars for the whole position, not per contract: "a portfolio loss cap in
  dollars", converted into a price "using the quantity calculated for the planned entry" and the
  point value (strategy-field pages "Stop loss PnL amount", "Take profit PnL amount"), hence
  ``Units.POSITION_DOLLARS``; which quantity that is here: ``exits.resolve_exits``. TradersPost
  does not use it for trailing stops ("Use PnL stop loss only with stopLoss.type stop or
  stop_limit"), so a trailing_stop with it is refused rather than given a meaning of our own.
  A stop_limit stop loss is placed as a stop-market order: a protective stop that may not fill
  is worse than slippage, and Tradovate brackets take no stop-limit offset here.
- ``orderType`` market | limit | stop | stop_limit | trailing_stop with ``limitPrice``/``stopPrice``.

PickMyTrade (docs.pickmytrade.trade "TradingView JSON alert configuration", pickmytrade.io
/pages/alert.html, docs.pickmytrade.io "Rithmic JSON configuration"):

- ``tp``/``sl``: absolute price levels; ``dollar_tp``/``dollar_sl``: dollars, read per contract
  (their pages give no unit beyond "dollars"; nothing found says they are for the position);
  ``percentage_tp``/``percentage_sl``: percent; 0 means "not set" (their templates send every key).
- ``trail`` 1 turns trailing on; ``trail_stop`` is the trailing distance, ``trail_trigger`` the
  profit at which trailing starts and ``trail_freq`` its step. Their docs give no unit for these;
  we read them as points (price distance), like Tradovate's own trailing-stop ``pegDifference``,
  or in the units of ``dollar_sl``/``percentage_sl`` when that gives the distance instead
  (``ExitSpec``: one unit per stop). They override the recorder's ``--trail-*`` (``exits``).
- ``order_type`` MKT | LMT | STP (a limit entry uses ``price`` when no ``limitPrice`` is given).

Several values for one exit (``sl`` and ``dollar_sl``, or ``percent`` and ``amount``) are refused:
guessing which one the trader meant would be guessing with their money.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.engine.parse_values import (
    Fields,
    is_blank,
    norm_key,
    short,
    to_distance,
    to_flag,
    to_word,
)
from jtrades.engine.signal import ExitSpec, Units
from jtrades.errors import InvalidSignal

ORDER_TYPES = {
    "market": "market",
    "mkt": "market",
    "limit": "limit",
    "lmt": "limit",
    "stop": "stop",
    "stp": "stop",
    "stoplimit": "stop_limit",
    "stplmt": "stop_limit",
}

_TP_KEYS = {
    "limitprice": Units.PRICE,
    "percent": Units.PERCENT,
    "amount": Units.POINTS,
    "pnlamount": Units.POSITION_DOLLARS,
}
_STOP_KEYS = {
    "stopprice": Units.PRICE,
    "percent": Units.PERCENT,
    "amount": Units.POINTS,
    "pnlamount": Units.POSITION_DOLLARS,
}
_TRAIL_KEYS = {"trailamount": Units.POINTS, "trailpercent": Units.PERCENT}
_SL_TYPES = ("stop", "stop_limit", "trailing_stop")


def order_type(field: str, value: Any) -> str | None:
    """market | limit | stop | stop_limit, from either service's spelling."""
    word = to_word(field, value)
    if word is None:
        return None
    if norm_key(word) == "trailingstop":
        raise InvalidSignal(
            f"field {field!r}: trailing_stop entries are not supported; "
            "use a market or limit entry with a trailing stopLoss"
        )
    kind = ORDER_TYPES.get(norm_key(word))
    if kind is None:
        raise InvalidSignal(
            f"field {field!r}: unknown order type {short(value)} "
            "(expected market, limit, stop or stop_limit)"
        )
    return kind


def _percent_below_100(key: str, number: Decimal, units: Units, bounded: bool = True) -> None:
    """A percent exit of 100 or more is refused, as ``--sl``/``--tp`` are: it puts a stop (or a
    short's target) at or past zero, a price no market trades at. Accepted, the stop was sent
    at a price of 0 or less. ``bounded`` False: a take profit above the entry (a buy's), which
    any percent leaves above zero (PickMyTrade's own example has ``percentage_tp`` 100); one
    whose side is not known here (an add) is checked when planned (``exits``)."""
    if bounded and units is Units.PERCENT and number >= 100:
        raise InvalidSignal(f"{key} {number} percent would put the exit at or past zero")


def _one_of(
    name: str, obj: dict[str, Any], keys: dict[str, Units], bounded: bool = True
) -> tuple[str, Decimal, Units] | None:
    given: list[tuple[str, Decimal, Units]] = []
    for key, value in obj.items():
        units = keys.get(norm_key(key))
        if units is None:
            continue
        number = to_distance(f"{name}.{key}", value)
        if number is not None:
            _percent_below_100(f"{name}.{key}", number, units, bounded)
            given.append((key, number, units))
    if len(given) > 1:
        names = ", ".join(f"{name}.{k}" for k, _, _ in given)
        raise InvalidSignal(f"give only one of {names}")
    return given[0] if given else None


def _as_object(name: str, value: Any) -> dict[str, Any] | None:
    if is_blank(value):
        return None
    if not isinstance(value, dict):
        raise InvalidSignal(
            f'field {name!r} must be an object such as {{"percent": 1}}, got {short(value)}'
        )
    return value


def traderspost_take_profit(name: str, value: Any, *, below_entry: bool = True) -> ExitSpec | None:
    """``takeProfit: {limitPrice | percent | amount | pnlAmount}``; ``below_entry``: the target
    is a sell's (a short's), so 100 percent or more of the price is refused."""
    obj = _as_object(name, value)
    if obj is None:
        return None
    chosen = _one_of(name, obj, _TP_KEYS, below_entry)
    if chosen is None:
        if not obj:
            return None
        raise InvalidSignal(f"{name} needs one of limitPrice, percent, amount or pnlAmount")
    _, number, units = chosen
    return ExitSpec(number, units)


def traderspost_stop_loss(name: str, value: Any) -> ExitSpec | None:
    """``stopLoss: {type, stopPrice | percent | amount | pnlAmount | trailAmount | trailPercent}``."""
    obj = _as_object(name, value)
    if obj is None:
        return None
    fields = Fields(obj)
    type_key, type_value = fields.get("type")
    kind = to_word(f"{name}.{type_key}", type_value) or "stop"
    if kind not in _SL_TYPES:
        raise InvalidSignal(
            f"{name}.type must be stop, stop_limit or trailing_stop, got {short(type_value)}"
        )
    trailing = kind == "trailing_stop"
    stop = _one_of(name, obj, _STOP_KEYS)
    trail = _one_of(name, obj, _TRAIL_KEYS)
    if trail and not trailing:
        raise InvalidSignal(f"{name}.{trail[0]} needs {name}.type trailing_stop")
    if trailing and stop and stop[2] is Units.PRICE:
        raise InvalidSignal(f"{name}: a trailing stop takes trailAmount or trailPercent")
    if trailing and stop and stop[2] is Units.POSITION_DOLLARS:
        raise InvalidSignal(
            f"{name}.{stop[0]} is for stop and stop_limit stop losses, not trailing_stop:"
            " give trailAmount or trailPercent"
        )
    if trail and stop:
        raise InvalidSignal(f"give only one of {name}.{stop[0]}, {name}.{trail[0]}")
    chosen = trail or stop
    if chosen is None:
        if not obj or (set(map(norm_key, obj)) <= {"type"} and not trailing):
            return None
        needs = (
            "trailAmount or trailPercent" if trailing else "stopPrice, percent, amount or pnlAmount"
        )
        raise InvalidSignal(f"{name} needs {needs}")
    _, number, units = chosen
    return ExitSpec(number, units, trailing=trailing)


def plain_stop_only(value: Any) -> bool:
    """A ``stopLoss`` giving only ``type`` stop (or stop_limit): the configured distance, as a
    plain stop (``Signal.plain_stop``); ``traderspost_stop_loss`` reads no exit of its own in it."""
    if not isinstance(value, dict) or not value:
        return False
    fields = Fields(value)
    if set(map(norm_key, value)) != {"type"}:
        return False
    type_key, type_value = fields.get("type")
    return to_word(type_key, type_value) in ("stop", "stop_limit")


def _pickmytrade_one(
    fields: Fields, kind: str, keys: dict[str, Units], bounded: bool = True
) -> tuple[str, Decimal, Units] | None:
    given: list[tuple[str, Decimal, Units]] = []
    for alias, units in keys.items():
        for key, value in fields.all(alias):
            number = to_distance(key, value)
            if number is not None:
                _percent_below_100(key, number, units, bounded)
                given.append((key, number, units))
    if len(given) > 1:
        raise InvalidSignal(f"give only one {kind}: " + ", ".join(k for k, _, _ in given))
    return given[0] if given else None


def pickmytrade_exits(
    fields: Fields, *, tp_below_entry: bool = True
) -> tuple[ExitSpec | None, ExitSpec | None]:
    """(take profit, stop loss) from ``tp``/``sl``, ``dollar_*``, ``percentage_*`` and ``trail*``;
    ``tp_below_entry`` as ``below_entry`` of ``traderspost_take_profit``."""
    tp = _pickmytrade_one(
        fields,
        "take profit",
        {"tp": Units.PRICE, "dollar_tp": Units.DOLLARS, "percentage_tp": Units.PERCENT},
        tp_below_entry,
    )
    sl = _pickmytrade_one(
        fields,
        "stop loss",
        {"sl": Units.PRICE, "dollar_sl": Units.DOLLARS, "percentage_sl": Units.PERCENT},
    )
    trail_key, trail_value = fields.get("trail")
    trailing = to_flag(trail_key, trail_value)
    values: dict[str, Decimal | None] = {}
    for alias in ("trail_stop", "trail_trigger", "trail_freq"):
        key, value = fields.get(alias)
        values[alias] = to_distance(key, value)
    take_profit = ExitSpec(tp[1], tp[2]) if tp else None
    if not trailing:
        return take_profit, ExitSpec(sl[1], sl[2]) if sl else None
    distance = values["trail_stop"]
    if distance is not None and sl is not None:
        raise InvalidSignal(
            f"with trail on, give either trail_stop or {sl[0]} as the trailing distance, not both"
        )
    if distance is None and sl is None:
        raise InvalidSignal("trail is on but no trail_stop (or stop loss) gives its distance")
    if sl is not None and sl[2] is Units.PRICE:
        raise InvalidSignal("a trailing stop needs a distance (trail_stop), not the price level sl")
    if distance is not None:
        value, units = distance, Units.POINTS
    else:
        assert sl is not None  # both None was refused above
        value, units = sl[1], sl[2]
    stop_loss = ExitSpec(
        value,
        units,
        trailing=True,
        trail_trigger=values["trail_trigger"],
        trail_freq=values["trail_freq"],
    )
    return take_profit, stop_loss
