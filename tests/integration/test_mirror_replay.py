"""The mirror re-reads a Tradovate login's whole live view when its event stream cannot have
told it everything, on the simulator and a real Postgres: when it starts following a session
that is already synced (the first snapshot, with what happened while the daemon was down, was
published before anyone listened), and when its subscription overflows (a big snapshot). Each
fill is stored, measured and counted once, also across restarts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from structlog.testing import capture_logs

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.integration.test_engine import make_recorder, make_trader, make_user, store_signal
from tests.polling import until
from tests.sim_worlds import FAST_RECONNECT, sim_tradovate
from tests.simutil import SimHandle, running_sim

LOGIN, PASSWORD = "rp_tv", "rp-pw"


@dataclass
class World:
    sim: SimHandle
    database: Database
    settings: Settings
    aid: int  # accounts.id of the login
    subs: dict[str, tuple[int, int]]  # account name -> (sub_accounts.id, broker account id)
    rec: int
    trader: int

    async def count(self, table: str) -> int:
        return int(await self.database.pool.fetchval(f"SELECT count(*) FROM {table}"))

    async def rows(self, n: int, table: str, within_s: float = 10) -> None:
        """Wait until ``table`` holds ``n`` rows."""
        got = -1
        for _ in range(int(within_s / 0.02)):
            got = await self.count(table)
            if got == n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{table}: {got} rows, expected {n}")

    @asynccontextmanager
    async def daemon(self, hub_maxsize: int | None = None) -> AsyncIterator[Engine]:
        """A daemon's life: the login's session connected, then the engine started on it."""
        tv_settings = sim_tradovate(self.settings, self.sim, **FAST_RECONNECT)
        tv = TradovatePool(tv_settings)
        try:
            broker = await tv.broker("demo", LOGIN, PASSWORD)
            assert isinstance(broker, TradovateBroker)
            if hub_maxsize is not None:  # the subscriptions made from here on
                broker.session.hub.maxsize = hub_maxsize
            brokers = BrokerRegistry(self.database, self.settings)
            brokers.attach(self.aid, "demo", broker)
            engine = Engine(self.database, self.settings, brokers)
            await engine.start()
            try:
                yield engine
            finally:
                await engine.close()
        finally:
            await tv.close()


async def _world(database: Database, settings: Settings, sim: SimHandle, n: int) -> World:
    pool = database.pool
    names = [f"RP{i}" for i in range(1, n + 1)]
    sim.add_login(LOGIN, PASSWORD, names)
    u = await make_user(pool, "rp")
    rec = await make_recorder(pool, u, "rp-rec")
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username)"
        " VALUES ($1, 'rp-demo', 'demo', $2) RETURNING id",
        u,
        LOGIN,
    )
    subs = {}
    for name in names:
        bid = sim.account_id(name)
        sub = await pool.fetchval(
            "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
            " VALUES ($1, $2, $3) RETURNING id",
            aid,
            bid,
            name,
        )
        subs[name] = (int(sub), bid)
    trader = await make_trader(pool, u, rec, [(sub, 1) for sub, _ in subs.values()])
    return World(sim, database, settings, int(aid), subs, rec, trader)


def _broker(engine: Engine, w: World) -> TradovateBroker:
    ((_aid, _env, broker),) = engine.brokers.sessions()
    assert isinstance(broker, TradovateBroker)
    return broker


async def _long_with_stop(broker: TradovateBroker, name: str, bid: int, cl: str) -> int:
    """Long 1 MNQ at 21500 with a resting sell stop at 21490; the stop's order id."""
    account = SubAccount(bid, name)
    symbol = (await broker.find_contract("MNQ1!")).symbol
    await broker.place_order(OrderRequest(account, symbol, Side.BUY, 1))
    stop = await broker.place_order(
        OrderRequest(
            account, symbol, Side.SELL, 1, OrderType.STOP, stop_price=Decimal(21490), cl_ord_id=cl
        )
    )
    return stop.order_id


async def test_a_stop_filled_while_the_daemon_was_down_is_mirrored_once_when_it_starts(
    database: Database, settings: Settings
) -> None:
    """Long 1 MNQ with a resting stop, mirrored; the daemon stops, and the stop fills at the
    broker while it is down. The next daemon's session syncs before its mirror follows the
    session: the mirror re-reads the view, so the fill, the round trip measured against the
    position mirrored before the restart, its P&L (which the daily-loss filter reads), the
    flat position, the stop's order and its intent are recorded. A third start reads the
    trade back from the table and replays the same fills: nothing counts twice."""
    async with running_sim() as sim:
        w = await _world(database, settings, sim, 1)
        pool = database.pool
        ((sub, bid),) = w.subs.values()
        async with w.daemon() as engine:
            sid, at = await store_signal(pool, w.rec)
            intent = await pool.fetchval(
                "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
                " kind, symbol, side, qty, request, state, expires_at)"
                " VALUES ($1,$2,$3,'jt-rp-stop',1,'order',$4,'Sell',1,'{}','sent',$5) RETURNING id",
                sid,
                w.trader,
                sub,
                sim.contract("MNQ").name,
                at + timedelta(seconds=30),
            )

            async def intent_state() -> object:
                return await pool.fetchval("SELECT state FROM order_intents WHERE id=$1", intent)

            stop_id = await _long_with_stop(_broker(engine, w), "RP1", bid, "jt-rp-stop")
            await w.rows(1, "fills")
            for _ in range(250):
                if await intent_state() == "working":
                    break
                await asyncio.sleep(0.02)
            assert await intent_state() == "working"

        await sim.set_price("MNQ", "21480")  # through the stop, with no daemon running
        assert sim.positions("RP1") == {}

        t0 = datetime.now(UTC)
        async with w.daemon() as engine:
            await w.rows(2, "fills")
            trades = await pool.fetch("SELECT symbol, side, qty, exit_price, pnl FROM trades")
            # 20 points against on 1 MNQ at $2 a point
            expected = (sim.contract("MNQ").name, "long", 1, Decimal(21480), Decimal(-40))
            assert [tuple(t) for t in trades] == [expected]
            assert (
                await pool.fetchval("SELECT net_pos FROM positions WHERE sub_account_id=$1", sub)
                == 0
            )
            status = await pool.fetchval(
                "SELECT status FROM orders WHERE broker_order_id=$1", stop_id
            )
            assert status == "Filled"
            assert await intent_state() == "filled"
            assert engine.reconciler.pnl.realized([sub], t0) == Decimal(-40)

        async with w.daemon() as engine:
            mirror = engine.reconciler.mirror
            await until(lambda: mirror.batches >= 1)  # the view re-read and written
            assert (await w.count("fills"), await w.count("trades")) == (2, 1)
            assert engine.reconciler.pnl.realized([sub], t0) == Decimal(-40)


async def test_a_subscription_that_overflows_loses_nothing(
    database: Database, settings: Settings
) -> None:
    """Twelve sub-accounts of one login, each long 1 MNQ with a resting stop; the socket drops
    and every stop fills meanwhile. The snapshot after the reconnect brings more events at once
    than the mirror's subscription holds (30 here, 10,000 in production): it gets one
    ``overflow`` event instead, re-reads the whole view, and every fill, round trip and P&L
    is recorded once."""
    n = 12
    async with running_sim() as sim:
        w = await _world(database, settings, sim, n)
        pool = database.pool
        with capture_logs() as logs:
            async with w.daemon(hub_maxsize=30) as engine:
                broker = _broker(engine, w)
                for name, (_sub, bid) in w.subs.items():
                    await _long_with_stop(broker, name, bid, f"jt-rp-{name}")
                await w.rows(n, "fills")
                await until(lambda: all(broker.working_orders(b) for _s, b in w.subs.values()))

                session = broker.session
                sim.fault("drop", after=0, sticky=True)
                await until(lambda: not broker.is_synced(bid), within_s=10)
                await sim.set_price("MNQ", "21480")  # every stop fills while the socket is down
                before = session.connects
                sim.fault("clear")
                await until(lambda: session.connects > before and broker.is_synced(bid), 10)

                await w.rows(2 * n, "fills")
                await w.rows(n, "trades")
                t0 = datetime.now(UTC)
                subs = [s for s, _b in w.subs.values()]
                assert engine.reconciler.pnl.realized(subs, t0) == Decimal(-40 * n)
                assert await pool.fetchval("SELECT sum(pnl) FROM trades") == Decimal(-40 * n)
                flat = await pool.fetchval("SELECT count(*) FROM positions WHERE net_pos = 0")
                assert flat == n
        assert any(e["event"] == "mirror.overflow" for e in logs)
