"""Held fills on the simulator and a real Postgres: a fill the mirror cannot price (Tradovate
answers 429) is held with the position events behind it, so a restart neither loses it nor
counts it twice; and a lookup that keeps failing is asked again on a per-symbol backoff, never
once per batch, while the other logins' events are written without waiting for it."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from decimal import Decimal

from jtrades.broker.base import Broker, Contract, OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.errors import TransientBrokerError
from tests.integration.test_engine import make_trader
from tests.integration.test_mirror_replay import World, _broker
from tests.integration.test_mirror_replay import _world as _tv_world
from tests.integration.test_reconcile import _world as _paper_world
from tests.polling import until
from tests.simutil import running_sim


async def _trades(database: Database) -> list[tuple[str, int, Decimal]]:
    rows = await database.pool.fetch("SELECT side, qty, pnl FROM trades ORDER BY closed_at, id")
    return [(r["side"], r["qty"], r["pnl"]) for r in rows]


async def _order(
    w: World,
    broker: Broker,
    side: Side,
    order_type: OrderType = OrderType.MARKET,
    price: Decimal | None = None,
) -> None:
    """One MNQ order on RP1, placed by the contract's name: the session does not look the
    contract up for it (the engine would, and cache its value per point)."""
    name = w.sim.contract("MNQ").name
    account = SubAccount(w.sim.account_id("RP1"), "RP1")
    await broker.place_order(OrderRequest(account, name, side, 1, order_type, price=price))


async def test_a_held_fill_and_its_position_count_once_across_a_restart(
    database: Database, settings: Settings
) -> None:
    """A buy limit rests under the market; the daemon restarts (its session's snapshot names
    the contract, the mirror has not priced it yet), then Tradovate answers every request with
    429 and the limit fills: the fill is held, and so is the position event behind it — a
    position row with the fill in it, read back at the next start as the position the fills
    are measured against, would count the replayed fill a second time. The daemon stops with
    the fill held; the next one replays it once: the sell 10 points up is +20, a short from
    21480 bought back at 21470 is +20, the day's P&L +40 (not a phantom long closed at -20)."""
    async with running_sim() as sim:
        w = await _tv_world(database, settings, sim, 1)
        pool = database.pool
        ((sub, _bid),) = w.subs.values()
        async with w.daemon() as engine:
            await _order(w, _broker(engine, w), Side.BUY, OrderType.LIMIT, Decimal(21490))
            await w.rows(1, "orders")
        async with w.daemon() as engine:
            mirror = engine.reconciler.mirror
            sim.fault("rate_limit", count=100_000)
            await sim.set_price("MNQ", "21490")  # the limit fills
            await until(lambda: mirror.held == 1, within_s=10)
            for _ in range(100):
                if await pool.fetchval("SELECT status FROM orders") == "Filled":
                    break
                await asyncio.sleep(0.02)
            assert await pool.fetchval("SELECT status FROM orders") == "Filled"
            assert await w.count("fills") == 0
            assert await w.count("positions") == 0  # held behind the fill
        sim.fault("clear")

        t0 = datetime.now(UTC)
        async with w.daemon() as engine:
            broker = _broker(engine, w)
            await w.rows(1, "fills")  # the replay brings the held fill
            assert await pool.fetchval("SELECT net_pos FROM positions") == 1
            await sim.set_price("MNQ", "21500")
            await _order(w, broker, Side.SELL)
            await w.rows(1, "trades")
            await sim.set_price("MNQ", "21480")
            await _order(w, broker, Side.SELL)
            await w.rows(3, "fills")
            await sim.set_price("MNQ", "21470")
            await _order(w, broker, Side.BUY)
            await w.rows(4, "fills")
            await w.rows(2, "trades")
            assert await _trades(database) == [("long", 1, Decimal(20)), ("short", 1, Decimal(20))]
            assert engine.reconciler.pnl.realized([sub], t0) == Decimal(40)
            assert await pool.fetchval("SELECT net_pos FROM positions") == 0


class SlowDown(PaperBroker):
    """A login whose contract lookups fail after ``lag_s`` (a rate-limited read retried)."""

    def __init__(self, lag_s: float) -> None:
        super().__init__()
        self.lag_s = lag_s
        self.asked = 0
        self.up = False

    async def find_contract(self, symbol: str) -> Contract:
        self.asked += 1
        await asyncio.sleep(self.lag_s)
        if not self.up:
            raise TransientBrokerError("contract/find: Tradovate rate limit (429), backing off")
        return await super().find_contract(symbol)


async def _stream(database: Database, paper: PaperBroker, bid: int, n: int, gap_s: float) -> float:
    """A steady stream of round trips on the paper login (a fill every ``gap_s``); the longest
    a fill took to reach ``fills``."""
    account = SubAccount(bid, "rc-paper")
    worst = 0.0
    for i in range(n):
        paper.on_price("MNQZ6", Decimal(100 + i % 2))
        side = Side.BUY if i % 2 == 0 else Side.SELL
        t = time.monotonic()
        await paper.place_order(OrderRequest(account, "MNQZ6", side, 1))
        for _ in range(500):
            got = await database.pool.fetchval(
                "SELECT count(*) FROM fills f JOIN sub_accounts s ON s.id = f.sub_account_id"
                " WHERE s.broker_account_id = $1",
                bid,
            )
            if got == i + 1:
                break
            await asyncio.sleep(0.005)
        worst = max(worst, time.monotonic() - t)
        await asyncio.sleep(gap_s)
    return worst


async def test_a_failing_lookup_is_asked_on_a_backoff_and_never_holds_up_other_logins(
    database: Database, settings: Settings
) -> None:
    """A login's session cannot price its fill (each lookup fails after 0.3 s, as a 429 read
    retried does) while a paper login trades a round trip every 40 ms for two seconds: the
    lookup is asked again on its own backoff (0.2 s, doubling), not with every batch, and no
    paper fill waits for it. Once lookups work again the held fill is written at the next try."""
    pool = database.pool
    p = await _paper_world(pool)
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username)"
        " VALUES ($1, 'slow-demo', 'demo', 'slow') RETURNING id",
        p["user"],
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " VALUES ($1, 77, 'SLOW1') RETURNING id",
        aid,
    )
    await make_trader(pool, p["user"], p["rec"], [(sub, 1)])
    slow = SlowDown(0.3)
    brokers = BrokerRegistry(database, settings)
    brokers.attach(aid, "demo", slow)
    engine = Engine(database, settings, brokers)
    await engine.start()
    try:
        mirror = engine.reconciler.mirror
        mirror.hold_waits_s = (0.2, 1.0)
        paper = engine.brokers.paper(p["aid"])
        slow.on_price("MESZ6", Decimal(6000))
        await slow.place_order(OrderRequest(SubAccount(77, "SLOW1"), "MESZ6", Side.BUY, 1))
        await until(lambda: mirror.held == 1)
        worst = await _stream(database, paper, p["bid"], 50, 0.04)
        assert mirror.held == 1
        assert slow.asked <= 6, slow.asked  # at 0, 0.5, 1.2, 2.3 s: the backoff, not 50 batches
        assert worst < 0.25, worst  # never behind a 0.3 s lookup
        slow.up = True
        await until(lambda: mirror.held == 0, within_s=5)
        assert await pool.fetchval("SELECT count(*) FROM fills WHERE sub_account_id=$1", sub) == 1
        assert (
            await pool.fetchval("SELECT net_pos FROM positions WHERE sub_account_id=$1", sub) == 1
        )
    finally:
        await engine.close()
