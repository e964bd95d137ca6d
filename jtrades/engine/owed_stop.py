"""A stop the daemon owes an open position whose trader has no stop loss configured, and the
stop level a protection places at.

The incident: a position whose only stop came with its entry alert (a per-alert stop loss,
TradersPost / PickMyTrade style; no ``--sl``). A DCA add or a reduce cancels the working exits
and re-places them for the new size (``engine.resize``). Cut short after the cancel — the
daemon killed before the new stop, the WebSocket dropping after the broker cancelled (the next
step is not sent when one is in doubt), the new stop refused — the position had no stop for
good: protection only stopped positions whose trader has a stop loss (``engine.protector``).

So, without a stop loss, a position short of stop cover gets the stop the daemon itself planned
for it and never placed. The evidence is durable (``store.owed_stops``), read from the intents
written before anything was sent (rule 1):

- the last plan on the contract (the account at the broker's rows) that may have reached the
  broker: one signal's intents, or one protection's. Whatever last changed the position's
  protection through the daemon is that plan. A plan of plain orders only (an add, a reduce:
  no cancel, no stop, no liquidation, no bracket) is passed over: it changed the size, not the
  protection, and the stop owed before it is owed to the position it left (for the whole of
  it: an add after the cut, before a protection pass, left the long 3 naked for good). Not an
  entry that opened a trade (``plan_context.OPENING_ENTRY``: planned from flat): the trade before it was
  closed, whatever the daemon kept of how — a person's close in a session it missed, whose
  fills the broker no longer lists after the day turn, or its own liquidation in doubt — and
  its stop is not the new trade's. A liquidation in doubt (closed "outcome not confirmed") is
  not taken as having reached the broker: had it, the position would be flat, and one open now
  was either never closed or opened again since — by hand (a fill not the daemon's, below), or
  by a plan, which is then the last;
- the plan removed protection: one of its cancels took a live stop away. Confirmed, not assumed:
  the broker took the cancel (``done``), or the stop's stored row shows it gone and the cancel
  may have been sent (no step before it in the plan, other than a cancel or modify, is known
  never to have left: the plan goes step by step, so a cancel after a step that never left
  never left either, and whoever cancelled that stop, it was not the plan. An order lost at
  the day turn (below) is not known so: the dispatcher writes a plan's outcomes after its last
  step, so an add the broker took and filled, its mirror batch lost with the process, reads
  the same; the stop is owed, and a person's cancel after a plan killed before anything left
  is undone across a day turn, where the same session keeps it). Gone is Canceled, or
  Unknown: the process died before its mirror stored the Canceled event, and after the day
  turn the broker no longer lists the stop, so the restart's sweep could only write Unknown
  (``mirror.end_vanished``) — no stop at the broker either way. A cancel in doubt of a stop
  still working, or of an order that is not a stop, removed nothing. A protection needs no such
  cancel (below);
- and then failed to put its stop back: after that cancel, the newest stop (a stop order, or an
  OCO's stop leg) that did not reach the broker because something failed: refused, or expired
  (not sent for a failure, its TTL, the broker unavailable, or not found at the broker by its
  clOrdId after a crash). Not a step the dispatcher chose not to send (``NOT_SENT_ON_PURPOSE``:
  a DCA take-profit leg whose contracts went to another leg): nothing failed there. One still
  pending or in doubt is not owed yet (reconciliation settles it first: it may be working);
- on the side that closes the position as it is now;
- and the contract's latest stored fill was the daemon's (an order with its clOrdId or intent,
  or a bracket of one), the fills of the plain orders passed over aside: a fill by hand, or one
  whose order is not stored, means a person traded the contract since, and what they hold is
  theirs to protect. A liquidation's fill is not the daemon's here: it flattened the position,
  so what is held was opened after it.

A stop step never answered that reconciliation closed after the day turn (``done``, "outcome
unknown: written in an earlier trading session": the broker's lists of the earlier session are
gone) counts as failed when no broker order id and no stored order row (its clOrdId or intent)
shows the broker ever had it. Had it reached the broker it would be working (a stop is GTC:
the lookup by clOrdId would have found it, and the live view counts it), or filled, or been
cancelled. Filled, it closed the position it was sized for: flat, nothing is owed; opened again
since, by hand, the fill is not the daemon's — unless that too happened in the session the
daemon missed, whose fills it never stored. Cancelled, by a person, it comes back. Both are
bought knowingly: a stop wrongly placed again is said (``reconcile.protective_stop`` notifies)
and a person can cancel it; a stop wrongly given up leaves the position naked, nothing said.

A protection's own stop that never reached the broker stays owed whatever it cancelled: a
protection runs only for a position short of stop cover, at the owed stop's level, so what it
cancels (a take-profit, re-placed whole with its share of the stop) is never a stop removed on
purpose. Needing a cancel of a stop there, a protection that cancelled a take-profit and then
had its OCO refused reached the broker, removed no stop, and ended the owed stop for good.
A protection that wrote no stop step at all is passed over, though its cancel reached the
broker: one whose take-profit's cancel showed late placed nothing beside an order that might
still fill, and, the last plan, owing no stop of its own, it left the position naked for good.
The stop owed before it is still owed (the plan before decides); a protection that did place
its stop stays the last plan, so a person cancelling that stop later is not undone.

It covers only what the live stops do not (``protection.plan_protection`` sizes it), at the
planned price on the tick: trailing by the planned distance when the planned stop trailed. A
price the market has passed is refused by the broker like any other protective stop: the
position stays naked and a person is told (``reconcile.protect_incomplete``), each pass.

Why a stale stop cannot come back: an older trade's stop belongs to a plan that is no longer
the last to reach the broker: the next trade was opened by a plan (an opening entry, never
passed over), the trade was closed by a plan (a liquidation or a flatten, never passed over),
by hand (a fill by hand after the plan), or by a liquidation in doubt that did reach (its fill
is not the daemon's). A stop deliberately removed — by a close, by an alert whose plan
changed the exits, by a flatten, or once placed by protection and cancelled later by a person —
was removed by a plan that reached the broker and left no stop unplaced, or was placed (not
"never reached"), or was cancelled by no plan at all: a person's cancel is not the plan's, and
a plan whose cancel is not confirmed removed nothing (a DCA killed before anything of it was
sent, its stop cancelled by hand later). A plan nothing of which reached the broker (its TTL
passed, its first step refused) changed nothing and owes nothing. A failed protection attempt
owes its own stop when something of it reached the broker (its cancels) and it wrote one, and
is no plan at all when nothing did or it wrote none, so the stop stays owed through the
retries.

Left open: a plan whose first step is the cancel (a reduce), killed before it was sent, then its
stop cancelled by hand, looks exactly like one killed just after the cancel went (nothing
durable tells when the stop's row became Canceled): the stop comes back. An add's own stop
refused with no cancel before it (its plan removed no stop) is never owed: the add's contracts
stay naked. A trade closed in a session the daemon missed and opened again by a person's hand
in that session, then added to by the strategy, gets the closed trade's stop (the add is passed
over, the hand fills were never stored).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg
import structlog

from jtrades.broker.base import Contract, OrderStatus, OrderType, Position, Side
from jtrades.engine.plan_context import PROTECTION_PREFIX
from jtrades.engine.risk import RiskSettings, SlType
from jtrades.engine.sizing import exit_offset_points, exit_price, round_distance, round_to_tick
from jtrades.engine.unsent import says_not_sent, says_on_purpose
from jtrades.store import owed_stops
from jtrades.store.owed_stops import PlanStep, StopEvidence

log = structlog.get_logger(__name__)

# A stop step in these states did not reach the broker (``failed_to_place`` tells why).
UNSENT = frozenset({"expired", "rejected"})
_STOP_TYPES = frozenset(
    {OrderType.STOP.value, OrderType.STOP_LIMIT.value, OrderType.TRAILING_STOP.value}
)
# Steps reconciliation cannot look up by clOrdId: expired "outcome not confirmed", they may have
# reached the broker (``reconcile.resolve_intent``); only a reason saying so proves they did not
# (``unsent.says_not_sent``).
_IN_DOUBT_KINDS = frozenset({"cancel", "liquidate", "modify"})
# Steps that send their successors whatever became of them: the protector sends each of its
# cancels (``protect_sender``), so one never sent proves nothing of the next.
_NO_PROOF_KINDS = frozenset({"cancel", "modify"})
# A cancelled stop's stored row: Canceled, or Unknown when its Canceled event was lost and the
# next day's sweep found it gone (``mirror.end_vanished``): no stop at the broker either way.
_GONE = frozenset({OrderStatus.CANCELED.value, OrderStatus.UNKNOWN.value})
# How reconciliation closes a step never answered that was written before the trading day
# changed (``reconcile.resolve_intent``, which builds its reason from it): the broker's lists
# no longer say whether it was ever sent. Stored: changing it changes how old rows read.
EARLIER_SESSION = "outcome unknown: written in an earlier trading session"


@dataclass(frozen=True, slots=True)
class OwedStop:
    """The stop owed: ``qty`` contracts (what the live stops leave uncovered) on ``side`` at
    ``stop_price`` (as planned), trailing by ``trail_by`` points (positive) when set."""

    side: Side
    qty: int
    stop_price: Decimal
    trail_by: Decimal | None
    source: str  # the clOrdId of the intent it was planned as


@dataclass(frozen=True, slots=True)
class StopLevel:
    """Where a protection's stop goes (``protection.plan_protection``'s configured stop), the
    distance it trails by (points, on the tick) and whether it trails."""

    price: Decimal
    trail_by: Decimal | None
    trailing: bool


def stop_leg(step: PlanStep) -> dict[str, Any] | None:
    """The stop order an ``order`` or ``oco`` step's recorded request places, or None."""
    req = step.request.get("request")
    if not isinstance(req, dict):
        return None
    legs: list[object]
    if step.kind == "order":
        legs = [req]
    elif step.kind == "oco":
        legs = [req.get("first"), req.get("second")]
    else:
        return None
    return next(
        (leg for leg in legs if isinstance(leg, dict) and leg.get("order_type") in _STOP_TYPES),
        None,
    )


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        d = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return d if d.is_finite() else None


def skipped(step: PlanStep) -> bool:
    """A step the dispatcher chose not to send (``unsent.NOT_SENT_ON_PURPOSE``)."""
    return step.state == "expired" and says_on_purpose(step.reason)


def never_sent(step: PlanStep) -> bool:
    """Known never to have left for the broker: expired, save a cancel, liquidation or modify
    whose expiry does not say so (closed "outcome not confirmed" after a crash: it may have)."""
    if step.state != "expired":
        return False
    return step.kind not in _IN_DOUBT_KINDS or says_not_sent(step.reason)


def lost_at_the_day_turn(step: PlanStep) -> bool:
    """An order closed 'done' across the day turn, never answered (``EARLIER_SESSION``), that
    no stored row or broker order id shows the broker ever had: taken as never placed (the
    module docstring)."""
    return (
        step.state == "done"
        and step.kind in ("order", "oco")
        and (step.reason or "").startswith(EARLIER_SESSION)
        and step.order_known is not True
    )


def failed_to_place(step: PlanStep) -> bool:
    """A step that did not reach the broker because something failed: refused, expired for
    anything but the dispatcher's choice (``skipped``), or lost across the day turn."""
    return (step.state in UNSENT and not skipped(step)) or lost_at_the_day_turn(step)


def cancels_stop(step: PlanStep) -> bool:
    """A cancel of a stop: the order it names, as stored, is one (else as its note names it:
    ``{order type} {qty}``, the dispatcher's cancels)."""
    if step.kind != "cancel":
        return False
    kind = step.target_type
    if kind is None:
        note = step.request.get("note")
        kind = note.split(" ", 1)[0] if isinstance(note, str) else None
    return kind in _STOP_TYPES


def removed_stop(step: PlanStep, earlier: Sequence[PlanStep]) -> bool:
    """Whether ``step`` took a live stop away, confirmed (the module docstring): the broker took
    the cancel, or the stop's stored row shows it Canceled and the cancel may have been sent —
    no step before it in the plan (``earlier``) that holds back the ones after it is known never
    to have left. A step lost at the day turn is not known so: the dispatcher writes a plan's
    outcomes after its last step, so an add the broker took and filled, killed with its mirror
    batch, reads the same, and taken for never sent it hid the cancel after it (the position
    naked). Pure."""
    if not cancels_stop(step):
        return False
    if step.state == "done":
        return True
    if step.target_status not in _GONE or never_sent(step):
        return False
    return not any(
        never_sent(e) and not skipped(e) and e.kind not in _NO_PROOF_KINDS for e in earlier
    )


def owed_stop(evidence: StopEvidence | None, position: Position, coverage: int) -> OwedStop | None:
    """The stop the daemon owes ``position`` (the module docstring), whose live stops cover
    ``coverage`` contracts; None when nothing is owed. Pure."""
    held = abs(position.net_pos)
    if evidence is None or held == 0 or coverage >= held:
        return None
    if evidence.latest_fill_ours is not True:
        return None  # a person traded the contract since, or its fills are not known
    plan = sorted(evidence.steps, key=lambda st: st.id)  # in the order written
    if plan and plan[0].cl_ord_id.startswith(PROTECTION_PREFIX):
        removed: int | None = 0  # a protection's own stop is owed, whatever it cancelled
    else:
        removed = next((st.id for n, st in enumerate(plan) if removed_stop(st, plan[:n])), None)
    if removed is None:
        return None  # the plan took no stop away: whatever is naked is not its doing
    exit_side = Side.SELL if position.net_pos > 0 else Side.BUY
    for step in reversed(plan):  # newest first, down to the cancel (a protection's: all)
        if step.id <= removed:
            break
        if not failed_to_place(step):
            continue
        leg = stop_leg(step)
        if leg is None or leg.get("side") != exit_side.value:
            continue
        price = _decimal(leg.get("stop_price"))
        if price is None or price <= 0:
            continue
        peg = _decimal(leg.get("peg_difference"))
        trailing = leg.get("order_type") == OrderType.TRAILING_STOP.value
        trail_by = abs(peg) if trailing and peg is not None and peg != 0 else None
        return OwedStop(exit_side, held - coverage, price, trail_by, step.cl_ord_id)
    return None


def stop_level(
    s: RiskSettings | None, owed: OwedStop | None, position: Position, contract: Contract
) -> StopLevel:
    """The level a protection of ``position`` stops at: the trader's configured stop loss
    (``s``, measured from the average), else the owed stop's on the tick (away from the
    market: never nearer than planned), else the average (only stops over the position are
    brought down then: the plan keeps the live stops' price, never this one). Pure."""
    avg = position.net_price
    if avg is None:
        raise ValueError("a position without an average price has no stop level")
    long = position.net_pos > 0
    tick = contract.tick_size
    if s is not None:
        dist = exit_offset_points(s.sl, s.sl_units, avg, contract, 1)
        price = exit_price(avg, dist, -1 if long else 1, tick)
        return StopLevel(price, round_distance(dist, tick), s.sl_type is SlType.TRAILING)
    if owed is not None:
        price = round_to_tick(owed.stop_price, tick, "down" if long else "up")
        trail = round_distance(owed.trail_by, tick) if owed.trail_by is not None else None
        return StopLevel(price, trail, trail is not None)
    return StopLevel(avg, None, False)


async def lookup(
    pool: asyncpg.Pool, sub_account_ids: list[int], position: Position, coverage: int
) -> OwedStop | None:
    """Read the evidence for ``position`` (the rows of its account at the broker) and decide
    (``owed_stop``); said in the log when a stop is owed."""
    found = await owed_stops.evidence(pool, sub_account_ids, position.symbol)
    owed = owed_stop(found, position, coverage)
    if owed is not None:
        log.warning(
            "reconcile.owed_stop",
            sub_account_ids=sub_account_ids,
            symbol=position.symbol,
            net_pos=position.net_pos,
            stop=str(owed.stop_price),
            qty=owed.qty,
            trail_by=str(owed.trail_by) if owed.trail_by is not None else None,
            planned_as=owed.source,
            effect="a stop the daemon planned for this position and never placed: placed now",
        )
    return owed
