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
realized P&L the daily-loss filter reads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

import asyncpg
import structlog

from jtrades.broker.base import Broker, BrokerEvent, Fill, OrderStatus, Position, WorkingOrder
from jtrades.broker.registry import BrokerRegistry
from jtrades.engine.config_cache import ConfigCache, Snapshot
from jtrades.engine.pnl import DailyPnl, OpenPosition, close_trade
from jtrades.errors import NotFound
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
        tasks = [*self._pumps.values(), *([self._writer] if self._writer else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._pumps.clear()
        self._writer = None

    async def _pump(self, account_id: int, broker: Broker) -> None:
        async for ev in broker.events():
            self._queue.put_nowait((account_id, broker, ev))

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            await self._gather()
            while not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.write(batch)
            except Exception as exc:
                log.error("mirror.write_failed", events=len(batch), error=str(exc))

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
        daily-loss filter counts."""
        snap = self._config.snapshot
        try:
            await self._write(events, snap)
        except NotFound:
            # the snapshot may have been replaced while the statement ran: compare, not ask
            await self._config.refresh()
            fresh = self._config.snapshot
            if fresh is snap:
                raise
            log.warning("mirror.config_changed", events=len(events))
            await self._write(events, fresh)

    async def _write(self, events: list[_Tagged], snap: Snapshot) -> None:
        batch = mirror_store.Batch()
        fills: list[tuple[int, Broker, Fill]] = []
        for account_id, broker, ev in events:
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
                fills.append((sub, broker, e))
                batch.fills.append(
                    (sub, e.fill_id, e.order_id, e.symbol, str(e.side), e.qty, e.price, e.timestamp)
                )
            elif isinstance(e, Position):
                batch.positions.append((sub, e.symbol, e.net_pos, e.net_price))
        if not batch:
            return
        self.batches += 1
        if not fills:
            await mirror_store.write_batch(self._pool, batch)
            return
        # The P&L state moves on copies, kept only once the transaction has committed: a batch
        # that fails leaves the in-memory P&L as the database has it.
        moved: dict[tuple[int, str], OpenPosition] = {}
        closed: list[mirror_store.TradeRow] = []
        async with self._pool.acquire() as conn, conn.transaction():
            new = await mirror_store.write_batch(conn, batch)
            for sub, broker, f in fills:
                if (sub, f.fill_id) not in new:
                    continue
                new.discard((sub, f.fill_id))  # a fill repeated within the batch counts once
                key = (sub, f.symbol)
                pos = moved.get(key)
                if pos is None:
                    was = self._open.get(key) or OpenPosition()
                    pos = moved[key] = OpenPosition(was.net, was.avg, was.opened_at)
                row = await self._close(sub, broker, f, pos)
                if row is not None:
                    closed.append(row)
            await mirror_store.insert_trades(conn, closed)
        self._open.update(moved)
        for sub, _symbol, _side, _qty, _entry, _exit, pnl, _opened, at in closed:
            self.pnl.add(sub, pnl, at)

    async def _close(
        self, sub: int, broker: Broker, f: Fill, pos: OpenPosition
    ) -> mirror_store.TradeRow | None:
        """Apply a new fill to ``pos``; the round trip it closes, if it does."""
        vpp = self._vpp.get(f.symbol)
        if vpp is None:
            vpp = (await broker.find_contract(f.symbol)).value_per_point
            self._vpp[f.symbol] = vpp
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
