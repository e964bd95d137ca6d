"""Exit orders for a position that is held: absolute prices, GTC, one sub-account and contract.

Shared by the DCA/reduce re-placement (``resize``) and the reconciler's protective stops
(``protection``), so both build a take-profit leg the same way: its limit OCO-linked with a stop
for the same contracts. When the leg fills its stop goes, so the stop shrinks with the position
without any action of ours; when the stop fills its limit goes. Exits are GTC: a DAY exit would
expire at the session break and leave the position naked overnight. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from jtrades.broker.base import (
    OcoRequest,
    OrderRequest,
    OrderType,
    Side,
    SubAccount,
    TimeInForce,
)


@dataclass(frozen=True, slots=True)
class StopSpec:
    """How a position's stop is placed: Stop, StopLimit (``price``) or TrailingStop (``peg``,
    signed points), triggered at ``stop_price``."""

    order_type: OrderType
    stop_price: Decimal | None
    price: Decimal | None = None
    peg: Decimal | None = None


def exit_order(
    account: SubAccount,
    symbol: str,
    side: Side,
    qty: int,
    order_type: OrderType,
    cl_ord_id: str,
    *,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
    peg: Decimal | None = None,
    text: str | None = None,
) -> OrderRequest:
    """One GTC exit order (``text``: shown with the order at the broker)."""
    return OrderRequest(
        account, symbol, side, qty, order_type, cl_ord_id=cl_ord_id, price=price,
        stop_price=stop_price, peg_difference=peg, time_in_force=TimeInForce.GTC, text=text,
    )  # fmt: skip


def stop_order(
    account: SubAccount,
    symbol: str,
    side: Side,
    qty: int,
    stop: StopSpec,
    cl_ord_id: str,
    text: str | None = None,
) -> OrderRequest:
    """The stop of ``stop`` for ``qty`` contracts."""
    return exit_order(
        account, symbol, side, qty, stop.order_type, cl_ord_id,
        price=stop.price, stop_price=stop.stop_price, peg=stop.peg, text=text,
    )  # fmt: skip


def take_profit_leg(
    account: SubAccount,
    symbol: str,
    side: Side,
    qty: int,
    price: Decimal,
    stop: StopSpec | None,
    cl_ord_id: str,
    stop_cl_ord_id: str,
    text: str | None = None,
) -> OrderRequest | OcoRequest:
    """A take-profit of ``qty`` at ``price`` with its share of the stop as one OCO pair (a
    plain limit when there is no stop): whichever fills, at most ``qty`` contracts exit."""
    limit = exit_order(
        account, symbol, side, qty, OrderType.LIMIT, cl_ord_id, price=price, text=text
    )
    if stop is None:
        return limit
    paired = stop_order(account, symbol, side, qty, stop, stop_cl_ord_id, text)
    return OcoRequest(limit, paired)
