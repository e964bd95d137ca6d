"""Reading the fields of Tradovate entities (``order``, ``fill``, ``position``…) as our values.

Every broker event the view takes in goes through these, so they are kept cheap and in one place,
apart from the view's state: prices stay exact decimals (read via their text), and times become
aware datetimes whether Tradovate sends epoch milliseconds or ISO text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jtrades.broker.base import OrderStatus, OrderType, Side


def parse_decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value))  # via str: 21500.25 stays 21500.25, not its binary neighbour


def parse_time(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# Every broker event is parsed here: a dict lookup is a fraction of an Enum call's cost.
_STATUSES = {s.value: s for s in OrderStatus}
_ORDER_TYPES = {t.value: t for t in OrderType}
_SIDES = {s.value: s for s in Side}


def parse_status(value: Any) -> OrderStatus:
    return _STATUSES.get(str(value), OrderStatus.UNKNOWN)


def parse_order_type(value: Any) -> OrderType:
    return _ORDER_TYPES.get(str(value), OrderType.MARKET)


def parse_side(value: Any) -> Side:
    text = str(value or "Buy")
    return _SIDES.get(text) or Side(text)  # Side() raises for what is not a side
