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
- A DCA add's exits are planned from an estimated average (the signal price as the add's
  fill), which says the plan's reason and its intents; the fill can differ (the market moved
  since the alert's bar closed), and a stop measured from the estimate then risks more than
  ``--sl`` from the real average (a take-profit can even fall below it on a long). So they are
  priced again from the broker's average once the add shows (``reprice_add``, by the
  dispatcher) before the working exits are cancelled and the new ones sent; where that
  cannot be done safely the planned ones are sent as planned (they were checked against the
  market when planned): the added contracts are never left without exits.
- REDUCE trims by the webhook's quantity (none or 0: ``--size``) × multiplier. It cancels the
  working exits first, then sends the market order, then re-places exits for
  what remains: a reduce never leaves exits larger than the position (an over-filled exit
  would flip it), and never goes through zero (a reduce ≥ the position is a CLOSE).
- Re-placed exits (DCA, reduce) are GTC and recomputed from the configured levels (after a DCA
  add, a stop moved by trailing or breakeven goes back to its configured level from the new
  average; a reduce, which leaves the average as it was, keeps a working stop nearer the
  market than that level). If no stop is configured, the
  existing protective stop (the entry alert's own, say) is carried over at its price for the
  new quantity, beside the configured take-profits if any. If no take-profit is configured,
  the working ones (the entry alert's own) are carried over at their prices the same way
  (``working_exits.carried_take_profits``): re-placing the stop alone left the averaged
  position without the target it had.
- A reduce keeps the working take-profits farthest from the market for what is left (their
  near legs fill first), unless the alert gives its own; with none working, the far end of the
  configured ladder (``sizing.ladder_tail``). Laid out again from the first leg, the contract
  left after TP1 filled went back to TP1 (past the market: refused), and the size the ladder
  was laid for is not known (the entry alert's quantity may have set it).
- They are priced from the average, yet none may be at or past the market (the signal price),
  where it would fill at once: such a stop gives way to the working stop or refuses the plan,
  such a take-profit hands its contracts to the next live leg (``_price_exits``). With every
  leg passed an add is refused; a reduce (the strategy trimmed, the follower must too) or a
  carried take-profit drops them and keeps the stop. Nothing is cancelled before that is
  settled.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext

from jtrades.broker.base import (
    OcoRequest,
    OrderRequest,
    OrderType,
    Side,
)
from jtrades.engine.exit_orders import StopSpec, stop_order, take_profit_leg
from jtrades.engine.exits import CannotPlan, as_price, resolve_exits
from jtrades.engine.plan_context import (
    NEEDS_DCA,
    AccountPlan,
    Ctx,
    PlannedOrder,
    PositionAction,
    Shortfall,
    Steps,
    entry_request,
    exit_working,
    label,
    liquidate,
    req,
    working_entries,
)
from jtrades.engine.position_size import size_after
from jtrades.engine.sizing import (
    base_qty,
    cap_qty,
    entry_qty,
    over_order_limit,
    round_distance,
    round_to_tick,
    scale_qty,
)
from jtrades.engine.working_exits import carried_take_profits, working_stop


@dataclass(frozen=True, slots=True)
class _Priced:
    """A resized position's exits, priced and checked against the market before anything is
    planned: a refusal (``CannotPlan``) then leaves the working exits alone."""

    tp: tuple[tuple[Decimal, int], ...]  # each take-profit's price and contracts
    stop: StopSpec | None
    carried: bool  # ``stop`` is the working stop, carried over at its price
    notes: tuple[str, ...] = ()  # what the market changed, for the plan's reason
    tp_carried: bool = False  # ``tp`` are the working take-profits, carried over at their prices


def _short_of(price: Decimal, market: Decimal, pos_side: Side) -> bool:
    """Whether a stop at ``price`` is on the losing side of the market, strictly."""
    return (market - price) * pos_side.sign > 0


def _price_exits(
    c: Ctx,
    pos_side: Side,
    total: int,
    ref: Decimal,
    carried: StopSpec | None,
    markets: tuple[Decimal, ...] | None = None,
    stop_markets: tuple[Decimal, ...] | None = None,
    *,
    carried_tp: tuple[tuple[Decimal, int], ...] = (),
    laid_for: int | None = None,
) -> _Priced:
    """TP/SL prices for a position of ``total`` averaged at ``ref``, none at or past the market.

    ``carried_tp``: the working take-profits for ``total``
    (``working_exits.carried_take_profits``), placed when none is configured for the signal
    (and for a reduce, unless the alert gives its own). ``laid_for``: a reduce, from a position
    whose ladder was laid for that many contracts (``resolve_exits``).

    They are priced from the average, which can sit on the far side of the market (the signal's
    price, where a market add fills) from a level measured off it: the entry alert's wider stop
    still working, or a take-profit leg the market has already passed.

    - A stop at or past the market would stop the position out at once, or be refused after
      the old stop was cancelled (naked). The working stop goes on instead when it is short of
      the market; otherwise nothing is planned (``CannotPlan``): the position keeps its exits.
    - A take-profit at or past the market would fill at once, undoing the add or trimming more
      than the strategy did. Its contracts go to the live leg the market reaches first, so the
      ladder still covers the position (rule 4) and they exit at the next level the trader set;
      refusing instead would leave the strategy's add or reduce undone for a level merely
      passed. With every leg passed there is no level left to give them to: an add is refused;
      a reduce (``laid_for``) drops them and goes with its stop, as do carried take-profits
      (levels the trader did not configure, which the market has passed): refusing left the
      follower holding what the strategy had trimmed.

    Without a signal price there is no market to check against: priced from the average alone.
    ``markets`` (default: the signal price) are the prices the market is known to have traded
    at: every take-profit must be beyond each of them. ``stop_markets`` (default: ``markets``)
    are those a stop must be short of: where the market is now. A price the market has left
    is no reason to refuse a stop short of the market it is at (a stale alert's close).

    The alert's dollars for the whole position (``Units.POSITION_DOLLARS``) are spread over the
    position these exits cover, counted in the alert's contracts (``total`` ÷ multiplier): not
    over the add or the reduce the alert asks for, which would let the averaged position lose
    that many times the alert's cap.
    """
    exits = resolve_exits(c, total, ref, Decimal(total) / c.multiplier, laid_for)
    d, tick = pos_side.sign, c.contract.tick_size

    def stop() -> StopSpec | None:
        # priced after the first take-profit, as it always was: which "cannot plan" reason
        # an alert with two bad levels gets stays the same
        if exits.sl is None:
            # No stop configured, but one is working (the entry alert's own stop loss, or a
            # protective one): it goes on with the take-profits, or the position that was
            # protected is re-placed without a stop.
            return carried
        price = as_price(exits.sl, ref, -d, c, "the stop-loss")
        if exits.trailing:
            peg = -d * round_distance(abs(ref - price), tick)
            return StopSpec(OrderType.TRAILING_STOP, price, peg=peg)
        return StopSpec(OrderType.STOP, price)

    tp: list[tuple[Decimal, int]] = []
    sl = None if exits.tp else stop()
    for i, (level, q) in enumerate(exits.tp):
        tp.append((as_price(level, ref, d, c, "the take-profit"), q))
        if i == 0:
            sl = stop()
    # a reduce (``laid_for``) keeps the working take-profits, shrunk from the nearest, over
    # the configured ladder unless the alert gave its own: the size that ladder was laid for
    # is not known here (the entry's quantity may have been the alert's), and laid out again
    # it sent held contracts back to levels that had filled
    keep_working = laid_for is not None and not c.sig.take_profit
    tp_carried = bool(carried_tp) and (not exits.tp or keep_working)
    if tp_carried:
        tp = list(carried_tp)
    if markets is None:
        markets = () if c.signal_price is None else (c.signal_price,)
    if stop_markets is None:
        stop_markets = markets
    is_carried = sl is not None and sl is carried
    notes: list[str] = []
    if laid_for is not None and _tighter(carried, sl, pos_side, stop_markets):
        # a reduce leaves the average as it was: the working stop a breakeven or a trail moved
        # toward the market stays (re-placed at the configured level, a trade that had locked
        # in a point could lose ten again after taking partial profit)
        assert carried is not None
        assert sl is not None
        notes.append(f"the working stop {carried.stop_price} kept (not {sl.stop_price})")
        sl, is_carried = carried, True
    if (
        sl is not None
        and sl.stop_price is not None
        and (market := _reached(sl.stop_price, stop_markets, pos_side)) is not None
    ):
        fallback = None if is_carried else carried
        if (
            fallback is None
            or fallback.stop_price is None
            or _reached(fallback.stop_price, stop_markets, pos_side) is not None
        ):
            what = "the working stop" if is_carried else "the stop"
            raise CannotPlan(
                f"{what} {sl.stop_price} for {label(pos_side)} {total} is at or past the"
                f" market {market}, and no working stop is short of it"
            )
        notes.append(
            f"the stop {sl.stop_price} is at or past the market {market}:"
            f" the working stop {fallback.stop_price} kept"
        )
        sl, is_carried = fallback, True
    legs = tuple(tp)
    drop = laid_for is not None or tp_carried
    for market in markets:
        legs = _unreached(list(legs), market, pos_side, notes, drop)
    return _Priced(legs, sl, is_carried, tuple(notes), tp_carried and bool(legs))


def _reached(stop: Decimal, markets: tuple[Decimal, ...], pos_side: Side) -> Decimal | None:
    """The first of ``markets`` a stop at ``stop`` is not short of (None: short of them all)."""
    return next((m for m in markets if not _short_of(stop, m, pos_side)), None)


def _unreached(
    legs: list[tuple[Decimal, int]],
    market: Decimal,
    pos_side: Side,
    notes: list[str],
    drop: bool = False,
) -> tuple[tuple[Decimal, int], ...]:
    """The take-profit legs the market has not reached, holding the contracts of those it has
    (each to the live leg the market reaches first); ``_price_exits`` says why. With none
    live: none when ``drop``, else ``CannotPlan``."""
    d = pos_side.sign
    live = [i for i, (p, _) in enumerate(legs) if (p - market) * d > 0]
    if len(live) == len(legs):
        return tuple(legs)
    if not live:
        prices = ", ".join(str(p) for p, _ in legs)
        if drop:
            notes.append(f"take-profit {prices} at or past the market {market}: dropped")
            return ()
        raise CannotPlan(f"every take-profit ({prices}) is at or past the market {market}")
    qty = {i: legs[i][1] for i in live}
    first = min(live, key=lambda i: (legs[i][0] - market) * d)  # the earliest one in a tie
    for p, q in legs:
        if (p - market) * d <= 0:
            qty[first] += q
            notes.append(
                f"take-profit {p} already reached at {market}: its {q} to {legs[first][0]}"
            )
    return tuple((legs[i][0], qty[i]) for i in live)


def _place_exits(c: Ctx, steps: Steps, pos_side: Side, total: int, priced: _Priced) -> str:
    """Absolute GTC TP/SL orders for ``priced``; a summary.

    One ``oco`` per TP leg (limit for its contracts + a stop for the same contracts), so the
    stop shrinks as legs fill; plain limits without a stop; one stop without TPs.
    """
    exit_side = pos_side.opposite
    sl = priced.stop
    notes = "".join(f" ({n})" for n in priced.notes)
    if not priced.tp:
        if sl is None:
            return "no exits"
        only = stop_order(c.account, c.contract.symbol, exit_side, total, sl, steps.exit_id())
        if priced.carried:
            steps.add("order", only, note="protective stop carried over")
            return f"stop carried over at {sl.stop_price}{notes}"
        steps.add("order", only, note="stop for the whole position")
        return f"stop {only.stop_price} for {total}{notes}"
    parts = []
    how = " carried over" if priced.tp_carried else ""
    for tp_price, q in priced.tp:
        leg = take_profit_leg(c.account, c.contract.symbol, exit_side, q, tp_price, sl,
                              steps.exit_id(), steps.exit_id("b"))  # fmt: skip
        if isinstance(leg, OcoRequest):
            steps.add("oco", leg, note=f"take-profit leg{how} with its stop")
        else:
            steps.add("order", leg, note=f"take-profit leg{how}")
        parts.append(f"{q}@{tp_price}")
    sl_text = f", stop {sl.stop_price}" if sl is not None else ""
    return f"TP{how} {' '.join(parts)}{sl_text}{notes}"


def _cancel_exits(c: Ctx, steps: Steps, pos_side: Side) -> None:
    for w in exit_working(c, pos_side):
        steps.add("cancel", None, cancel_order_id=w.order_id, note=f"{w.order_type} {w.qty}")


def _has_exits(c: Ctx, pos_side: Side) -> bool:
    s, sig = c.s, c.sig
    configured = bool(s.tp or s.sl > 0 or sig.take_profit or sig.stop_loss)
    return configured or bool(exit_working(c, pos_side))


def _tighter(
    working: StopSpec | None, planned: StopSpec | None, pos_side: Side, markets: tuple[Decimal, ...]
) -> bool:
    """Whether the working stop is nearer the market than the planned one (above it on a
    long) and still short of it: a stop that moved with the trade."""
    if working is None or planned is None or working is planned:
        return False
    if working.stop_price is None or planned.stop_price is None:
        return False
    if _reached(working.stop_price, markets, pos_side) is not None:
        return False
    return (working.stop_price - planned.stop_price) * pos_side.sign > 0


def plan_add(c: Ctx, steps: Steps, pos_side: Side) -> AccountPlan:
    """ADD to a ``pos_side`` position (an ``add`` alert, or ``--same-direction add``)."""
    pos = abs(c.state.net_pos)
    held = f"already {label(pos_side)} {pos}"
    if not c.s.dca and _has_exits(c, pos_side):
        why = f"{held}; adding needs --dca (without it the added contracts would have no TP/SL)"
        return AccountPlan(PositionAction.IGNORE, (), why, short=Shortfall(NEEDS_DCA, why))
    base = base_qty(c.sig.quantity, c.s.add_size)
    working = working_entries(c, pos_side)
    qty = cap_qty(scale_qty(base, c.multiplier), c.s.max_contracts, held=pos + working)
    if qty == 0:
        more = f" and {working} working" if working else ""
        capped = f"{held}{more}, at --max-contracts {c.s.max_contracts}"
        return AccountPlan(
            PositionAction.IGNORE, (), capped, short=Shortfall("max_contracts", capped)
        )
    if (too_many := over_order_limit(qty)) is not None:
        raise CannotPlan(too_many)
    entry = entry_request(c, steps.next_id(), pos_side, qty)
    steps.add("order", entry, note=f"DCA add {qty}")
    entry_step = steps.items[-1].step
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
    carried = working_stop(c, pos_side)
    carried_tp = carried_take_profits(c, pos_side, total)
    priced = _price_exits(c, pos_side, total, avg, carried, carried_tp=carried_tp)
    _cancel_exits(c, steps, pos_side)
    prior = tuple(steps.items)
    summary = _place_exits(c, steps, pos_side, total, priced)
    exits = AddExits(
        c, pos_side, pos, qty, entry_step, avg, carried, steps.prefix, prior,
        tuple(steps.items[len(prior):]), carried_tp,
    )  # fmt: skip
    return AddPlan(
        PositionAction.ADD,
        tuple(steps.items),
        f"{held}: add {qty} → {total} averaged at {avg.normalize():f}; {summary}",
        exits,
    )


@dataclass(frozen=True, slots=True)
class AddExits:
    """A DCA add's exits as planned, from an average that takes the signal price for the add's
    fill: ``reprice_add`` prices them again from the broker's average once the add shows."""

    c: Ctx
    pos_side: Side
    held: int  # the position before the add (``c.state.avg_price`` its average)
    added: int
    add_step: int  # the add's step: its fill is what the exits wait for
    estimate: Decimal  # the average the exits were planned from
    carried: StopSpec | None  # the working stop, as planned
    prefix: str  # the plan's clOrdId prefix (``Steps``)
    prior: tuple[PlannedOrder, ...]  # the steps before the exits: the add, the cancels
    exits: tuple[PlannedOrder, ...]  # the exits as planned, in step order
    carried_tp: tuple[tuple[Decimal, int], ...] = ()  # the working take-profits, as planned


@dataclass(frozen=True, slots=True)
class AddPlan(AccountPlan):
    """An ADD whose exits are priced again from the broker's average before they are sent."""

    add_exits: AddExits


@dataclass(frozen=True, slots=True)
class Repriced:
    """A DCA add's exits priced from the broker's average, step for step with the planned ones
    (same step, kind and clOrdIds). None in place of a take-profit leg the market has passed
    at the new prices: its contracts went to another leg, its step is not sent."""

    avg: Decimal
    orders: tuple[PlannedOrder | None, ...]
    summary: str


def added_fill(a: AddExits, avg: Decimal) -> Decimal | None:
    """Where the add filled, as the broker's new average says (on the nearest tick); None
    without the average it was added to."""
    before = a.c.state.avg_price
    if before is None or a.added <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        fill = (avg * (a.held + a.added) - before * a.held) / a.added
    return round_to_tick(fill, a.c.contract.tick_size, "nearest")


def reprice_add(a: AddExits, avg: Decimal) -> Repriced:
    """The exits of ``a`` priced from ``avg``, the broker's average once the add shows,
    by the same rules as planned (``_price_exits``): each level measured from the average and
    rounded toward it (a price given as such stays), and none at or past the market.

    The market is where the add filled (``added_fill``), which the plan could not know: the
    latest price there is, and the one a stop must be short of. The signal's price (its bar's
    close, perhaps long gone) still bounds the take-profits, which must be beyond both: a
    stop short of the real market is not refused for the alert's stale price.

    Raises ``CannotPlan`` as the plan would have: the caller then sends the exits as planned
    (priced from the estimate). Pure."""
    if avg <= 0:
        raise CannotPlan(f"the broker's average {avg} is not a price")
    c, total = a.c, a.held + a.added
    fill = added_fill(a, avg)
    markets = tuple(dict.fromkeys(m for m in (c.signal_price, fill) if m is not None))
    stop_markets = (fill,) if fill is not None else markets
    priced = _price_exits(
        c, a.pos_side, total, avg, a.carried, markets, stop_markets, carried_tp=a.carried_tp
    )
    steps = Steps(a.prefix, list(a.prior))
    summary = _place_exits(c, steps, a.pos_side, total, priced)
    placed = steps.items[len(a.prior) :]
    if len(placed) > len(a.exits) or any(
        (n.step, n.kind) != (o.step, o.kind) for n, o in zip(placed, a.exits, strict=False)
    ):
        # cannot be: the kinds depend on the configuration, not on the price
        raise CannotPlan("the exits priced from the broker's average are not the ones planned")
    orders = (*placed, *(None,) * (len(a.exits) - len(placed)))
    return Repriced(avg, orders, summary)


def through_market(exits: tuple[PlannedOrder, ...], pos_side: Side, market: Decimal) -> str | None:
    """Why one of ``exits`` (protecting a ``pos_side`` position) would fill or trigger at once
    at ``market``, or None: a take-profit limit at or past it, a stop at or past it. The
    exits of a DCA plan that cannot be re-priced are checked so before they go as planned:
    priced from the estimate, they closed the position an add was asked for. Pure."""
    for po in exits:
        r = po.request
        legs = (r.first, r.second) if isinstance(r, OcoRequest) else (r,)
        for o in legs:
            if not isinstance(o, OrderRequest):
                continue
            price, stop = o.price, o.stop_price
            if o.order_type is OrderType.LIMIT and price is not None:
                # a take-profit is beyond the market: short of it for the other side
                if not _short_of(price, market, pos_side.opposite):
                    return f"its take-profit {price.normalize():f} is at or past the market"
            elif stop is not None and not _short_of(stop, market, pos_side):
                return f"its stop {stop.normalize():f} is at or past the market"
    return None


def plan_reduce(c: Ctx, steps: Steps, pos_side: Side) -> AccountPlan:
    """REDUCE a ``pos_side`` position (CLOSE when the reduce is the whole position or more)."""
    pos = abs(c.state.net_pos)
    qty = scale_qty(base_qty(c.sig.quantity, c.s.size), c.multiplier)
    # only with the alert's own quantity, as for entries (``planning._opening_qty``): sized by
    # --size, the follower's position is not a share of the chart's
    after = size_after(c.sig) if c.sig.quantity else None
    if after is not None:
        # the alert says what the strategy still holds: the follower keeps its share of it, as
        # an entry of that many gives it. The order × multiplier, rounded down, left a ×1.5
        # follower twice its share (long 3, sell 1 of 2: kept 2 for the chart's 1) and closed
        # a ×0.5 one out (long 1, sell 1 of 3: flat for the chart's 2)
        share = scale_qty(after, c.multiplier)
        if share >= pos:
            why = f"holds {pos}, no more than its share ({share}) of the strategy's {after} left"
            return AccountPlan(PositionAction.NOTHING, (), f"{why}: nothing to reduce")
        qty = pos - share
    if qty >= pos:
        liquidate(c, steps)
        return AccountPlan(
            PositionAction.CLOSE, tuple(steps.items), f"reduce by {qty} ≥ position {pos}: close"
        )
    remaining = pos - qty
    ref = c.state.avg_price if c.state.avg_price is not None else c.signal_price
    priced = None
    if _has_exits(c, pos_side):
        if ref is None:
            raise CannotPlan("a reduce needs the average or signal price to re-place TP/SL")
        # the working take-profits go on for what is left (``_price_exits``); with none
        # working, the configured ladder as laid for the entry (--size × multiplier, or more:
        # a DCA add) keeps its far legs (``ladder_tail``): its near legs fill first
        laid_for = max(pos, entry_qty(None, c.s, c.multiplier))
        priced = _price_exits(
            c, pos_side, remaining, ref, working_stop(c, pos_side),
            carried_tp=carried_take_profits(c, pos_side, remaining), laid_for=laid_for,
        )  # fmt: skip
    _cancel_exits(c, steps, pos_side)
    order = req(c, pos_side.opposite, qty, OrderType.MARKET, steps.next_id())
    steps.add("order", order, note=f"reduce by {qty}")
    summary = "no exits"
    if priced is not None:
        summary = _place_exits(c, steps, pos_side, remaining, priced)
    return AccountPlan(
        PositionAction.REDUCE,
        tuple(steps.items),
        f"{label(pos_side)} {pos} reduced by {qty} to {remaining}; {summary}",
    )
