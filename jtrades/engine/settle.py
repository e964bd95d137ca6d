"""After a dispatch has sent an account's steps: hold its lock until the broker's view shows
them, bounded, and record what it still lacks then (``unsettled``); the same record for what
reconciliation sent (``note_unshown``).

Split from ``dispatch`` (which plans, claims and sends): this is what the next signal on the
account plans against, and why it may not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from jtrades.broker.base import Broker, Contract
from jtrades.engine.account_plans import Prepared, lock_key
from jtrades.engine.config_cache import LinkConfig
from jtrades.engine.steps import net_pos, position_shows
from jtrades.engine.unsettled import Unsettled, UnsettledViews, lag
from jtrades.engine.view_waits import shows_orders, within
from jtrades.errors import TransientBrokerError

log = structlog.get_logger(__name__)


async def settle(p: Prepared, within_s: float, views: UnsettledViews) -> None:
    """Wait (the caller holding the lock) until the broker's view shows the position the sent
    steps make and the orders they placed and cancelled, at most ``within_s``, so the next
    signal on this sub-account plans against it: a reversal's close alone (flat) is not yet
    the new position, and a stop placed but not shown is one the next plan does not cancel
    (``view_waits``). What it still lacks then is noted in ``views``, and the account is not
    planned from its view until it shows: the lock goes, so no one waits behind it."""
    it, expected = p.item, p.expected_pos
    account = it.link.broker_account_id
    deadline = asyncio.get_running_loop().time() + within_s
    held = None
    if expected is not None:
        held = await position_shows(it.broker, account, it.contract, expected, within_s)
    left = max(0.0, deadline - asyncio.get_running_loop().time())
    try:
        orders_shown = await within(
            lambda: shows_orders(it.broker, account, p.placed, p.cancelled), left
        )
    except Exception as exc:  # the view was lost: the next plan finds it unsynced
        log.info("dispatch.settle_view_lost", sub_account_id=it.link.sub_account_id,
                 error=str(exc))  # fmt: skip
        orders_shown = False
    if held is None and orders_shown and not p.unanswered and p.made_pos == expected:
        return
    u = p.unsettled(views.now())
    lacking = lag(it.broker, account, u)
    if lacking is None:
        return
    views.note(lock_key(it.link), u)
    log.warning(
        "dispatch.settle_timeout",
        sub_account_id=it.link.sub_account_id,
        expected=expected,
        holding=held,
        orders_shown=orders_shown,
        lacking=lacking,
        effect="the account is not planned until its view shows it",
    )


def exits_ended(p: Prepared) -> bool:
    """Whether an order the steps placed beside the position (an exit: not a market order)
    shows ended already while a position is held: a stop the broker answered with an id and
    then rejected through its events (a risk check), which the dispatch counted as sent. The
    position may be naked: the protector is asked for a pass at once, as for a step refused in
    its answer, not an interval or two later. One that filled or was cancelled with its OCO
    partner asks for a pass too; the pass finds the position covered or flat and does nothing.
    Memory only; a view not synced says nothing (the protector's own passes see to it)."""
    it = p.item
    account = it.link.broker_account_id
    movers = set(p.movers)
    exits = [placed for placed in p.placed if placed not in movers]
    if not exits:
        return False
    try:
        held = net_pos(it.broker, account, it.contract)
        working = it.broker.working_orders(account)
        known = [(oid, cl) for oid, cl in exits if it.broker.knows_order(account, oid, cl)]
    except TransientBrokerError:
        return False
    if not held:
        return False
    open_ids = {o.order_id for o in working}
    open_cls = {o.cl_ord_id for o in working if o.cl_ord_id}
    return any(oid not in open_ids and cl not in open_cls for oid, cl in known)


def note_unshown(
    views: UnsettledViews,
    link: LinkConfig,
    broker: Broker,
    contract: Contract,
    placed: Sequence[int],
    cancelled: Sequence[int],
    unanswered: Sequence[str] = (),
) -> str | None:
    """Orders reconciliation placed or cancelled on ``link``'s account (a protective stop, an
    orphan's cancel) that the view does not show yet when it lets the lock go: noted in
    ``views``, as a dispatch's are, so the next alert does not plan from a view without them.
    Only the protector remembered them: a DCA add planned beside an unshown stop for 1 placed
    a stop for 2 (stops for 3 on a long 2, short 1 once they triggered), and an entry cancelled
    the orphan's stop again, was refused "TooLate" and was not sent. ``unanswered``: the
    clOrdIds of orders whose answer never came (they may be there). Returns what it lacks."""
    u = Unsettled(
        link.sub_account_id,
        contract,
        None,
        tuple((oid, None) for oid in placed),
        tuple(cancelled),
        (),
        tuple(unanswered),
        False,
        views.now(),
    )
    lacking = lag(broker, link.broker_account_id, u)
    if lacking is not None:
        views.note(lock_key(link), u)
    return lacking
