"""Order planning: what one signal does to one sub-account's position, as ordered steps.

Pure: (raw signal, the trader's effective settings, the account's multiplier, sub-account,
contract, that account's live position and working orders) → ``AccountPlan``. DESIGN.md §2
"What a signal does to a sub-account's position" is the spec; in short:

==================  ==========  ===========================  ===========================
signal              flat        long                         short
==================  ==========  ===========================  ===========================
buy                 OPEN        IGNORE / ADD / REENTER       REVERSE (CLOSE if no longs)
sell                OPEN        REVERSE (CLOSE if no shorts) IGNORE / ADD / REENTER
close / mp flat     NOTHING¹    CLOSE                        CLOSE
sell + mp long      NOTHING     REDUCE (CLOSE if ≥ pos)      NOTHING
buy + mp short      NOTHING     NOTHING                      REDUCE (CLOSE if ≥ pos)
add (TradersPost)   IGNORE      ADD (long side)              ADD (short side)
cancel              NOTHING     CANCEL (working orders)      CANCEL
==================  ==========  ===========================  ===========================

¹ CANCEL when this account still has orders working on the contract: a resting limit entry
would open a position after the strategy closed (a CLOSE's liquidation cancels them too).

``--inverse`` swaps buy/sell and long/short first (``filters.apply_inverse``); ``--direction``
forbids opening a side: flat → IGNORE, a reversal into it → CLOSE only. A buy/sell whose entry
another filter refused (window, cooldown, max signals, daily loss, the kill switch…) is planned
the same way: an opposite position is closed, nothing opens or adds (``entry_refused``).

Decisions worth knowing:

- Steps run in order; each order's ``cl_ord_id`` is ``f"{cl_ord_prefix}-{step}"`` (an OCO's second
  order ``…-{step}b``), so the same inputs always give the same ids (money rule 2).
- ``liquidate`` steps carry an ``OrderRequest`` describing the flattening (exit side, the whole
  position, market) for the intent row; the broker's liquidate also cancels the contract's
  working orders.
- OPEN is one ``strategy`` (entry + one bracket per TP leg with the same stop), or a plain
  ``order`` when there is neither TP nor SL. The entry is market unless the alert asks for a
  limit, stop or stop-limit (``entries``); price-level exits are measured from that entry's
  expected fill, never from the signal price of an entry resting elsewhere.
- Quantities: OPEN uses the webhook's quantity (none or 0: ``--size``), ADD the webhook's quantity
  (none or 0: ``--add-size``), × multiplier (floor, ≥ 1); ``--max-contracts`` caps the whole
  position, entries still working on its side included (a limit entry not filled yet), so an
  entry or add at the cap is IGNOREd.
- Exit units: dollars are per contract (every follower's stop at the same price whatever its
  multiplier); trail trigger/frequency, breakeven and its offset are read in ``--sl-units``
  (an alert's own trail trigger/frequency in its stop's units, ``exits``).
  Breakeven travels on the strategy bracket: the paper broker applies it; the Tradovate client
  refuses it (no documented bracket field), so the order fails closed with that reason.
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
  trailing or breakeven goes back to its configured level). If nothing is configured, the
  existing protective stop is carried over at its price for the new quantity.
- Every exit price is on the tick and rounded toward the entry (``sizing``): a fractional average
  such as 21500.0833… gives a TP no farther and a stop no wider than configured.
- A plan that cannot be made safely (a percent or price-level exit without a signal price, a
  level on the wrong side, an entry missing its price) is IGNORE with a reason starting
  "cannot plan"; a reversal that cannot open still closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from enum import StrEnum
from typing import Literal

from jtrades.broker.base import (
    Contract,
    OcoRequest,
    OrderRequest,
    OrderType,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.engine.entries import entry_order, expected_fill
from jtrades.engine.exit_orders import StopSpec, stop_order, take_profit_leg
from jtrades.engine.exits import CannotPlan, as_distance, as_price, resolve_exits
from jtrades.engine.filters import apply_inverse, is_reduce
from jtrades.engine.risk import Direction, RiskSettings
from jtrades.engine.signal import Action, MarketPosition, Signal
from jtrades.engine.sizing import (
    cap_qty,
    entry_qty,
    round_distance,
    scale_qty,
)

MAX_CL_ORD_ID = 64


class PositionAction(StrEnum):
    OPEN = "open"
    ADD = "add"
    REENTER = "reenter"
    REVERSE = "reverse"
    REDUCE = "reduce"
    CLOSE = "close"
    CANCEL = "cancel"  # TradersPost ``cancel``: cancel working orders, keep the position
    NOTHING = "nothing"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class AccountState:
    """This sub-account's position in this contract and its working orders on this contract.

    Orders of another account or contract found here are ignored, never cancelled (money rule 5).
    """

    net_pos: int
    avg_price: Decimal | None
    working: tuple[WorkingOrder, ...] = ()


PlanKind = Literal["order", "oco", "strategy", "liquidate", "cancel"]


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    step: int
    kind: PlanKind
    request: OrderRequest | OcoRequest | StrategyRequest | None
    cancel_order_id: int | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class AccountPlan:
    action: PositionAction
    orders: tuple[PlannedOrder, ...]
    reason: str


@dataclass(slots=True)
class _Steps:
    prefix: str
    items: list[PlannedOrder] = field(default_factory=list)

    def next_id(self, suffix: str = "") -> str:
        cl = f"{self.prefix}-{len(self.items) + 1}{suffix}"
        if len(cl) > MAX_CL_ORD_ID:
            raise ValueError(f"clOrdId {cl!r} is longer than {MAX_CL_ORD_ID} characters")
        return cl

    def add(
        self,
        kind: PlanKind,
        request: OrderRequest | OcoRequest | StrategyRequest | None,
        *,
        cancel_order_id: int | None = None,
        note: str = "",
    ) -> None:
        step = len(self.items) + 1
        self.items.append(PlannedOrder(step, kind, request, cancel_order_id, note))


@dataclass(frozen=True, slots=True)
class _Ctx:
    sig: Signal
    s: RiskSettings
    multiplier: Decimal
    account: SubAccount
    contract: Contract
    state: AccountState
    signal_price: Decimal | None
    refused: str | None = None  # a filter refused the entry: ``_refused_entry``


# --- building blocks -----------------------------------------------------------------------


def _own_working(c: _Ctx) -> list[WorkingOrder]:
    """Open orders of this sub-account on this contract (anything else is not ours to touch)."""
    cid = c.contract.contract_id
    return [
        w
        for w in c.state.working
        if w.status.is_open
        and w.account_id == c.account.account_id
        and (w.contract_id == cid if cid is not None else w.symbol == c.contract.symbol)
    ]


def _exit_working(c: _Ctx, pos_side: Side) -> list[WorkingOrder]:
    return [w for w in _own_working(c) if w.side is pos_side.opposite]


def _working_entries(c: _Ctx, side: Side) -> int:
    """Contracts of this sub-account's working orders on ``side`` (flat, or a ``side``
    position): a limit or stop entry not filled yet, which would add to the position if it
    did. ``--max-contracts`` counts them as held."""
    return sum(w.qty for w in _own_working(c) if w.side is side)


def _side_allowed(side: Side, direction: Direction) -> bool:
    if direction is Direction.BOTH:
        return True
    return (side is Side.BUY) == (direction is Direction.LONG)


def _label(side: Side) -> str:
    return "long" if side is Side.BUY else "short"


def _req(
    c: _Ctx,
    side: Side,
    qty: int,
    kind: OrderType,
    cl: str,
    *,
    price: Decimal | None = None,
    stop: Decimal | None = None,
    peg: Decimal | None = None,
) -> OrderRequest:
    """A DAY order of this sub-account on this contract (entries, closes; the exits of a held
    position are GTC, ``exit_orders``)."""
    return OrderRequest(
        c.account, c.contract.symbol, side, qty, kind, cl_ord_id=cl, price=price,
        stop_price=stop, peg_difference=peg, time_in_force=TimeInForce.DAY,
    )  # fmt: skip


def _entry_request(c: _Ctx, cl: str, side: Side, qty: int) -> OrderRequest:
    """Market entry, or the alert's limit/stop/stop-limit entry on the tick (``entries``)."""
    e = entry_order(c.sig, side, c.contract.tick_size)
    return _req(c, side, qty, e.kind, cl, price=e.price, stop=e.stop)


def _liquidate(c: _Ctx, steps: _Steps) -> None:
    pos = c.state.net_pos
    side = Side.SELL if pos > 0 else Side.BUY
    req = _req(c, side, abs(pos), OrderType.MARKET, steps.next_id())
    steps.add("liquidate", req, note=f"flatten {pos:+d} and cancel the contract's working orders")


_POSITION_SIZE_KEYS = frozenset(
    {"positionsize", "marketpositionsize", "strategypositionsize", "strategymarketpositionsize"}
)


_OTHER_SIDE = {MarketPosition.LONG: MarketPosition.SHORT, MarketPosition.SHORT: MarketPosition.LONG}


def _opening_qty(sig: Signal) -> int | None:
    """The webhook's quantity for a new position.

    TradingView's ``{{strategy.order.contracts}}`` on a reversal counts the closing contracts
    too (long 1 → short 1 is an order of 2), and we close by liquidating, so opening that many
    would double the position. When the alert also carries the position size after the order
    (``{{strategy.market_position_size}}``, any spelling, kept in ``Signal.extra``) and a target
    side, that size is the quantity to open. Without it, an alert that says it reverses (its
    previous position the other side) cannot be sized: refused, so a reversal only closes.
    """
    if sig.market_position not in (MarketPosition.LONG, MarketPosition.SHORT):
        return sig.quantity
    for key, value in sig.extra.items():
        if not isinstance(key, str) or isinstance(value, bool):
            continue
        if "".join(ch for ch in key.lower() if ch not in "_- .") not in _POSITION_SIZE_KEYS:
            continue
        try:
            size = abs(Decimal(str(value)))
        except ArithmeticError:
            continue
        if size.is_finite() and size >= 1 and size == size.to_integral_value():
            return int(size)
    if sig.quantity is not None and sig.prev_market_position is _OTHER_SIDE[sig.market_position]:
        raise CannotPlan(
            f"the alert reverses from {sig.prev_market_position} with quantity {sig.quantity},"
            " which counts the contracts it closes too: add"
            ' "market_position_size": "{{strategy.market_position_size}}" to the alert'
        )
    return sig.quantity


def _open(c: _Ctx, steps: _Steps, side: Side, working: int = 0) -> int:
    """Entry + TP ladder + SL as one strategy (or a plain order with no exits); returns qty.
    ``working``: contracts of entries still working on ``side`` (the cap must leave room)."""
    qty = cap_qty(entry_qty(_opening_qty(c.sig), c.s, c.multiplier), c.s.max_contracts, working)
    entry = _entry_request(c, steps.next_id(), side, qty)
    ref = expected_fill(entry, c.signal_price)
    exits = resolve_exits(c, qty, ref)
    if exits.empty:
        steps.add("order", entry, note="entry without TP/SL")
        return qty
    d = side.sign
    sl_points = as_distance(exits.sl, ref, -d, c, "the stop-loss") if exits.sl is not None else None
    legs = exits.tp or ((None, qty),)
    brackets = tuple(
        StrategyBracket(
            qty=q,
            profit_target=d * as_distance(level, ref, d, c, "the take-profit")
            if level is not None
            else None,
            stop_loss=-d * sl_points if sl_points is not None else None,
            trailing_stop=exits.trailing,
            trail_trigger=exits.trail_trigger,
            trail_freq=exits.trail_freq,
            breakeven=exits.breakeven,
            breakeven_offset=exits.breakeven_offset,
        )
        for level, q in legs
    )
    steps.add("strategy", StrategyRequest(entry, brackets), note=f"{len(brackets)} bracket(s)")
    return qty


def _place_exits(
    c: _Ctx, steps: _Steps, pos_side: Side, total: int, ref: Decimal, carried: WorkingOrder | None
) -> str:
    """Absolute GTC TP/SL orders for a position of ``total`` averaged at ``ref``; a summary.

    One ``oco`` per TP leg (limit for its contracts + a stop for the same contracts), so the
    stop shrinks as legs fill; plain limits without a stop; one stop without TPs.
    """
    exits = resolve_exits(c, total, ref)
    exit_side, d, tick = pos_side.opposite, pos_side.sign, c.contract.tick_size
    if exits.empty:
        if carried is None or carried.stop_price is None:
            return "no exits"
        # A carried trailing stop goes back as a plain stop at its current level: its trail
        # distance is not in the live view, and a TrailingStop without one would be refused.
        kind = (
            OrderType.STOP if carried.order_type is OrderType.TRAILING_STOP else carried.order_type
        )
        carry = StopSpec(kind, carried.stop_price, carried.price)
        req = stop_order(c.account, c.contract.symbol, exit_side, total, carry, steps.next_id())
        steps.add("order", req, note="protective stop carried over")
        return f"stop carried over at {carried.stop_price}"

    def stop() -> StopSpec | None:
        # priced after the first take-profit, as it always was: which "cannot plan" reason
        # an alert with two bad levels gets stays the same
        if exits.sl is None:
            return None
        price = as_price(exits.sl, ref, -d, c, "the stop-loss")
        if exits.trailing:
            peg = -d * round_distance(abs(ref - price), tick)
            return StopSpec(OrderType.TRAILING_STOP, price, peg=peg)
        return StopSpec(OrderType.STOP, price)

    if not exits.tp:
        sl = stop()
        assert sl is not None
        only = stop_order(c.account, c.contract.symbol, exit_side, total, sl, steps.next_id())
        steps.add("order", only, note="stop for the whole position")
        return f"stop {only.stop_price} for {total}"
    parts = []
    sl = None
    for i, (level, q) in enumerate(exits.tp):
        tp_price = as_price(level, ref, d, c, "the take-profit")
        if i == 0:
            sl = stop()
        leg = take_profit_leg(c.account, c.contract.symbol, exit_side, q, tp_price, sl,
                              steps.next_id(), steps.next_id("b"))  # fmt: skip
        if isinstance(leg, OcoRequest):
            steps.add("oco", leg, note="take-profit leg with its stop")
        else:
            steps.add("order", leg, note="take-profit leg")
        parts.append(f"{q}@{tp_price}")
    sl_text = f", stop {sl.stop_price}" if sl is not None else ""
    return f"TP {' '.join(parts)}{sl_text}"


def _cancel_exits(c: _Ctx, steps: _Steps, pos_side: Side) -> WorkingOrder | None:
    """Cancel the working exits; return the protective stop nearest the market, to carry over."""
    carried: WorkingOrder | None = None
    for w in _exit_working(c, pos_side):
        steps.add("cancel", None, cancel_order_id=w.order_id, note=f"{w.order_type} {w.qty}")
        if w.stop_price is not None and (
            carried is None
            or carried.stop_price is None
            or (w.stop_price - carried.stop_price) * pos_side.sign > 0
        ):
            carried = w
    return carried


def _has_exits(c: _Ctx, pos_side: Side) -> bool:
    s, sig = c.s, c.sig
    configured = bool(s.tp or s.sl > 0 or sig.take_profit or sig.stop_loss)
    return configured or bool(_exit_working(c, pos_side))


# --- the table -----------------------------------------------------------------------------


def _add(c: _Ctx, steps: _Steps, pos_side: Side) -> AccountPlan:
    pos = abs(c.state.net_pos)
    held = f"already {_label(pos_side)} {pos}"
    if not c.s.dca and _has_exits(c, pos_side):
        return AccountPlan(
            PositionAction.IGNORE,
            (),
            f"{held}; adding needs --dca (without it the added contracts would have no TP/SL)",
        )
    base = c.sig.quantity if c.sig.quantity is not None and c.sig.quantity > 0 else c.s.add_size
    working = _working_entries(c, pos_side)
    qty = cap_qty(scale_qty(base, c.multiplier), c.s.max_contracts, held=pos + working)
    if qty == 0:
        more = f" and {working} working" if working else ""
        return AccountPlan(
            PositionAction.IGNORE, (), f"{held}{more}, at --max-contracts {c.s.max_contracts}"
        )
    entry = _entry_request(c, steps.next_id(), pos_side, qty)
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


def _reduce(c: _Ctx, steps: _Steps, pos_side: Side) -> AccountPlan:
    pos = abs(c.state.net_pos)
    base = c.sig.quantity if c.sig.quantity is not None and c.sig.quantity > 0 else c.s.size
    qty = scale_qty(base, c.multiplier)
    if qty >= pos:
        _liquidate(c, steps)
        return AccountPlan(
            PositionAction.CLOSE, tuple(steps.items), f"reduce by {qty} ≥ position {pos}: close"
        )
    remaining = pos - qty
    ref = c.state.avg_price if c.state.avg_price is not None else c.signal_price
    carried = _cancel_exits(c, steps, pos_side)
    req = _req(c, pos_side.opposite, qty, OrderType.MARKET, steps.next_id())
    steps.add("order", req, note=f"reduce by {qty}")
    summary = "no exits"
    if _has_exits(c, pos_side):
        if ref is None:
            raise CannotPlan("a reduce needs the average or signal price to re-place TP/SL")
        summary = _place_exits(c, steps, pos_side, remaining, ref, carried)
    return AccountPlan(
        PositionAction.REDUCE,
        tuple(steps.items),
        f"{_label(pos_side)} {pos} reduced by {qty} to {remaining}; {summary}",
    )


def _entry(c: _Ctx, steps: _Steps, side: Side) -> AccountPlan:
    """buy/sell: open, same-direction rule, or reversal."""
    pos, s = c.state.net_pos, c.s
    allowed = _side_allowed(side, s.direction)
    off = f"{_label(side)} entries are off (--direction {s.direction})"
    if pos == 0:
        if not allowed:
            return AccountPlan(PositionAction.IGNORE, (), f"direction: {off}")
        working = _working_entries(c, side)
        if cap_qty(1, s.max_contracts, held=working) == 0:
            return AccountPlan(
                PositionAction.IGNORE,
                (),
                f"flat with {working} {_label(side)} contract(s) of entries working,"
                f" at --max-contracts {s.max_contracts}",
            )
        qty = _open(c, steps, side, working)
        more = f" ({working} more working)" if working else ""
        return AccountPlan(
            PositionAction.OPEN, tuple(steps.items), f"open {_label(side)} {qty}{more}"
        )
    pos_side = Side.BUY if pos > 0 else Side.SELL
    if pos_side is side:
        held = f"already {_label(side)} {abs(pos)}"
        if not allowed:
            return AccountPlan(PositionAction.IGNORE, (), f"direction: {off}; {held}")
        if s.same_direction == "ignore":
            return AccountPlan(PositionAction.IGNORE, (), f"{held} (--same-direction ignore)")
        if s.same_direction == "add":
            return _add(c, steps, side)
        _liquidate(c, steps)
        qty = _open(c, steps, side)
        return AccountPlan(
            PositionAction.REENTER, tuple(steps.items), f"{held}: close, open {qty} fresh"
        )
    _liquidate(c, steps)
    was = f"{_label(pos_side)} {abs(pos)}"
    if not allowed:
        return AccountPlan(PositionAction.CLOSE, tuple(steps.items), f"close {was}; {off}")
    try:
        qty = _open(c, steps, side)
    except CannotPlan as e:
        del steps.items[1:]
        return AccountPlan(
            PositionAction.CLOSE, tuple(steps.items), f"close {was}; cannot plan the reversal: {e}"
        )
    return AccountPlan(
        PositionAction.REVERSE,
        tuple(steps.items),
        f"reverse: close {was}, open {_label(side)} {qty}",
    )


def _refused_entry(c: _Ctx, steps: _Steps, refused: str) -> AccountPlan:
    """A buy/sell/add whose entry a filter refused: only a reversal's close half is left."""
    pos, action = c.state.net_pos, c.sig.action
    if pos == 0:
        return AccountPlan(PositionAction.IGNORE, (), f"flat; {refused}")
    pos_side = Side.BUY if pos > 0 else Side.SELL
    held = f"{_label(pos_side)} {abs(pos)}"
    if action is Action.ADD or (action is Action.BUY) == (pos_side is Side.BUY):
        return AccountPlan(PositionAction.IGNORE, (), f"{held} kept; {refused}")
    _liquidate(c, steps)
    return AccountPlan(PositionAction.CLOSE, tuple(steps.items), f"close {held}; {refused}")


def _cancel_working(steps: _Steps, working: list[WorkingOrder], why: str) -> AccountPlan:
    for w in working:
        steps.add("cancel", None, cancel_order_id=w.order_id, note=f"{w.order_type} {w.qty}")
    reason = f"{why}cancel {len(working)} working order(s)"
    return AccountPlan(PositionAction.CANCEL, tuple(steps.items), reason)


def _plan(c: _Ctx, steps: _Steps) -> AccountPlan:
    sig, pos = c.sig, c.state.net_pos
    pos_side = Side.BUY if pos > 0 else Side.SELL
    if sig.action is Action.CANCEL:
        working = _own_working(c)
        if not working:
            return AccountPlan(PositionAction.NOTHING, (), "no working orders to cancel")
        return _cancel_working(steps, working, "")
    if sig.is_close:
        if pos == 0:
            # a limit entry still resting would open a position after the strategy closed
            working = _own_working(c)
            if not working:
                return AccountPlan(PositionAction.NOTHING, (), "already flat")
            return _cancel_working(steps, working, "already flat: ")
        _liquidate(c, steps)
        return AccountPlan(
            PositionAction.CLOSE, tuple(steps.items), f"close {_label(pos_side)} {abs(pos)}"
        )
    if is_reduce(sig):
        target = Side.BUY if sig.action is Action.SELL else Side.SELL  # the side being reduced
        if pos == 0:
            return AccountPlan(PositionAction.NOTHING, (), "already flat: nothing to reduce")
        if pos_side is not target:
            return AccountPlan(
                PositionAction.NOTHING,
                (),
                f"position is {_label(pos_side)}: a reduce of a {_label(target)} does nothing",
            )
        return _reduce(c, steps, pos_side)
    if c.refused is not None:
        return _refused_entry(c, steps, c.refused)
    if sig.action is Action.ADD:
        if pos == 0:
            return AccountPlan(PositionAction.IGNORE, (), "add with no open position")
        if not _side_allowed(pos_side, c.s.direction):
            off = f"{_label(pos_side)} entries are off (--direction {c.s.direction})"
            return AccountPlan(PositionAction.IGNORE, (), f"direction: {off}")
        return _add(c, steps, pos_side)
    side = Side.BUY if sig.action is Action.BUY else Side.SELL
    return _entry(c, steps, side)


def plan_account(
    signal: Signal,
    s: RiskSettings,
    multiplier: Decimal,
    account: SubAccount,
    contract: Contract,
    state: AccountState,
    *,
    signal_price: Decimal | None,
    cl_ord_prefix: str,
    entry_refused: str | None = None,
) -> AccountPlan:
    """What ``signal`` (raw, as received) does to this sub-account, as ordered steps.

    ``s`` are the trader's effective settings, ``multiplier`` the sub-account's size multiplier,
    ``contract`` the resolved contract (its tick size and point value are the ones used: GC and
    MGC differ), ``state`` this account's position and working orders on this contract.
    ``entry_refused`` is why a filter refused a buy/sell's entry (``filter: reason``): the plan
    then closes an opposite position and opens nothing (``filters.Rejection.entry_only``).
    Raises ``ValueError`` for a caller's mistake (multiplier ≤ 0, a clOrdId over 64 characters).
    """
    if multiplier <= 0:
        raise ValueError(f"multiplier must be > 0, got {multiplier}")
    c = _Ctx(
        apply_inverse(signal, s.inverse),
        s,
        multiplier,
        account,
        contract,
        state,
        signal_price,
        entry_refused,
    )
    try:
        return _plan(c, _Steps(cl_ord_prefix))
    except CannotPlan as e:
        return AccountPlan(PositionAction.IGNORE, (), f"cannot plan: {e}")
