"""The simulator's shared state: logins and accounts, contracts and prices, the exchange, the
open WebSockets, fault switches and counters; and the fan-out of ``props`` events to sockets.

Events go out once per login as one ``a[...]`` frame shared by every socket of that login that
synced all its accounts (no per-socket copy or re-encode on the hot path). Flushes are serialised
by a lock so each socket sees events in the order the exchange produced them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from jtrades.broker.tradovate.codec import Event, Message, encode_messages
from jtrades.sim.auth import Auth, Session
from jtrades.sim.config import ROOTS, AccountSpec, Contract, LoginSpec, SimConfig, build_contracts
from jtrades.sim.entities import PropsEvent
from jtrades.sim.exchange import Exchange
from jtrades.sim.faults import Faults


class SimSocket(Protocol):
    login: LoginSpec | None
    session: Session | None
    accounts: frozenset[int] | None  # None: every account of the login
    entity_types: frozenset[str] | None  # lower-case entityTypes asked for; None: all
    zombie: bool
    deaf: bool

    def drop_after(self, frames: int) -> None: ...

    async def send(self, frame: str) -> None: ...

    async def shutdown(self, reason_code: str) -> None: ...


@dataclass
class Stats:
    access_token_requests: int = 0
    renewals: int = 0
    websockets_opened: int = 0
    frames_in: int = 0
    frames_out: int = 0
    requests: int = 0
    orders: int = 0
    events: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)
    # WebSocket requests being answered now, and the most at once, by endpoint (lower case):
    # whether a client asked them together or one after another
    answering: dict[str, int] = field(default_factory=dict)
    most_at_once: dict[str, int] = field(default_factory=dict)


class Simulator:
    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        today = config.today or datetime.now(UTC).date()
        contracts = build_contracts(today)
        self.contracts = {c.id: c for c in contracts}
        self.contracts_by_name = {c.name.upper(): c for c in contracts}
        self.front = {c.root.name: c for c in contracts if c.is_front}
        prices: dict[int, Decimal] = {c.id: c.root.start for c in contracts}
        self.exchange = Exchange(contracts, prices, config.starting_balance)
        for symbol, price in config.prices.items():
            for c in self.contracts_for(symbol):
                self.exchange.prices[c.id] = price
        self.auth = Auth(config, clock)
        self.faults = Faults()
        self.stats = Stats()
        self.accounts: dict[int, tuple[AccountSpec, LoginSpec]] = {}
        self.sockets: set[SimSocket] = set()
        self.synced: dict[str, set[SimSocket]] = {}
        self.authorized: dict[str, list[SimSocket]] = {}  # per login, oldest first
        self._pending: list[PropsEvent] = []
        self._late: set[asyncio.Task[None]] = set()  # flushes of lots shown later, raw frames
        self._flush_lock = asyncio.Lock()
        for login in config.logins:
            self._register(login)

    # --- world ---------------------------------------------------------------------------------

    def _register(self, login: LoginSpec) -> None:
        for acc in login.accounts:
            self.accounts[acc.id] = (acc, login)
            self.exchange.cash_of(acc.id)

    def add_login(
        self, name: str, password: str, accounts: list[str] | None = None, account_count: int = 0
    ) -> LoginSpec:
        login = self.config.add_login(name, password, accounts, account_count)
        self._register(login)
        return login

    def add_accounts(
        self, login: LoginSpec, accounts: list[str] | None = None, account_count: int = 0
    ) -> list[AccountSpec]:
        added = self.config.add_accounts(login, accounts, account_count)
        self._register(login)
        return added

    def contracts_for(self, symbol: str) -> list[Contract]:
        """A contract by name, or every listed maturity of a root."""
        c = self.contracts_by_name.get(symbol.upper())
        if c is not None:
            return [c]
        root = ROOTS.get(symbol.upper())
        return [x for x in self.contracts.values() if root is not None and x.root is root]

    def account_by_name(self, name: str) -> tuple[AccountSpec, LoginSpec] | None:
        for acc, login in self.accounts.values():
            if acc.name == name:
                return acc, login
        return None

    # --- events --------------------------------------------------------------------------------

    def queue(self, events: list[PropsEvent]) -> None:
        if not events:
            return
        lots = _lots(events) if self.faults.lot_ms else [events]
        self._pending.extend(lots[0])
        for k, later in enumerate(lots[1:], 1):
            delay = k * self.faults.lot_ms / 1000
            asyncio.get_running_loop().call_later(delay, self._deliver_late, later)

    def send_later(self, sock: SimSocket, frame: str) -> None:
        """Send ``frame`` as it stands on ``sock``, from a task (a fault is applied from
        synchronous code)."""
        task = asyncio.get_running_loop().create_task(sock.send(frame))
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    def _deliver_late(self, events: list[PropsEvent]) -> None:
        self._pending.extend(events)
        task = asyncio.get_running_loop().create_task(self.flush())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def flush(self) -> None:
        """Send queued events to the sockets that synced their accounts."""
        if not self._pending:
            return
        async with self._flush_lock:
            events, self._pending = self._pending, []
            if not events:
                return
            self.stats.events += len(events)
            by_login: dict[str, list[tuple[int, str, Message]]] = {}
            for account_id, entity_type, event_type, entity in events:
                login = self.accounts[account_id][1].name
                data = {"entityType": entity_type, "eventType": event_type, "entity": entity}
                by_login.setdefault(login, []).append(
                    (account_id, entity_type.lower(), Event("props", data))
                )
            for login, items in by_login.items():
                socks = self.synced.get(login)
                if not socks:
                    continue
                shared: str | None = None
                for sock in list(socks):
                    accounts, types = sock.accounts, sock.entity_types
                    if accounts is None and types is None:
                        if shared is None:
                            shared = encode_messages([e for _, _, e in items])
                        await sock.send(shared)
                        continue
                    mine = [
                        e
                        for a, t, e in items
                        if (accounts is None or a in accounts) and (types is None or t in types)
                    ]
                    if mine:
                        await sock.send(encode_messages(mine))

    async def set_price(self, symbol: str, price: Decimal) -> list[Contract]:
        contracts = self.contracts_for(symbol)
        for c in contracts:
            self.queue(self.exchange.set_price(c.id, price))
        await self.flush()
        return contracts

    async def revoke(self, sessions: list[Session], reason_code: str) -> None:
        for session in sessions:
            for sock in list(session.sockets):
                await sock.shutdown(reason_code)

    # --- observation ---------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        ex = self.exchange
        accounts: dict[str, Any] = {}
        for acc, login in self.accounts.values():
            cash = ex.cash_of(acc.id)
            accounts[acc.name] = {
                "id": acc.id,
                "login": login.name,
                "positions": [
                    {
                        "symbol": p.contract.name,
                        "contractId": p.contract.id,
                        "netPos": p.net_pos,
                        "netPrice": float(p.net_price),
                    }
                    for p in ex.positions_of(acc.id)
                    if p.net_pos
                ],
                "orders": [_order_state(o) for o in ex.open_orders(acc.id)],
                "fills": [
                    {
                        "id": f.id,
                        "orderId": f.order_id,
                        "symbol": f.contract.name,
                        "action": f.action,
                        "qty": f.qty,
                        "price": float(f.price),
                    }
                    for f in ex.fills_by_account.get(acc.id, [])
                ],
                "realizedPnL": float(cash.realized),
                "cashBalance": float(cash.start + cash.realized),
            }
        logins = {
            lg.name: {
                "userId": lg.user_id,
                "accounts": [a.name for a in lg.accounts],
                "sessions": len(self.auth.live_sessions(lg.name)),
                "websockets": sum(1 for s in self.sockets if s.login is lg),
            }
            for lg in self.config.logins
        }
        prices = {c.name: float(ex.prices[c.id]) for c in self.contracts.values()}
        return {"accounts": accounts, "logins": logins, "prices": prices}

    def stats_json(self) -> dict[str, Any]:
        s = self.stats
        return {
            "logins": len(self.config.logins),
            "access_token_requests": self.auth.token_requests,
            "renewals": self.auth.renewals,
            "websockets_opened": s.websockets_opened,
            "websockets_open": len(self.sockets),
            "frames_in": s.frames_in,
            "frames_out": s.frames_out,
            "requests": s.requests,
            "orders": s.orders,
            "events": s.events,
            "by_endpoint": dict(s.by_endpoint),
            "most_at_once": dict(s.most_at_once),
        }


def _order_state(o: Any) -> dict[str, Any]:
    s = o.spec
    return {
        "id": o.id,
        "symbol": o.contract.name,
        "action": s.action,
        "orderType": s.order_type,
        "qty": s.qty,
        "price": None if s.price is None else float(s.price),
        "stopPrice": None if s.stop_price is None else float(s.stop_price),
        "status": o.status,
        "clOrdId": s.cl_ord_id,
        "strategyId": o.strategy_id,
        "role": o.role or None,
        "ocoId": o.oco_id,
        "parentId": o.parent_id,
    }


def _lots(events: list[PropsEvent]) -> list[list[PropsEvent]]:
    """The events cut before every fill of an order that already had one in this batch: with
    the ``partial_fills`` fault's ``ms``, each lot after the first goes out that much later
    (what the last lot sets off, the order going Filled included, goes with it)."""
    lots: list[list[PropsEvent]] = [[]]
    filled: set[Any] = set()
    for ev in events:
        _, entity_type, event_type, entity = ev
        if entity_type == "fill" and event_type == "Created":
            order_id = entity.get("orderId")
            if order_id in filled:
                lots.append([])
            filled.add(order_id)
        lots[-1].append(ev)
    return lots
