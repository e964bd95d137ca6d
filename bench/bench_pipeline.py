"""The webhook pipeline (server → engine → Tradovate client) against the simulator, each number
next to a floor measured in the same run.

The floor is the least any design must do: a minimal aiohttp handler that makes one durable
INSERT and writes one order frame per sub-account to the simulator over a bare WebSocket.

- latency: request sent → the simulator has received the signal's last order frame, p50/p99,
  for 1, 10 and 100 sub-accounts per signal (one login; alerts alternate buy / close so each
  alert is one frame per sub-account);
- throughput: alerts per second, 10 recorders × 10 sub-accounts, alerts round-robin with 10 in
  flight, until the simulator has every frame;
- memory: RSS of ``jtrades serve`` with 1,000 traders on 1,000 (paper) sub-accounts, next to a
  process running only the floor's handler and pool.

Needs the Postgres at $JTRADES_BENCH_DSN (default postgresql://postgres@127.0.0.1:5432/postgres);
makes and drops a temporary database.    python -m bench pipeline   (BENCH_N alerts, default 200)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from websockets.asyncio.client import connect as ws_connect

from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database, connect, migrate
from jtrades.engine.engine import Engine
from jtrades.engine.tokens import TokenCache
from jtrades.logging import configure
from jtrades.security import hash_token
from jtrades.server import Webhooks, build_app, start_http
from jtrades.sim.app import start as start_sim
from jtrades.sim.config import default_config
from jtrades.sim.world import Simulator
from jtrades.sim.ws import WsConn
from jtrades.store import recorders as recorder_store

DSN = os.environ.get("JTRADES_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
PW = "bench-pw"
ORDER_ENDPOINTS = ("order/", "orderstrategy/")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Probe:
    """Times the simulator's receipt of order frames (the moment a frame is off our socket)."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.last = 0.0
        self.done = asyncio.Event()

    def expect(self, frames: int) -> None:
        self.count, self.target, self.done = 0, frames, asyncio.Event()

    def hit(self) -> None:
        self.count += 1
        self.last = time.perf_counter()
        if self.count >= self.target:
            self.done.set()

    def install(self) -> None:
        original = WsConn._frame
        probe = self

        async def _frame(conn: WsConn, text: str) -> None:
            if text[:20].lower().startswith(ORDER_ENDPOINTS):
                probe.hit()
            await original(conn, text)

        WsConn._frame = _frame  # type: ignore[method-assign]


@asynccontextmanager
async def temp_database() -> AsyncIterator[str]:
    name = f"jt_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = DSN.rsplit("/", 1)[0] + "/" + name
    conn = await asyncpg.connect(url)
    await migrate(conn)
    await conn.close()
    try:
        yield url
    finally:
        admin = await asyncpg.connect(DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def _user(pool: asyncpg.Pool, name: str) -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO users (name, email, status) VALUES ($1, $2, 'approved') RETURNING id",
            name,
            f"{name}@example.com",
        )
    )


async def _recorder(pool: asyncpg.Pool, user_id: int, name: str, token: str) -> int:
    # same direction "add" with no exits: every buy is one market order per sub-account
    return int(
        await pool.fetchval(
            "INSERT INTO recorders (user_id, name, symbol, token_hash, same_direction)"
            " VALUES ($1, $2, 'MNQ1!', $3, 'add') RETURNING id",
            user_id,
            name,
            hash_token(token),
        )
    )


async def _link(pool: asyncpg.Pool, user_id: int, rec: int, subs: list[int]) -> None:
    tid = await pool.fetchval(
        "INSERT INTO traders (user_id, recorder_id, enabled) VALUES ($1,$2,true) RETURNING id",
        user_id,
        rec,
    )
    await pool.executemany(
        "INSERT INTO trader_accounts (trader_id, sub_account_id) VALUES ($1, $2)",
        [(tid, s) for s in subs],
    )


async def _account(
    pool: asyncpg.Pool, user_id: int, label: str, env: str, accounts: list[tuple[int, str]]
) -> tuple[int, list[int]]:
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username) VALUES ($1,$2,$3,$4) RETURNING id",
        user_id,
        label,
        env,
        label,
    )
    subs = []
    for broker_id, name in accounts:
        subs.append(
            await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1,$2,$3) RETURNING id",
                aid,
                broker_id,
                name,
            )
        )
    return int(aid), [int(s) for s in subs]


class Bench:
    """One simulator, one database, the real pipeline and the floor side by side."""

    def __init__(self, world: Simulator, port: int, db: Database, settings: Settings) -> None:
        self.world, self.port, self.db, self.settings = world, port, db, settings
        self.probe = Probe()
        self.tv = TradovatePool(settings.tradovate)
        self.engine: Engine | None = None
        self.http: aiohttp.ClientSession | None = None
        self.base = ""
        self.floor_base = ""
        self.runners: list[web.AppRunner] = []
        self.floor_ws: dict[str, Any] = {}  # login -> websocket
        self.floor_accounts: dict[str, list[dict[str, Any]]] = {}  # token -> account specs
        self.readers: list[asyncio.Task[None]] = []

    async def add_group(self, name: str, n_subs: int) -> str:
        """A login with ``n_subs`` sub-accounts, a recorder and a trader on all of them."""
        pool = self.db.pool
        login = self.world.add_login(name, PW, account_count=n_subs)
        uid = await _user(pool, name)
        aid, subs = await _account(
            pool, uid, name, "demo", [(a.id, a.name) for a in login.accounts]
        )
        token = f"tok-{name}-{uuid.uuid4().hex}"
        rec = await _recorder(pool, uid, name, token)
        await _link(pool, uid, rec, subs)
        broker = await self.tv.broker("demo", name, PW)
        assert self.engine is not None
        self.engine.brokers.attach(aid, "demo", broker)
        # the floor: its own bare socket on the same login, the same accounts
        tok = self.tv.tokens.peek("demo", name)
        assert tok is not None
        ws = await ws_connect(
            self.settings.tradovate.demo_ws_url, max_size=16 * 1024 * 1024, ping_interval=None
        )
        assert await ws.recv() == "o"
        await ws.send(f"authorize\n0\n\n{tok.token}")
        await ws.recv()
        self.floor_ws[token] = ws
        self.readers.append(asyncio.create_task(_drain(ws)))
        self.floor_accounts[token] = [{"id": a.id, "name": a.name} for a in login.accounts]
        return token

    async def start(self) -> None:
        self.engine = Engine(self.db, self.settings)
        await self.engine.start()

    async def serve(self) -> None:
        assert self.engine is not None
        await self.engine.config.refresh()
        tokens = TokenCache(lambda: recorder_store.all_token_hashes(self.db.pool))
        await tokens.refresh()
        hooks = Webhooks(self.db, self.settings, tokens, self.engine)
        runner, port = await start_http(build_app(hooks), "127.0.0.1", 0)
        self.runners.append(runner)
        self.base = f"http://127.0.0.1:{port}/webhook/"
        app = web.Application()
        app.router.add_post("/floor/{token}", self.floor)
        frunner = web.AppRunner(app, access_log=None)
        await frunner.setup()
        site = web.TCPSite(frunner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(frunner)
        fport = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.floor_base = f"http://127.0.0.1:{fport}/floor/"
        self.http = aiohttp.ClientSession()
        self.symbol = (await (await self.tv.broker("demo", "g1", PW)).find_contract("MNQ1!")).symbol

    async def floor(self, request: web.Request) -> web.Response:
        """The least any design must do: store the delivery durably, write one frame per account."""
        token = request.match_info["token"]
        body = await request.read()
        await self.db.pool.execute(
            "INSERT INTO signals (raw_body, verdict) VALUES ($1, 'received')", body
        )
        ws = self.floor_ws[token]
        for i, a in enumerate(self.floor_accounts[token]):
            order = {
                "accountSpec": a["name"],
                "accountId": a["id"],
                "action": "Buy",
                "symbol": self.symbol,
                "orderQty": 1,
                "orderType": "Market",
                "isAutomated": True,
                "clOrdId": f"floor-{uuid.uuid4().hex[:8]}-{i}",
            }
            await ws.send(f"order/placeorder\n{i + 1}\n\n{orjson.dumps(order).decode()}")
        return web.json_response({"ok": True})

    async def post(self, url: str, body: dict[str, Any]) -> None:
        assert self.http is not None
        async with self.http.post(url, data=orjson.dumps(body)) as r:
            await r.read()
            assert r.status == 200, r.status

    async def latency(self, url: str, n_subs: int, n: int) -> list[float]:
        out = []
        for i in range(n):
            action = "buy" if i % 2 == 0 else "close"
            self.probe.expect(n_subs)
            t0 = time.perf_counter()
            await self.post(url, {"action": action, "ticker": "MNQ1!", "id": f"l{uuid.uuid4()}"})
            await asyncio.wait_for(self.probe.done.wait(), 30)
            out.append(self.probe.last - t0)
        return out

    async def throughput(self, urls: list[str], n: int, subs_each: int) -> float:
        self.probe.expect(n * subs_each)
        sem = asyncio.Semaphore(10)

        async def one(i: int) -> None:
            async with sem:
                url = urls[i % len(urls)]
                await self.post(url, {"action": "buy", "ticker": "MNQ1!", "id": f"t{uuid.uuid4()}"})

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        await asyncio.wait_for(self.probe.done.wait(), 120)  # a lost order times out here
        rate = n / (self.probe.last - t0)
        await asyncio.sleep(0.5)
        # a duplicated order would arrive as a frame beyond the expected count
        assert self.probe.count == n * subs_each, (self.probe.count, n * subs_each)
        return rate

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        for t in self.readers:
            t.cancel()
        for ws in self.floor_ws.values():
            await ws.close()
        for r in self.runners:
            await r.cleanup()
        if self.engine is not None:
            await self.engine.close()
        await self.tv.close()


async def _drain(ws: Any) -> None:
    """Read (and drop) what the simulator sends the floor's socket, and keep it alive."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(2)
            await ws.send("[]")

    hb = asyncio.create_task(beat())
    try:
        async for _ in ws:
            pass
    except Exception:  # closed at the end of the run
        return
    finally:
        hb.cancel()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


FLOOR_PROCESS = """
import asyncio, sys, asyncpg
from aiohttp import web
async def main():
    pool = await asyncpg.create_pool(sys.argv[1], min_size=2, max_size=10)
    async def h(request):
        await pool.execute("INSERT INTO signals (raw_body, verdict) VALUES ($1, 'received')",
                           await request.read())
        return web.json_response({"ok": True})
    app = web.Application(); app.router.add_post("/w/{t}", h)
    runner = web.AppRunner(app); await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", int(sys.argv[2])).start()
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def memory(url: str) -> tuple[int, int]:
    """RSS (KiB) of ``jtrades serve`` with 1,000 traders / 1,000 paper sub-accounts, and of the
    floor process, each after start-up and 100 alerts."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    assert pool is not None
    tokens = []
    for u in range(10):
        uid = await _user(pool, f"mem{u}")
        for a in range(10):
            _aid, subs = await _account(
                pool, uid, f"mem{u}-{a}", "paper", [(i, f"P{u}-{a}-{i}") for i in range(1, 11)]
            )
            token = f"memtok-{u}-{a}-{uuid.uuid4().hex}"
            rec = await _recorder(pool, uid, f"mem{u}-{a}", token)
            tokens.append(token)
            for s in subs:  # 10 traders per recorder, one sub-account each
                await _link(pool, uid, rec, [s])
    await pool.close()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("JTRADES_")}
        env.update(
            JTRADES_DATABASE__URL=url,
            JTRADES_DATA_DIR=tmp,
            JTRADES_SERVER__PORT=str(port),
            JTRADES_CONFIG=str(Path(tmp) / "none.toml"),
        )
        (Path(tmp) / "none.toml").write_text("")
        daemon = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "jtrades.cli",
            "serve",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        fport = free_port()
        floor = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            FLOOR_PROCESS,
            url,
            str(fport),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with aiohttp.ClientSession() as http:
                for _ in range(600):
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                            if r.status == 200:
                                break
                    await asyncio.sleep(0.1)
                assert floor.stdout is not None
                await floor.stdout.readline()
                for i in range(100):
                    body = orjson.dumps(
                        {"action": "buy", "ticker": "MNQ1!", "price": 21500, "id": i}
                    )
                    t = tokens[i % len(tokens)]
                    async with http.post(f"http://127.0.0.1:{port}/webhook/{t}", data=body) as r:
                        await r.read()
                    async with http.post(f"http://127.0.0.1:{fport}/w/x", data=body) as r:
                        await r.read()
            return rss_kib(daemon.pid), rss_kib(floor.pid)
        finally:
            for p in (daemon, floor):
                p.terminate()
                await asyncio.wait_for(p.wait(), 30)


async def run(n: int) -> None:
    world = Simulator(default_config())
    runner, port = await start_sim(world, "127.0.0.1", 0)
    await world.set_price("MNQ", Decimal(21500))
    try:
        async with temp_database() as url:
            settings = Settings(
                data_dir=Path(tempfile.mkdtemp()),
                database={"url": url, "max_pool": 20},  # type: ignore[arg-type]
                tradovate={  # type: ignore[arg-type]
                    "demo_rest_url": f"http://127.0.0.1:{port}/v1",
                    "demo_ws_url": f"ws://127.0.0.1:{port}/v1/websocket",
                    "connect_stagger_s": 0,
                    "request_timeout_s": 30,
                },
                log={"level": "error"},  # type: ignore[arg-type]
            )
            db = await connect(settings)
            bench = Bench(world, port, db, settings)
            bench.probe.install()
            try:
                await bench.start()
                groups = {1: await bench.add_group("g1", 1)}
                groups[10] = await bench.add_group("g10", 10)
                groups[100] = await bench.add_group("g100", 100)
                tp = [await bench.add_group(f"t{i}", 10) for i in range(10)]
                await bench.serve()
                rows = []
                for subs, token in groups.items():
                    count = max(20, n // (10 if subs == 100 else 2))
                    await bench.latency(bench.base + token, subs, 4)  # warm up
                    await bench.latency(bench.floor_base + token, subs, 4)
                    # interleaved in chunks, so load from elsewhere on the box hits both sides
                    ours: list[float] = []
                    floor: list[float] = []
                    chunk = max(5, count // 4)
                    while len(ours) < count:
                        k = min(chunk, count - len(ours))
                        ours += await bench.latency(bench.base + token, subs, k)
                        floor += await bench.latency(bench.floor_base + token, subs, k)
                    ms = 1000
                    rows.append(
                        (
                            f"latency p50, {subs} sub-acct (ms)",
                            pct(ours, 50) * ms,
                            pct(floor, 50) * ms,
                        )
                    )
                    rows.append(
                        (
                            f"latency p99, {subs} sub-acct (ms)",
                            pct(ours, 99) * ms,
                            pct(floor, 99) * ms,
                        )
                    )
                ours_rate = await bench.throughput([bench.base + t for t in tp], n, 10)
                floor_rate = await bench.throughput([bench.floor_base + t for t in tp], n, 10)
                rows.append(("alerts/s, 10 sub-acct each", ours_rate, floor_rate))
            finally:
                await bench.close()
                await db.close()
            mem, floor_mem = await memory(url)
            rows.append(("RSS MiB, 1000 traders/subs", mem / 1024, floor_mem / 1024))
    finally:
        await runner.cleanup()
    print(f"command: BENCH_N={n} .venv/bin/python -m bench pipeline")
    print(
        f"n={n}; simulator in-process on 127.0.0.1; Postgres {DSN.rsplit('@', 1)[-1]}; "
        f"{os.cpu_count()} CPUs"
    )
    print("ratio = jtrades / floor (alerts/s: floor / jtrades, so lower is better everywhere)")
    print(f"{'metric':<36}{'jtrades':>10}{'floor':>10}{'ratio':>8}{'target':>9}  ok")
    for name, ours_v, floor_v in rows:
        if name.startswith("alerts/s"):
            ratio = floor_v / ours_v if ours_v else float("nan")
            target, ok = ">=500/s", ours_v >= 500
        else:
            ratio = ours_v / floor_v if floor_v else float("nan")
            limit = 1.5 if "p50" in name else 2.0 if "p99" in name else None
            target = f"<={limit:g}" if limit is not None else "-"
            ok = ratio <= limit if limit is not None else True
        mark = "yes" if ok else "NO"
        print(f"{name:<36}{ours_v:>10.2f}{floor_v:>10.2f}{ratio:>8.2f}{target:>9}  {mark}")


def main() -> None:
    configure(level="error")
    asyncio.run(run(int(os.environ.get("BENCH_N", "200"))))


if __name__ == "__main__":
    main()
