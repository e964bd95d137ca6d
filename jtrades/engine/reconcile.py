"""Reconciliation: make the database agree with the brokers, and never let doubt send an order.

Three jobs:

1. Open intents (pending/sent/unknown) that outlived their send window are looked up at the
   broker by clOrdId (money rule 2). Found: the intent takes the order's state. Not found: it was
   never sent, and it never will be (``expired``) — after a crash between intent and send the
   order is dropped, not sent late. Run once at start, before the engine reports ready.
2. The brokers' event streams are mirrored into ``orders``, ``fills`` (de-duplicated by fill id),
   ``positions`` and ``trades`` (closed round trips with their P&L, which the daily-loss filter
   reads back through ``DailyPnl``).
3. A naked position — open, no working stop, and its trader has a stop loss configured — gets a
   protective stop, through an intent like any other order. Only on a synced view: "missing is
   not flat" (rule 6), an unreadable account is left alone.

The decisions (``resolve_intent``, ``needs_stop``, ``close_trade``) are pure; the class does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import structlog

from jtrades.broker.base import (
    Broker,
    BrokerEvent,
    Contract,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.engine.config_cache import ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.sizing import exit_offset_points, exit_price
from jtrades.engine.tradingday import session_start
from jtrades.store import intents as intent_store
from jtrades.store import mirror as mirror_store
from jtrades.store import trading as trading_store

log = structlog.get_logger(__name__)

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
_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


# --- pure decisions ---------------------------------------------------------------------------


def resolve_intent(kind: str, found: WorkingOrder | None) -> tuple[str, int | None, str | None]:
    """An open intent's new state given what the broker knows by its clOrdId."""
    if found is not None:
        return _STATE_OF.get(found.status, "unknown"), found.order_id, None
    if kind in ("cancel", "liquidate"):
        return "expired", None, "outcome not confirmed by the broker; not repeated"
    return "expired", None, "no order at the broker with this clOrdId: not sent, never sent late"


def needs_stop(position: Position, working: list[WorkingOrder]) -> bool:
    """An open position without a working stop on its exit side in the same contract."""
    if position.net_pos == 0:
        return False
    exit_side = Side.SELL if position.net_pos > 0 else Side.BUY
    return not any(
        o.symbol == position.symbol
        and o.side is exit_side
        and o.order_type in _STOPS
        and o.status.is_open
        for o in working
    )


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    side: str
    qty: int
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal


@dataclass(slots=True)
class OpenPosition:
    net: int = 0
    avg: Decimal | None = None
    opened_at: datetime | None = None


def close_trade(
    pos: OpenPosition, signed_qty: int, price: Decimal, value_per_point: Decimal, at: datetime
) -> ClosedTrade | None:
    """Apply a fill to ``pos`` (mutated); the round trip it closes, if it reduces the position."""
    if pos.net == 0 or (pos.net > 0) == (signed_qty > 0):
        total = pos.net + signed_qty
        prev = (pos.avg or Decimal(0)) * abs(pos.net)
        pos.avg = (prev + price * abs(signed_qty)) / abs(total)
        if pos.net == 0:
            pos.opened_at = at
        pos.net = total
        return None
    assert pos.avg is not None
    direction = 1 if pos.net > 0 else -1
    closed = min(abs(signed_qty), abs(pos.net))
    trade = ClosedTrade(
        "long" if direction > 0 else "short",
        closed,
        pos.avg,
        price,
        (price - pos.avg) * closed * direction * value_per_point,
    )
    rest = signed_qty + direction * closed
    pos.net -= direction * closed
    if pos.net == 0:
        pos.avg = None
    if rest:
        pos.net, pos.avg, pos.opened_at = rest, price, at
    return trade


class DailyPnl:
    """Realized P&L per sub-account for the current CME trading day (reset at 17:00 Chicago)."""

    def __init__(self) -> None:
        self._since: datetime | None = None
        self._by_sub: dict[int, Decimal] = {}

    def seed(self, rows: dict[tuple[int, str], Decimal], since: datetime) -> None:
        self._since, self._by_sub = since, {}
        for (sub, _), pnl in rows.items():
            self._by_sub[sub] = self._by_sub.get(sub, Decimal(0)) + pnl

    def _roll(self, now: datetime) -> None:
        start = session_start(now)
        if self._since != start:
            self._since, self._by_sub = start, {}

    def add(self, sub_account_id: int, pnl: Decimal, at: datetime) -> None:
        self._roll(at)
        self._by_sub[sub_account_id] = self._by_sub.get(sub_account_id, Decimal(0)) + pnl

    def realized(self, sub_account_ids: list[int], now: datetime) -> Decimal:
        self._roll(now)
        return sum((self._by_sub.get(s, Decimal(0)) for s in sub_account_ids), Decimal(0))


# --- the loop ---------------------------------------------------------------------------------


def _drain(queue: asyncio.Queue[BrokerEvent | None]) -> list[BrokerEvent | None]:
    out: list[BrokerEvent | None] = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


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
        self._dispatcher = dispatcher
        self._settings = settings
        self.pnl = DailyPnl()
        self._ready = False
        self._mirrors: dict[int, asyncio.Task[None]] = {}
        self._open: dict[tuple[int, str], OpenPosition] = {}
        self._vpp: dict[str, Decimal] = {}
        self._suspect: set[tuple[int, str]] = set()
        # after this long an intent's send has finished one way or the other
        self._grace = timedelta(
            seconds=settings.trading.signal_ttl_s + settings.tradovate.request_timeout_s + 5
        )

    def ready(self) -> bool:
        return self._ready

    async def start(self) -> None:
        """Seed trade tracking, mirror the event streams, resolve every intent left from before."""
        started = datetime.now(UTC)
        snap = self._config.snapshot
        rows = await trading_store.positions(self._pool, list(snap.links_by_sub))
        for r in rows:
            if r["net_pos"]:
                self._open[(r["sub_account_id"], r["symbol"])] = OpenPosition(
                    r["net_pos"], r["net_price"], r["updated_at"]
                )
        self.ensure_mirrors()
        # Everything still open from before this process started was written by a process
        # that is gone: it is looked up now, and dropped if the broker never got it.
        await self.resolve_intents(before=started)
        self._ready = True

    async def run(self, stop: asyncio.Event) -> None:
        interval = self._settings.trading.reconcile_interval_s
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval)
                return
            await self.tick()

    async def tick(self) -> None:
        """One pass; each job logs its own failure and the others still run."""
        try:  # logins that could not connect before are tried again
            await self._brokers.sync_accounts(self._config.snapshot)
        except Exception as exc:
            log.error("reconcile.sessions_failed", error=str(exc))
        self.ensure_mirrors()
        try:
            await self.resolve_intents(before=datetime.now(UTC) - self._grace)
        except Exception as exc:
            log.error("reconcile.intents_failed", error=str(exc))
        try:
            await self.protect_positions()
        except Exception as exc:
            log.error("reconcile.protect_failed", error=str(exc))

    async def close(self) -> None:
        for t in self._mirrors.values():
            t.cancel()
        for t in self._mirrors.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._mirrors.clear()

    # --- 1. intents -----------------------------------------------------------------------

    async def resolve_intents(self, *, before: datetime) -> int:
        """Resolve open intents created before ``before``; returns how many were resolved."""
        done = 0
        for it in await intent_store.open_older_than(self._pool, before):
            broker = self._session(it.account_id, it.env)
            if broker is None or not broker.is_synced(it.broker_account_id):
                continue  # cannot see the account: decide nothing
            try:
                found = await broker.order_by_cl_ord_id(it.broker_account_id, it.cl_ord_id)
            except Exception as exc:
                log.warning("reconcile.lookup_failed", cl_ord_id=it.cl_ord_id, error=str(exc))
                continue
            state, order_id, reason = resolve_intent(it.kind, found)
            await intent_store.set_state(
                self._pool, it.id, state, broker_order_id=order_id, reason=reason
            )
            log.info("reconcile.intent_resolved", cl_ord_id=it.cl_ord_id, state=state)
            done += 1
        return done

    def _session(self, account_id: int, env: str) -> Broker | None:
        for aid, _env, broker in self._brokers.sessions():
            if aid == account_id:
                return broker
        return None

    # --- 2. mirror ------------------------------------------------------------------------

    def ensure_mirrors(self) -> None:
        for aid, _env, broker in self._brokers.sessions():
            task = self._mirrors.get(aid)
            if task is None or task.done():
                self._mirrors[aid] = asyncio.create_task(
                    self._mirror(aid, broker), name=f"reconcile.mirror.{aid}"
                )

    def _sub_id(self, account_id: int, broker_account_id: int | None) -> int | None:
        return self._config.snapshot.sub_account_id(account_id, broker_account_id)

    async def _mirror(self, account_id: int, broker: Broker) -> None:
        """Follow one login's event stream; events that arrive together are written together
        (the latest state of each order and position, every fill), so a burst of hundreds of
        order events costs a few statements, not hundreds."""
        queue: asyncio.Queue[BrokerEvent | None] = asyncio.Queue()

        async def pump() -> None:
            try:
                async for ev in broker.events():
                    queue.put_nowait(ev)
            finally:
                queue.put_nowait(None)

        pumping = asyncio.create_task(pump(), name=f"reconcile.pump.{account_id}")
        try:
            ended = False
            while not ended:
                batch: list[BrokerEvent] = []
                first = await queue.get()
                for ev in [first, *_drain(queue)]:
                    if ev is None:
                        ended = True
                    else:
                        batch.append(ev)
                try:
                    await self.apply_events(account_id, broker, batch)
                except Exception as exc:
                    log.error("reconcile.mirror_failed", events=len(batch), error=str(exc))
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping

    async def apply_event(self, account_id: int, broker: Broker, ev: BrokerEvent) -> None:
        """Write one broker event into the mirror tables."""
        await self.apply_events(account_id, broker, [ev])

    async def apply_events(
        self, account_id: int, broker: Broker, events: list[BrokerEvent]
    ) -> None:
        """Write a batch of one login's events into the mirror tables (``store.mirror``): one
        statement, which does not wait for its WAL flush; when fills are in the batch, it and the
        trades the new ones close share a transaction. Waiting for the disk here would hold the
        next alert's intent write behind the mirror's flushes."""
        batch = mirror_store.Batch()
        fills: list[tuple[int, Fill]] = []
        for ev in events:
            sub = self._sub_id(account_id, ev.account_id)
            if sub is None:
                continue
            e = ev.entity
            if isinstance(e, WorkingOrder):
                if e.cl_ord_id:
                    batch.intents.append(
                        (e.cl_ord_id, _STATE_OF.get(e.status, "unknown"), e.order_id)
                    )
                batch.orders.append(
                    (
                        sub, e.order_id, e.cl_ord_id, e.symbol, str(e.side), e.qty,
                        str(e.order_type), e.price, e.stop_price, str(e.status), e.parent_id,
                        e.oco_id,
                    )
                )  # fmt: skip
            elif isinstance(e, Fill):
                fills.append((sub, e))
                batch.fills.append(
                    (sub, e.fill_id, e.order_id, e.symbol, str(e.side), e.qty, e.price, e.timestamp)
                )
            elif isinstance(e, Position):
                batch.positions.append((sub, e.symbol, e.net_pos, e.net_price))
        if not batch:
            return
        if not fills:
            await mirror_store.write_batch(self._pool, batch)
            return
        async with self._pool.acquire() as conn, conn.transaction():
            new = await mirror_store.write_batch(conn, batch)
            trades: list[mirror_store.TradeRow] = []
            for sub, f in fills:
                if (sub, f.fill_id) in new:
                    new.discard((sub, f.fill_id))  # a fill repeated within the batch counts once
                    row = await self._on_new_fill(sub, broker, f)
                    if row is not None:
                        trades.append(row)
            await mirror_store.insert_trades(conn, trades)

    async def _on_new_fill(self, sub: int, broker: Broker, f: Fill) -> mirror_store.TradeRow | None:
        """A fill just recorded: the position it moves, and the trade it closes if it does."""
        vpp = self._vpp.get(f.symbol)
        if vpp is None:
            vpp = (await broker.find_contract(f.symbol)).value_per_point
            self._vpp[f.symbol] = vpp
        pos = self._open.setdefault((sub, f.symbol), OpenPosition())
        opened = pos.opened_at or f.timestamp
        trade = close_trade(pos, f.side.sign * f.qty, f.price, vpp, f.timestamp)
        if trade is None:
            return None
        self.pnl.add(sub, trade.pnl, f.timestamp)
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

    # --- 3. protective stops ----------------------------------------------------------------

    async def protect_positions(self) -> int:
        """Place a stop for each naked position seen naked on two passes in a row (an entry's
        brackets may still be activating on the first); returns how many were placed."""
        snap = self._config.snapshot
        placed = 0
        suspects: set[tuple[int, str]] = set()
        for link in snap.links_by_sub.values():
            try:
                broker = self._brokers.broker_for(link)
                if not broker.is_synced(link.broker_account_id):
                    continue
                positions = broker.positions(link.broker_account_id)
                working = broker.working_orders(link.broker_account_id)
            except Exception as exc:  # unreadable: missing is not flat, do nothing
                log.debug(
                    "reconcile.protect_skip", sub_account_id=link.sub_account_id, error=str(exc)
                )
                continue
            for p in positions:
                if not needs_stop(p, working):
                    continue
                key = (link.sub_account_id, p.symbol)
                suspects.add(key)
                if key in self._suspect and await self._protect(link, broker, p):
                    placed += 1
        self._suspect = suspects
        return placed

    async def _protect(self, link: LinkConfig, broker: Broker, p: Position) -> bool:
        trader_id = await intent_store.last_trader_for(self._pool, link.sub_account_id, p.symbol)
        trader = self._config.snapshot.traders.get(trader_id) if trader_id is not None else None
        if trader is None or trader.settings.sl <= 0 or p.net_price is None:
            return False
        s = trader.settings
        async with self._dispatcher.lock_for(link.sub_account_id):
            # re-read under the lock: a signal may have just placed exits or closed it
            current = next(
                (x for x in broker.positions(link.broker_account_id) if x.symbol == p.symbol), None
            )
            if current is None or not needs_stop(
                current, broker.working_orders(link.broker_account_id)
            ):
                return False
            assert current.net_price is not None
            contract: Contract = await broker.find_contract(p.symbol)
            direction = 1 if current.net_pos > 0 else -1
            dist = exit_offset_points(s.sl, s.sl_units, current.net_price, contract, 1)
            stop = exit_price(current.net_price, dist, -direction, contract.tick_size)
            now = datetime.now(UTC)
            cl = f"jt-p-{link.sub_account_id}-{int(now.timestamp() * 1000)}"
            req = OrderRequest(
                SubAccount(link.broker_account_id, link.sub_name),
                p.symbol,
                Side.SELL if direction > 0 else Side.BUY,
                abs(current.net_pos),
                OrderType.STOP,
                cl_ord_id=cl,
                stop_price=stop,
                time_in_force=TimeInForce.GTC,
                text="protective stop",
            )
            ids = await intent_store.insert_all(
                self._pool,
                [
                    intent_store.NewIntent(
                        signal_id=None,
                        trader_id=trader.id,
                        sub_account_id=link.sub_account_id,
                        cl_ord_id=cl,
                        step=0,
                        kind="order",
                        symbol=p.symbol,
                        side=str(req.side),
                        qty=req.qty,
                        request={"type": "order", "note": "protective stop", "stop": str(stop)},
                        expires_at=now + timedelta(seconds=self._settings.trading.signal_ttl_s),
                    )
                ],
            )
            if ids[0] is None:
                return False
            try:
                result = await broker.place_order(req)
            except Exception as exc:
                await intent_store.mark_sent(self._pool, ids[0], "unknown", reason=str(exc))
                log.error("reconcile.protect_send_failed", sub_account_id=link.sub_account_id)
                return False
            await intent_store.mark_sent(
                self._pool, ids[0], "sent", broker_order_id=result.order_id
            )
            log.warning(
                "reconcile.protective_stop",
                sub_account_id=link.sub_account_id,
                symbol=p.symbol,
                stop=str(stop),
            )
            return True
