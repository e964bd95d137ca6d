"""The protector's waits on the live view: until what a pass placed shows, what it cancelled
is gone, or a bound runs out. The broker's answer to a request is not the view: the next
holder of a sub-account's lock plans from the view, so the lock is let go only once the view
has what was done (or the wait is given up, and the caller remembers what it lacked)."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from jtrades.broker.base import Broker
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.view_waits import Placed, shows_gone, shows_orders, shows_placed, within

log = structlog.get_logger(__name__)

# How long the exits cancelled for a re-placement may take to show as gone before nothing is
# placed this pass (they could still fill, and a stop beside them could over-close).
CANCEL_WAIT_S = 5.0
POLL_S = 0.05  # the view changes with the stream, which has no event to wait on per order


async def shown(broker: Broker, account_id: int, order_ids: Sequence[int]) -> bool:
    """Whether the live view has every one of ``order_ids`` within ``CANCEL_WAIT_S``."""
    placed = [(oid, None) for oid in order_ids]
    return await within(lambda: shows_placed(broker, account_id, placed), CANCEL_WAIT_S, POLL_S)


def split_taken(taken: Sequence[tuple[PlannedOrder, int]]) -> tuple[list[int], list[int]]:
    """The order ids a pass placed, and those it cancelled (a modify is neither)."""
    placed = [oid for po, oid in taken if po.kind not in ("cancel", "modify")]
    return placed, [oid for po, oid in taken if po.kind == "cancel"]


async def settled(
    broker: Broker,
    account_id: int,
    taken: Sequence[tuple[PlannedOrder, int]],
    unanswered: Sequence[str] = (),
) -> list[Placed]:
    """Wait (bounded) until the view has what a pass placed (and the orders whose answer
    never came, by clOrdId) and no longer shows what it cancelled as open; returns what it
    still lacks then (all of it when the view was lost meanwhile: the next plan finds it
    unsynced, or waits for them)."""
    placed_ids, cancelled = split_taken(taken)
    placed: list[Placed] = [(oid, None) for oid in placed_ids]
    placed += [(None, cl) for cl in unanswered]
    if not placed and not cancelled:
        return []
    try:
        shown = await within(
            lambda: shows_orders(broker, account_id, placed, cancelled), CANCEL_WAIT_S, POLL_S
        )
        if shown:
            return []
        unseen = [(oid, cl) for oid, cl in placed if not broker.knows_order(account_id, oid, cl)]
    except Exception as exc:
        log.info("reconcile.protect_view_lost", account_id=account_id, error=str(exc))
        return placed
    log.warning(
        "reconcile.protect_unsettled",
        account_id=account_id,
        placed=[oid or cl for oid, cl in placed],
        cancelled=cancelled,
    )
    return unseen


async def cancels_gone(broker: Broker, account_id: int, order_ids: Sequence[int]) -> bool:
    """Whether the live view stops showing ``order_ids`` as open within ``CANCEL_WAIT_S`` (the
    orphan sweep waits the same way before it lets the lock go)."""
    return await within(lambda: shows_gone(broker, account_id, order_ids), CANCEL_WAIT_S, POLL_S)
