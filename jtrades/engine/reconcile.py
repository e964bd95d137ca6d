"""Reconciliation: make the database agree with the brokers, and never let doubt send an order.

Three jobs:

1. Open intents (pending/sent/unknown) that outlived their send window are looked up at the
   broker by clOrdId (money rule 2). Found: the intent takes the order's state. Not found: it was
   never sent, and it never will be (``expired``) — after a crash between intent and send the
   order is dropped, not sent late. Run once at start, before the engine reports ready.
2. The brokers' event streams are mirrored into ``orders``, ``fills``, ``positions`` and
   ``trades`` by ``engine.mirror``, which also keeps the day's realized P&L (``pnl``).
3. A naked position — open, no working stop, and its trader has a stop loss configured — gets a
   protective stop, through an intent like any other order. Only on a synced view: "missing is
   not flat" (rule 6), an unreadable account is left alone.

The decisions (``resolve_intent``, ``needs_stop``) are pure; the class does I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.broker.base import (
    Broker,
    Contract,
    OrderRequest,
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
from jtrades.engine.mirror import Mirror, intent_state
from jtrades.engine.pnl import DailyPnl
from jtrades.engine.sizing import exit_offset_points, exit_price
from jtrades.errors import BrokerRejected
from jtrades.store import intents as intent_store
from jtrades.store import trading as trading_store

log = structlog.get_logger(__name__)

_STOPS = frozenset({OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP})


# --- pure decisions ---------------------------------------------------------------------------


def resolve_intent(kind: str, found: WorkingOrder | None) -> tuple[str, int | None, str | None]:
    """An open intent's new state given what the broker knows by its clOrdId (a strategy's:
    its entry order, found by the id the strategy was started with). ``found`` is None only
    when the broker's complete answer has no such order: an unreadable one decides nothing."""
    if found is not None:
        return intent_state(found.status), found.order_id, None
    if kind in ("cancel", "liquidate"):
        return "expired", None, "outcome not confirmed by the broker; not repeated"
    if kind == "strategy":
        return (
            "expired",
            None,
            "no order strategy at the broker with this id: not sent, never sent late",
        )
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
        self._dispatcher = dispatcher
        self._settings = settings
        self.mirror = Mirror(pool, brokers, config)
        self._ready = False
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
        self.mirror.seed_open(
            (r["sub_account_id"], r["symbol"], r["net_pos"], r["net_price"], r["updated_at"])
            for r in rows
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
                await asyncio.wait_for(stop.wait(), interval)
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

    @property
    def pnl(self) -> DailyPnl:
        """Realized P&L of the day per sub-account, as the mirror records the fills."""
        return self.mirror.pnl

    async def close(self) -> None:
        await self.mirror.close()

    # --- 1. intents -----------------------------------------------------------------------

    async def resolve_intents(self, *, before: datetime) -> int:
        """Resolve open intents created before ``before``; returns how many were resolved."""
        done = 0
        for it in await intent_store.open_older_than(self._pool, before):
            broker = self._session(it.account_id, it.env)
            if broker is None or not broker.is_synced(it.broker_account_id):
                continue  # cannot see the account: decide nothing
            state: str
            order_id: int | None
            reason: str | None
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
                continue
            else:
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

    # --- 2. the mirror (engine.mirror), 3. protective stops ----------------------------------------------------------------

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
                if key not in self._suspect:
                    continue
                try:
                    if await self._protect(link, broker, p):
                        placed += 1
                except Exception as exc:
                    # this position only: the other sub-accounts still get their stops, and
                    # it stays a suspect, so the next pass tries again
                    log.error(
                        "reconcile.protect_failed",
                        sub_account_id=link.sub_account_id,
                        symbol=p.symbol,
                        error=f"{type(exc).__name__}: {exc}",
                    )
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
