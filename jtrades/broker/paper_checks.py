"""What the paper broker refuses, checked before it creates any order.

Tradovate's placeoco, placeoso and startorderstrategy are each one command: if one order in
the group is malformed, the whole group is refused and nothing is placed. The paper broker used
to create each order while it was still checking the group. A refused OCO left its first leg
behind as a PendingNew order that was never placed and never fills, and the protector counts
such an order as a live exit. So every order of a group is checked here first, and only then is
anything created.
"""

from __future__ import annotations

from decimal import Decimal

from jtrades.broker.base import (
    BracketOrder,
    OrderRequest,
    OrderType,
    missing_price,
    oco_pair_fault,
)
from jtrades.errors import BrokerRejected


def check_prices(kind: OrderType, price: Decimal | None, stop: Decimal | None,
                 peg: Decimal | None) -> None:  # fmt: skip
    why = missing_price(kind, price, stop, peg)
    if why is not None:
        raise BrokerRejected(why)


def check_order(req: OrderRequest, priced: bool) -> None:
    """``priced``: the paper broker has a market price for the order's contract, which a market
    order fills at."""
    if req.qty < 1:
        raise BrokerRejected("quantity must be ≥ 1")
    if req.order_type is OrderType.MARKET and not priced:
        raise BrokerRejected(f"paper broker: no price yet for {req.symbol}")
    check_prices(req.order_type, req.price, req.stop_price, req.peg_difference)


def check_bracket(b: BracketOrder) -> None:
    check_prices(b.order_type, b.price, b.stop_price, b.peg_difference)


def check_oco_pair(first: OrderRequest, second: OrderRequest) -> None:
    """Refused like the Tradovate broker refuses it (``ValueError``, before anything is placed)."""
    why = oco_pair_fault(first, second)
    if why is not None:
        raise ValueError(why)
