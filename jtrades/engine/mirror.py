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
the live view, and the realized P&L the daily-loss filter adds is counted once its batch
commits, which was already after the fact (a round trip; under load, tens of milliseconds).

Fills are de-duplicated by the broker's fill id; each new one goes through ``close_trade``, and
the round trips it closes are written in the batch's transaction and added to ``pnl``, the
realized P&L the daily-loss filter reads. After a reconnect the session replays the day's fills
(with the positions and the orders that changed): the ones already stored are not new, so they
count once. A pump re-reads its session's whole view (``AccountView.replay``) when it starts —
the daemon connects its sessions before the mirror follows them, so their first snapshot, with
what happened while it was down, reached no one — and when its subscription overflows.

A fill is priced by its contract's value per point, which may need the broker (``find_contract``)
when the session is down, or name no contract at all. Such a fill is *held*, not written (a fill
on disk without its round trip would never count), and so are the later fills of its
sub-account and contract, which must be measured after it; everything else in the batch is
written. Held fills go first into the next batches, tried again with a growing wait, and given
up after ``hold_s`` with an error — the session's next sync replays them. A batch the database
refuses is tried again a few times (``retry_waits_s``) before it is given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import asyncpg
import structlog

from jtrades.broker.base import Broker, BrokerEvent, Fill, OrderStatus, Position, WorkingOrder
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.engine.config_cache import ConfigCache, Snapshot
from jtrades.engine.pnl import DailyPnl, OpenPosition, close_trade
from jtrades.errors import JtradesError, NotFound
from jtrades.store import mirror as mirror_store

log = structlog.get_logger(__name__)

# The intent state an order's broker status stands for.
_STATE_OF = {
    OrderStatus.PENDING_NEW: "sent",
    OrderStatus.WORKING: "working",
    OrderStatus.SUSPENDED: "working",
    OrderStatus.PENDING_CANCEL: "working",
    OrderStatus.PENDING_REPLACE: "working",
    OrderStatus.FILLED: "filled",
    OrderStatus.COMPLETED: "filled",
    OrderStatus.CANCELED: "cancelled",
    OrderStatus.REJECTED: "rejected",
    OrderStatus.EXPIRED: "cancelled",
    OrderStatus.UNKNOWN: "unknown",
}


def intent_state(status: OrderStatus) -> str:
    """The state of the intent behind an order with this broker status."""
    return _STATE_OF.get(status, "unknown")


# (login account id, its broker, the event)
_Tagged = tuple[int, Broker, BrokerEvent]
# (sub-account, the tagged fill event, the fill): a fill of a batch waiting for its price
_PendingFill = tuple[int, _Tagged, Fill]


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
        self._open: dict[tuple[int, str], OpenPosition] = {}
        self._vpp: dict[str, Decimal] = {}
        self._queue: asyncio.Queue[_Tagged] = asyncio.Queue()
        self._pumps: dict[int, asyncio.Task[None]] = {}
        self._writer: asyncio.Task[None] | None = None
        # fills held for want of their contract's value per point, oldest first, and since when
        # (loop time) each one is held, by (login, fill id)
        self._held: list[_Tagged] = []
        self._held_since: dict[tuple[int, int], float] = {}
        self.hold_s = 900.0  # then a held fill is given up (the next sync replays it)
        self.hold_waits_s = (0.5, 30.0)  # the first and the longest wait between tries
        self._hold_wait = self.hold_waits_s[0]
        # waits before writing a refused batch again; then it is given up
        self.retry_waits_s: tuple[float, ...] = (0.5, 2.0, 5.0)

    @property
    def held(self) -> int:
        """Fills waiting for their contract's value per point (for tests and diagnostics)."""
        return len(self._held)

    def seed_open(
        self, rows: Iterable[tuple[int, str, int, Decimal | None, datetime | None]]
    ) -> None:
        """The positions the trades of new fills are measured against: (sub-account, symbol,
        net, average price, since) as last mirrored."""
        for sub, symbol, net, avg, since in rows:
            if net:
                self._open[(sub, symbol)] = OpenPosition(net, avg, since)

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
                effect="replayed by the sessions' next sync",
            )
        tasks = [*self._pumps.values(), *([self._writer] if self._writer else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._pumps.clear()
        self._writer = None

    async def _pump(self, account_id: int, broker: Broker) -> None:
        """Forward one login's events, after the whole view as it stands: the stream tells only
        what changes once subscribed, and the session's first snapshot (what happened while
        the daemon was down: a stop filled overnight) was published before the mirror
        followed it. A subscriber that falls behind loses its backlog for one ``overflow``
        event: the whole view is read again. Both replays are safe: a fill already stored is
        not new, so it is measured and counted once, and what the stream brings after a replay
        is newer than it."""
        events = broker.events()  # subscribed now: nothing published from here on is missed
        self._replay(account_id, broker)
        async for ev in events:
            if ev.kind == "session" and ev.detail.get("state") == "overflow":
                self._replay(account_id, broker, overflow=True)
            else:
                self._queue.put_nowait((account_id, broker, ev))

    def _replay(self, account_id: int, broker: Broker, *, overflow: bool = False) -> None:
        """Queue the whole live view of a Tradovate session (the paper broker's stream loses
        nothing: unbounded, and its positions restored from these tables at start)."""
        if not isinstance(broker, TradovateBroker):
            return
        events = broker.session.view.replay()
        if overflow:
            log.warning("mirror.overflow", account_id=account_id, events=len(events))
        for ev in events:
            self._queue.put_nowait((account_id, broker, ev))

    async def _write_loop(self) -> None:
        while True:
            if not self._held:
                batch = [await self._queue.get()]
            else:  # the held fills are tried again with the next events, or on their own
                try:
                    batch = [await asyncio.wait_for(self._queue.get(), self._hold_wait)]
                except TimeoutError:
                    batch = []
            await self._gather()
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._write_retrying(batch)
            if not self._held:
                self._hold_wait = self.hold_waits_s[0]
            else:  # still held: the next try waits longer
                self._hold_wait = min(self._hold_wait * 2, self.hold_waits_s[1])

    async def _write_retrying(self, batch: list[_Tagged]) -> None:
        """Write ``batch``; a refused one is written again after each of ``retry_waits_s``,
        ahead of the events that came meanwhile (they wait in the queue), then given up."""
        for attempt, wait in enumerate((*self.retry_waits_s, None), start=1):
            try:
                await self.write(batch)
                return
            except Exception as exc:
                if wait is None:
                    log.error(
                        "mirror.write_failed", events=len(batch), attempts=attempt, error=str(exc)
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

    async def write(self, events: list[_Tagged]) -> None:
        """Write a batch of events in one statement, which does not wait for its WAL flush;
        when fills are in the batch, it and the trades the new ones close share a transaction.
        Waiting for the disk here would hold the next alert's intent write behind the mirror's
        flushes.

        A batch naming a sub-account deleted since the configuration snapshot was read fails
        whole (its foreign keys), with every other account's events in it: it is written again
        against a fresh snapshot, where the deleted account's events have no sub-account and
        are left out. Dropping the batch would lose fills, and with them realized P&L the
        daily-loss filter counts.

        The fills held from earlier batches go first; the ones that still cannot be priced
        are held again (see the module doc). A batch that fails holds what it held before."""
        events = [*self._held, *events]
        snap = self._config.snapshot
        try:
            held = await self._write(events, snap)
        except NotFound:
            # the snapshot may have been replaced while the statement ran: compare, not ask
            await self._config.refresh()
            fresh = self._config.snapshot
            if fresh is snap:
                raise
            log.warning("mirror.config_changed", events=len(events))
            held = await self._write(events, fresh)
        self._held = held
        kept = {(aid, ev.entity.fill_id) for aid, _b, ev in held if isinstance(ev.entity, Fill)}
        self._held_since = {k: t for k, t in self._held_since.items() if k in kept}

    async def _write(self, events: list[_Tagged], snap: Snapshot) -> list[_Tagged]:
        """Write what can be written; returns the fill events to hold."""
        batch = mirror_store.Batch()
        pending: list[_PendingFill] = []
        for tagged in events:
            account_id, _broker, ev = tagged
            sub = snap.sub_account_id(account_id, ev.account_id)
            if sub is None:
                continue
            e = ev.entity
            if isinstance(e, WorkingOrder):
                if e.cl_ord_id:
                    batch.intents.append((e.cl_ord_id, intent_state(e.status), e.order_id))
                batch.orders.append(
                    (
                        sub, e.order_id, e.cl_ord_id, e.symbol, str(e.side), e.qty,
                        str(e.order_type), e.price, e.stop_price, str(e.status), e.parent_id,
                        e.oco_id,
                    )
                )  # fmt: skip
            elif isinstance(e, Fill):
                pending.append((sub, tagged, e))
            elif isinstance(e, Position):
                if not e.symbol:  # its contract is not named yet: its next event will be
                    log.warning(
                        "mirror.position_unnamed", sub_account_id=sub, contract_id=e.contract_id
                    )
                    continue
                batch.positions.append((sub, e.symbol, e.net_pos, e.net_price))
        fills, held = await self._priced(pending)
        for sub, _tagged, e in fills:
            batch.fills.append(
                (sub, e.fill_id, e.order_id, e.symbol, str(e.side), e.qty, e.price, e.timestamp)
            )
        if not batch:
            return held
        self.batches += 1
        if not fills:
            await mirror_store.write_batch(self._pool, batch)
            return held
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
                key = (sub, f.symbol)
                pos = moved.get(key)
                if pos is None:
                    was = self._open.get(key) or OpenPosition()
                    pos = moved[key] = OpenPosition(was.net, was.avg, was.opened_at)
                row = self._close(sub, f, pos)
                if row is not None:
                    closed.append(row)
            await mirror_store.insert_trades(conn, closed)
        self._open.update(moved)
        for sub, _symbol, _side, _qty, _entry, _exit, pnl, _opened, at in closed:
            self.pnl.add(sub, pnl, at)
        return held

    async def _priced(
        self, pending: list[_PendingFill]
    ) -> tuple[list[_PendingFill], list[_Tagged]]:
        """Split a batch's fills into those whose contract's value per point is known (asked
        of the broker before the transaction, never while it holds rows) and those to hold:
        the unpriced ones and, behind them, the later fills of their sub-account and contract.
        A fill held for ``hold_s`` is given up."""
        loop = asyncio.get_running_loop()
        ready: list[_PendingFill] = []
        held: list[_Tagged] = []
        blocked: set[tuple[int, int]] = set()
        failed: dict[tuple[int, str], str] = {}  # (login, symbol) -> why, asked once a batch
        for sub, tagged, f in pending:
            aid, broker, ev = tagged
            if not f.symbol:
                f = self._renamed(broker, f)
                tagged = (aid, broker, dataclasses.replace(ev, entity=f))
            if (sub, f.contract_id) not in blocked:
                why = await self._value_per_point(broker, aid, f.symbol, failed)
                if why is None:
                    ready.append((sub, tagged, f))
                    continue
            else:
                why = "an earlier fill of its contract is held"
            first = (aid, f.fill_id) not in self._held_since
            since = self._held_since.setdefault((aid, f.fill_id), loop.time())
            if loop.time() - since >= self.hold_s:
                log.error(
                    "mirror.fill_given_up",
                    sub_account_id=sub,
                    fill_id=f.fill_id,
                    symbol=f.symbol,
                    held_s=round(loop.time() - since),
                    reason=why,
                    effect="not recorded until the session's next sync replays it",
                )
                continue
            if first:
                log.warning(
                    "mirror.fill_held",
                    sub_account_id=sub,
                    fill_id=f.fill_id,
                    symbol=f.symbol,
                    reason=why,
                )
            blocked.add((sub, f.contract_id))
            held.append(tagged)
        return ready, held

    async def _value_per_point(
        self, broker: Broker, login: int, symbol: str, failed: dict[tuple[int, str], str]
    ) -> str | None:
        """Make sure ``symbol``'s value per point is known; why it is not, else None."""
        if not symbol:
            return "its contract has no name yet"
        if symbol in self._vpp:
            return None
        why = failed.get((login, symbol))
        if why is None:
            try:
                self._vpp[symbol] = (await broker.find_contract(symbol)).value_per_point
                return None
            except JtradesError as exc:  # the session is down, the contract unlisted, …
                why = failed[(login, symbol)] = f"{type(exc).__name__}: {exc}"
        return why

    @staticmethod
    def _renamed(broker: Broker, f: Fill) -> Fill:
        """A fill published before its contract was named, as the live view now names it."""
        try:
            now = broker.fills(f.account_id)
        except JtradesError:  # the view is not synced: try again later
            return f
        return next((g for g in now if g.fill_id == f.fill_id and g.symbol), f)

    def _close(self, sub: int, f: Fill, pos: OpenPosition) -> mirror_store.TradeRow | None:
        """Apply a new fill to ``pos``; the round trip it closes, if it does."""
        vpp = self._vpp[f.symbol]
        opened = pos.opened_at or f.timestamp
        trade = close_trade(pos, f.side.sign * f.qty, f.price, vpp, f.timestamp)
        if trade is None:
            return None
        return (
            sub,
            f.symbol,
            trade.side,
            trade.qty,
            trade.entry_price,
            trade.exit_price,
            trade.pnl,
            min(opened, f.timestamp),
            f.timestamp,
        )
