"""The machinery of ``bench_pipeline``: a temporary database and its rows, the child processes
(simulator, ``jtrades serve``, floor) and the memory measurement."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson

from jtrades.migrations import migrate
from jtrades.security import SecretBox, hash_token, new_secret_key, parse_keys
from jtrades.store import accounts as account_store

ROOT = Path(__file__).resolve().parent.parent  # the children import ``bench`` from here
DSN = os.environ.get("JTRADES_BENCH_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


def database_url(dsn: str, name: str) -> str:
    """``dsn`` naming database ``name`` instead, its query (a socket's ``?host=``) kept."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + name))


@asynccontextmanager
async def temp_database() -> AsyncIterator[str]:
    name = f"jt_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(DSN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    url = database_url(DSN, name)
    try:
        conn = await asyncpg.connect(url)
        await migrate(conn)
        await conn.close()
        yield url
    finally:
        admin = await asyncpg.connect(DSN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- rows ----------------------------------------------------------------------------------------


class Keys:
    """A master key for the daemon (``JTRADES_SECRET_KEY``) and the box that seals with it."""

    def __init__(self) -> None:
        self.text = new_secret_key()
        self.box = SecretBox(parse_keys(self.text, "bench"), "bench")


async def user(pool: asyncpg.Pool, name: str) -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO users (name, email, status) VALUES ($1, $2, 'approved') RETURNING id",
            name,
            f"{name}@example.com",
        )
    )


async def recorder(pool: asyncpg.Pool, user_id: int, name: str, token: str) -> int:
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


async def link(pool: asyncpg.Pool, user_id: int, rec: int, subs: list[int]) -> None:
    tid = await pool.fetchval(
        "INSERT INTO traders (user_id, recorder_id, enabled) VALUES ($1,$2,true) RETURNING id",
        user_id,
        rec,
    )
    await pool.executemany(
        "INSERT INTO trader_accounts (trader_id, sub_account_id) VALUES ($1, $2)",
        [(tid, s) for s in subs],
    )


async def paper_account(
    pool: asyncpg.Pool, user_id: int, label: str, accounts: list[tuple[int, str]]
) -> list[int]:
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username) VALUES ($1,$2,'paper',$2)"
        " RETURNING id",
        user_id,
        label,
    )
    return [await _sub(pool, int(aid), b, n) for b, n in accounts]


async def demo_account(
    pool: asyncpg.Pool, keys: Keys, user_id: int, login: str, password: str, accounts: list[Any]
) -> list[int]:
    """A demo login, its password sealed as ``jtrades accounts add`` does, and its sub-accounts."""
    sealed = keys.box.seal(password, account_store.password_context("demo", login))
    async with pool.acquire() as c, c.transaction():
        acct = await account_store.create(
            c, user_id=user_id, label=login, env="demo", username=login, password=sealed
        )
    return [await _sub(pool, acct.id, int(a["id"]), str(a["name"])) for a in accounts]


async def _sub(pool: asyncpg.Pool, account_id: int, broker_id: int, name: str) -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
            " VALUES ($1,$2,$3) RETURNING id",
            account_id,
            broker_id,
            name,
        )
    )


async def seed_history(pool: asyncpg.Pool, recorder_id: int, subs: list[int], n: int) -> None:
    """``n`` alerts of trading history, six weeks old (outside every counter, window and
    dedup key), each with its intent, order and fill, then ANALYZE: the daemon plans its
    statements against tables with a past and statistics, as in production, not against
    empty ones that fill up under the benchmark (broker ids far from the simulator's)."""
    await pool.execute(
        """
        WITH s AS (
            INSERT INTO signals (recorder_id, received_at, raw_body, action, verdict, orders)
            SELECT $1, now() - interval '42 days' + g * interval '1 second',
                   '{"action": "buy"}'::bytea, 'buy', 'accepted', 1
            FROM generate_series(1, $3::int) g
            RETURNING id, received_at
        ), k AS (
            INSERT INTO signal_keys (recorder_id, idem_key, signal_id, created_at)
            SELECT $1, 'history-' || s.id, s.id, s.received_at FROM s
        ), i AS (
            INSERT INTO order_intents (signal_id, sub_account_id, cl_ord_id, step, kind, symbol,
                                       side, qty, request, state, broker_order_id, created_at,
                                       expires_at, sent_at, updated_at)
            SELECT s.id, ($2::bigint[])[1 + s.id % cardinality($2::bigint[])],
                   'history-' || s.id, 0, 'order', 'MNQZ6', 'Buy', 1, '{}'::jsonb, 'filled',
                   1000000000 + s.id, s.received_at, s.received_at, s.received_at,
                   s.received_at
            FROM s
            RETURNING id, sub_account_id, broker_order_id, cl_ord_id, created_at
        ), o AS (
            INSERT INTO orders (sub_account_id, broker_order_id, intent_id, cl_ord_id, symbol,
                                side, qty, order_type, status)
            SELECT sub_account_id, broker_order_id, id, cl_ord_id, 'MNQZ6', 'Buy', 1, 'Market',
                   'Filled'
            FROM i
        )
        INSERT INTO fills (sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty,
                           price, filled_at)
        SELECT sub_account_id, broker_order_id, broker_order_id, 'MNQZ6', 'Buy', 1, 21500,
               created_at
        FROM i
        """,
        recorder_id,
        subs,
        n,
    )
    await pool.execute("ANALYZE")


# --- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log(path: Path) -> IO[bytes]:
    return path.open("wb")


def tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


class Procs:
    """Child processes, each logging to a file in ``dir``; ``stop()`` ends every one."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="jt_bench_"))
        self.procs: list[asyncio.subprocess.Process] = []

    async def spawn(
        self, name: str, *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
    ) -> asyncio.subprocess.Process:
        with _log(self.dir / f"{name}.log") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                *args,
                env=env,
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE if name != "daemon" else log,
                stderr=log,
            )
        self.procs.append(proc)
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
        return proc

    async def ready_port(self, name: str, proc: asyncio.subprocess.Process) -> int:
        """The port from the child's ``ready PORT`` line."""
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line.startswith(b"ready "):
            raise RuntimeError(f"{name} did not start:\n{tail(self.dir / f'{name}.log')}")
        return int(line.split()[1])

    async def sim(self) -> tuple[asyncio.subprocess.Process, int]:
        proc = await self.spawn("sim", "-m", "bench.simproc", "0")
        return proc, await self.ready_port("sim", proc)

    async def floor(self, cfg: dict[str, Any]) -> tuple[asyncio.subprocess.Process, int]:
        proc = await self.spawn("floor", "-m", "bench.floorproc", stdin=json.dumps(cfg).encode())
        return proc, await self.ready_port("floor", proc)

    async def daemon(
        self, url: str, sim_port: int | None, key: str
    ) -> tuple[asyncio.subprocess.Process, int]:
        """``jtrades serve`` configured by environment only; returns once ``/readyz`` is 200."""
        port = free_port()
        data = self.dir / f"data-{port}"
        data.mkdir()
        (data / "none.toml").write_text("")
        env = {k: v for k, v in os.environ.items() if not k.startswith("JTRADES_")}
        env.update(
            JTRADES_DATABASE__URL=url,
            JTRADES_DATABASE__MAX_POOL="20",
            JTRADES_DATA_DIR=str(data),
            JTRADES_SERVER__PORT=str(port),
            JTRADES_CONFIG=str(data / "none.toml"),
            JTRADES_LOG__LEVEL="error",
            JTRADES_SECRET_KEY=key,
            JTRADES_TRADOVATE__CONNECT_STAGGER_S="0",
            JTRADES_TRADOVATE__REQUEST_TIMEOUT_S="30",
        )
        if sim_port is not None:
            env["JTRADES_TRADOVATE__DEMO_REST_URL"] = f"http://127.0.0.1:{sim_port}/v1"
            env["JTRADES_TRADOVATE__DEMO_WS_URL"] = f"ws://127.0.0.1:{sim_port}/v1/websocket"
        proc = await self.spawn("daemon", "-m", "jtrades.cli", "serve", env=env)
        async with aiohttp.ClientSession() as http:
            for _ in range(600):  # 60 s: the bound only stops a hung start
                if proc.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{port}/readyz") as r:
                        if r.status == 200:
                            return proc, port
                await asyncio.sleep(0.1)
        raise RuntimeError(f"jtrades serve never ready:\n{tail(self.dir / 'daemon.log')}")

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
        self.procs.clear()


# --- CPU and memory ------------------------------------------------------------------------------


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def queued_ns(pid: int) -> int:
    """Nanoseconds the process's main thread has spent runnable but waiting for a core
    (``/proc/PID/schedstat``, second field; 0 once it is gone). Next to its CPU time this says
    whether a process was short of work or short of a core."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def postgres_ticks() -> int:
    total = 0
    for stat in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if stat.read_text().strip() == "postgres":
                total += cpu_ticks(int(stat.parent.name))
    return total


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


FLOOR_MEMORY = """
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
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()
from jtrades import aio
aio.run(main())
"""


async def memory() -> tuple[int, int]:
    """RSS (KiB) of ``jtrades serve`` with 1,000 traders / 1,000 paper sub-accounts (a database
    of their own), and of a process with only the floor's handler and pool, after 100 alerts."""
    async with temp_database() as url:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        assert pool is not None
        tokens = []
        for u in range(10):
            uid = await user(pool, f"mem{u}")
            for a in range(10):
                label = f"mem{u}-{a}"
                subs = await paper_account(
                    pool, uid, label, [(i, f"P{u}-{a}-{i}") for i in range(1, 11)]
                )
                token = f"memtok-{u}-{a}-{uuid.uuid4().hex}"
                rec = await recorder(pool, uid, label, token)
                tokens.append(token)
                for s in subs:  # 10 traders per recorder, one sub-account each
                    await link(pool, uid, rec, [s])
        await pool.close()
        procs = Procs()
        try:
            daemon, port = await procs.daemon(url, None, Keys().text)
            floor = await procs.spawn("floor-mem", "-c", FLOOR_MEMORY, url)
            fport = await procs.ready_port("floor-mem", floor)
            async with aiohttp.ClientSession() as http:
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
            await procs.stop()
