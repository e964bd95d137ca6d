"""The exits a held position already has, carried over when a resize re-places its exits.

A DCA add or a reduce cancels the working exits and re-places them for the new size
(``engine.resize``). What is not configured for the signal goes back as it was working: the
stop nearest the market, and the take-profits at their prices, resized so that they add up to
the new position (DESIGN §5.4), the near legs giving up contracts first (they fill first). Pure.
"""

from __future__ import annotations

from decimal import Decimal

from jtrades.broker.base import OrderStatus, OrderType, Side, WorkingOrder
from jtrades.engine.exit_orders import StopSpec
from jtrades.engine.plan_context import Ctx, exit_working


def carried_stop(carried: WorkingOrder | None, pos_side: Side) -> StopSpec | None:
    """The working stop to carry over, at its current level. A trailing stop goes on trailing
    by its own distance (the live view's ``trail``: Tradovate's pegDifference, the paper
    broker's), as protection re-places one: carried as a plain stop, the entry alert's
    trailing stop stopped following the price after a trim or a DCA add. Its distance unknown,
    it goes back as a plain stop: a TrailingStop without one would be refused."""
    if carried is None or carried.stop_price is None:
        return None
    if carried.order_type is OrderType.TRAILING_STOP:
        if carried.trail is None:
            return StopSpec(OrderType.STOP, carried.stop_price)
        return StopSpec(
            OrderType.TRAILING_STOP, carried.stop_price, peg=-pos_side.sign * carried.trail
        )
    return StopSpec(carried.order_type, carried.stop_price, carried.price)


def working_stop(c: Ctx, pos_side: Side) -> StopSpec | None:
    """The protective stop nearest the market among the working exits, to carry over."""
    carried: WorkingOrder | None = None
    for w in exit_working(c, pos_side):
        if w.stop_price is not None and (
            carried is None
            or carried.stop_price is None
            or (w.stop_price - carried.stop_price) * pos_side.sign > 0
        ):
            carried = w
    return carried_stop(carried, pos_side)


def carried_take_profits(c: Ctx, pos_side: Side, total: int) -> tuple[tuple[Decimal, int], ...]:
    """The working take-profits (exit-side limits) at their prices, resized for ``total``
    (nearest the market first; merged by price): a smaller position gives up the near legs'
    contracts first (they are the ones that fill first), a larger one gives the added contracts
    to the farthest leg, which takes the rest as a ladder's last leg does. They add up to
    ``total`` (DESIGN §5.4); none working: none."""
    d = pos_side.sign
    by_price: dict[Decimal, int] = {}
    for w in exit_working(c, pos_side):
        # a suspended one is the bracket of an entry not filled yet, not a target of this
        # position (``protection``)
        if (
            w.order_type is OrderType.LIMIT
            and w.price is not None
            and w.qty > 0
            and w.status is not OrderStatus.SUSPENDED
        ):
            by_price[w.price] = by_price.get(w.price, 0) + w.qty
    if not by_price:
        return ()
    legs = sorted(by_price.items(), key=lambda leg: leg[0] * d)
    excess = sum(q for _, q in legs) - total
    out: list[tuple[Decimal, int]] = []
    for price, q in legs:
        take = min(q, max(excess, 0))
        excess -= take
        if q > take:
            out.append((price, q - take))
    if excess < 0:
        price, q = out[-1]
        out[-1] = (price, q - excess)
    return tuple(out)
