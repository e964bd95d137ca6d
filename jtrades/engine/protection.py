"""Protecting an open position with stops: how much of it its exits cover, and the orders that
cover the rest without ever closing more than is held.

Pure: (position, the account's working orders, its fills, the stop price) → decisions; the
reconciler does the I/O (``reconcile``). The rules, and the incidents behind them:

- Only live orders protect: Working, PendingNew (accepted, about to work: counting it keeps a
  second stop from doubling the exit) and PendingReplace (working while a modify is in flight).
  Suspended orders are the brackets of an entry not filled yet: they exit the contracts that
  entry will add, so they are neither counted nor touched. PendingCancel orders (and a working
  exit-side market order) are on their way out: they cover nothing but may still fill, so
  nothing is placed until they are gone.
- Suspended exit orders beside a live order on the position's own side are the brackets of an
  entry still working (a limit entry for 3 that filled 1): when it completes they activate for
  its whole quantity, on top of whatever stop we added meanwhile (a top-up stop for 1, then
  brackets for 3: stops for 4 on a long 3). So nothing is placed while they may activate
  (``activating``); the position waits like one with orders on their way out, until the entry
  fills (its brackets then cover it) or is cancelled (its brackets go with it, and the next
  pass covers what is held). A Tradovate order strategy makes its brackets only once its entry
  has filled whole, so there are no suspended orders to see: a live, partly filled entry of a
  strategy on the position's side (``WorkingOrder.bracketed``) holds protection back the same
  way (one not filled at all has no part in the position, which is protected as usual). Suspended
  exits with no live entry beside them cannot activate
  and do not hold protection back; a live entry without suspended brackets does not either:
  when it fills the position grows past its stops, which never over-closes, and the next pass
  tops up.
- Quantities are what is left to fill: Tradovate keeps a partly filled order Working with its
  full ``orderQty``, so the fills are subtracted.
- A take-profit and a stop OCO-linked to each other with the same quantity left are a pair: at
  most that many contracts exit, whichever fills. Any other limit can fill together with any stop.
- Covered means the live stops (paired or not) add up to exactly |net_pos|. Less: part of the
  position is naked (a DCA re-placement stopped after its first OCO left a stop for one leg of
  three). More: the stops alone would close more than is held.
- A position whose stops cover it exactly is left alone even beside take-profits not linked to
  them: a Tradovate bracket strategy shares one stop between its legs and links them itself,
  which the live view does not show.
- To cover: without loose take-profits and with the stops under the position, one stop tops
  up the remainder. Without loose take-profits and with stand-alone stops over it, the excess
  is taken off those stops where they stand, farthest from the market first: a stop wholly in
  excess is cancelled, the last one shrunk (``modify_order``, Stop and StopLimit only), so the
  stops left cover exactly the position and nothing is naked meanwhile; pairs are never shrunk
  (a stop smaller than its take-profit unpairs them). Otherwise every live exit is cancelled
  and the exits are re-placed the way the DCA path places them (``exit_orders``): one OCO per
  take-profit (its price and the quantity it has left, nearest the market first, trimmed to
  the position: the farthest legs give up what is over it) with its share of the stop, then
  a stop for the rest. A stand-alone stop beside working take-profits is what once turned a
  long 1 into a short 1 (TP1 filled, the 2-lot stop did not shrink).
- What is placed is sized from the view after the cancels (a take-profit may have filled
  meanwhile): never more than |net_pos| minus what the live exits could still close.
- The stop price is the live stop nearest the market when there is one (a trailed or
  breakeven stop keeps its progress), else the configured level.
- A stop placed trails (a TrailingStop from that price: it trails at once, as a DCA
  re-placement's does) when a live stop of the position is a TrailingStop, by that stop's own
  distance (the alert's, not the trader's: re-placed at the trader's 10 points, an alert's
  20-point trail was stopped out by a 15-point dip), or when the trader's stop loss trails,
  by the configured distance. Placed plain, the re-placed stop of a trailing position stopped
  trailing, and a rally it would have locked in was given back. A live trailing stop whose
  distance the view does not show, with no stop loss configured, is re-placed plain at the
  trailed level, which keeps the progress made.
- Without a stop of ours to place (no stop loss, none owed) a position is left as it is, but
  take-profits alone that would close more than is held are shrunk to it where they stand,
  farthest first (``trim_take_profits``): one for 2 left on a long 1 sold by hand flipped it
  short 1, naked, when it filled.
- A re-placement that failed after its cancels is tried again from a view that no longer shows
  what was cancelled: the retry keeps the cancelled stop's price when nearer the market and puts
  back the take-profits not placed again (``carry_over``), within the same bounds.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from jtrades.broker.base import (
    OcoRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    SubAccount,
    WorkingOrder,
)
from jtrades.engine.exit_orders import StopSpec, stop_order, take_profit_leg
from jtrades.engine.plan_context import LIVE, jtrades_exit
from jtrades.engine.planning import PlannedOrder

STOP_TYPES = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})
TEXT = "protective stop"  # shown with the orders at the broker


@dataclass(frozen=True, slots=True)
class ExitBook:
    """The exit side of one position as the broker shows it."""

    net_pos: int
    pairs: tuple[tuple[WorkingOrder, WorkingOrder], ...] = ()  # (take-profit, stop), OCO
    stops: tuple[WorkingOrder, ...] = ()  # live stops outside a pair
    limits: tuple[WorkingOrder, ...] = ()  # live take-profits outside a pair
    leaving: tuple[WorkingOrder, ...] = ()  # PendingCancel / market: may fill, cover nothing
    activating: tuple[WorkingOrder, ...] = ()  # suspended brackets of an entry still working
    filled: Mapping[int, int] = field(default_factory=dict)

    def left(self, order: WorkingOrder) -> int:
        """Contracts ``order`` can still fill."""
        return max(0, order.qty - self.filled.get(order.order_id, 0))

    @property
    def coverage(self) -> int:
        """Contracts the live stops would close."""
        return sum(self.left(s) for _, s in self.pairs) + sum(self.left(s) for s in self.stops)

    @property
    def exposure(self) -> int:
        """The most the live exits could close together (a pair counts once)."""
        return self.coverage + sum(self.left(lim) for lim in self.limits)

    @property
    def live_ids(self) -> tuple[int, ...]:
        return (
            *(o.order_id for pair in self.pairs for o in pair),
            *(o.order_id for o in self.stops),
            *(o.order_id for o in self.limits),
        )

    @property
    def needs_protection(self) -> bool:
        """Open, and its live stops do not add up to exactly the position."""
        return self.net_pos != 0 and self.coverage != abs(self.net_pos)


def exit_book(
    position: Position, working: Sequence[WorkingOrder], filled: Mapping[int, int]
) -> ExitBook:
    """Sort ``position``'s exit-side orders (same account and contract) into pairs, stand-alone
    stops, loose take-profits, orders on their way out and brackets that may still activate;
    orders of another account, contract or side, other suspended orders and finished orders are
    left out (never touched)."""
    net = position.net_pos
    if net == 0:
        return ExitBook(0, filled=filled)
    exit_side = Side.SELL if net > 0 else Side.BUY
    book = ExitBook(net, filled=filled)
    here = [
        o
        for o in working
        if o.account_id == position.account_id and o.symbol == position.symbol and book.left(o) > 0
    ]
    mine = [o for o in here if o.side is exit_side]
    entering = [o for o in here if o.side is not exit_side and o.status in LIVE]
    activating = (
        *(o for o in mine if o.status is OrderStatus.SUSPENDED and entering),
        # a Tradovate strategy's entry that made part of this position: its brackets come when
        # it has filled whole (one not filled yet leaves the position's own protection alone)
        *(o for o in entering if o.bracketed and filled.get(o.order_id, 0) > 0),
    )
    leaving = [
        o
        for o in mine
        if o.status is OrderStatus.PENDING_CANCEL
        or (o.status in LIVE and o.order_type is OrderType.MARKET)
    ]
    live = [o for o in mine if o.status in LIVE and o.order_type is not OrderType.MARKET]
    stops = {o.order_id: o for o in live if o.order_type in STOP_TYPES}
    limits = [o for o in live if o.order_type is OrderType.LIMIT]
    pairs: list[tuple[WorkingOrder, WorkingOrder]] = []
    loose: list[WorkingOrder] = []
    for lim in limits:
        partner = stops.get(lim.oco_id) if lim.oco_id is not None else None
        if partner is None:
            partner = next((s for s in stops.values() if s.oco_id == lim.order_id), None)
        if partner is not None and book.left(partner) == book.left(lim):
            pairs.append((lim, partner))
            del stops[partner.order_id]
        else:
            loose.append(lim)
    return ExitBook(
        net,
        tuple(pairs),
        tuple(stops.values()),
        tuple(loose),
        tuple(leaving),
        tuple(activating),
        filled,
    )


@dataclass(frozen=True, slots=True)
class TakeProfit:
    """A take-profit to re-place: its order (to count its fills), price and full quantity."""

    order_id: int
    price: Decimal
    qty: int


@dataclass(frozen=True, slots=True)
class Shrink:
    """A stop modified to exit fewer contracts: ``qty`` is its new full quantity (filled
    contracts included, as the broker counts it), its type and prices as they are."""

    order_id: int
    qty: int
    order_type: OrderType
    price: Decimal | None
    stop_price: Decimal | None


@dataclass(frozen=True, slots=True)
class Protection:
    """What covers a position: cancel these live exits first (and wait until they are gone),
    then place ``protection_orders`` from the view as it is then. ``trim_only``: cancelling
    ``cancel`` and modifying ``shrink`` alone make the stops cover the position; nothing is
    waited for or placed."""

    exit_side: Side
    cancel: tuple[int, ...]
    take_profits: tuple[TakeProfit, ...]  # nearest the market first
    stop_price: Decimal
    reason: str
    shrink: tuple[Shrink, ...] = ()
    trim_only: bool = False
    # a failed attempt's, carried to its retry: the take-profits it placed again (their new
    # orders) and every order id it placed, which the retry waits to see in the view
    replaced: tuple[TakeProfit, ...] = ()
    placed: tuple[int, ...] = ()
    # the pegDifference of the stops placed (signed points, on the protective side: below the
    # market for a sell stop): they trail; None: plain stops
    trail: Decimal | None = None


def plan_protection(
    book: ExitBook, configured_stop: Decimal, *, trail_by: Decimal | None = None,
    trailing: bool = False,
) -> Protection | None:  # fmt: skip
    """How to cover ``book``'s position (module docstring); None when it is covered, flat, or
    has orders on their way out or brackets that may still activate (decided once they are
    gone or working). ``trail_by``: the configured stop-loss distance (points, on the tick;
    None without a stop loss); ``trailing``: the trader's stop loss trails."""
    if not book.needs_protection or book.leaving or book.activating:
        return None
    held = abs(book.net_pos)
    long = book.net_pos > 0
    exit_side = Side.SELL if long else Side.BUY
    live_stops = [s for _, s in book.pairs] + list(book.stops)
    prices = [s.stop_price for s in live_stops if s.stop_price is not None]
    stop_price = (max(prices) if long else min(prices)) if prices else configured_stop
    # a live trailing stop's own distance first (the alert's, which may not be the trader's),
    # else the configured one when the trader's stop loss trails or a live stop does
    trailing_stops = [s for s in live_stops if s.order_type is OrderType.TRAILING_STOP]
    distance = next((s.trail for s in trailing_stops if s.trail is not None), None)
    if distance is None and (trailing or trailing_stops):
        distance = trail_by
    trail = None if distance is None else (-distance if long else distance)
    coverage = book.coverage
    if not book.limits and coverage < held:
        return Protection(
            exit_side, (), (), stop_price, f"stops cover {coverage} of {held}: stop the rest",
            trail=trail,
        )  # fmt: skip
    if not book.limits and coverage > held:
        trim = _trim(book, coverage - held, long)
        if trim is not None:
            cancel, shrink = trim
            return Protection(
                exit_side, cancel, (), stop_price,
                f"stops for {coverage} would close more than the {held} held: shrink them",
                shrink, trim_only=True, trail=trail,
            )  # fmt: skip
    tps = [
        TakeProfit(lim.order_id, lim.price, lim.qty)
        for lim in [*(tp for tp, _ in book.pairs), *book.limits]
        if lim.price is not None
    ]
    tps.sort(key=lambda tp: tp.price if long else -tp.price)
    why = (
        f"stops for {coverage} would close more than the {held} held"
        if coverage > held
        else f"stops cover {coverage} of {held} beside take-profits not linked to them"
    )
    return Protection(
        exit_side, book.live_ids, tuple(tps), stop_price, f"{why}: re-place", trail=trail
    )


def trim_take_profits(book: ExitBook) -> Protection | None:
    """With no stop of ours to place (no stop loss, none owed) and no stops at all: the live
    take-profits jtrades placed (``jtrades_exit``: a limit placed by hand is left alone), when
    they would close more than is held, shrunk to the position where they
    stand, farthest from the market first (a wholly excess one cancelled, the last shrunk).
    A take-profit for 2 left on a long 1 (sold by hand) flipped it short 1 when it filled,
    unprotected. None when they do not exceed it, or orders are leaving or activating."""
    if book.net_pos == 0 or book.coverage or book.leaving or book.activating:
        return None
    held = abs(book.net_pos)
    ours = [lim for lim in book.limits if jtrades_exit(lim)]  # one placed by hand is the user's
    excess = sum(book.left(lim) for lim in ours) - held
    if excess <= 0:
        return None
    long = book.net_pos > 0
    # a long's take-profits sell above the market: the farthest is the highest
    far = sorted(ours, key=lambda lim: (lim.price or Decimal(0)) * (-1 if long else 1))
    cancel: list[int] = []
    shrink: tuple[Shrink, ...] = ()
    for lim in far:
        left = book.left(lim)
        if left <= excess:
            cancel.append(lim.order_id)
            excess -= left
        else:
            shrink = (Shrink(lim.order_id, lim.qty - excess, lim.order_type, lim.price, None),)
            excess = 0
        if excess == 0:
            break
    exit_side = Side.SELL if long else Side.BUY
    return Protection(
        exit_side, tuple(cancel), (), Decimal(0),
        f"take-profits would close more than the {held} held: shrink them",
        shrink, trim_only=True,
    )  # fmt: skip


def carry_over(plan: Protection, before: Protection, book: ExitBook) -> Protection:
    """``plan`` for a re-placement tried again after ``before`` cancelled the exits and failed
    half way: what the view shows no longer holds what was cancelled. The stop keeps the price
    ``before`` had when that is nearer the market (a trailed or breakeven level is not given up
    to the configured one), and its take-profits not placed again since (``before.replaced``,
    whether still live or filled since, and other live ones, matched by price and quantity)
    come back with what they had left (``book.filled`` must count their fills). Matched only
    against live orders, one placed again that then filled was put back a second time. A trim
    is left as it is: nothing was cancelled for it."""
    if plan.trim_only or plan.exit_side is not before.exit_side:
        return plan
    long = plan.exit_side is Side.SELL
    stop = (
        max(plan.stop_price, before.stop_price) if long else min(plan.stop_price, before.stop_price)
    )
    # placed again: what the attempt re-placed (live, filled or gone since), and other live
    # take-profits at the price
    live: dict[Decimal, int] = {}
    for again_tp in before.replaced:
        live[again_tp.price] = live.get(again_tp.price, 0) + again_tp.qty
    replaced = {again_tp.order_id for again_tp in before.replaced}
    for lim in [*(tp for tp, _ in book.pairs), *book.limits]:
        if lim.price is not None and lim.order_id not in replaced:
            live[lim.price] = live.get(lim.price, 0) + book.left(lim)
    back: list[TakeProfit] = []
    for tp in before.take_profits:
        again = min(live.get(tp.price, 0), tp.qty)
        live[tp.price] = live.get(tp.price, 0) - again
        if tp.qty - again > 0:
            back.append(dataclasses.replace(tp, qty=tp.qty - again) if again else tp)
    known = {tp.order_id for tp in plan.take_profits}
    tps = [*plan.take_profits, *(tp for tp in back if tp.order_id not in known)]
    tps.sort(key=lambda tp: tp.price if long else -tp.price)
    return dataclasses.replace(plan, stop_price=stop, take_profits=tuple(tps))


def _trim(
    book: ExitBook, excess: int, long: bool
) -> tuple[tuple[int, ...], tuple[Shrink, ...]] | None:
    """Take ``excess`` contracts off the stand-alone stops, farthest from the market first:
    (stops to cancel, the stop to shrink), or None when they cannot give that much. A
    TrailingStop is not shrunk (``modify_order`` carries no peg): it is cancelled and
    re-placed, trailing (``Protection.trail``)."""
    sign = 1 if long else -1
    far = sorted(
        book.stops, key=lambda s: (s.stop_price is not None, (s.stop_price or Decimal(0)) * sign)
    )
    cancel: list[int] = []
    for s in far:
        left = book.left(s)
        if left <= excess:
            cancel.append(s.order_id)
            excess -= left
        elif s.order_type in (OrderType.STOP, OrderType.STOP_LIMIT):
            shrunk = Shrink(s.order_id, s.qty - excess, s.order_type, s.price, s.stop_price)
            return tuple(cancel), (shrunk,)
        if excess == 0:
            return tuple(cancel), ()
    return None


def protection_orders(
    book: ExitBook,
    plan: Protection,
    *,
    account: SubAccount,
    symbol: str,
    prefix: str,
    first_step: int = 1,
) -> list[PlannedOrder]:
    """The orders that cover ``book``'s position (read after ``plan.cancel`` went) as steps
    numbered from ``first_step`` (clOrdIds ``{prefix}-{step}``, an OCO's stop ``…b``): one OCO
    per take-profit with what it has left, then a stop for the rest (trailing by
    ``plan.trail`` when set, else plain), all within what no live exit can close yet. Nothing when the position went flat or changed side, or orders
    are still on their way out or brackets may still activate."""
    net = book.net_pos
    if (
        plan.trim_only
        or net == 0
        or (net > 0) != (plan.exit_side is Side.SELL)
        or book.leaving
        or book.activating
    ):
        return []
    held = abs(net)
    room = held - book.exposure  # contracts no live exit can close
    need = held - book.coverage
    stop = (
        StopSpec(OrderType.STOP, plan.stop_price)
        if plan.trail is None
        else StopSpec(OrderType.TRAILING_STOP, plan.stop_price, peg=plan.trail)
    )
    out: list[PlannedOrder] = []
    for tp in plan.take_profits:
        q = min(tp.qty - book.filled.get(tp.order_id, 0), room, need)
        if q <= 0:
            continue
        step = first_step + len(out)
        leg = take_profit_leg(
            account, symbol, plan.exit_side, q, tp.price, stop, f"{prefix}-{step}",
            f"{prefix}-{step}b", TEXT,
        )  # fmt: skip
        assert isinstance(leg, OcoRequest)
        out.append(PlannedOrder(step, "oco", leg, note="take-profit leg with its stop"))
        room, need = room - q, need - q
    rest = min(room, need)
    if rest > 0:
        step = first_step + len(out)
        req = stop_order(account, symbol, plan.exit_side, rest, stop, f"{prefix}-{step}", TEXT)
        out.append(PlannedOrder(step, "order", req, note="protective stop"))
    return out
