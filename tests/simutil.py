"""Run the Tradovate simulator inside a test's event loop, on a free port, over real sockets.

    from tests.simutil import sim, running_sim   # ``sim`` is a pytest fixture

    async def test_x(sim):
        sim.rest_url, sim.ws_url                 # http://127.0.0.1:P/v1, ws://127.0.0.1:P/v1/websocket
        await sim.set_price("MNQ", 21510)        # a root or a contract; fills what it reaches
        sim.state()["accounts"]["SIM1"]          # positions, working orders, fills, realizedPnL
        sim.fault("zombie", login="sim")         # see jtrades.sim.faults
        sim.contract("MNQ")                      # the front-month Contract (name, id, tick)

A bare protocol client for tests that must not depend on our Tradovate client:

    from tests.simutil import bare_connect, http, market_order, request_token
    access = (await request_token(http, sim))["accessToken"]
    ws = await bare_connect(http, sim, access)            # authorized and synced
    r = await ws.call("order/placeorder", market_order(sim, qty=2))
    await ws.recv_until(lambda: ws.props("fill"))          # props events as (type, event, entity)

The default world: login ``sim`` / password ``sim`` with accounts SIM1 and SIM2. Pass a
``SimConfig`` to ``running_sim`` for more logins, a shorter token lifetime, etc.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import aiohttp
import asyncpg
import pytest

from jtrades.broker.tradovate.codec import Event, Response, encode_request, parse_server_frame
from jtrades.sim.app import start
from jtrades.sim.config import Contract, LoginSpec, SimConfig, default_config
from jtrades.sim.faults import Faults, apply_fault
from jtrades.sim.world import Simulator

LOGIN = "sim"
PASSWORD = "sim"
LOGIN_BODY = {
    "name": LOGIN,
    "password": PASSWORD,
    "appId": "jtrades",
    "appVersion": "1.0",
    "cid": 8,
    "sec": "secret",
    "deviceId": "dev-1",
}


@dataclass
class SimHandle:
    world: Simulator
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"{self.base_url}/v1"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/websocket"

    @property
    def faults(self) -> Faults:
        return self.world.faults

    @property
    def config(self) -> SimConfig:
        return self.world.config

    async def set_price(self, symbol: str, price: float | str | Decimal) -> None:
        if not self.world.contracts_for(symbol):
            raise KeyError(symbol)
        await self.world.set_price(symbol, Decimal(str(price)))

    def price(self, symbol: str) -> Decimal:
        return self.world.exchange.prices[self.world.contracts_for(symbol)[0].id]

    def state(self) -> dict[str, Any]:
        return self.world.state()

    def positions(self, account: str) -> dict[str, int]:
        """Open positions of an account: contract name → netPos."""
        return {p["symbol"]: p["netPos"] for p in self.state()["accounts"][account]["positions"]}

    def working_orders(self, account: str) -> list[dict[str, Any]]:
        """Working (and Suspended OSO) orders: id, symbol, action, orderType, qty, price,
        stopPrice, status, clOrdId, strategyId, role, ocoId, parentId."""
        return list(self.state()["accounts"][account]["orders"])

    def stats(self) -> dict[str, Any]:
        return self.world.stats_json()

    def fault(self, kind: str, **kw: Any) -> dict[str, Any]:
        """Flip a fault switch (``jtrades.sim.faults``); events it queues (``replay``) go out
        with the next flush — ``await sim.flush()`` to send them now."""
        return apply_fault(self.world, {"kind": kind, **kw})

    async def flush(self) -> None:
        await self.world.flush()

    def new_trading_day(self) -> None:
        """What Tradovate's snapshot holds after the session change: open positions and
        working orders; the day's flat positions, its fills and its finished orders are gone."""
        ex = self.world.exchange
        for key in [k for k, p in ex.positions.items() if p.net_pos == 0]:
            del ex.positions[key]
        ex.fills_by_account.clear()
        ex.fill_pairs.clear()
        for orders in ex.orders_by_account.values():
            orders[:] = [o for o in orders if o.status in ("Working", "Suspended", "PendingNew")]

    def contract(self, symbol: str) -> Contract:
        """The front month of a root (or the named contract)."""
        c = self.world.contracts_by_name.get(symbol.upper())
        return c if c is not None else self.world.front[symbol.upper()]

    def add_login(
        self, name: str, password: str, accounts: list[str] | None = None, account_count: int = 0
    ) -> LoginSpec:
        return self.world.add_login(name, password, accounts, account_count)

    def add_accounts(
        self, login: str, accounts: list[str] | None = None, account_count: int = 0
    ) -> None:
        found = self.world.auth.login(login)
        if found is None:
            raise KeyError(login)
        self.world.add_accounts(found, accounts, account_count)

    def account_id(self, name: str) -> int:
        found = self.world.account_by_name(name)
        if found is None:
            raise KeyError(name)
        return found[0].id

    def tradovate_env(self) -> dict[str, str]:
        """The JTRADES_* variables that point jtrades at this simulator (demo and live)."""
        return env_for(self.port)


def env_for(port: int, host: str = "127.0.0.1") -> dict[str, str]:
    rest, ws = f"http://{host}:{port}/v1", f"ws://{host}:{port}/v1/websocket"
    return {
        "JTRADES_TRADOVATE__DEMO_REST_URL": rest,
        "JTRADES_TRADOVATE__DEMO_WS_URL": ws,
        "JTRADES_TRADOVATE__LIVE_REST_URL": rest,
        "JTRADES_TRADOVATE__LIVE_WS_URL": ws,
    }


@asynccontextmanager
async def running_sim(
    config: SimConfig | None = None, clock: Callable[[], float] | None = None
) -> AsyncIterator[SimHandle]:
    """``clock``: seconds since the epoch, for tests that move time (token expiry, p-time)."""
    world = Simulator(config or default_config(), clock or time.time)
    runner, port = await start(world, "127.0.0.1", 0)
    try:
        yield SimHandle(world, port)
    finally:
        await runner.cleanup()


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


# --- a bare protocol client ---------------------------------------------------------------------


class BareClient:
    """A minimal Tradovate WebSocket client: just framing, ids and a queue of events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 1
        self.events: list[dict[str, Any]] = []
        self.responses: dict[int, Response] = {}
        self.frames: list[str] = []

    async def recv_until(self, pred: Any, wait_s: float = 5.0) -> None:
        async with asyncio.timeout(wait_s):
            while not pred():
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket ended: {msg.type}")
                self.frames.append(msg.data)
                frame = parse_server_frame(msg.data)
                for m in frame.messages:
                    if isinstance(m, Response):
                        self.responses[m.id] = m
                    elif isinstance(m, Event):
                        self.events.append({"e": m.name, "d": m.data})

    async def call(
        self, endpoint: str, body: Any = None, query: str = "", wait_s: float = 5.0
    ) -> Response:
        rid = self.next_id
        self.next_id += 1
        await self.ws.send_str(encode_request(endpoint, rid, body, query))
        await self.recv_until(lambda: rid in self.responses, wait_s)
        return self.responses.pop(rid)

    def props(self, entity_type: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for ev in self.events:
            if ev["e"] == "props":
                d = ev["d"]
                if entity_type is None or d["entityType"] == entity_type:
                    out.append((d["entityType"], d["eventType"], d["entity"]))
        return out


async def request_token(
    http: aiohttp.ClientSession, sim: SimHandle, **extra: Any
) -> dict[str, Any]:
    async with http.post(
        f"{sim.rest_url}/auth/accesstokenrequest", json={**LOGIN_BODY, **extra}
    ) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def bare_connect(
    http: aiohttp.ClientSession, sim: SimHandle, access: str, sync: bool = True
) -> BareClient:
    ws = await http.ws_connect(sim.ws_url)
    assert (await ws.receive_str()) == "o"
    bare = BareClient(ws)
    r = await bare.call("authorize", access)
    assert r.status == 200
    if sync:
        snap = await bare.call("user/syncrequest", {"users": [sim.world.config.logins[0].user_id]})
        assert snap.status == 200
    return bare


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session for talking to the simulator."""
    async with aiohttp.ClientSession() as s:
        yield s


def market_order(
    sim: SimHandle, account: str = "SIM1", qty: int = 1, action: str = "Buy", **kw: Any
) -> dict[str, Any]:
    return {
        "accountSpec": account,
        "accountId": sim.account_id(account),
        "action": action,
        "symbol": sim.contract("MNQ").name,
        "orderQty": qty,
        "orderType": "Market",
        "isAutomated": True,
        **kw,
    }


async def account_naming(pool: asyncpg.Pool, login: str, env: str = "demo") -> int:
    """A user's account naming ``login``: a login's token is stored only while an account
    names it (``broker_tokens.upsert``). Its id."""
    uid = await pool.fetchval(
        "INSERT INTO users (name, email, status) VALUES ($1, $2, 'approved') RETURNING id",
        f"of-{login}",
        f"of-{login}@example.com",
    )
    return int(
        await pool.fetchval(
            "INSERT INTO accounts (user_id, label, env, username) VALUES ($1, $2, $3, $4)"
            " RETURNING id",
            uid,
            f"{login}-{env}",
            env,
            login,
        )
    )
