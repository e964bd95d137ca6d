"""The one statement before an alert's first order leaves (``signals.claim``: the signal row, the
dedup decision and every intent), alone against Postgres: what it costs by number of intents,
warm (back to back) and cold (after ``GAP_MS`` of quiet, as the pipeline benchmark's alerts
come), and where a large one's time goes.

Per row: wall time p50/p90 of the call, the caller's CPU per call (p50, thread time), and the
Postgres backends' CPU per call (their /proc ticks over the whole row; "n/a" when Postgres is not
on this host); each size through the pool and through the daemon's ``Lane`` (a connection of its
own, as ``jtrades serve`` runs the claim). Then ``EXPLAIN (ANALYZE, WAL)`` of one claim of the largest size:
each insert, each foreign key's per-row checks, the WAL the statement writes (EXPLAIN's own
timing inflates the per-row figures; their proportions are what it shows).

    python -m bench claim     (BENCH_N claims per row, default 300; BENCH_CLAIM_INTENTS, default
                               0,10,100; BENCH_GAP_MS, default 25)
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

from bench.pipeline_procs import cpu_ticks, paper_account, temp_database, user
from jtrades import aio
from jtrades.db import _POOLED, Lane, _init_connection, _keep_session
from jtrades.engine.parsing import parse_payload
from jtrades.queries import q
from jtrades.security import hash_token
from jtrades.store import Executor, signals
from jtrades.store.intents import NewIntent

GAP_S = float(os.environ.get("BENCH_GAP_MS", "25")) / 1000
SIZES = tuple(int(x) for x in os.environ.get("BENCH_CLAIM_INTENTS", "0,10,100").split(","))
BODY = b'{"action":"buy","ticker":"MNQ1!"}'
# what the planner writes for a market entry (the intent's request column), as the daemon does
REQUEST = {
    "type": "order",
    "note": "open long 1",
    "request": {
        "account": {"account_id": 1, "name": "DEMO1"},
        "symbol": "MNQZ6",
        "side": "Buy",
        "qty": 1,
        "order_type": "Market",
        "cl_ord_id": "jt-1-1-1",
        "price": None,
        "stop_price": None,
        "peg_difference": None,
        "time_in_force": "Day",
        "text": None,
    },
}


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def is_local(pid: int) -> bool:
    """Whether Postgres runs on this host (its backend's CPU can be read)."""
    return Path(f"/proc/{pid}/stat").exists()


class Bench:
    def __init__(self, pool: asyncpg.Pool, recorder: int, trader: int, subs: list[int]) -> None:
        self.pool, self.recorder, self.trader, self.subs = pool, recorder, trader, subs
        self.signal = parse_payload(BODY, "application/json")
        self.lane: Lane | None = None  # when set, claims go through it

    def intents(self, sid: int, n: int) -> list[NewIntent]:
        expires = datetime.now(UTC) + timedelta(seconds=30)
        return [
            NewIntent(sid, self.trader, s, f"jt-{sid}-{s}-1", 1, "order", "MNQZ6", "Buy", 1,
                      REQUEST, expires)
            for s in self.subs[:n]
        ]  # fmt: skip

    async def next_id(self) -> int:
        sid: int = await self.pool.fetchval(
            "SELECT nextval(pg_get_serial_sequence('signals', 'id'))"
        )
        return sid

    async def claim(self, sid: int, intents: list[NewIntent]) -> None:
        if self.lane is None:
            await self._claim(self.pool, sid, intents)
            return
        async with self.lane.borrow() as ex:
            await self._claim(ex, sid, intents)

    def delivery(self, sid: int) -> signals.Delivery:
        return signals.Delivery(
            signal_id=sid,
            recorder_id=self.recorder,
            idem_key=uuid.uuid4().hex,
            window=timedelta(hours=24),
            received_at=datetime.now(UTC),
            remote_addr="127.0.0.1",
            content_type="application/json",
            raw_body=BODY,
            signal=self.signal,
        )

    async def _claim(self, ex: Executor, sid: int, intents: list[NewIntent]) -> None:
        await signals.claim_delivery(ex, self.delivery(sid), intents)

    async def row(self, n: int, gap: float, count: int, backends: list[int]) -> str:
        walls: list[float] = []
        cpus: list[float] = []
        ticks = sum(cpu_ticks(b) for b in backends)
        for _ in range(count):
            sid = await self.next_id()  # the daemon draws ids ahead, in blocks: not timed
            intents = self.intents(sid, n)
            if gap:
                await asyncio.sleep(gap)
            w, c = time.perf_counter(), time.thread_time()
            await self.claim(sid, intents)
            cpus.append(time.thread_time() - c)
            walls.append(time.perf_counter() - w)
        # the ticks include the nextval drawn before each claim (a few µs)
        pg = "n/a"
        if backends:
            used = sum(cpu_ticks(b) for b in backends) - ticks
            pg = f"{used / os.sysconf('SC_CLK_TCK') / count * 1e3:.2f}"
        via = "pool" if self.lane is None else "lane"
        return (
            f"{n:>7}  {via:>4}  {'cold' if gap else 'warm':>4}  {pct(walls, 50) * 1e3:8.2f}  "
            f"{pct(walls, 90) * 1e3:8.2f}  {pct(cpus, 50) * 1e3:10.2f}  {pg:>10}"
        )

    async def explain(self, n: int) -> list[str]:
        sid = await self.pool.fetchval("SELECT nextval(pg_get_serial_sequence('signals', 'id'))")
        intents = self.intents(sid, n)
        args = signals.claim_args(self.delivery(sid), intents)
        rows = await self.pool.fetch("EXPLAIN (ANALYZE, WAL) " + q("signals.claim"), *args)
        lines = [str(r[0]).strip().removeprefix("->").strip() for r in rows]
        wal = next(x for x in lines if x.startswith("WAL:"))  # the first is the statement's
        keep = ("Insert on", "Trigger for", "Planning Time", "Execution Time")
        return [f"statement {wal}", *(x for x in lines if x.startswith(keep))]


async def run(count: int) -> None:
    async with temp_database() as url:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=1, init=_init_connection, reset=_keep_session, **_POOLED
        )
        assert pool is not None
        try:
            uid = await user(pool, "claim")
            subs = await paper_account(
                pool, uid, "claim", [(1000 + i, f"DEMO{i}") for i in range(max(SIZES))]
            )
            rec = await pool.fetchval(
                "INSERT INTO recorders (user_id, name, symbol, token_hash)"
                " VALUES ($1, 'claim', 'MNQ1!', $2) RETURNING id",
                uid,
                hash_token(f"tok-{uuid.uuid4().hex}"),
            )
            trader = await pool.fetchval(
                "INSERT INTO traders (user_id, recorder_id, enabled) VALUES ($1, $2, true)"
                " RETURNING id",
                uid,
                rec,
            )
            bench = Bench(pool, rec, trader, subs)

            async def own() -> asyncpg.Connection:
                conn: asyncpg.Connection = await asyncpg.connect(url, **_POOLED)
                await _init_connection(conn)
                return conn

            lane = Lane(pool, own)
            await lane.open()
            assert lane.connection is not None
            backends = [
                await pool.fetchval("SELECT pg_backend_pid()"),
                lane.connection.get_server_pid(),
            ]
            if not is_local(backends[0]):
                backends = []
            for via in (None, lane):  # warm the statement caches and the plans
                bench.lane = via
                for _ in range(20):
                    sid = await bench.next_id()
                    await bench.claim(sid, bench.intents(sid, max(SIZES)))
            print(f"n={count} claims per row; pool: a 1-connection pool as the daemon's is set up; "
                  f"lane: db.Lane; cold = after {GAP_S * 1000:g} ms idle (BENCH_GAP_MS)")  # fmt: skip
            print("intents   via  when   p50 ms    p90 ms  caller CPU  Postgres CPU (ms per claim)")
            for n in SIZES:
                for gap in (0.0, GAP_S):
                    for via in (None, lane):
                        bench.lane = via
                        print(await bench.row(n, gap, count, backends), flush=True)
            await lane.close()
            print(f"EXPLAIN ANALYZE of one claim of {max(SIZES)} intents (warm):")
            for line in await bench.explain(max(SIZES)):
                print(f"  {line}")
        finally:
            await pool.close()


def main() -> None:
    aio.run(run(int(os.environ.get("BENCH_N", "300"))))
