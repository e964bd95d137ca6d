"""The engine: one stored signal in, orders at every linked sub-account out (DESIGN.md §2).

``on_signal`` runs the recorder's filters, then each enabled trader's (``fanout``), then plans
and dispatches per sub-account (``dispatch.Dispatcher``). A buy/sell whose entry a filter or the
kill switch refused (``Rejection.entry_only``) keeps its verdict and reason but is still
planned, close-only: a sub-account on the side the strategy reversed out of is closed, none
opens.

Everything it reads on the way — configuration, counters, P&L, positions — is in memory
(``ConfigCache``, the brokers' live views, ``counters.SessionCounters`` seeded from the database
at start), so the only database round trip before the orders leave is one statement. Handed a
``Delivery`` (the webhook's, not yet stored), the engine filters and plans first and then stores
the signal row, its dedup decision and its intents in that one statement (``signals.claim``);
when it turns out a duplicate, nothing is sent and the counters the filters moved are put back,
under a per-recorder lock so no other signal of the recorder saw them. The HTTP layer stores the
returned ``Outcome`` on the row; ``Outcome.detail`` carries ``entry``/``nth_seen`` (the
recorder's counters, moved by the recorder's reading alone) and ``trader_entries``/
``trader_seen`` (trader ids: each trader's entries, whichever reading made them,
``counters.ForeignEntry``) so the session counters can be rebuilt after a restart,
``traders`` (per-trader rejections and skipped sub-accounts) and ``accounts`` (per
sub-account: action, reason, sent/rejected/unknown/expired counts, the broker's messages).

The verdict, and the counts of entries never made given back, wait for the orders
(``verdicts``). A database failure while writing the intents returns ``rejected`` with filter
``storage`` and nothing sent (fail closed). ``halt --flatten`` requests are carried out by
``flatten``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.changes import ChangeFeed
from jtrades.engine.config_cache import ConfigCache, Snapshot
from jtrades.engine.counters import (
    Counters,
    ForeignEntry,
    Kind,
    SessionCounters,
    Undo,
    count_entry,
)
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.fanout import Fanout
from jtrades.engine.filters import (
    RecorderState,
    check_recorder,
    forbidden_side,
    is_entry,
    other_instrument,
    reads_own_way,
)
from jtrades.engine.flatten import Flattener
from jtrades.engine.reconcile import Reconciler
from jtrades.engine.recorder_turn import RecorderTurn, RecorderTurns
from jtrades.engine.signal import Signal
from jtrades.engine.tradingday import session_start
from jtrades.engine.verdicts import Judged
from jtrades.errors import StorageUnavailable
from jtrades.store import intents as intent_store
from jtrades.store import signals as signal_store
from jtrades.store import trading as trading_store

log = structlog.get_logger(__name__)


_REMEMBERED_SIGNALS = 10_000  # recent signal ids whose outcome a repeat call gets back
_LISTEN_WITHIN_S = 2.0  # at start, for the configuration change feed


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of a signal: stored on its row by the HTTP layer.

    ``verdict`` accepted | rejected | expired (past the signal TTL on arrival, or before any
    of its orders could be sent) | duplicate (of ``duplicate_of``: a delivery found already
    claimed, which sent nothing); ``filter`` names the check that said no;
    ``orders`` counts orders the brokers accepted; ``detail`` is per trader and sub-account.
    """

    verdict: str
    filter: str | None
    reason: str | None
    orders: int
    detail: dict[str, Any] = field(default_factory=dict)
    # send outcomes left for the caller to store (``Engine.defer_intent_outcomes``)
    unwritten: list[intent_store.Outcome] = field(default_factory=list)
    duplicate_of: int | None = None


def _duplicate(first: int) -> Outcome:
    return Outcome(
        "duplicate", None, f"a repeat of signal {first}: nothing sent", 0, duplicate_of=first
    )


class Engine:
    """Owns the config cache, the dispatcher, the reconciler and the broker registry."""

    def __init__(
        self, db: Database, settings: Settings, brokers: BrokerRegistry | None = None
    ) -> None:
        self._db = db
        self._settings = settings
        self.brokers = brokers if brokers is not None else BrokerRegistry(db, settings)
        self.config = ConfigCache(db.pool)
        # configuration changes made by the CLI, heard as they commit (the token cache follows
        # them too: ``jtrades serve`` subscribes it)
        self.changes = ChangeFeed(db.connect_one)
        # the statement each alert waits on before its first order runs on a connection of
        # its own when that is free (db.Lane)
        self.claims = db.lane()
        self.dispatcher = Dispatcher(
            db.pool, ttl_s=settings.trading.signal_ttl_s, claims=self.claims
        )
        self.reconciler = Reconciler(db.pool, self.brokers, self.config, self.dispatcher, settings)
        self.dispatcher.on_uncovered = self.reconciler.protect_soon
        self.counters = SessionCounters()
        self._fanout = Fanout(
            self.brokers,
            self.counters,
            self.reconciler.pnl,
            lambda: self.config.snapshot,
            self.reconciler.mirror.booked,
            self.reconciler.mirror.lots,
        )
        self._outcomes: OrderedDict[int, asyncio.Future[Outcome]] = OrderedDict()
        self.turns = RecorderTurns(self.counters)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._started = False
        self._flattener = Flattener(db.pool, self.brokers, self.config, self.dispatcher)
        # When True, ``on_signal`` returns the intents' send outcomes in ``Outcome.unwritten``
        # instead of writing them before returning: the webhook answers first and then stores
        # them with the signal's verdict in one statement. Intents are on disk before any send
        # either way (rule 1); an outcome not yet written is what reconciliation settles.
        self.defer_intent_outcomes = False

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load configuration and counters, open broker sessions, reconcile once, then serve."""
        snap = await self.config.load()
        await self.brokers.sync_accounts(snap)
        self.config.on_change(self._on_config_change)
        await self._seed_pnl()  # before the mirror books a fill on it
        await self.claims.open()
        await self.reconciler.start()
        # after the startup reconciliation: an interrupted signal's counts are known only once
        # its intents are resolved (an entry that never reached the broker gives them back)
        await self._seed_counters()
        self._tasks = [
            asyncio.create_task(self.changes.run(self._stop), name="engine.changes"),
            asyncio.create_task(
                self.changes.follow(self._stop, self.config.refresh, "config"),
                name="engine.config",
            ),
            asyncio.create_task(self.reconciler.run(self._stop), name="engine.reconcile"),
        ]
        # ready means a CLI change is heard as it commits; else (logged) it is polled
        if not await self.changes.wait_listening(_LISTEN_WITHIN_S):
            log.warning("engine.changes_unheard", effect="configuration polled every second")
        self._started = True
        if snap.flatten is not None:
            self._tasks.append(asyncio.create_task(self.flatten(snap.flatten)))
        log.info("engine.started", recorders=len(snap.recorders), traders=len(snap.traders))

    async def close(self) -> None:
        """Stop the loops, drain the event mirrors, close broker sessions."""
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        await self.reconciler.close()
        await self.brokers.close()
        await self.claims.close()
        self._started = False

    def config_version(self) -> str | None:
        """The fingerprint of the configuration snapshot in use (``/metrics``): equal to the
        database's (``trading.config_fingerprint``) once a change has been loaded."""
        try:
            return self.config.snapshot.fingerprint
        except RuntimeError:  # not loaded yet
            return None

    def ready(self) -> bool:
        """Started, configuration loaded, startup reconciliation done, brokers connected."""
        return self._started and self.reconciler.ready() and self.brokers.ready()

    def _on_config_change(self, snap: Snapshot) -> None:
        self._tasks = [t for t in self._tasks if not t.done() or t.get_name().startswith("engine.")]
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._sync_brokers(snap)))
        if snap.flatten is not None:
            self._tasks.append(loop.create_task(self.flatten(snap.flatten)))

    async def _sync_brokers(self, snap: Snapshot) -> None:
        """Open sessions for newly linked logins, then mirror their events at once. A failure
        (a paper login's restore while the database hiccups) is logged here: the task is
        dropped once done, and its exception went unread to asyncio's "never retrieved"; the
        reconciliation pass syncs again."""
        try:
            await self.brokers.sync_accounts(snap)
        except Exception as exc:
            log.error(
                "engine.sync_accounts_failed",
                error=type(exc).__name__,
                reason=str(exc),
                effect="tried again by the next reconciliation pass",
            )
        finally:
            self.reconciler.mirror.ensure()

    async def flatten(self, request: dict[str, Any]) -> int:
        """Carry out ``jtrades halt --flatten`` (``engine.flatten``); returns liquidations sent."""
        return await self._flattener.run(request)

    async def _seed_pnl(self) -> None:
        """The day's realized P&L from the stored trades; the mirror adds to it."""
        since = session_start(datetime.now(UTC))
        self.reconciler.pnl.seed(await trading_store.realized_today(self._db.pool, since), since)

    async def _seed_counters(self) -> None:
        """The session's counts from the stored verdicts, and each last entry as far back as
        the longest cooldown configured reaches: a cooldown spans the CME day's turn, and an
        entry at 16:55 Chicago still holds one at 17:05 after a restart.

        First, the signals a stopped daemon was handling whose orders never reached the broker
        (as startup reconciliation found them) give back what their claims counted, as a run
        that lives gives them back (``verdicts.Judged.settle``); an intent still unresolved
        keeps its signal's counts."""
        now = datetime.now(UTC)
        since = session_start(now)
        snap = self.config.snapshot
        longest = max(
            (
                s.cooldown_s
                for s in (
                    *(r.settings for r in snap.recorders.values()),
                    *(t.settings for t in snap.traders.values()),
                )
            ),
            default=0,
        )
        back = min(since, now - timedelta(seconds=longest))
        given = await signal_store.give_back_unsent(self._db.pool, back)
        if given:
            log.info("engine.interrupted_counts_given_back", signals=given)
        earlier: dict[tuple[Kind, int], datetime | None] = {}
        if back < since:  # a second read at start only: the hot path never waits on it
            for c in await trading_store.recorder_counters(self._db.pool, back):
                earlier[("recorder", c.recorder_id)] = c.last_entry_at
            for tid, (_, last, _) in (
                await trading_store.trader_entries(self._db.pool, back)
            ).items():
                earlier[("trader", tid)] = last
        for c in await trading_store.recorder_counters(self._db.pool, since):
            self.counters.seed(
                "recorder",
                c.recorder_id,
                Counters(since, c.signals, c.entries, c.last_entry_at, c.seen),
            )
        for tid, (entries, last, seen) in (
            await trading_store.trader_entries(self._db.pool, since)
        ).items():
            self.counters.seed("trader", tid, Counters(since, entries, entries, last, seen))
        for (kind, key), last in earlier.items():
            counts = self.counters.get(kind, key, now)
            if counts.last_entry_at is None:
                counts.last_entry_at = last

    # --- the hot path -----------------------------------------------------------------------

    async def on_signal(
        self,
        *,
        signal_id: int,
        recorder_id: int,
        signal: Signal,
        received_at: datetime,
        delivery: signal_store.Delivery | None = None,
    ) -> Outcome:
        """Filter, plan and dispatch one signal; never raises for a trading outcome.

        With a ``delivery`` (``delivery.signal_id == signal_id``) the signal is not stored yet:
        it is stored with its intents in one statement, and a raise means it was not (nothing
        sent). Without one, its row exists already. The same ``signal_id`` handed over again
        (a retry) gets the first call's outcome: it is filtered, counted and traded once."""
        known = self._outcomes.get(signal_id)
        if known is not None:
            return await asyncio.shield(known)
        fut: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._outcomes[signal_id] = fut
        while len(self._outcomes) > _REMEMBERED_SIGNALS:
            self._outcomes.popitem(last=False)
        try:
            if delivery is None:
                out = await self._on_signal(signal_id, recorder_id, signal, received_at, None, None)
            else:
                out = await self._on_delivery(delivery)
        except BaseException as exc:
            self._outcomes.pop(signal_id, None)
            if isinstance(exc, asyncio.CancelledError):
                fut.cancel()
            else:
                fut.set_exception(exc)
                fut.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        fut.set_result(out)
        return out

    async def _on_delivery(self, d: signal_store.Delivery) -> Outcome:
        """Filters and planning run before the delivery is known to be new, so what they count
        is undone for a duplicate; the recorder's turn (``recorder_turn``) keeps any other
        signal of the recorder from moving those counts in between, and is given up while the
        orders go."""
        undo: Undo = {}
        async with self.turns.turn(d.recorder_id, undo) as turn:
            try:
                out = await self._on_signal(
                    d.signal_id, d.recorder_id, d.signal, d.received_at, d, undo, turn
                )
            except StorageUnavailable:
                # not stored, or not known to be (the claim's fate was probed): the webhook
                # answers 503 and TradingView's re-send is what counts; once claimed, its
                # orders went and it counts (the webhook answers 200)
                if turn.held and not turn.claimed:
                    self.counters.undo(undo)
                raise
            except Exception:
                # counted only if stored: once the claim is on disk, orders may have left and
                # a restart counts it (the claim stores the counts), so memory must too; a
                # database that cannot answer reads "not stored", so the turn is asked first
                if (
                    turn.held
                    and not turn.claimed
                    and not await signal_store.is_stored(self._db.pool, d.signal_id, within_s=2)
                ):
                    self.counters.undo(undo)
                raise
            except BaseException:  # cancelled (shutdown): the restart rebuilds from the rows
                if turn.held and not turn.claimed:
                    self.counters.undo(undo)
                raise
            if out.duplicate_of is not None:  # decided by the claim, the turn held: put back
                self.counters.undo(undo)
            return out

    async def _store(self, out: Outcome, delivery: signal_store.Delivery | None) -> Outcome:
        """An outcome with no orders: store the delivery first when it is not stored yet."""
        if delivery is None:
            return out
        delivery = dataclasses.replace(delivery, detail=out.detail or None)
        claim = await self.dispatcher.claim(delivery, [])
        if claim.duplicate_of is not None:
            return _duplicate(claim.duplicate_of)
        return out

    async def _on_signal(
        self,
        signal_id: int,
        recorder_id: int,
        signal: Signal,
        received_at: datetime,
        delivery: signal_store.Delivery | None,
        undo: Undo | None,
        turn: RecorderTurn | None = None,
    ) -> Outcome:
        if undo is None:
            undo = {}  # a signal handed over stored: nothing to put back but the outranked's
        now = datetime.now(UTC)
        ttl = self._settings.trading.signal_ttl_s
        if (now - received_at).total_seconds() > ttl:
            out = Outcome("expired", None, f"older than the {ttl:g}s signal TTL: not traded", 0)
            return await self._store(out, delivery)
        snap = self.config.snapshot
        rec = snap.recorders.get(recorder_id)
        if rec is None:
            # Read again whatever refresh() says: False also when another load (the CLI's
            # change notice) put the new snapshot in while it compared fingerprints, and the
            # first alert of a recorder created a moment ago was refused as unknown.
            await self.config.refresh()
            snap = self.config.snapshot
            rec = snap.recorders.get(recorder_id)
        if rec is None:
            out = Outcome("rejected", "unknown_recorder", "the recorder no longer exists", 0)
            return await self._store(out, delivery)
        other = other_instrument(signal.ticker, rec.symbol)
        if other is not None:
            return await self._store(Outcome("rejected", other.filter, other.reason, 0), delivery)

        rc = self.counters.get("recorder", rec.id, now, undo)
        rc.signals += 1
        entry = is_entry(signal, rec.settings)
        state = RecorderState(rc.signals - 1, rc.entries, rc.last_entry_at, rc.seen)
        rej = check_recorder(
            signal,
            rec.settings,
            state,
            # judged when it arrived, as entries are stamped: measured to when it was handled
            # (after waiting on this lock behind a slow broker), a cooldown let it through
            received_at,
            rec.tz,
            enabled=rec.recording_enabled,
            owner_active=rec.owner_active,
            halted=snap.halted,
        )
        seen = False
        if entry:
            entry, seen = count_entry(rc, rej.filter if rej is not None else None, received_at)
        if rej is not None and not rej.entry_only:
            if rej.filter == "recording_disabled":
                await self._fanout.market_only(signal, rec, snap)
            rejected: dict[str, Any] = {"entry": False, "nth_seen": seen}
            return await self._store(
                Outcome("rejected", rej.filter, rej.reason, 0, rejected), delivery
            )
        # else a refused entry, not the close half of a reversal: planned close-only

        detail: dict[str, Any] = {
            "entry": entry,
            "nth_seen": seen,
            "traders": {},
            "trader_entries": [],  # for the per-trader counters after a restart
            "trader_seen": [],
        }
        foreign = None
        if (rej is None or rej.filter == "direction") and any(
            reads_own_way(t.overridden) for t in rec.traders
        ):
            # a trader reading the recorder its own way may open what the recorder's reading
            # cannot: the recorder's entry filters judge that on the trader's counts, where
            # all its entries count, those of the recorder's reading too (``ForeignEntry``)
            forbidden = forbidden_side(signal, rec.settings)
            foreign = ForeignEntry(signal, rec.settings, rec.tz, received_at, forbidden)
        items, trader_rejections = await self._fanout.work_items(
            signal, rec, snap, now, received_at, signal_id, detail, undo, rej, foreign
        )
        own_way = foreign is not None and foreign.forbidden  # the recorder's refusal binds none
        judged = Judged(rec, rej, own_way, trader_rejections, detail)
        if not items:
            if not rec.traders:
                detail["note"] = "no trader follows this recorder"
            verdict = judged.settle([], self.counters, undo, ttl)
            return await self._store(Outcome(*verdict, 0, detail), delivery)

        result = await self.dispatcher.dispatch(
            signal_id,
            received_at,
            items,
            defer_outcomes=self.defer_intent_outcomes,
            # a copy: the claim encodes it while ``detail`` keeps growing here
            delivery=dataclasses.replace(delivery, detail=dict(detail)) if delivery else None,
            claimed=turn.stored if turn is not None else None,
        )
        if result.duplicate_of is not None:
            return _duplicate(result.duplicate_of)
        # the outcome's detail replaces the counts the claim stored, which a restart counts
        # every change to the counts under the recorder's lock (``recorder_turn``)
        async with turn.again() if turn is not None else contextlib.nullcontext():
            moved = turn.moved if turn is not None else None
            verdict = judged.settle(result.accounts, self.counters, undo, ttl, moved)
        detail["accounts"] = {str(a.sub_account_id): a.as_dict() for a in result.accounts}
        if result.storage_failed:
            return Outcome(
                "rejected",
                "storage",
                "the database could not record the orders: nothing was sent",
                0,
                detail,
            )
        return Outcome(*verdict, result.orders, detail, result.unwritten)
