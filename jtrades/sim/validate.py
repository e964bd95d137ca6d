"""Strict request bodies, the way Tradovate checks them: unknown fields and wrong types are errors.

Field lists follow the official OpenAPI spec (tradovate/example-api-csharp-trading,
``swagger/services.swagger.yaml``: PlaceOrder, PlaceOSO, PlaceOCO, RestrainedOrderVersion,
ModifyOrder, CancelOrder, LiquidatePosition, StartOrderStrategy, InterruptOrderStrategy; the
generated clients of that spec have the same models). A JSON
integer is accepted where the spec says ``number``; a float is never accepted for an integer, and
``true`` is never a number.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

INT, NUM, STR, BOOL, PARAMS = "int", "num", "str", "bool", "params"
NUM_OR_TEXT = "num_or_text"  # a number, or a numeric string like "+80"
ACTIONS = frozenset({"Buy", "Sell"})
ORDER_TYPES = frozenset(
    {"Limit", "MIT", "Market", "QTS", "Stop", "StopLimit", "TrailingStop", "TrailingStopLimit"}
)
TIFS = frozenset({"Day", "FOK", "GTC", "GTD", "IOC"})
ENUMS = {"action": ACTIONS, "orderType": ORDER_TYPES, "timeInForce": TIFS}
MAX_STR = 64
MAX_PARAMS = 8192  # StartOrderStrategy.params

_VERSION = {
    "orderQty": INT,
    "orderType": STR,
    "price": NUM,
    "stopPrice": NUM,
    "maxShow": INT,
    "pegDifference": NUM,
    "timeInForce": STR,
    "expireTime": STR,
    "text": STR,
}
# RestrainedOrderVersion: the type of placeOCO.other and placeOSO.bracket1/bracket2. It has a
# clOrdId (the leg order's own) and no orderQty: a leg works the main order's quantity.
RESTRAINED = {
    "action": STR,
    "clOrdId": STR,
    **{k: v for k, v in _VERSION.items() if k != "orderQty"},
}
RESTRAINED_REQUIRED = ("action", "orderType")
PLACE_ORDER = {
    "accountSpec": STR,
    "accountId": INT,
    "clOrdId": STR,
    "action": STR,
    "symbol": STR,
    **_VERSION,
    "activationTime": STR,
    "customTag50": STR,
    "isAutomated": BOOL,
}
PLACE_OSO = {**PLACE_ORDER, "bracket1": RESTRAINED, "bracket2": RESTRAINED}
PLACE_OCO = {**PLACE_ORDER, "other": RESTRAINED}
MODIFY_ORDER = {
    "orderId": INT,
    "clOrdId": STR,
    **_VERSION,
    "activationTime": STR,
    "customTag50": STR,
    "isAutomated": BOOL,
}
CANCEL_ORDER = {
    "orderId": INT,
    "clOrdId": STR,
    "activationTime": STR,
    "customTag50": STR,
    "isAutomated": BOOL,
}
LIQUIDATE = {"accountId": INT, "contractId": INT, "admin": BOOL, "customTag50": STR}
START_STRATEGY = {
    "accountId": INT,
    "accountSpec": STR,
    "symbol": STR,
    "orderStrategyTypeId": INT,
    "action": STR,
    "params": PARAMS,
    "uuid": STR,
    "customTag50": STR,
    "isAutomated": BOOL,  # not in the 2021 spec; newer clients send it, so accept it
}
INTERRUPT_STRATEGY = {"orderStrategyId": INT}
# params.entryVersion: public clients also put isAutomated here; accept it.
STRATEGY_ENTRY = {
    "orderQty": INT,
    "orderType": STR,
    "price": NUM,
    "stopPrice": NUM,
    "pegDifference": NUM,
    "timeInForce": STR,
    "expireTime": STR,
    "text": STR,
    "isAutomated": BOOL,
}
# params.brackets: offsets are numbers, but public clients send strings like "+80" too, and the
# strategy engine parses params itself; accept numeric strings there (and only there).
STRATEGY_BRACKET = {
    "qty": INT,
    "profitTarget": NUM_OR_TEXT,
    "stopLoss": NUM_OR_TEXT,
    "trailingStop": BOOL,
    "autoTrail": {"stopLoss": NUM_OR_TEXT, "trigger": NUM_OR_TEXT, "freq": NUM_OR_TEXT},
}


def _type_ok(kind: str, value: Any) -> bool:
    if kind == INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == NUM:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == STR:
        return isinstance(value, str) and len(value) <= MAX_STR
    if kind == NUM_OR_TEXT:
        if isinstance(value, str):
            try:
                return Decimal(value).is_finite()
            except ArithmeticError:
                return False
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == PARAMS:
        return isinstance(value, str) and len(value) <= MAX_PARAMS
    return isinstance(value, bool)


def check(
    body: Any, schema: dict[str, Any], required: tuple[str, ...] = (), at: str = ""
) -> str | None:
    """``None`` when ``body`` fits ``schema``; else the ``failureText`` naming the bad field.
    ``at``: the path of ``body`` in the request (``"other."``), to name a nested field."""
    bad = "Invalid or missed parameters"
    if not isinstance(body, dict):
        return f"{bad}: {at.rstrip('.') or 'body'} must be a JSON object"
    for key, value in body.items():
        kind = schema.get(key)
        if kind is None:
            return f"{bad}: unknown field {at}{key}"
        if value is None:
            continue
        if isinstance(kind, dict):
            inner = check(value, kind, at=f"{at}{key}.")
            if inner is not None:
                return inner
            continue
        if not _type_ok(kind, value):
            return f"{bad}: {at}{key}"
        allowed = ENUMS.get(key)
        if allowed is not None and value not in allowed:
            return f"{bad}: {at}{key}={value}"
    for key in required:
        if body.get(key) is None:
            return f"{bad}: {at}{key} is required"
    return None


def dec(value: Any) -> Decimal | None:
    """A JSON number as an exact Decimal (via its shortest repr, so 21500.1 stays 21500.1)."""
    if value is None:
        return None
    if isinstance(value, str):
        return Decimal(value.strip())
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)
