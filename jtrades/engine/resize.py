"""Resizing a held position: a DCA add or a reduce, and re-placing its exits for the new size.

Split from ``planning`` (the position table) because these are the only plans that rework the
exits of a position already held rather than send them with an entry. Pure; the rows of the
table that land here are ADD and REDUCE.

Decisions worth knowing:

- ADD (DCA) with ``--dca``: market add, cancel the working exits, re-place TP/SL for the whole
  averaged position as absolute prices (one ``oco`` per TP leg: limit + its share of the stop).
  A limit/stop add that would re-place exits is IGNOREd: the exits would work before it fills.
  Without ``--dca`` an add is IGNOREd when the position has or should have exits: adding
  without re-placing them would leave the added contracts unprotected (or the old exits sized
  wrong). With no exits anywhere, the add is a plain market order.
- REDUCE trims by the webhook's quantity (none or 0: ``--size``) × multiplier. It cancels the
  working exits first, then sends the market order, then re-places exits for
  what remains: a reduce never leaves exits larger than the position (an over-filled exit
  would flip it), and never goes through zero (a reduce ≥ the position is a CLOSE).
- Re-placed exits (DCA, reduce) are GTC and recomputed from the configured levels (a stop moved by
  trailing or breakeven goes back to its configured level). If no stop is configured, the
  existing protective stop (the entry alert's own, say) is carried over at its price for the
  new quantity, beside the configured take-profits if any.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

from jtrades.broker.base import OcoRequest, OrderType, Side, WorkingOrder
from jtrades.engine.exit_orders import StopSpec, stop_order, take_profit_leg
from jtrades.engine.exits import CannotPlan, as_price, resolve_exits
from jtrades.engine.plan_context import (
    AccountPlan,
    Ctx,
    PositionAction,
    Steps,
    entry_request,
    exit_working,
    label,
    liquidate,
    req,
    working_entries,
)
from jtrades.engine.sizing import cap_qty, round_distance, scale_qty


def _place_exits(
    c: Ctx, steps: Steps, pos_side: Side, total: int, ref: Decimal, carried: WorkingOrder | None
) -> str:
    """Absolute GTC TP/SL orders for a position of ``total`` averaged at ``ref``; a summary.

    One ``oco`` per TP leg (limit for its contracts + a stop for the same contracts), so the
    stop shrinks as legs fill; plain limits without a stop; one stop without TPs.
    """
    exits = resolve_exits(c, total, ref)
    exit_side, d, tick = pos_side.opposite, pos_side.sign, c.contract.tick_size
    carry = _carried_stop(carried)
    if exits.empty:
        if carry is None:
            return "no exits"
        order = stop_order(c.account, c.contract.symbol, exit_side, total, carry, steps.exit_id())
        steps.add("order", order, note="protective stop carried over")
        return f"stop carried over at {carry.stop_price}"

    def stop() -> StopSpec | None:
        # priced after the first take-profit, as it always was: which "cannot plan" reason
        # an alert with two bad levels gets stays the same
        if exits.sl is None:
            # No stop configured, but one is working (the entry alert's own stop loss, or a
            # protective one): it goes on with the take-profits, or the position that was
            # protected is re-placed without a stop.
            return carry
        price = as_price(exits.sl, ref, -d, c, "the stop-loss")
        if exits.trailing:
            peg = -d * round_distance(abs(ref - price), tick)
            return StopSpec(OrderType.TRAILING_STOP, price, peg=peg)
        return StopSpec(OrderType.STOP, price)

    if not exits.tp:
        sl = stop()
        assert sl is not None
        only = stop_order(c.account, c.contract.symbol, exit_side, total, sl, steps.exit_id())
        steps.add("order", only, note="stop for the whole position")
        return f"stop {only.stop_price} for {total}"
    parts = []
    sl = None
    for i, (level, q) in enumerate(exits.tp):
        tp_price = as_price(level, ref, d, c, "the take-profit")
        if i == 0:
            sl = stop()
        leg = take_profit_leg(c.account, c.contract.symbol, exit_side, q, tp_price, sl,
                              steps.exit_id(), steps.exit_id("b"))  # fmt: skip
        if isinstance(leg, OcoRequest):
            steps.add("oco", leg, note="take-profit leg with its stop")
        else:
            steps.add("order", leg, note="take-profit leg")
        parts.append(f"{q}@{tp_price}")
    sl_text = f", stop {sl.stop_price}" if sl is not None else ""
    return f"TP {' '.join(parts)}{sl_text}"


def _carried_stop(carried: WorkingOrder | None) -> StopSpec | None:
    """The working stop to carry over, at its current level. A trailing stop goes back as a
    plain stop: its trail distance is not in the live view, and a TrailingStop without one
    would be refused."""
    if carried is None or carried.stop_price is None:
        return None
    kind = OrderType.STOP if carried.order_type is OrderType.TRAILING_STOP else carried.order_type
    return StopSpec(kind, carried.stop_price, carried.price)


def _cancel_exits(c: Ctx, steps: Steps, pos_side: Side) -> WorkingOrder | None:
    """Cancel the working exits; return the protective stop nearest the market, to carry over."""
    carried: WorkingOrder | None = None
    for w in exit_working(c, pos_side):
        steps.add("cancel", None, cancel_order_id=w.order_id, note=f"{w.order_type} {w.qty}")
        if w.stop_price is not None and (
            carried is None
            or carried.stop_price is None
            or (w.stop_price - carried.stop_price) * pos_side.sign > 0
        ):
            carried = w
    return carried


def _has_exits(c: Ctx, pos_side: Side) -> bool:
    s, sig = c.s, c.sig
    configured = bool(s.tp or s.sl > 0 or sig.take_profit or sig.stop_loss)
    return configured or bool(exit_working(c, pos_side))


def plan_add(c: Ctx, steps: Steps, pos_side: Side) -> AccountPlan:
    """ADD to a ``pos_side`` position (an ``add`` alert, or ``--same-direction add``)."""
    pos = abs(c.state.net_pos)
    held = f"already {label(pos_side)} {pos}"
    if not c.s.dca and _has_exits(c, pos_side):
        return AccountPlan(
            PositionAction.IGNORE,
            (),
            f"{held}; adding needs --dca (without it the added contracts would have no TP/SL)",
        )
    base = c.sig.quantity if c.sig.quantity is not None and c.sig.quantity > 0 else c.s.add_size
    working = working_entries(c, pos_side)
    qty = cap_qty(scale_qty(base, c.multiplier), c.s.max_contracts, held=pos + working)
    if qty == 0:
        more = f" and {working} working" if working else ""
        return AccountPlan(
            PositionAction.IGNORE, (), f"{held}{more}, at --max-contracts {c.s.max_contracts}"
        )
    entry = entry_request(c, steps.next_id(), pos_side, qty)
    steps.add("order", entry, note=f"DCA add {qty}")
    if not _has_exits(c, pos_side):
        return AccountPlan(PositionAction.ADD, tuple(steps.items), f"{held}: add {qty}")
    if entry.order_type is not OrderType.MARKET:
        # Exits for the averaged position would be working before the add fills (if it ever
        # does): the price moving away leaves them closing more than is held, flipping it.
        raise CannotPlan(
            f"{held}: a {c.sig.order_type} add cannot re-place TP/SL before it fills;"
            " send DCA adds as market orders"
        )
    fill = c.signal_price
    if fill is None or c.state.avg_price is None:
        raise CannotPlan("a DCA add needs the signal price and the average to re-place TP/SL")
    total = pos + qty
    with localcontext() as ctx:
        ctx.prec = 60
        avg = (c.state.avg_price * pos + fill * qty) / total
    carried = _cancel_exits(c, steps, pos_side)
    summary = _place_exits(c, steps, pos_side, total, avg, carried)
    return AccountPlan(
        PositionAction.ADD,
        tuple(steps.items),
        f"{held}: add {qty} → {total} averaged at {avg.normalize():f}; {summary}",
    )


def plan_reduce(c: Ctx, steps: Steps, pos_side: Side) -> AccountPlan:
    """REDUCE a ``pos_side`` position (CLOSE when the reduce is the whole position or more)."""
    pos = abs(c.state.net_pos)
    base = c.sig.quantity if c.sig.quantity is not None and c.sig.quantity > 0 else c.s.size
    qty = scale_qty(base, c.multiplier)
    if qty >= pos:
        liquidate(c, steps)
        return AccountPlan(
            PositionAction.CLOSE, tuple(steps.items), f"reduce by {qty} ≥ position {pos}: close"
        )
    remaining = pos - qty
    ref = c.state.avg_price if c.state.avg_price is not None else c.signal_price
    carried = _cancel_exits(c, steps, pos_side)
    order = req(c, pos_side.opposite, qty, OrderType.MARKET, steps.next_id())
    steps.add("order", order, note=f"reduce by {qty}")
    summary = "no exits"
    if _has_exits(c, pos_side):
        if ref is None:
            raise CannotPlan("a reduce needs the average or signal price to re-place TP/SL")
        summary = _place_exits(c, steps, pos_side, remaining, ref, carried)
    return AccountPlan(
        PositionAction.REDUCE,
        tuple(steps.items),
        f"{label(pos_side)} {pos} reduced by {qty} to {remaining}; {summary}",
    )
