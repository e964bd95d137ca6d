"""Exits left working on a flat contract: which orders they are.

A position closed by hand with a plain market order (not Tradovate's "Exit at Mkt & Cxl"), or by
a liquidation the broker made itself, leaves its take-profits and stop working. The position is
gone, so the next of them to fill opens a new one, unprotected and unasked for. The reconciler
cancels them (``protector``); this module only says which they are. Pure: the live view's
positions and orders in, orders out.

The same goes for such exits on a contract held on their own side (the position was reversed
by hand, or an alert opened the other side before a pass cancelled them): a sell take-profit
of a closed long adds to a short when it fills. An order is such an exit when it is live
(Working, PendingNew, PendingReplace: a Suspended bracket still waits for its entry), the
sub-account holds nothing in its contract or holds it on the order's own side, and
- it is a bracket of an entry that is no longer open (its entry filled: the position it opened
  is gone); an order strategy's brackets count as its entry's, as the view links them; or
- jtrades placed it only to exit (its clOrdId, ``plan_context.placed_as_exit``; an OCO's second
  leg carries it in its text); or
- it is OCO-linked to one of those.
Anything else (a working limit entry, an order someone placed by hand) is not ours to judge and
is left alone. Market orders are on their way to filling, never resting: left alone too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from jtrades.broker.base import OrderType, Position, WorkingOrder
from jtrades.engine.plan_context import LIVE, placed_as_exit


def orphan_exits(
    positions: Iterable[Position], working: Sequence[WorkingOrder]
) -> tuple[WorkingOrder, ...]:
    """The exits in ``working`` (one sub-account's orders) that cannot exit what ``positions``
    holds; sorted by order id."""
    held = {p.symbol: p.net_pos for p in positions if p.net_pos != 0}
    open_ids = {o.order_id for o in working if o.status.is_open}
    candidates = {
        o.order_id: o
        for o in working
        if o.status in LIVE
        and o.order_type is not OrderType.MARKET
        and held.get(o.symbol, 0) * o.side.sign >= 0  # flat, or held on the order's side
    }
    exits = {
        oid
        for oid, o in candidates.items()
        if (o.parent_id is not None and o.parent_id not in open_ids)
        or placed_as_exit(o.cl_ord_id)
        or placed_as_exit(o.text)
    }
    exits |= {
        oid
        for oid, o in candidates.items()
        if o.oco_id in exits or any(candidates[e].oco_id == oid for e in exits)
    }
    return tuple(candidates[oid] for oid in sorted(exits))
