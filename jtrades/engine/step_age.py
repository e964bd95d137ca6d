"""Whether a step of a plan is too old to send: the TTL (rule 2), and the protective tail.

An intent past its TTL is never sent, save one exception: once a step that changed the
position went out (a DCA add, a reduce, a liquidation), the protective steps that follow it
(cancels, and the exits re-placed for the new position) may still go for ``FOLLOW_UP_S`` past
the TTL. They are not late trading: the signal already traded, and holding them back would
leave the position it made without exits (a new entry after a reversal's close is not
protective: the TTL holds it)."""

from __future__ import annotations

from datetime import timedelta

from jtrades.engine.account_plans import AccountResult
from jtrades.engine.plan_context import placed_as_exit
from jtrades.engine.planning import PlannedOrder

# Protective steps that follow a step which changed the position may still go out this long
# past the TTL (the reconciler's grace counts it).
FOLLOW_UP_S = 5.0
# Steps that only protect a position, whatever their clOrdId: a cancel of a working exit
# (every cancel a signal's plan makes), a stop shrunk to the position.
PROTECTIVE_KINDS = frozenset({"cancel", "modify"})
TOO_OLD = "signal older than its TTL"


def protective(po: PlannedOrder, cl_ord_id: str) -> bool:
    """Whether a step only protects the position: a cancel or a modify, or an exit (its
    clOrdId carries the exit mark, ``plan_context.placed_as_exit``; an entry never does)."""
    return po.kind in PROTECTIVE_KINDS or placed_as_exit(cl_ord_id)


def too_late(
    late: timedelta,
    follow_up: timedelta,
    changed: bool,
    tail: bool | None,
    po: PlannedOrder,
    cl_ord_id: str,
    res: AccountResult,
) -> tuple[str | None, bool | None]:
    """Why a step ``late`` past the TTL is not sent for its age (None: it may go), and the
    decision on the protective tail. Past the TTL nothing trades (rule 2). The protective
    steps after one that changed the position (the cancels of its exits, the exits re-placed)
    are decided once, as a whole, when the first of them is reached: all go if that is within
    ``follow_up`` past the TTL, none otherwise. Judged step by step, the cancels went and the
    exits replacing them expired, and the position was left with none."""
    if changed and protective(po, cl_ord_id):
        if tail is None:
            tail = late <= follow_up
        if tail and late > timedelta(0):
            res.messages.append(
                f"{cl_ord_id}: sent {late.total_seconds():.1f}s past the signal's TTL,"
                " to protect the position it changed"
            )
        return (None if tail else TOO_OLD), tail
    return (TOO_OLD if late > timedelta(0) else None), tail
