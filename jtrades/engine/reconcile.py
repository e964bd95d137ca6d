"""Reconciliation: make the database agree with the brokers, and never let doubt send an order.

Three jobs:

1. Open intents (pending/sent/unknown) that outlived their send window are looked up at the
   broker by clOrdId (money rule 2). Found: the intent takes the order's state. Not found: it was
   never sent, and it never will be (``expired``) — after a crash between intent and send the
   order is dropped, not sent late. Run once at start, before the engine reports ready. A miss
   proves nothing of an order the broker accepted, nor of one written before the trading day
   changed (the broker's lists then hold only working orders): those are closed as ``done``,
   outcome unknown, never sent late, and a person is told (``resolve_intent``).
2. The brokers' event streams are mirrored into ``orders``, ``fills``, ``positions`` and
   ``trades`` by ``engine.mirror``, which also keeps the day's realized P&L (``pnl``).
3. A naked position — open, its live stops not adding up to its size, and its trader has a
   stop loss configured — gets protection (``engine.protection``): a stop for the uncovered
   rest, or its exits re-placed as one OCO per take-profit plus a stop for the rest, so the
   stops never close more than is held whatever fills. Through intents like any other order,
   under the sub-account's dispatcher lock. Only on a synced view: "missing is not flat"
   (rule 6), an unreadable account is left alone. Carried out by ``engine.protector``, which
   the ``Reconciler`` delegates each pass's protection to.
4. Exits left working on a contract the sub-account no longer holds (a position closed by hand
   with a plain market order) are cancelled before one of them fills and opens a new position
   (``engine.orphans``, carried out by ``engine.orphan_sweep``).

The decisions (``resolve_intent``, ``needs_stop``, ``engine.protection``) are pure; the class
does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.aio import within
from jtrades.broker.base import Broker, WorkingOrder
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.engine.config_cache import ConfigCache, LinkConfig
from jtrades.engine.dispatch import FOLLOW_UP_S, Dispatcher
from jtrades.engine.mirror import Mirror
from jtrades.engine.orphan_sweep import OrphanSweeper
from jtrades.engine.owed_stop import EARLIER_SESSION
from jtrades.engine.pnl import DailyPnl
from jtrades.engine.protect_position import _exit_view  # re-exported: imported by tests
from jtrades.engine.protect_waits import CANCEL_WAIT_S
from jtrades.engine.protector import (  # re-exported: imported from here by callers and tests
    Protector,
    needs_stop,
)
from jtrades.engine.send import intent_state
from jtrades.engine.tradingday import session_start
from jtrades.errors import BrokerRejected
from jtrades.store import intents as intent_store
from jtrades.store import trading as trading_store

__all__ = [
    "CANCEL_WAIT_S",
    "Reconciler",
    "_exit_view",
    "needs_stop",
    "outcome_lost",
    "resolve_intent",
]

log = structlog.get_logger(__name__)

# How long past its grace an open intent may wait for a session that can look it up before a
# person is told: a reconnect or a restart takes less; a login that cannot connect, more.
UNRESOLVED_AFTER = timedelta(minutes=5)


# --- pure decisions ---------------------------------------------------------------------------


def resolve_intent(
    kind: str,
    found: WorkingOrder | None,
    *,
    state: str = "pending",
    broker_order_id: int | None = None,
    created_at: datetime | None = None,
    session_began: datetime | None = None,
) -> tuple[str, int | None, str | None]:
    """An open intent's new state given what the broker knows by its clOrdId (a strategy's:
    its entry order, found by the id the strategy was started with). ``found`` is None only
    when the broker's complete answer has no such order: an unreadable one decides nothing.

    A miss proves "never sent" only for an order the broker never answered and that was
    written in the current trading session (``session_began``: ``tradingday.session_start``
    of now): the broker's lists then hold all of the session's orders. They hold only the
    working ones of an earlier session (Tradovate drops a day's finished orders at 17:00
    Chicago), so a miss says nothing of an order that was accepted (``broker_order_id``, or
    ``state`` 'sent': the broker answered) or written before the session began: filled,
    cancelled or never sent, nobody can tell from here. Such an intent is 'done' (it is over
    and never sent late; the signal counts it as an order, and its entry keeps its counts:
    fail closed) with a reason saying the outcome is unknown, and the caller tells a person
    (``outcome_lost``)."""
    if found is not None:
        return intent_state(found.status), found.order_id, None
    if kind in ("cancel", "liquidate", "modify"):
        return "expired", None, "outcome not confirmed by the broker; not repeated"
    if broker_order_id is not None or state == "sent":
        said = f" (order {broker_order_id})" if broker_order_id is not None else ""
        return (
            "done",
            broker_order_id,
            f"accepted by the broker{said}, which no longer lists it (a trading day's "
            "finished orders are gone after it): outcome unknown, never sent again; look at "
            "the account at the broker",
        )
    if created_at is not None and session_began is not None and created_at < session_began:
        return (
            "done",
            None,
            f"{EARLIER_SESSION}, whose finished orders the broker no longer lists (filled, "
            "cancelled or never sent); never sent late: look at the account at the broker",
        )
    # Never sent, said after the finding rather than as ``unsent``'s prefix: an order's or a
    # strategy's fate is read from its kind, never its reason (``owed_stop.never_sent``), and
    # the text is stored: rows already written keep it.
    if kind == "strategy":
        return (
            "expired",
            None,
            "no order strategy at the broker with this id: not sent, never sent late",
        )
    return "expired", None, "no order at the broker with this clOrdId: not sent, never sent late"


def outcome_lost(found: WorkingOrder | None, state: str) -> bool:
    """Whether ``resolve_intent``'s answer ``state`` for a lookup that found ``found`` closes
    an order whose outcome nobody knows (a miss not proving "never sent"): a person is told,
    since its sub-account may hold a position or an order nothing accounts for."""
    return found is None and state == "done"


# --- the loop ---------------------------------------------------------------------------------


class Reconciler:
    def __init__(
        self,
        pool: asyncpg.Pool,
        brokers: BrokerRegistry,
        config: ConfigCache,
        dispatcher: Dispatcher,
        settings: Settings,
    ) -> None:
        self._pool = pool
        self._brokers = brokers
        self._config = config
        self._settings = settings
        self._dispatcher = dispatcher
        self.mirror = Mirror(pool, brokers, config)
        self.protector = Protector(
            pool, brokers, config, dispatcher, settings, booked=self.mirror.booked
        )
        self.orphans = OrphanSweeper(pool, brokers, config, dispatcher, settings)
        self._soon: asyncio.Task[None] | None = None  # a pass a dispatch asked for
        self._again = False  # asked again while it ran
        self._ready = False
        # after this long an intent's send has finished one way or the other (a protective
        # step may start up to FOLLOW_UP_S past the TTL: dispatch)
        self._grace = timedelta(
            seconds=settings.trading.signal_ttl_s
            + FOLLOW_UP_S
            + settings.tradovate.request_timeout_s
            + 5
        )
        # an intent still open this long after its grace is reported (``_unresolved``)
        self._overdue = self._grace + UNRESOLVED_AFTER
        self._reported: set[int] = set()  # order_intents.id of those reported already

    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        """Seed trade tracking, mirror the event streams, resolve every intent left from before."""
        started = datetime.now(UTC)
        snap = self._config.snapshot
        # Every sub-account the mirror follows (``snap.subs``), not the linked ones only: a
        # position outlives its trader, and one not seeded had its close after a restart book
        # no round trip, and, closed while the daemon was down and gone from the next day's
        # snapshot, stayed open in ``positions`` for good (``vanished`` sweeps what is seeded).
        rows = await trading_store.positions(self._pool, list(snap.subs))
        fills = await trading_store.open_position_fills(self._pool, list(snap.subs))
        self.mirror.seed_open(
            ((r["sub_account_id"], r["symbol"], r["net_pos"], r["net_price"], r["updated_at"])
             for r in rows),
            fills,
        )  # fmt: skip
        # Positions held before this start have been open for at least a pass when the first
        # pass runs (an interval later): no entry's brackets are still activating, so a naked
        # one is protected on that pass, not on a second sighting. Protection needs a trader's
        # stop settings: the linked sub-accounts only.
        self.protector.seed(
            (r["sub_account_id"], r["symbol"])
            for r in rows
            if r["net_pos"] not in (0, None) and r["sub_account_id"] in snap.links_by_sub
        )
        self.mirror.ensure()
        # Everything still open from before this process started was written by a process
        # that is gone: it is looked up now, and dropped if the broker never got it.
        await self.resolve_intents(before=started)
        self._ready = True

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._settings.trading.reconcile_interval_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await within(stop.wait(), interval)
                return
            await self.tick()

    async def tick(self) -> None:
        """One pass; each job logs its own failure and the others still run."""
        try:  # logins that could not connect before are tried again
            await self._brokers.sync_accounts(self._config.snapshot)
        except Exception as exc:
            log.error("reconcile.sessions_failed", error=str(exc))
        self.mirror.ensure()
        try:
            await self.resolve_intents(before=datetime.now(UTC) - self._grace)
        except Exception as exc:
            log.error("reconcile.intents_failed", error=str(exc))
        try:
            await self.protect_positions()
        except Exception as exc:
            log.error("reconcile.protect_failed", error=str(exc))
        try:
            await self.orphans.sweep()
        except Exception as exc:
            log.error("reconcile.orphans_failed", error=str(exc))

    @property
    def pnl(self) -> DailyPnl:
        """Realized P&L of the day per sub-account, as the mirror records the fills."""
        return self.mirror.pnl

    async def close(self) -> None:
        if self._soon is not None:  # a pass a dispatch asked for: the daemon is stopping
            self._soon.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._soon
        await self.mirror.close()

    # --- 1. intents -----------------------------------------------------------------------

    async def resolve_intents(self, *, before: datetime) -> int:
        """Resolve open intents created before ``before``; returns how many were resolved."""
        done = 0
        open_now = await intent_store.open_older_than(self._pool, before)
        # an intent reported once and closed since (or gone) may be forgotten
        self._reported &= {it.id for it in open_now}
        for it in open_now:
            if self._dispatcher.busy(it.env, it.account_id, it.broker_account_id):
                # being sent: the dispatcher writes what became of it (told if it never does)
                self._unresolved(it, "its account's lock has been held since")
                continue
            broker = self._session(it.account_id, it.env)
            if broker is None:
                self._unresolved(it, "its login has no broker session")
                continue
            if not broker.is_synced(it.broker_account_id):
                self._unresolved(it, "its account cannot be read at the broker")
                continue  # cannot see the account: decide nothing
            state: str
            order_id: int | None
            reason: str | None
            found: WorkingOrder | None = None
            try:
                found = await broker.order_by_cl_ord_id(
                    it.broker_account_id,
                    it.cl_ord_id,
                    since=it.created_at,
                    strategy=it.kind == "strategy",
                )
            except BrokerRejected as exc:  # it reached the broker, which refused it
                state, order_id, reason = "rejected", None, str(exc) or None
            except Exception as exc:
                log.warning("reconcile.lookup_failed", cl_ord_id=it.cl_ord_id, error=str(exc))
                self._unresolved(it, f"the lookup failed: {exc}")
                continue
            else:
                state, order_id, reason = resolve_intent(
                    it.kind,
                    found,
                    state=it.state,
                    broker_order_id=it.broker_order_id,
                    created_at=it.created_at,
                    session_began=session_start(datetime.now(UTC)),
                )
            await intent_store.set_state(
                self._pool, it.id, state, broker_order_id=order_id, reason=reason
            )
            if outcome_lost(found, state):
                log.error(
                    "reconcile.intent_outcome_lost",
                    **_told(it, reason),
                    signal_id=it.signal_id,
                    broker_order_id=it.broker_order_id,
                )
            else:
                log.info("reconcile.intent_resolved", cl_ord_id=it.cl_ord_id, state=state)
            done += 1
        return done

    def _unresolved(self, it: intent_store.OpenIntent, why: str) -> None:
        """Say once, as an error (so a person is told), that an order's outcome is still
        unknown long after its send must have ended: until it is looked up its sub-account
        may hold an order or a position nobody accounts for. Once, not every pass: the
        notifications would hold back every later error of the same source."""
        if it.id in self._reported or it.created_at > datetime.now(UTC) - self._overdue:
            return
        self._reported.add(it.id)
        log.error("reconcile.intent_unresolved", **_told(it, why))

    def _session(self, account_id: int, env: str) -> Broker | None:
        for aid, _env, broker in self._brokers.sessions():
            if aid == account_id:
                return broker
        return None

    # --- 2. the mirror (engine.mirror), 3. protective stops (engine.protector) ---------------

    async def protect_positions(self) -> int:
        """Protect each position seen naked on two passes in a row (an entry's brackets may
        still be activating on the first); returns how many positions got orders."""
        return await self.protector.protect_positions()

    def protect_soon(self, link: LinkConfig, symbol: str) -> None:
        """A dispatch failed after cancelling a position's exits (``Dispatcher.on_uncovered``):
        the position counts as sighted once, and a pass runs now, not an interval later (one
        more when asked during one). The pass takes the account's lock, so it runs once the
        dispatch's settle wait is over."""
        self.protector.suspect(link, symbol)
        self._again = True
        if self._soon is None or self._soon.done():
            self._soon = asyncio.create_task(self._protect_now(), name="reconcile.protect_soon")

    async def _protect_now(self) -> None:
        """The pass asked for, and again each second while a suspect's view cannot be read (a
        session reconnecting after the socket dropped mid-dispatch) or its orders cannot leave
        (a session held by a 429), up to the regular pass's interval: spent on a view that was
        back 0.3 s later, or on a 10 s hold, the pass left the position naked for a whole
        interval."""
        loop = asyncio.get_running_loop()
        until = loop.time() + self._settings.trading.reconcile_interval_s
        while self._again:
            self._again = False
            try:
                await self.protector.protect_positions()
            except Exception as exc:  # the regular pass tries again
                log.error("reconcile.protect_soon_failed", error=f"{type(exc).__name__}: {exc}")
            if self.protector.unread and not self._again and loop.time() + 1 < until:
                await asyncio.sleep(1)
                self._again = True


def _told(it: intent_store.OpenIntent, why: str | None) -> dict[str, object]:
    """What a person is told of an intent whose outcome is unknown."""
    return {
        "cl_ord_id": it.cl_ord_id,
        "intent_id": it.id,
        "sub_account_id": it.sub_account_id,
        "state": it.state,
        "created_at": it.created_at.isoformat(),
        "reason": why,
        "effect": "outcome unknown: look at the account at the broker",
    }
