"""Order planning: what one signal does to one sub-account's position, as ordered steps.

Pure: (raw signal, the trader's effective settings, the account's multiplier, sub-account,
contract, that account's live position and working orders) → ``AccountPlan``. DESIGN.md §2
"What a signal does to a sub-account's position" is the spec; in short:

==================  ==========  ===========================  ===========================
signal              flat        long                         short
==================  ==========  ===========================  ===========================
buy                 OPEN²       IGNORE / ADD / REENTER       REVERSE (CLOSE if no longs)
sell                OPEN²       REVERSE (CLOSE if no shorts) IGNORE / ADD / REENTER
close / mp flat     NOTHING¹    CLOSE                        CLOSE
sell + mp long      NOTHING     REDUCE (CLOSE if ≥ pos)      NOTHING
buy + mp short      NOTHING     NOTHING                      REDUCE (CLOSE if ≥ pos)
sell q, no mp      OPEN²       REDUCE³ if q × mult < pos     as sell
add (TradersPost)   IGNORE      ADD (long side)              ADD (short side)
cancel              NOTHING     CANCEL (working orders)      CANCEL
==================  ==========  ===========================  ===========================

¹ CANCEL when this account still has orders working on the contract: a resting limit entry
would open a position after the strategy closed (a CLOSE's liquidation cancels them too).
² First cancelling this account's live orders of the other side on the contract (an entry still
resting, an exit left from a closed position): they would fill against what opens. Brackets
suspended on an entry are left: they are that entry's protection.
³ A partial exit, as TradersPost reads it (``trim``): a quantity and no market position (nor
TradersPost's ``sentiment``), not PickMyTrade's dialect; as many contracts as held or more:
REVERSE. A buy against a short mirrors it.

``--inverse`` swaps buy/sell and long/short first (``filters.apply_inverse``); ``--direction``
forbids opening a side: flat → IGNORE, a reversal into it → CLOSE only. A buy/sell whose entry
another filter refused (window, cooldown, max signals, daily loss, the kill switch…) is planned
the same way: an opposite position is closed (flat: the other side's resting orders are
cancelled), nothing opens or adds (``entry_refused``).

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
  multiplier), but an alert's dollars for the whole position (TradersPost ``pnlAmount``) are
  spread over the contracts it asks for before multipliers (``exits.resolve_exits``); trail
  trigger/frequency, breakeven and its offset are read in ``--sl-units``
  (an alert's own trail trigger/frequency in its stop's units, ``exits``).
  Breakeven travels on the strategy bracket: the paper broker applies it; the Tradovate client
  refuses it (no documented bracket field), so the order fails closed with that reason.
- ADD (DCA), REDUCE and the exits they re-place: ``resize``.
- Every exit price is on the tick and rounded toward the entry (``sizing``): a fractional average
  such as 21500.0833… gives a TP no farther and a stop no wider than configured.
- A plan that cannot be made safely (a percent or price-level exit without a signal price, a
  level on the wrong side, an entry missing its price, an entry of more contracts than an order
  may hold) is IGNORE with a reason starting "cannot plan"; a reversal that cannot open still
  closes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from decimal import Decimal

from jtrades.broker.base import (
    Contract,
    OrderStatus,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
    WorkingOrder,
)
from jtrades.engine.entries import expected_fill
from jtrades.engine.exits import CannotPlan, as_distance, resolve_exits
from jtrades.engine.filters import apply_inverse, is_reduce
from jtrades.engine.orphans import orphan_exits
from jtrades.engine.plan_context import (
    CANNOT_PLAN,
    MAX_CL_ORD_ID,
    NO_POSITION,
    OPENING_ENTRY,
    SAME_SIDE,
    AccountPlan,
    AccountState,
    Ctx,
    PlanKind,
    PlannedOrder,
    PositionAction,
    Shortfall,
    Steps,
    entry_request,
    label,
    liquidate,
    own_working,
    placed_as_exit,
    working_entries,
)
from jtrades.engine.position_size import size_after
from jtrades.engine.resize import plan_add, plan_reduce
from jtrades.engine.risk import Direction, RiskSettings
from jtrades.engine.signal import Action, MarketPosition, Signal
from jtrades.engine.sizing import base_qty, cap_qty, entry_qty, over_order_limit, scale_qty
from jtrades.engine.trim import is_trim, plan_trim

__all__ = [
    "MAX_CL_ORD_ID",
    "AccountPlan",
    "AccountState",
    "PlanKind",
    "PlannedOrder",
    "PositionAction",
    "Shortfall",
    "plan_account",
    "refused_whole",
]


def _side_allowed(side: Side, direction: Direction) -> bool:
    if direction is Direction.BOTH:
        return True
    return (side is Side.BUY) == (direction is Direction.LONG)


_OTHER_SIDE = {MarketPosition.LONG: MarketPosition.SHORT, MarketPosition.SHORT: MarketPosition.LONG}


def _opening_qty(sig: Signal) -> int | None:
    """The webhook's quantity for a new position.

    TradingView's ``{{strategy.order.contracts}}`` on a reversal counts the closing contracts
    too (long 1 → short 1 is an order of 2), and we close by liquidating, so opening that many
    would double the position. When the alert also carries the position size after the order
    (``{{strategy.market_position_size}}``, any spelling, kept in ``Signal.extra``) and a target
    side, the smaller of the two is the quantity to open: on a reversal that is the size (the
    order counts the contracts it closes too), on any other entry the order (a pyramid's add of
    1 to the chart's long 9 opened all 10 on a follower its own take-profit had left flat).
    Without it, an alert that says it reverses (its previous position the other side) cannot
    be sized: refused, so a reversal only closes.

    The size only corrects an order quantity the alert gave. Without one (none or 0: the
    configured ``--size``, contrib/alerts/README) there is nothing to double-count, and the
    chart's position is not this follower's size: taking it opened 37 contracts for a
    ``--size 1`` recorder whose strategy sizes itself by equity.
    """
    if sig.quantity is None or sig.market_position not in (
        MarketPosition.LONG,
        MarketPosition.SHORT,
    ):
        return sig.quantity
    if (size := size_after(sig)) is not None:
        return min(sig.quantity, size)
    if sig.quantity is not None and sig.prev_market_position is _OTHER_SIDE[sig.market_position]:
        raise CannotPlan(
            f"the alert reverses from {sig.prev_market_position} with quantity {sig.quantity},"
            " which counts the contracts it closes too: add"
            ' "market_position_size": "{{strategy.market_position_size}}" to the alert'
        )
    return sig.quantity


def _open(c: Ctx, steps: Steps, side: Side, working: int = 0) -> int:
    """Entry + TP ladder + SL as one strategy (or a plain order with no exits); returns qty.
    ``working``: contracts of entries still working on ``side`` (the cap must leave room)."""
    asked = _opening_qty(c.sig)
    if asked is None and c.s.size < 1:
        # settings are validated (--size ≥ 1): should one ever say "the webhook's quantity"
        # (0), an alert without one is refused here, not sized by a guess
        raise CannotPlan("the alert gives no quantity and no --size is configured")
    qty = cap_qty(entry_qty(asked, c.s, c.multiplier), c.s.max_contracts, working)
    if (too_many := over_order_limit(qty)) is not None:
        raise CannotPlan(too_many)
    entry = entry_request(c, steps.next_id(), side, qty)
    ref = expected_fill(entry, c.signal_price)
    exits = resolve_exits(c, qty, ref, Decimal(base_qty(asked, c.s.size)))
    if exits.empty:
        steps.add("order", entry, note=OPENING_ENTRY)
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


# --- the table -----------------------------------------------------------------------------


def _entry(c: Ctx, steps: Steps, side: Side) -> AccountPlan:
    """buy/sell: open, same-direction rule, or reversal."""
    pos, s = c.state.net_pos, c.s
    allowed = _side_allowed(side, s.direction)
    off = f"{label(side)} entries are off (--direction {s.direction})"
    if pos == 0:
        if not allowed:
            # the strategy went to that side: the other side's resting orders go all the same
            against = _other_side_live(c, side)
            shortfall = Shortfall("direction", off)
            if against:
                return _cancel_working(steps, against, f"direction: {off}; flat: ", shortfall)
            return AccountPlan(PositionAction.IGNORE, (), f"direction: {off}", short=shortfall)
        against = _other_side_live(c, side)
        # an entry of ``side`` still resting is replaced, not added to: a strategy moving its
        # limit entry sends the alert again at the new price (TradersPost cancels the open
        # orders before an entry with no position), and each one left resting made a --size 1
        # follower long 3 once the market fell through them
        resting = _resting_entries(c, side, against)
        going = [*against, *resting]
        # what stays working on ``side`` (an entry placed by hand) counts toward the cap
        working = working_entries(c, side) - sum(w.qty for w in going if w.side is side)
        if cap_qty(1, s.max_contracts, held=working) == 0:
            capped = (
                f"flat with {working} {label(side)} contract(s) of entries working,"
                f" at --max-contracts {s.max_contracts}"
            )
            return AccountPlan(
                PositionAction.IGNORE, (), capped, short=Shortfall("max_contracts", capped)
            )
        _add_cancels(steps, going)
        qty = _open(c, steps, side, working)
        more = f" ({working} more working)" if working else ""
        more += f"; cancel {len(against)} working order(s)" if against else ""
        if resting:
            more += f"; replaces {len(resting)} resting {label(side)} entr" + (
                "ies" if len(resting) > 1 else "y"
            )
        return AccountPlan(
            PositionAction.OPEN, tuple(steps.items), f"open {label(side)} {qty}{more}"
        )
    pos_side = Side.BUY if pos > 0 else Side.SELL
    if pos_side is side:
        held = f"already {label(side)} {abs(pos)}"
        if not allowed:
            why = f"{off}; {held}"
            return AccountPlan(
                PositionAction.IGNORE, (), f"direction: {why}", short=Shortfall("direction", why)
            )
        if s.same_direction == "ignore":
            # said on the row ("not traded: …"): accepted with 0 orders and no reason, the
            # follower could not tell why nothing traded
            why = f"{held} (--same-direction ignore)"
            return AccountPlan(PositionAction.IGNORE, (), why, short=Shortfall(SAME_SIDE, why))
        if s.same_direction == "add":
            return plan_add(c, steps, side)
        liquidate(c, steps)
        qty = _open(c, steps, side)
        return AccountPlan(
            PositionAction.REENTER, tuple(steps.items), f"{held}: close, open {qty} fresh"
        )
    liquidate(c, steps)
    was = f"{label(pos_side)} {abs(pos)}"
    if not allowed:
        return AccountPlan(
            PositionAction.CLOSE,
            tuple(steps.items),
            f"close {was}; {off}",
            short=Shortfall("direction", off),
        )
    try:
        qty = _open(c, steps, side)
    except CannotPlan as e:
        del steps.items[1:]
        why = f"cannot plan the reversal: {e}"
        return AccountPlan(
            PositionAction.CLOSE,
            tuple(steps.items),
            f"close {was}; {why}",
            short=Shortfall(CANNOT_PLAN, why),
        )
    return AccountPlan(
        PositionAction.REVERSE,
        tuple(steps.items),
        f"reverse: close {was}, open {label(side)} {qty}",
    )


def _resting_entries(c: Ctx, side: Side, against: list[WorkingOrder]) -> list[WorkingOrder]:
    """The entries of ``side`` jtrades placed on this account and contract still resting,
    flat: not already cancelled as ``against`` (an orphan exit), not a suspended bracket, and
    not an order placed by hand (its clOrdId is not ours: not ours to judge, as ``orphans``)."""
    gone = {w.order_id for w in against}
    return [
        w
        for w in own_working(c)
        if w.side is side
        and w.status is not OrderStatus.SUSPENDED
        and w.order_id not in gone
        and (w.cl_ord_id or "").startswith("jt-")
        and not placed_as_exit(w.cl_ord_id)
    ]


def _with_their_entries(working: list[WorkingOrder]) -> list[WorkingOrder]:
    """``working`` less the suspended brackets whose entry (a live order of the other side)
    is cancelled with them: the broker cancels them with it, and a cancel of its own came
    after that, refused (the paper broker: "not working"), its next steps unsent and the
    operator notified of a failure where everything asked for was done."""
    entry_sides = {w.side for w in working if w.status is not OrderStatus.SUSPENDED}
    return [
        w
        for w in working
        if not (w.status is OrderStatus.SUSPENDED and w.side.opposite in entry_sides)
    ]


def _other_side_live(c: Ctx, side: Side) -> list[WorkingOrder]:
    """This account's live orders on the contract to cancel when flat and going ``side``: those
    against ``side`` (an entry still resting, an exit left from a closed position: they would
    fill against a position on ``side``), and exits left from a closed position on ``side``
    itself (``orphans``: they would add to it, and are no entries to count). Suspended brackets
    are left: they wait on an entry of ``side``."""
    own = own_working(c)
    left = {w.order_id for w in orphan_exits((), own)}  # flat: the exits of no position
    return [
        w
        for w in own
        if (w.side is side.opposite and w.status is not OrderStatus.SUSPENDED) or w.order_id in left
    ]


def _refused_entry(c: Ctx, steps: Steps, refused: str) -> AccountPlan:
    """A buy/sell/add whose entry a filter refused: only a reversal's close half is left (and,
    flat, the other side's resting orders: the strategy has left that side)."""
    pos, action = c.state.net_pos, c.sig.action
    shortfall = _refusal(refused)
    if pos == 0:
        if action is not Action.ADD:
            against = _other_side_live(c, Side.BUY if action is Action.BUY else Side.SELL)
            if against:
                return _cancel_working(steps, against, f"flat; {refused}; ", shortfall)
        return AccountPlan(PositionAction.IGNORE, (), f"flat; {refused}", short=shortfall)
    pos_side = Side.BUY if pos > 0 else Side.SELL
    held = f"{label(pos_side)} {abs(pos)}"
    if action is Action.ADD or (action is Action.BUY) == (pos_side is Side.BUY):
        return AccountPlan(PositionAction.IGNORE, (), f"{held} kept; {refused}", short=shortfall)
    liquidate(c, steps)
    return AccountPlan(
        PositionAction.CLOSE, tuple(steps.items), f"close {held}; {refused}", short=shortfall
    )


def refused_whole(refused: str) -> Callable[[AccountState], AccountPlan]:
    """The planner of an alert a filter refused whole on one account, with no close half to
    send: an add or a cancel on a login halted with ``halt --account`` (the fan-out's). Nothing
    is sent, whatever the account holds; the refusal is the plan's shortfall, so the verdict
    judges the account as every other one left out for its kill switch (rejected/halted when
    every account was, as the global switch's refusal). Skipped with a note on the row, the
    alert was stored accepted. ``refused`` is ``filter: reason``."""
    plan = AccountPlan(PositionAction.IGNORE, (), refused, short=_refusal(refused))

    def planned(_state: AccountState) -> AccountPlan:
        return plan

    return planned


def _refusal(refused: str) -> Shortfall:
    """The shortfall of a plan whose entry a filter refused, from ``entry_refused``'s
    ``filter: reason`` (the form ``plan_account`` takes it in): the filter's stable name is
    the cause."""
    cause, _, why = refused.partition(": ")
    return Shortfall(cause, why) if why else Shortfall(cause, cause)


def _add_cancels(steps: Steps, working: list[WorkingOrder]) -> None:
    for w in working:
        steps.add("cancel", None, cancel_order_id=w.order_id, note=f"{w.order_type} {w.qty}")


def _cancel_working(
    steps: Steps, working: list[WorkingOrder], why: str, short: Shortfall | None = None
) -> AccountPlan:
    working = _with_their_entries(working)
    _add_cancels(steps, working)
    reason = f"{why}cancel {len(working)} working order(s)"
    return AccountPlan(PositionAction.CANCEL, tuple(steps.items), reason, short=short)


def _plan(c: Ctx, steps: Steps) -> AccountPlan:
    sig, pos = c.sig, c.state.net_pos
    pos_side = Side.BUY if pos > 0 else Side.SELL
    if sig.action is Action.CANCEL:
        if c.refused is not None:  # the kill switch, read again under the lock: its stop stays
            why = f"{c.refused}: nothing cancelled"
            return AccountPlan(PositionAction.IGNORE, (), why, short=_refusal(c.refused))
        working = own_working(c)
        if not working:
            return AccountPlan(PositionAction.NOTHING, (), "no working orders to cancel")
        return _cancel_working(steps, working, "")
    if sig.is_close:
        if pos == 0:
            # a limit entry still resting would open a position after the strategy closed
            working = own_working(c)
            if not working:
                return AccountPlan(PositionAction.NOTHING, (), "already flat")
            return _cancel_working(steps, working, "already flat: ")
        held = MarketPosition.LONG if pos > 0 else MarketPosition.SHORT
        if sig.closes_only is not None and sig.closes_only is not held:
            why = (
                f"a {sig.action} with sentiment flat exits a {sig.closes_only} only:"
                f" the {label(pos_side)} {abs(pos)} stays"
            )
            return AccountPlan(PositionAction.NOTHING, (), why)
        if sig.partial_exit and sig.quantity and scale_qty(sig.quantity, c.multiplier) < abs(pos):
            plan = plan_reduce(c, steps, pos_side)
            why = f"exit {sig.quantity} of the {label(pos_side)} (TradersPost's partial exit)"
            return dataclasses.replace(plan, reason=f"{plan.reason} ({why})")
        liquidate(c, steps)
        return AccountPlan(
            PositionAction.CLOSE, tuple(steps.items), f"close {label(pos_side)} {abs(pos)}"
        )
    if is_reduce(sig):
        target = Side.BUY if sig.action is Action.SELL else Side.SELL  # the side being reduced
        if pos == 0:
            return AccountPlan(PositionAction.NOTHING, (), "already flat: nothing to reduce")
        if pos_side is not target:
            return AccountPlan(
                PositionAction.NOTHING,
                (),
                f"position is {label(pos_side)}: a reduce of a {label(target)} does nothing",
            )
        return plan_reduce(c, steps, pos_side)
    if is_trim(c):  # a partial exit, refused entry or not
        return plan_trim(c, steps, _refusal(c.refused) if c.refused is not None else None)
    if c.refused is not None:
        return _refused_entry(c, steps, c.refused)
    if sig.action is Action.ADD:
        if pos == 0:
            why = "add with no open position"
            return AccountPlan(PositionAction.IGNORE, (), why, short=Shortfall(NO_POSITION, why))
        if not _side_allowed(pos_side, c.s.direction):
            off = f"{label(pos_side)} entries are off (--direction {c.s.direction})"
            return AccountPlan(
                PositionAction.IGNORE, (), f"direction: {off}", short=Shortfall("direction", off)
            )
        return plan_add(c, steps, pos_side)
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
    c = Ctx(
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
        return _plan(c, Steps(cl_ord_prefix))
    except CannotPlan as e:
        why = f"cannot plan: {e}"
        return AccountPlan(PositionAction.IGNORE, (), why, short=Shortfall(CANNOT_PLAN, why))
