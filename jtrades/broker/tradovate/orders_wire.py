"""Tradovate's order commands as bodies, and their answers as outcomes, in pure functions.

Kept apart from the broker, which only sends them: a malformed order is caught here before it
spends a round trip, and what an answer means (a refusal in a 200, an order without its id) is
decided without a session, where it can be read and tested on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson

from jtrades.broker.base import (
    BracketOrder,
    OrderRequest,
    OrderType,
    StrategyBracket,
    StrategyRequest,
    missing_price,
    oco_pair_fault,
)
from jtrades.errors import BrokerRejected, OutcomeUnknown


def num(value: Decimal | None) -> float | int | None:
    """A JSON number for a price: integral values as int, others via their decimal text."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return int(value)
    return float(str(value))


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def order_fields(req: OrderRequest) -> dict[str, Any]:
    check_prices(req.order_type, req.price, req.stop_price, req.peg_difference)
    return drop_none(
        {
            "accountSpec": req.account.name,
            "accountId": req.account.account_id,
            "action": req.side.value,
            "symbol": req.symbol,
            "orderQty": req.qty,
            "orderType": req.order_type.value,
            "price": num(req.price),
            "stopPrice": num(req.stop_price),
            "pegDifference": num(req.peg_difference),
            "timeInForce": req.time_in_force.value,
            "clOrdId": req.cl_ord_id or None,
            "text": req.text,
            "isAutomated": True,
        }
    )


def bracket_fields(b: BracketOrder) -> dict[str, Any]:
    """An OSO bracket as a RestrainedOrderVersion (spec): no account, symbol or quantity (it
    works the entry's), and its own clOrdId."""
    check_prices(b.order_type, b.price, b.stop_price, b.peg_difference)
    return drop_none(
        {
            "action": b.side.value,
            "orderType": b.order_type.value,
            "price": num(b.price),
            "stopPrice": num(b.stop_price),
            "pegDifference": num(b.peg_difference),
            "clOrdId": b.cl_ord_id or None,
            # also in text, where the orphan-exit sweep reads it too (``engine.orphans``)
            "text": b.cl_ord_id or None,
        }
    )


def oco_fields(first: OrderRequest, second: OrderRequest) -> dict[str, Any]:
    """The body of ``order/placeoco``: ``first`` as a whole order, ``second`` as its ``other``,
    a RestrainedOrderVersion (spec: action, orderType, clOrdId, price, stopPrice, maxShow,
    pegDifference, timeInForce, expireTime, text). ``other`` has no account, symbol or quantity:
    it is for the first's, so a pair that differs in them cannot be sent (``ValueError``)."""
    why = oco_pair_fault(first, second)
    if why is not None:
        raise ValueError(why)
    body = order_fields(first)
    check_prices(second.order_type, second.price, second.stop_price, second.peg_difference)
    body["other"] = drop_none(
        {
            "action": second.side.value,
            "orderType": second.order_type.value,
            "price": num(second.price),
            "stopPrice": num(second.stop_price),
            "pegDifference": num(second.peg_difference),
            "timeInForce": second.time_in_force.value,
            "clOrdId": second.cl_ord_id or None,
            # our id also in text, over a label: what tells the order is ours once its
            # partner is gone (``engine.orphans`` reads both), as it did before clOrdId was sent
            "text": second.cl_ord_id or second.text,
        }
    )
    return body


def check_prices(
    kind: OrderType, price: Decimal | None, stop: Decimal | None, peg: Decimal | None
) -> None:
    """Catch a malformed order here instead of spending a round trip on a rejection."""
    why = missing_price(kind, price, stop, peg)
    if why is not None:
        raise ValueError(why)


def rejected(endpoint: str, d: Any) -> None:
    if not isinstance(d, dict):
        return
    reason = d.get("failureReason")
    text = d.get("failureText") or d.get("errorText")
    if (reason and reason != "Success") or text:
        raise BrokerRejected(f"{endpoint}: {reason or 'rejected'}: {text or ''}".rstrip(": "))


def placed_order_id(d: dict[str, Any]) -> int:
    """The new order's id; an answer without one (and without a failure) leaves the order's
    fate open: reconcile by clOrdId rather than guess."""
    oid = d.get("orderId")
    if oid is None:
        raise OutcomeUnknown("Tradovate accepted the order without saying its id; look it up")
    return int(oid)


def strategy_params(req: StrategyRequest) -> str:
    """``params`` of ``startorderstrategy``: a JSON **string** (an object is rejected with
    "Invalid or missed parameters"). Offsets are signed points from the fill (long: +tp, -sl)."""
    e = req.entry
    sign = e.side.sign
    entry = drop_none(
        {
            "orderQty": e.qty,
            "orderType": e.order_type.value,
            "price": num(e.price),
            "stopPrice": num(e.stop_price),
            "timeInForce": e.time_in_force.value,
        }
    )
    brackets = []
    for b in req.brackets:
        check_bracket_signs(b, sign)
        leg: dict[str, Any] = {"qty": b.qty, "trailingStop": b.trailing_stop}
        if b.profit_target is not None:
            leg["profitTarget"] = num(b.profit_target)
        if b.stop_loss is not None:
            leg["stopLoss"] = num(b.stop_loss)
        if b.trail_trigger is not None:
            # autoTrail's distances are unsigned points, whichever the side (public references'
            # examples: a buy's bracket ``stopLoss: -12.5`` beside ``autoTrail.stopLoss: 5``);
            # the bracket's signed offset went out negative on every long
            leg["autoTrail"] = drop_none(
                {
                    "stopLoss": num(abs(b.stop_loss)) if b.stop_loss is not None else None,
                    "trigger": num(b.trail_trigger),
                    "freq": num(b.trail_freq),
                }
            )
        if b.breakeven is not None:
            # No documented bracket field moves a stop to breakeven. Dropping it would leave a
            # wider stop than the trader asked for, so the order fails closed with a reason.
            raise BrokerRejected(
                "breakeven is not supported on Tradovate order strategies: remove --breakeven"
                " or use --sl-type trailing"
            )
        brackets.append(leg)
    if sum(b.qty for b in req.brackets) != e.qty:
        raise ValueError("bracket quantities must add up to the entry quantity")
    return orjson.dumps({"entryVersion": entry, "brackets": brackets}).decode()


def created_before(o: dict[str, Any], floor: datetime | None) -> bool:
    """Whether the order was created before ``floor``; an unreadable time counts as after."""
    if floor is None:
        return False
    ts = o.get("timestamp")
    try:
        t = datetime.fromisoformat(str(ts)) if ts is not None else None
    except ValueError:
        return False
    if t is None:
        return False
    return (t if t.tzinfo else t.replace(tzinfo=UTC)) < floor


def check_bracket_signs(b: StrategyBracket, sign: int) -> None:
    # A target on the wrong side of the entry fills at once; a stop on the wrong side too.
    if b.qty < 1:
        raise ValueError("each bracket needs a quantity >= 1")
    if b.profit_target is not None and b.profit_target * sign <= 0:
        raise ValueError("profit_target must be signed: + for a long entry, - for a short one")
    if b.stop_loss is not None and b.stop_loss * sign >= 0:
        raise ValueError("stop_loss must be signed: - for a long entry, + for a short one")
