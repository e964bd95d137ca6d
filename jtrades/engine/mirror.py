"""The brokers' event streams mirrored into ``orders``, ``fills``, ``positions`` and ``trades``.

Every login's session publishes the changes to its live view; one pump per login forwards them,
tagged with the login, into one queue, and one writer drains it. A batch starts with an event and
grows while more keep coming: it is written, in one statement (``store.mirror``), once the stream
has paused for ``quiet_s`` (2 ms) or the batch is ``coalesce_s`` (20 ms) old. Under load the
batches grow instead of the statements multiplying: ten logins each writing their own small
batches cost ten times the round trips, commits and row-lock traffic for the same rows.

Why wait at all: an alert's orders leave in one burst and their events (about eight per market
order) come back while the rest of the burst is still going out, for a millisecond at ten
sub-accounts and several at a hundred. Written as they arrived, they put Postgres round trips,
and a Postgres process wanting one of the two cores, in the middle of the fan-out: from the
first order frame to the last, a hundred-sub-account alert took 7.0–10.0 ms before (four runs)
and 6.1–7.8 ms with the wait. Nothing decides from these rows within the wait: planning reads
the live view, and the daily-loss filter, which adds the realized P&L counted once a batch
commits, first waits for the batches holding its sub-accounts' latest fills (``booked``).

Fills are de-duplicated by the broker's fill id; each new one goes through ``close_trade``, and
the round trips it closes are written in the batch's transaction and added to ``pnl``, the
realized P&L the daily-loss filter reads. After a reconnect the session replays the day's fills
(with the positions and the orders that changed): the ones already stored are not new, so they
count once. A pump re-reads its session's whole view (``AccountView.replay``) when it starts —
the daemon connects its sessions before the mirror follows them, so their first snapshot, with
what happened while it was down, reached no one — and when its subscription overflows.

A fill is priced by its contract's value per point, which may need the broker (``find_contract``,
looked up beside the writer on a per-symbol backoff: ``fill_pricing``), or name no contract at
all. Such a fill is *held* (``held_fills``), not written (a fill on disk without its round trip
would never count), and so are the later fills of its sub-account and contract, which must be
measured after it, and the position events of that sub-account and contract: a position row
with the held fill in it is what the next start measures fills against (``seed_open``), so the fill,
replayed then, would count twice. Everything else in the batch is written. Held events go first
into the next batches, and a held fill is given up after ``hold_s`` with an error, with the
later fills of its contract (measured without it, they would record a wrong round trip) and
the positions held behind them — the session's next snapshot replays them. A batch the
database refuses is tried again a few times (``retry_waits_s``) before it is given up; its
Tradovate logins' views then go first into the next batch.

A fill never applied (given up, or made while the daemon was down and gone from the next
day's snapshot) would leave ``_open`` wrong for every later round trip: a position event
written with no fill of its key after it in the batch is the broker's truth, adopted where
ours disagrees (``mirror_positions``), unless a fill its login published before its order may be
in it (``unattributed_fills``). ``close`` writes what is queued, within ``close_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable
from decimal import Decimal

import asyncpg
import structlog

from jtrades.aio import within
from jtrades.broker.base import Broker, BrokerEvent, Fill, Position, WorkingOrder
from jtrades.broker.paper import PaperBroker
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.hub import Subscription
from jtrades.engine.booked_fills import BookedFills, fill_marks, held_marks
from jtrades.engine.config_cache import ConfigCache, Snapshot
from jtrades.engine.fill_pricing import Pricing
from jtrades.engine.held_fills import HeldFills, PendingFill, PosKey, Tagged
from jtrades.engine.mirror_positions import (
    VANISHED,
    SeedFills,
    SeedRow,
    adopt,
    after_last_sweep,
    end_vanished,
    seeded,
    trade_row,
    vanished,
)
from jtrades.engine.pnl import DailyPnl, OpenPosition
from jtrades.engine.send import intent_state
from jtrades.engine.unattributed_fills import UnattributedFills
from jtrades.errors import NotFound
from jtrades.store import mirror as mirror_store

log = structlog.get_logger(__name__)


def _syncs(ev: BrokerEvent, swept: set[int]) -> bool:
    """Whether ``ev`` says an account the mirror has not swept yet is synced now."""
    return (
        ev.kind == "session"
        and ev.detail.get("state") == "synced"
        and ev.account_id is not None
        and ev.account_id not in swept
    )


def _view(broker: Broker) -> list[BrokerEvent]:
    """A login's whole live view as events: a Tradovate session's, or a paper broker's (its
    stream is unbounded, but what it published before the pump subscribed reached no one)."""
    if isinstance(broker, TradovateBroker):
        return broker.session.view.replay()
    if isinstance(broker, PaperBroker):
        return broker.replay()
    return []


# how soon a given-up batch's logins are replayed when no event comes to carry them
REPLAY_AFTER_S = 5.0


class Mirror:
    def __init__(
        self,
        pool: asyncpg.Pool,
        brokers: BrokerRegistry,
        config: ConfigCache,
        *,
        coalesce_s: float = 0.02,
        quiet_s: float = 0.002,
    ) -> None:
        self._pool = pool
        self.coalesce_s = coalesce_s
        self.quiet_s = quiet_s
        self.batches = 0  # statements the writer has sent (for tests and diagnostics)
        self._brokers = brokers
        self._config = config
        self.pnl = DailyPnl()
        self.booked = BookedFills()  # how far each sub-account's fills are counted in ``pnl``
        self._open: dict[tuple[int, str], OpenPosition] = {}
        # None: a lookup ended, the writer tries its held fills
        self._queue: asyncio.Queue[Tagged | None] = asyncio.Queue()
        self._pricing = Pricing(lambda: self._queue.put_nowait(None))
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._writer: asyncio.Task[None] | None = None
        # fills held for want of their contract's value per point, oldest first; the latest
        # position event of each (sub-account, contract) with a held fill
        self._held: list[Tagged] = []
        self._held_positions: list[Tagged] = []
        self._holds = HeldFills(self._pricing)
        self._writing = asyncio.Lock()
        # waits before writing a refused batch again; then it is given up
        self.retry_waits_s: tuple[float, ...] = (0.5, 2.0, 5.0)
        # logins whose live view goes first into the next batch (a batch of theirs given up)
        self._replays: dict[int, Broker] = {}
        # (sub-account, fill id) of the fills given up (``HeldFills.given_up``) whose position was
        # adopted: replayed later, they are stored but not measured again (the adopted position
        # has them)
        self._absorbed: set[tuple[int, int]] = set()
        # fills published before their orders: their positions are not the truth yet
        self._unattributed = UnattributedFills()
        self.close_s = 5.0  # how long close() lets the writer write what is queued
        self._stopping = False

    @property
    def held(self) -> int:
        """Fills waiting for their contract's value per point (for tests and diagnostics)."""
        return len(self._held)

    @property
    def hold_s(self) -> float:
        """How long a fill is held before it is given up (``HeldFills.hold_s``)."""
        return self._holds.hold_s

    @hold_s.setter
    def hold_s(self, value: float) -> None:
        self._holds.hold_s = value

    @property
    def hold_waits_s(self) -> tuple[float, float]:
        """The first and the longest wait before a failed lookup is asked again."""
        return self._holds.hold_waits_s

    @hold_waits_s.setter
    def hold_waits_s(self, value: tuple[float, float]) -> None:
        self._holds.hold_waits_s = value

    @property
    def price_wait_s(self) -> float:
        """How long a batch waits for its lookups (``HeldFills.price_wait_s``)."""
        return self._holds.price_wait_s

    @price_wait_s.setter
    def price_wait_s(self, value: float) -> None:
        self._holds.price_wait_s = value

    def seed_open(self, rows: Iterable[SeedRow], fills: SeedFills | None = None) -> None:
        """The positions the first trades are measured against (``mirror_positions.seeded``)."""
        self._open.update(seeded(rows, fills or {}))

    def lots(self, sub_account_id: int, symbol: str) -> tuple[tuple[int, Decimal], ...]:
        """The lots of the position the fills made, first in first out as realized P&L was
        booked (the daily loss marks them: ``sizing.open_pnl``); () when not measurable."""
        pos = self._open.get((sub_account_id, symbol))
        return pos.lots if pos is not None and pos.measurable else ()

    def ensure(self) -> None:
        """Follow every login that has a session (again, for one whose stream ended)."""
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_loop(), name="mirror.writer")
        for aid, _env, broker in self._brokers.sessions():
            task = self._pumps.get(aid)
            if task is None or task.done():
                self._pumps[aid] = asyncio.create_task(
                    self._pump(aid, broker), name=f"mirror.pump.{aid}"
                )

    async def close(self) -> None:
        if self._held:
            log.warning(
                "mirror.held_fills_unwritten",
                fills=len(self._held),
                positions=len(self._held_positions),
                effect="not recorded: the next start replays the fills a Tradovate session still"
                " lists (the day's), with their positions; a paper login's are lost",
            )
        pumps = list(self._pumps.values())
        for t in pumps:
            t.cancel()
        for t in pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._pumps.clear()
        # What is queued is written, within a bound: cancelled with it, its fills went
        # unmeasured and the positions table kept a position the broker no longer held.
        if (writer := self._writer) is not None:
            self._stopping = True
            self._queue.put_nowait(None)
            try:
                await within(asyncio.shield(writer), self.close_s)
            except TimeoutError:
                log.error("mirror.close_timeout", queued=self._queue.qsize(), wait_s=self.close_s)
            except Exception as exc:
                log.error("mirror.writer_failed", error=repr(exc))
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await writer
        self._writer = None
        self._stopping = False
        await self._pricing.close()  # after the writer, which starts lookups

    async def _pump(self, account_id: int, broker: Broker) -> None:
        """Forward one login's events, after the whole view as it stands: the stream tells only
        what changes once subscribed, and the session's first snapshot (what happened while
        the daemon was down: a stop filled overnight) was published before the mirror
        followed it. A subscriber that falls behind loses its backlog for one ``overflow``
        event: the whole view is read again. Both replays are safe: a fill already stored is
        not new, so it is measured and counted once, and what the stream brings after a replay
        is newer than it. An account not synced when the view was read (its connection
        dropped after its first snapshot, or it has had none yet) is swept for what vanished
        once it syncs: its next snapshot publishes only what changed against the one before,
        which may already lack a position closed while the daemon was down (that position
        then stayed open in ``positions`` for good)."""
        events = broker.events()  # subscribed now: nothing published from here on is missed
        swept = self._replay(account_id, broker)
        async for ev in events:
            batch = [ev]
            if _syncs(ev, swept) and isinstance(events, Subscription):
                # the view holds what was published since (a stop's fill that came with the
                # sync): its events go first, or the sweep's flat went ahead of the fill and
                # the fill, measured against flat, recorded no trade
                batch += events.drain()
            sweep: set[int] = set()
            for e in batch:
                if e.kind == "session" and e.detail.get("state") == "overflow":
                    swept |= self._replay(account_id, broker, overflow=True)
                    continue
                self._queue.put_nowait((account_id, broker, e))
                if _syncs(e, swept) and e.account_id is not None:
                    sweep.add(e.account_id)
            if sweep:
                swept |= self._sweep(account_id, broker, sweep)

    def _replay(self, account_id: int, broker: Broker, *, overflow: bool = False) -> set[int]:
        """Queue the whole live view of a Tradovate session (``_view``), and what it no
        longer holds of what was mirrored (``_sweep``); the accounts swept."""
        events = _view(broker)
        if overflow:
            log.warning("mirror.overflow", account_id=account_id, events=len(events))
        for ev in events:
            self._queue.put_nowait((account_id, broker, ev))
        return self._sweep(account_id, broker, None)

    def _sweep(self, account_id: int, broker: Broker, only: set[int] | None) -> set[int]:
        """Queue what the session's view (of ``only`` its accounts) no longer holds of what was
        mirrored (``mirror_positions.vanished``); the accounts swept: those synced. A paper
        login has none: its view is restored from these tables."""
        if not isinstance(broker, TradovateBroker):
            return set()
        view, snap = broker.session.view, self._config.snapshot
        for ev in vanished(view, lambda a: snap.sub_account_id(account_id, a), self._open, only):
            self._queue.put_nowait((account_id, broker, ev))
        accounts = view.account_ids if only is None else only
        return {acct for acct in accounts if view.is_synced(acct)}

    async def _write_loop(self) -> None:
        while True:
            # The held fills go with the next events, or on their own once a lookup has ended
            # (None in the queue) or a symbol's wait has run out.
            wait = self._holds.wait(self._held)
            if self._replays:  # a given-up batch's replay must not wait for the next event
                wait = min(wait, REPLAY_AFTER_S) if wait is not None else REPLAY_AFTER_S
            try:
                first = await within(self._queue.get(), wait)
            except TimeoutError:
                first = None
            batch = [first] if first is not None else []
            if not self._stopping:
                await self._gather()
            while not self._queue.empty():
                if (ev := self._queue.get_nowait()) is not None:
                    batch.append(ev)
            # a given-up batch's logins: their whole view first, older than what came since
            replays, self._replays = self._replays, {}
            head = [(aid, b, ev) for aid, b in replays.items() for ev in _view(b)]
            await self._write_retrying([*head, *batch])
            if self._stopping and self._queue.empty():
                return

    async def _write_retrying(self, batch: list[Tagged]) -> None:
        """Write ``batch``; a refused one is written again after each of ``retry_waits_s``,
        ahead of the events that came meanwhile (they wait in the queue), then given up."""
        for attempt, wait in enumerate((*self.retry_waits_s, None), start=1):
            try:
                await self.write(batch)
                return
            except Exception as exc:
                if wait is None:
                    # its fills are finished with: the daily-loss filter no longer waits for
                    # them (the replay below counts them; this error says when it cannot)
                    self.booked.book(fill_marks(batch))
                    # its logins' views go with the next batch: their fills are new
                    # then, and measured in order before anything that came since
                    for aid, broker, _ev in batch:
                        if isinstance(broker, (TradovateBroker, PaperBroker)):
                            self._replays[aid] = broker
                    log.error(
                        "mirror.write_failed",
                        events=len(batch),
                        attempts=attempt,
                        error=str(exc),
                        replay=sorted(self._replays),
                    )
                    return
                log.warning(
                    "mirror.write_retry",
                    events=len(batch),
                    attempt=attempt,
                    wait_s=wait,
                    error=str(exc),
                )
                await asyncio.sleep(wait)

    async def _gather(self) -> None:
        """Let the batch grow while events keep coming (an alert's fan-out coming back), until
        the stream pauses for ``quiet_s`` or the batch is ``coalesce_s`` old."""
        if self.coalesce_s <= 0:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.coalesce_s
        seen = -1
        while (left := deadline - loop.time()) > 0:
            queued = self._queue.qsize()
            if queued == seen:
                return
            seen = queued
            await asyncio.sleep(min(self.quiet_s, left))

    async def apply_events(
        self, account_id: int, broker: Broker, events: list[BrokerEvent]
    ) -> None:
        """Write a batch of one login's events (the writer writes several logins' at once)."""
        await self.write([(account_id, broker, ev) for ev in events])

    async def write(self, events: list[Tagged]) -> None:
        """Write a batch of events in one statement, which does not wait for its WAL flush;
        when fills are in the batch, it and the trades the new ones close share a transaction.
        Waiting for the disk here would hold the next alert's intent write behind the mirror's
        flushes.

        A batch naming a sub-account deleted since the configuration snapshot was read fails
        whole (its foreign keys), with every other account's events in it: it is written again
        against a fresh snapshot, where the deleted account's events have no sub-account and
        are left out. Dropping the batch would lose fills, and with them realized P&L the
        daily-loss filter counts.

        The events held from earlier batches go first; what still cannot be written is held
        again (see the module doc). A batch that fails holds what it held before. Writes are
        serialised: each moves the held events and the open positions from the last one's.

        A replayed view's sweep (``VANISHED``) ends the orders the view did not hold when it was
        queued: what was queued after it is written in a batch of its own, after the sweep, or
        an order placed meanwhile was written Working and ended with the vanished ones."""
        cut = after_last_sweep(events)
        if 0 < cut < len(events):
            await self.write(events[:cut])
            events = events[cut:]
        async with self._writing:
            events = [*self._held, *self._held_positions, *events]
            snap = self._config.snapshot
            try:
                held, held_positions = await self._write(events, snap)
            except NotFound:
                # the snapshot may have been replaced while the statement ran: compare, not ask
                await self._config.refresh()
                fresh = self._config.snapshot
                if fresh is snap:
                    raise
                log.warning("mirror.config_changed", events=len(events))
                held, held_positions = await self._write(events, fresh)
            self._held, self._held_positions = held, held_positions
            self._holds.keep(held)

    async def _write(
        self, events: list[Tagged], snap: Snapshot
    ) -> tuple[list[Tagged], list[Tagged]]:
        """Write what can be written; returns the fill and position events to hold."""
        batch = mirror_store.Batch()
        pending: list[PendingFill] = []
        positions: list[tuple[PosKey, Tagged, mirror_store.PositionRow]] = []
        # where in the batch each position event is, and the last fill of each key: a position
        # with a fill of its key after it does not have that fill yet
        at: dict[int, int] = {}
        last_fill: dict[PosKey, int] = {}
        sweeps: list[tuple[int, list[int]]] = []  # (sub-account, the orders its view holds)
        now = asyncio.get_running_loop().time()
        self._unattributed.expire(now=now)
        for i, tagged in enumerate(events):
            account_id, _broker, ev = tagged
            if ev.kind == "fill":  # before the sub-account: an unknown one still attributes
                self._unattributed.note(account_id, ev, now=now)
            sub = snap.sub_account_id(account_id, ev.account_id)
            if sub is None:
                continue
            e = ev.entity
            if isinstance(e, WorkingOrder):
                if e.cl_ord_id:
                    batch.intents.append(
                        (e.cl_ord_id, intent_state(e.status), e.order_id, e.reason)
                    )
                batch.orders.append(
                    (
                        sub, e.order_id, e.cl_ord_id, e.symbol, str(e.side), e.qty,
                        str(e.order_type), e.price, e.stop_price, str(e.status), e.parent_id,
                        e.oco_id,
                    )
                )  # fmt: skip
            elif isinstance(e, Fill):
                pending.append((sub, tagged, e))
                last_fill[(sub, e.contract_id)] = i
            elif ev.kind == "session" and ev.detail.get("state") == VANISHED:
                held_ids = ev.detail.get("orders")
                sweeps.append((sub, list(held_ids) if isinstance(held_ids, list) else []))
            elif isinstance(e, Position):
                if ev.deleted:
                    # the view drops it (flat); written as it came, the row kept its last
                    # net for good, and the mirror measured the next fills against it
                    e = dataclasses.replace(e, net_pos=0, net_price=None)
                    tagged = (account_id, _broker, dataclasses.replace(ev, entity=e))
                if not e.symbol:  # its contract is not named yet: its next event will be
                    log.warning(
                        "mirror.position_unnamed", sub_account_id=sub, contract_id=e.contract_id
                    )
                    continue
                at[id(tagged)] = i
                positions.append(
                    ((sub, e.contract_id), tagged, (sub, e.symbol, e.net_pos, e.net_price))
                )
        fills, held, gone = await self._holds.split(pending)
        for sub, _tagged, e in fills:
            batch.fills.append(
                (sub, e.fill_id, e.order_id, e.symbol, str(e.side), e.qty, e.price, e.timestamp)
            )
        # A position with a held fill in it, on disk, would count that fill twice after a
        # restart (the replayed fill is new against a position that has it): it waits with the
        # fill, the latest one of each key, or goes with a fill given up (a replay brings both).
        waiting = {(sub, f.contract_id) for sub, _t, f in held}
        waiting_symbols = {(sub, f.symbol) for sub, _t, f in held if f.symbol}
        held_positions: dict[PosKey, Tagged] = {}
        truth: dict[tuple[int, str], tuple[int, Position]] = {}  # the latest written, by symbol
        for pkey, tagged, position in positions:
            if pkey in waiting or position[:2] in waiting_symbols:
                held_positions[pkey] = tagged
            elif pkey not in gone:
                batch.positions.append(position)
                if at[id(tagged)] > last_fill.get(pkey, -1) and not self._unattributed.blocks(
                    tagged[0], pkey[1]
                ):
                    assert isinstance(tagged[2].entity, Position)
                    truth[position[:2]] = (pkey[1], tagged[2].entity)
                else:
                    truth.pop(position[:2], None)
        held_out = ([t for _s, t, _f in held], list(held_positions.values()))
        # the fills this batch finishes with (counted, stored before, skipped for want of a
        # sub-account, or given up), marked for the daily-loss filter once it has committed
        still = {id(t) for _s, t, _f in held}
        finished = fill_marks(t for t in events if id(t) not in still)
        unpriced = held_marks(t for _s, t, _f in held)
        if not batch:
            self.booked.book(finished, unpriced)
            await end_vanished(self._pool, sweeps)
            return held_out
        self.batches += 1
        if not fills:
            await mirror_store.write_batch(self._pool, batch)
            adopt(self._open, truth, self._holds.given_up, self._absorbed)
            self.booked.book(finished, unpriced)
            await end_vanished(self._pool, sweeps)
            return held_out
        # The P&L state moves on copies, kept only once the transaction has committed: a batch
        # that fails leaves the in-memory P&L as the database has it.
        moved: dict[tuple[int, str], OpenPosition] = {}
        closed: list[mirror_store.TradeRow] = []
        async with self._pool.acquire() as conn, conn.transaction():
            new = await mirror_store.write_batch(conn, batch)
            for sub, _tagged, f in fills:
                if (sub, f.fill_id) not in new:
                    continue  # stored before (a replay): measured and counted then
                new.discard((sub, f.fill_id))  # a fill repeated within the batch counts once
                if (sub, f.fill_id) in self._absorbed:
                    log.warning("mirror.fill_in_adopted_position", sub_account_id=sub,
                                fill_id=f.fill_id, symbol=f.symbol)  # fmt: skip
                    continue
                key = (sub, f.symbol)
                pos = moved.get(key)
                if pos is None:
                    # with its lots: rebuilt from (net, avg), the next exit was measured from
                    # the average, which an averaged position has no exact Decimal for
                    pos = moved[key] = (self._open.get(key) or OpenPosition()).copy()
                vpp = self._pricing.value(f.symbol)
                assert vpp is not None  # priced before the batch was written
                if (row := trade_row(sub, f, pos, vpp)) is not None:
                    closed.append(row)
            await mirror_store.insert_trades(conn, closed)
        self._open.update(moved)
        for sub, symbol, _side, _qty, _entry, _exit, pnl, _opened, when in closed:
            self.pnl.add(sub, symbol, pnl, when)
        self._absorbed.difference_update((sub, f.fill_id) for sub, _t, f in fills)
        for sub, _t, f in fills:
            self._holds.given_up.get((sub, f.contract_id), set()).discard(f.fill_id)
        adopt(self._open, truth, self._holds.given_up, self._absorbed)
        self.booked.book(finished, unpriced)
        await end_vanished(self._pool, sweeps)
        return held_out
