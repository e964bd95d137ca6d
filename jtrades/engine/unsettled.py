"""What a dispatch sent to an account that the broker's view did not show when the settle wait
gave up, and whether the account may be planned from its view again.

Why: the next plan on an account reads its position and working orders from the live view, and
Tradovate's events may come later than the dispatcher's settle wait (2 s). Planned from a view
without the first signal's fill, a reversal opened short 1 beside a long 1 that read "flat",
and a close sent nothing. Waiting for the view under the account's lock was tried and taken
back: the lock was held up to the signal's TTL, so a healthy follower's close waited behind it,
``halt --flatten`` too, and the webhook answered after TradingView's 3 s. So a signal does not
plan such an account at all: its row says why, at once ("not traded: …"), and the account is
planned again as soon as its view shows what was sent, or the broker's refusal of it.

Bounded by ``GRACE_S``: no live stream lags that long (a session hears from the server every
2.5 s and treats 10 s of silence as a dead socket, whose view is then unsynced until a fresh
snapshot). What a view still lacks after it the broker did not do: an order whose answer was
lost and never reached it, a liquidation with nothing left to close. The record is then dropped
with a warning, and the view is taken as the broker's.

Memory only: a restart loads every view from a fresh snapshot.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from jtrades.broker.base import Broker, Contract
from jtrades.engine.config_cache import AccountKey
from jtrades.engine.planning import Shortfall
from jtrades.engine.steps import net_pos
from jtrades.engine.view_waits import Placed
from jtrades.errors import TransientBrokerError

log = structlog.get_logger(__name__)

GRACE_S = 30.0
# The cause of an account a signal did not plan because its view lags what an earlier dispatch
# sent to it (``UnsettledViews.hold_up``); what the row and ``signals list`` name.
VIEW_UNSETTLED = "unsettled"


@dataclass(frozen=True, slots=True)
class Unsettled:
    """What one dispatch sent to an account at the broker and the view did not yet show."""

    sub_account_id: int
    contract: Contract
    made_pos: int | None  # the position its steps make; None: none of them moved it
    placed: tuple[Placed, ...]  # orders the broker answered with an id
    cancelled: tuple[int, ...]  # orders it cancelled
    # its market orders (placed, or whose answer never came): once each is shown closed
    # (filled or refused), the view's position is the broker's (TRADOVATE.md: the fill and
    # the position come before the order's Filled)
    movers: tuple[Placed, ...]
    unanswered: tuple[str, ...]  # clOrdIds of steps whose answer never came
    liquidated: bool  # a liquidation went: no order of ours shows its fate, only the position
    noted_at: float  # monotonic seconds


def lag(broker: Broker, account_id: int, u: Unsettled) -> str | None:
    """What the view does not show of ``u`` yet, in words; None once it shows all of it (or
    the broker's refusal of its market orders). Memory only."""
    try:
        held = net_pos(broker, account_id, u.contract)
        working = broker.working_orders(account_id)
        unseen = [
            cl or str(oid)
            for oid, cl in (*u.placed, *((None, cl) for cl in u.unanswered))
            if not broker.knows_order(account_id, oid, cl)
        ]
    except TransientBrokerError:
        return "its view is not synced"
    if held is None:
        return "its view is not synced"
    open_ids = {o.order_id for o in working}
    open_cls = {o.cl_ord_id for o in working if o.cl_ord_id}
    said: list[str] = []
    if u.made_pos is not None and held != u.made_pos:
        filling = [
            m
            for m in u.movers
            if not broker.knows_order(account_id, *m) or _open(m, open_ids, open_cls)
        ]
        if filling or u.liquidated:
            said.append(f"it holds {held} where they make {u.made_pos}")
    if unseen:
        said.append(f"order{'s' if len(unseen) > 1 else ''} {', '.join(unseen)} not shown")
    still = [str(oid) for oid in u.cancelled if oid in open_ids]
    if still:
        said.append(f"cancelled order{'s' if len(still) > 1 else ''} {', '.join(still)} still open")
    return "; ".join(said) or None


def _open(order: Placed, open_ids: set[int], open_cls: set[str]) -> bool:
    oid, cl = order
    return (oid is not None and oid in open_ids) or (cl is not None and cl in open_cls)


def unsettled_shortfall(why: str) -> Shortfall:
    """Why a signal planned nothing for an account whose view lags an earlier dispatch (a
    signal's, or a flatten's): ``why`` names the contract and what the view lacks."""
    return Shortfall(
        VIEW_UNSETTLED,
        f"the broker's view does not show yet what was sent to the account before ({why}):"
        " nothing sent",
    )


class UnsettledViews:
    """The accounts at the broker whose view lags what a dispatch sent them: a record per
    account and contract (a position is one contract's)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lagging: dict[AccountKey, dict[str, Unsettled]] = {}

    def now(self) -> float:
        return self._clock()

    def __len__(self) -> int:
        """How many records are held, of every account."""
        return sum(len(records) for records in self._lagging.values())

    def note(self, key: AccountKey, u: Unsettled) -> None:
        """``u`` is what the view of ``key`` lacked when the settle wait gave up. A record of
        the contract still held (a flatten's liquidation goes whatever the view lacks) is
        kept in it: the view must show both, and the later position is the one to hold."""
        self._forget_expired(u.noted_at)
        records = self._lagging.setdefault(key, {})
        was = records.get(u.contract.symbol)
        if was is not None:
            u = dataclasses.replace(
                u,
                made_pos=u.made_pos if u.made_pos is not None else was.made_pos,
                placed=(*was.placed, *u.placed),
                cancelled=(*was.cancelled, *u.cancelled),
                movers=(*was.movers, *u.movers),
                unanswered=(*was.unanswered, *u.unanswered),
                liquidated=was.liquidated or u.liquidated,
            )
        records[u.contract.symbol] = u

    def _forget_expired(self, now: float) -> None:
        """Drop every record past its grace: one is otherwise dropped only when its product is
        next asked about, and an account that never trades it again kept it for good."""
        for key, records in list(self._lagging.items()):
            for symbol, u in list(records.items()):
                if now - u.noted_at >= GRACE_S:
                    del records[symbol]
            if not records:
                del self._lagging[key]

    def hold_up(
        self, key: AccountKey, broker: Broker, account_id: int, root: str | None
    ) -> Shortfall | None:
        """Why ``key`` may not be planned in product ``root`` from its view now; None for an
        account with no record (the common one: a dict look-up), or once its view shows
        those of the product (each goes when shown). Every month of the product, not only the
        contract planned: the month is picked from the view (the one held), and an entry
        not shown yet in the old month had the next one opened in the new month beside it.
        Another product's records do not hold it: its plan reads only its own contract.
        ``root`` None: all of them. A view not synced is left to the planner, which says so."""
        records = self._lagging.get(key)
        if records is None or not broker.is_synced(account_id):
            return None
        lacking: list[str] = []
        for symbol, u in list(records.items()):
            if root is not None and u.contract.root.upper() != root.upper():
                continue
            why = lag(broker, account_id, u)
            if why is None:
                del records[symbol]
            elif self._clock() - u.noted_at >= GRACE_S:
                del records[symbol]
                log.warning(
                    "dispatch.unsettled_given_up",
                    sub_account_id=u.sub_account_id,
                    after_s=GRACE_S,
                    lacking=why,
                    effect="the view is taken as the broker's",
                )
            else:
                lacking.append(f"{symbol}: {why}")
        if not records:
            del self._lagging[key]
        return unsettled_shortfall("; ".join(lacking)) if lacking else None
