"""The webhook pipeline (``jtrades serve`` → Tradovate simulator), each number next to a floor
measured in the same run.

Each party runs in its own OS process, as in production:

- the simulator (``bench/simproc.py``), with a probe that timestamps every order frame it
  receives and a small control API (``/probe/expect``, ``/probe/wait``, ``/probe/count``);
- ``jtrades serve`` itself, configured by environment only, on a temporary database filled
  beforehand (users, demo logins with sealed passwords, sub-accounts, recorders, traders);
- the floor (``bench/floorproc.py``): the least any design must do, a minimal aiohttp handler that
  makes one durable INSERT and writes one order frame per sub-account to the simulator over a
  bare WebSocket (its own login per group, with as many accounts, so neither side sees the
  other's orders);
- this process: only the load generator (an aiohttp client) and the probe's reader.

Latency is measured across processes: ``time.perf_counter()`` here just before the POST, and the
simulator's ``time.perf_counter()`` at the last order frame. On Linux both read CLOCK_MONOTONIC,
one clock for the whole machine, so the difference is the latency.

- latency: request sent → the simulator has received the signal's last order frame, p50/p99,
  for 1, 10 and 100 sub-accounts per signal (one login per group; alerts alternate buy / close
  so each alert is one frame per sub-account; jtrades and floor alternating sample by sample);
  Each sample starts after ``BENCH_GAP_MS`` (25) of quiet, as alerts spaced apart do in life:
  without it a sample also pays for the previous alert's tail (its answer, fills and mirror
  writes), which a lone alert never meets; with it both sides also pay the machine's wake-up
  from idle, which is why both read higher than back to back. Under the table, per row: when
  the simulator had the first order frame, and how long it took to reach the last (it handles
  one frame at a time, so past the first frame both sides mostly wait on it);
- throughput: alerts per second, ``BENCH_TP_GROUPS`` (10) recorders × 10 sub-accounts (one
  login each), alerts round-robin with ``BENCH_INFLIGHT`` (10) in flight, until the simulator
  has every frame; then no frame may be missing or doubled. The CPU each process used meanwhile
  is printed under the table, with the time it spent runnable but waiting for a core;
- memory: RSS of ``jtrades serve`` with 1,000 traders on 1,000 (paper) sub-accounts, next to a
  process running only the floor's handler and pool.

The database starts with ``BENCH_HISTORY`` (30,000) alerts of past trading, each with its intent,
order and fill, and fresh statistics: the daemon meets tables with a past, as in production.

Needs the Postgres at $JTRADES_BENCH_DSN (default postgresql://postgres@127.0.0.1:5432/postgres);
makes and drops temporary databases.    python -m bench pipeline   (BENCH_N alerts, default 200;
BENCH_SKIP_LATENCY=1 runs only the throughput and memory figures, BENCH_GROUPS=g1 only
the 1-sub-account latency rows)
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.pipeline_procs import (
    DSN,
    Keys,
    Procs,
    cpu_ticks,
    demo_account,
    link,
    memory,
    postgres_ticks,
    queued_ns,
    recorder,
    seed_history,
    temp_database,
    user,
)
from jtrades import aio
from jtrades.logging import configure

PW = "bench-pw"
GAP_S = float(os.environ.get("BENCH_GAP_MS", "25")) / 1000  # quiet time before each latency sample
HISTORY = int(os.environ.get("BENCH_HISTORY", "30000"))  # alerts of past trading in the database
TP_GROUPS = int(os.environ.get("BENCH_TP_GROUPS", "10"))
GROUPS = {"g1": 1, "g10": 10, "g100": 100} | {f"t{i}": 10 for i in range(TP_GROUPS)}
# the latency rows to measure (BENCH_GROUPS=g1 for one while profiling; none with SKIP_LATENCY)
LATENCY_GROUPS = (
    ()
    if os.environ.get("BENCH_SKIP_LATENCY")
    else tuple(os.environ.get("BENCH_GROUPS", "g1,g10,g100").split(","))
)
if not set(LATENCY_GROUPS) <= {"g1", "g10", "g100"}:
    raise SystemExit(f"BENCH_GROUPS: expected some of g1,g10,g100, got {','.join(LATENCY_GROUPS)}")


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


class Load:
    """The load generator: posts alerts, reads the simulator's probe."""

    def __init__(self, sim_port: int) -> None:
        self.sim = f"http://127.0.0.1:{sim_port}"
        self.http = aiohttp.ClientSession()
        self.cpu: list[str] = []
        # per latency sample: (request sent → first order frame, first → last order frame)
        self.spans: dict[str, list[tuple[float, float]]] = {}
        self.sent: dict[str, int] = {}  # alerts posted per URL: they alternate buy and close

    async def sim_call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        if body is None:
            async with self.http.get(self.sim + path) as r:
                assert r.status == 200, (path, r.status)
                return await r.json()
        async with self.http.post(self.sim + path, data=orjson.dumps(body)) as r:
            assert r.status == 200, (path, r.status, await r.text())
            return await r.json()

    async def post(self, url: str, body: dict[str, Any]) -> None:
        async with self.http.post(url, data=orjson.dumps(body)) as r:
            await r.read()
            assert r.status == 200, (url, r.status)

    async def latency(self, url: str, n_subs: int, n: int, side: str = "") -> list[float]:
        """Each alert alone: the one before it has had ``GAP_S`` to finish what follows its
        orders (answers, fills, the mirror's writes), as alerts spaced apart do in life; load
        is what the throughput run measures."""
        out = []
        for _ in range(n):
            i = self.sent[url] = self.sent.get(url, -1) + 1
            action = "buy" if i % 2 == 0 else "close"
            await asyncio.sleep(GAP_S)
            await self.sim_call("/probe/expect", {"frames": n_subs})
            t0 = time.perf_counter()
            await self.post(url, {"action": action, "ticker": "MNQ1!", "id": f"l{uuid.uuid4()}"})
            probe = await self.sim_call("/probe/wait?timeout=30")
            assert probe["done"], (url, probe, n_subs)
            out.append(probe["last"] - t0)
            if side:
                spans = self.spans.setdefault(f"{side}, {n_subs} sub-acct", [])
                spans.append((probe["first"] - t0, probe["last"] - probe["first"]))
        return out

    async def throughput(
        self, urls: list[str], n: int, subs_each: int, pids: dict[str, int]
    ) -> float:
        await self.sim_call("/probe/expect", {"frames": n * subs_each})
        sem = asyncio.Semaphore(int(os.environ.get("BENCH_INFLIGHT", "10")))

        async def one(i: int) -> None:
            async with sem:
                url = urls[i % len(urls)]
                await self.post(url, {"action": "buy", "ticker": "MNQ1!", "id": f"t{uuid.uuid4()}"})

        before = {k: cpu_ticks(p) for k, p in pids.items()} | {"postgres": postgres_ticks()}
        waited = {k: queued_ns(p) for k, p in pids.items()}
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        probe = await self.sim_call("/probe/wait?timeout=120")
        after = {k: cpu_ticks(p) for k, p in pids.items()} | {"postgres": postgres_ticks()}
        waited = {k: queued_ns(p) - waited[k] for k, p in pids.items()}
        assert probe["done"], ("lost order frames", probe, n * subs_each)
        wall = time.perf_counter() - t0
        hz = os.sysconf("SC_CLK_TCK")
        self.cpu.append(
            ", ".join(f"{k} {100 * (after[k] - before[k]) / hz / wall:.0f}%" for k in before)
            + "; runnable but waiting for a core: "
            + ", ".join(f"{k} {100 * ns / 1e9 / wall:.0f}%" for k, ns in waited.items())
        )
        rate = n / (float(probe["last"]) - t0)
        await asyncio.sleep(0.5)
        # a duplicated order would arrive as a frame beyond the expected count
        final = await self.sim_call("/probe/count")
        assert final["count"] == n * subs_each, ("doubled order frames", final, n * subs_each)
        return rate

    async def close(self) -> None:
        await self.http.close()


async def setup(load: Load, url: str, keys: Keys) -> dict[str, dict[str, Any]]:
    """One simulator login per group with its sub-accounts, and the database rows that trade
    them: a user, the demo account, a recorder (known token) and a trader on every sub-account;
    and a second login per group for the floor."""
    pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
    assert pool is not None
    groups: dict[str, dict[str, Any]] = {}
    try:
        for name, count in GROUPS.items():
            login = await load.sim_call(
                "/sim/logins", {"name": name, "password": PW, "account_count": count}
            )
            uid = await user(pool, name)
            subs = await demo_account(pool, keys, uid, name, PW, login["accounts"])
            token = f"tok-{name}-{uuid.uuid4().hex}"
            rec = await recorder(pool, uid, name, token)
            await link(pool, uid, rec, subs)
            # The floor trades a login of its own with as many accounts: the daemon never sees
            # (nor mirrors, nor plans against) the floor's orders.
            floor_login = await load.sim_call(
                "/sim/logins", {"name": f"floor-{name}", "password": PW, "account_count": count}
            )
            groups[name] = {"token": token, "login": f"floor-{name}", "password": PW,
                            "accounts": floor_login["accounts"], "recorder": rec,
                            "subs": subs}  # fmt: skip
        await seed_history(pool, groups["g100"]["recorder"], groups["g100"]["subs"], HISTORY)
    finally:
        await pool.close()
    return groups


async def measure(
    load: Load, procs: Procs, sim_pid: int, url: str, n: int
) -> list[tuple[str, float, float]]:
    keys = Keys()
    groups = await setup(load, url, keys)
    daemon, port = await procs.daemon(url, int(load.sim.rsplit(":", 1)[1]), keys.text)
    floor, fport = await procs.floor(
        {
            "dsn": url,
            "rest_url": load.sim + "/v1",
            "ws_url": load.sim.replace("http", "ws", 1) + "/v1/websocket",
            "symbol": (await load.sim_call("/probe/info"))["symbol"],
            "groups": {g["token"]: g for g in groups.values()},
        }
    )
    ours_base = f"http://127.0.0.1:{port}/webhook/"
    floor_base = f"http://127.0.0.1:{fport}/floor/"
    rows = []
    for name in LATENCY_GROUPS:
        subs, token = GROUPS[name], groups[name]["token"]
        count = max(20, n // (10 if subs == 100 else 2))
        await load.latency(ours_base + token, subs, 4)  # warm up
        await load.latency(floor_base + token, subs, 4)
        # alternating sample by sample, so whatever else the host runs meanwhile (it drifts by
        # ±20 % over minutes) weighs on both sides alike
        ours: list[float] = []
        floor_lat: list[float] = []
        for _ in range(count):
            ours += await load.latency(ours_base + token, subs, 1, "jtrades")
            floor_lat += await load.latency(floor_base + token, subs, 1, "floor")
        for p in (50, 99):
            rows.append(
                (f"latency p{p}, {subs} sub-acct (ms)", pct(ours, p) * 1e3, pct(floor_lat, p) * 1e3)
            )
    tp = [groups[f"t{i}"]["token"] for i in range(TP_GROUPS)]
    pids = {"sim": sim_pid, "daemon": daemon.pid, "floor": floor.pid, "client": os.getpid()}
    ours_rate = await load.throughput([ours_base + t for t in tp], n, 10, pids)
    floor_rate = await load.throughput([floor_base + t for t in tp], n, 10, pids)
    rows.append(("alerts/s, 10 sub-acct each", ours_rate, floor_rate))
    return rows


async def run(n: int) -> None:
    assert sys.platform == "linux", "cross-process timing needs perf_counter() = CLOCK_MONOTONIC"
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM (like Ctrl-C) unwinds through the finally blocks that end the children
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    procs = Procs()
    try:
        async with temp_database() as url:
            sim, sim_port = await procs.sim()
            load = Load(sim_port)
            try:
                rows = await measure(load, procs, sim.pid, url, n)
            finally:
                await load.close()
                await procs.stop()
        mem, floor_mem = await memory()
        rows.append(("RSS MiB, 1000 traders/subs", mem / 1024, floor_mem / 1024))
    finally:
        await procs.stop()
    report(n, rows, load.cpu, load.spans)


def report(
    n: int,
    rows: list[tuple[str, float, float]],
    cpu: list[str],
    spans: dict[str, list[tuple[float, float]]],
) -> None:
    print(f"command: BENCH_N={n} .venv/bin/python -m bench pipeline")
    print(
        f"n={n}; simulator, jtrades serve, floor and load generator in 4 processes on 127.0.0.1; "
        f"Postgres {DSN.rsplit('@', 1)[-1]}; {os.cpu_count()} CPUs; all on uvloop; "
        f"{GAP_S * 1000:g} ms quiet before each latency sample (BENCH_GAP_MS)"
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
    for side, line in zip(("jtrades", "floor"), cpu, strict=True):
        print(f"CPU during the {side} throughput run (% of one core): {line}")
    # where a latency sample's time goes: until the simulator has the first order frame, then
    # the simulator working through the rest (it handles one frame at a time)
    for name, samples in spans.items():
        first = pct([f for f, _ in samples], 50) * 1e3
        span = pct([s for _, s in samples], 50) * 1e3
        print(f"{name}: first order frame at p50 {first:.2f} ms, first to last {span:.2f} ms")


def main() -> None:
    configure(level="error")
    aio.run(run(int(os.environ.get("BENCH_N", "200"))))


if __name__ == "__main__":
    main()
