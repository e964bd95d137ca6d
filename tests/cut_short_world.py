"""A daemon 'killed' mid-dispatch and restarted on the same database, against the simulator
(the crash review's harness: plans cut short after their cancels).

The kill: the dispatcher's Nth broker call blocks for ever (the process died before sending
it), then the signal's task is cancelled and the engine dropped: no outcome is written, as a
SIGKILL leaves it. The restart: ``settle_interrupted`` (Daemon.run) and a new Engine with a new
Tradovate session on the same simulator."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Signal
from jtrades.store import signals as signal_store
from jtrades.store.signals import Delivery, SignalIds
from tests.integration.test_engine import make_recorder, make_trader, make_user, wait_for
from tests.sim_worlds import FAST_RECONNECT, sim_tradovate
from tests.simutil import SimHandle, running_sim


@dataclass
class World:
    sim: SimHandle
    database: Database
    settings: Settings
    rec: int
    trader: int
    subs: dict[str, int]  # sim account name -> sub_accounts.id
    bids: dict[str, int]  # sim account name -> broker account id
    aid: int
    login: str
    pw: str
    engine: Engine | None = None
    tv: TradovatePool | None = None
    broker: Any = None
    pools: list[TradovatePool] = field(default_factory=list)

    async def start(self) -> Engine:
        tv = TradovatePool(sim_tradovate(self.settings, self.sim, **FAST_RECONNECT))
        self.pools.append(tv)
        self.tv = tv
        self.broker = await tv.broker("demo", self.login, self.pw)
        brokers = BrokerRegistry(self.database, self.settings)
        brokers.attach(self.aid, "demo", self.broker)
        engine = Engine(self.database, self.settings, brokers)
        await engine.start()
        self.engine = engine
        return engine

    async def kill(self) -> None:
        """Drop the engine without its orderly close doing more than a dead process would:
        its tasks cancelled and its sockets closed."""
        e = self.engine
        assert e is not None
        await e.close()
        assert self.tv is not None
        await self.tv.close()
        self.engine = None

    async def restart(self) -> Engine:
        await signal_store.settle_interrupted(self.database.pool, datetime.now(UTC))
        return await self.start()

    def net(self, name: str) -> int:
        return sum(self.sim.positions(name).values())

    def orders(self, name: str) -> list[dict[str, Any]]:
        return self.sim.working_orders(name)

    def stops(self, name: str) -> list[tuple[Any, int]]:
        return sorted(
            (o["stopPrice"], o["qty"]) for o in self.orders(name) if o["orderType"] == "Stop"
        )

    def stop_qty(self, name: str) -> int:
        return sum(
            o["qty"]
            for o in self.orders(name)
            if o["orderType"] in ("Stop", "TrailingStop") and o["status"] == "Working"
        )

    async def view_net(self, name: str, n: int) -> None:
        async def seen() -> bool:
            try:
                return sum(p.net_pos for p in self.broker.positions(self.bids[name])) == n
            except Exception:
                return False

        await wait_for(seen, f"view net {n}")

    async def view_orders(self, name: str, n: int) -> None:
        async def seen() -> bool:
            try:
                return len(self.broker.working_orders(self.bids[name])) == n
            except Exception:
                return False

        await wait_for(seen, f"view shows {n} orders")


@asynccontextmanager
async def sim_world(
    database: Database,
    settings: Settings,
    accounts: list[str],
    *,
    price: str = "21500",
    **risk: Any,
) -> AsyncIterator[World]:
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("kx_tv", "kx-pw", accounts)
        await sim.set_price("MNQ", price)
        u = await make_user(pool, "kx")
        rec = await make_recorder(pool, u, "kx-rec", **risk)
        aid = await pool.fetchval(
            "INSERT INTO accounts (user_id, label, env, username)"
            " VALUES ($1, 'kx-demo', 'demo', 'kx_tv') RETURNING id",
            u,
        )
        subs, bids = {}, {}
        for name in accounts:
            bid = sim.account_id(name)
            subs[name] = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, $3) RETURNING id",
                aid,
                bid,
                name,
            )
            bids[name] = bid
        trader = await make_trader(pool, u, rec, [(subs[n], 1) for n in accounts])
        w = World(sim, database, settings, rec, trader, subs, bids, aid, "kx_tv", "kx-pw")
        try:
            yield w
        finally:
            if w.engine is not None:
                with contextlib.suppress(Exception):
                    await w.engine.close()
            for tv in w.pools:
                with contextlib.suppress(Exception):
                    await tv.close()


_ids: dict[int, SignalIds] = {}


async def delivery(w: World, signal: Signal, key: str, at: datetime | None = None) -> Delivery:
    pool = w.database.pool
    sid = await SignalIds(pool, block=1).take()
    return Delivery(
        sid,
        w.rec,
        f"id:{key}",
        timedelta(hours=24),
        at or datetime.now(UTC),
        None,
        "application/json",
        b'{"action":"buy"}',
        signal,
    )


async def deliver(w: World, d: Delivery) -> Any:
    e = w.engine
    assert e is not None
    out = await e.on_signal(
        signal_id=d.signal_id,
        recorder_id=d.recorder_id,
        signal=d.signal,
        received_at=d.received_at,
        delivery=d,
    )
    if out.duplicate_of is None:
        await signal_store.set_outcome(
            w.database.pool,
            d.signal_id,
            verdict=out.verdict,
            filter=out.filter,
            reason=out.reason or (out.filter if out.verdict == "rejected" else None),
            orders=out.orders,
            detail=out.detail or None,
            intents=out.unwritten,
        )
    return out


async def deliver_and_die_at(w: World, d: Delivery, call: int) -> list[str]:
    """Deliver ``d``; the dispatcher's ``call``-th broker call (1-based) never leaves: the
    process dies there. Returns the kinds of the calls that went."""
    e = w.engine
    assert e is not None
    disp = e.dispatcher
    real = disp._send
    went: list[str] = []
    dead = asyncio.Event()

    async def send(item: Any, po: Any) -> Any:
        if len(went) + 1 == call:
            dead.set()
            await asyncio.Event().wait()  # never
        r = await real(item, po)
        went.append(f"{po.step}:{po.kind}:{r[0]}")
        return r

    disp._send = send  # type: ignore[method-assign]
    task = asyncio.create_task(
        e.on_signal(
            signal_id=d.signal_id,
            recorder_id=d.recorder_id,
            signal=d.signal,
            received_at=d.received_at,
            delivery=d,
        )
    )
    waiter = asyncio.create_task(dead.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=20, return_when="FIRST_COMPLETED")
    assert waiter in done, (
        f"never reached call {call}: {went} {task.result() if task.done() else ''}"
    )
    # a moment for the broker's answers already in flight to land at the simulator
    await asyncio.sleep(0.2)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await w.kill()
    return went
