"""The mirror across a dropped Tradovate connection, on the simulator and a real Postgres: what
happened while the socket was down reaches ``fills``, ``trades``, ``positions``, the intents and
the day's P&L through the snapshot the session loads on reconnect, each fill once, under the
contract's name."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from jtrades.broker.base import (
    OrderRequest,
    OrderType,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
)
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

LOGIN, PASSWORD, ACCOUNT = "mr_tv", "mr-pw", "MR1"


@dataclass
class Rig:
    sim: SimHandle
    engine: Engine
    broker: TradovateBroker
    database: Database
    sub: int  # sub_accounts.id
    bid: int  # the broker's account id
    rec: int
    trader: int

    @property
    def account(self) -> SubAccount:
        return SubAccount(self.bid, ACCOUNT)

    async def fetchval(self, sql: str, *args: object) -> object:
        return await self.database.pool.fetchval(sql, *args)

    async def rows(self, n: int, table: str, within_s: float = 10) -> None:
        """Wait until ``table`` holds ``n`` rows."""
        got = -1
        for _ in range(int(within_s / 0.02)):
            got = int(await self.database.pool.fetchval(f"SELECT count(*) FROM {table}"))
            if got == n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{table}: {got} rows, expected {n}")

    async def drop_until_clear(self) -> None:
        """Cut the socket, and every one opened until ``reconnect``: the session is down."""
        self.sim.fault("drop", after=0, sticky=True)
        await until(lambda: not self.broker.is_synced(self.bid), within_s=10)

    async def reconnect(self) -> None:
        session = self.broker.session
        before = session.connects
        self.sim.fault("clear")
        await until(lambda: session.connects > before and self.broker.is_synced(self.bid), 10)


@asynccontextmanager
async def _rig(database: Database, settings: Settings) -> AsyncIterator[Rig]:
    """The engine on one Tradovate login of the simulator (one sub-account), mirroring."""
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login(LOGIN, PASSWORD, [ACCOUNT])
        tv_settings = sim_tradovate(settings, sim, **FAST_RECONNECT)
        tv = TradovatePool(tv_settings)
        try:
            broker = await tv.broker("demo", LOGIN, PASSWORD)
            assert isinstance(broker, TradovateBroker)
            u = await make_user(pool, "mr")
            rec = await make_recorder(pool, u, "mr-rec")
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'mr-demo', 'demo', $2) RETURNING id",
                u,
                LOGIN,
            )
            bid = sim.account_id(ACCOUNT)
            sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, $3) RETURNING id",
                aid,
                bid,
                ACCOUNT,
            )
            trader = await make_trader(pool, u, rec, [(sub, 1)])
            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            try:
                yield Rig(sim, engine, broker, database, sub, bid, rec, trader)
            finally:
                await engine.close()
        finally:
            await tv.close()


async def _market(rig: Rig, symbol: str, side: Side, qty: int = 1) -> None:
    await rig.broker.place_order(OrderRequest(rig.account, symbol, side, qty))


async def test_a_contract_first_traded_after_a_reconnect_is_mirrored_under_its_name(
    database: Database, settings: Settings
) -> None:
    """MES is resolved (the client caches it) but not traded before the socket drops; the
    snapshot after the reconnect names only contracts with orders or positions. The round trip
    traded on it afterwards is mirrored under MES's name — fills, trade, position — and counted
    in the day's P&L, instead of failing the batch on a fill without a symbol."""
    async with _rig(database, settings) as rig:
        mes = await rig.broker.find_contract("MES1!")
        await rig.drop_until_clear()
        await rig.reconnect()

        t0 = datetime.now(UTC)
        await _market(rig, mes.symbol, Side.BUY, 2)
        await rig.sim.set_price("MES", "6010")  # +10 points
        await _market(rig, mes.symbol, Side.SELL, 2)

        await rig.rows(2, "fills")
        pool = database.pool
        assert {r["symbol"] for r in await pool.fetch("SELECT symbol FROM fills")} == {mes.symbol}
        trades = await pool.fetch("SELECT symbol, side, qty, pnl FROM trades")
        # 10 points on 2 MES at $5 a point
        assert [tuple(t) for t in trades] == [(mes.symbol, "long", 2, Decimal(100))]
        positions = await pool.fetch("SELECT symbol, net_pos FROM positions")
        assert [tuple(p) for p in positions] == [(mes.symbol, 0)]
        assert rig.engine.reconciler.pnl.realized([rig.sub], t0) == Decimal(100)


async def test_a_stop_filled_while_disconnected_is_mirrored_once_after_the_reconnect(
    database: Database, settings: Settings
) -> None:
    """Long 1 MNQ with a resting stop; the socket drops (and stays down) while the price runs
    through the stop, which fills at the broker. After the reconnect the snapshot's changes
    reach the mirror: the fill, the round trip and its P&L, the flat position, the stop's order
    and its intent. Another reconnect replays the day's fills again: nothing counts twice."""
    async with _rig(database, settings) as rig:
        pool = database.pool
        mnq = await rig.broker.find_contract("MNQ1!")
        t0 = datetime.now(UTC)
        await _market(rig, mnq.symbol, Side.BUY)  # at 21500
        sid, at = await store_signal(pool, rig.rec)
        intent = await pool.fetchval(
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
            " kind, symbol, side, qty, request, state, expires_at)"
            " VALUES ($1,$2,$3,'jt-mr-stop',1,'order',$4,'Sell',1,'{}','sent',$5) RETURNING id",
            sid,
            rig.trader,
            rig.sub,
            mnq.symbol,
            at + timedelta(seconds=30),
        )
        stop = await rig.broker.place_order(
            OrderRequest(
                rig.account,
                mnq.symbol,
                Side.SELL,
                1,
                OrderType.STOP,
                stop_price=Decimal(21490),
                cl_ord_id="jt-mr-stop",
            )
        )
        await rig.rows(1, "fills")
        await until(lambda: bool(rig.broker.working_orders(rig.bid)))

        async def intent_state() -> object:
            return await pool.fetchval("SELECT state FROM order_intents WHERE id=$1", intent)

        for _ in range(200):
            if await intent_state() == "working":
                break
            await asyncio.sleep(0.02)
        assert await intent_state() == "working"

        await rig.drop_until_clear()
        await rig.sim.set_price("MNQ", "21480")  # through the stop: filled at the broker
        assert rig.sim.positions(ACCOUNT) == {}
        await asyncio.sleep(0.3)
        assert await pool.fetchval("SELECT count(*) FROM fills") == 1  # nobody heard it
        await rig.reconnect()

        await rig.rows(2, "fills")
        trades = await pool.fetch("SELECT symbol, side, qty, exit_price, pnl FROM trades")
        # 20 points against on 1 MNQ at $2 a point
        expected = (mnq.symbol, "long", 1, Decimal(21480), Decimal(-40))
        assert [tuple(t) for t in trades] == [expected]
        assert await rig.fetchval("SELECT net_pos FROM positions WHERE symbol=$1", mnq.symbol) == 0
        status = await rig.fetchval(
            "SELECT status FROM orders WHERE broker_order_id=$1", stop.order_id
        )
        assert status == "Filled"
        assert await intent_state() == "filled"
        assert rig.engine.reconciler.pnl.realized([rig.sub], t0) == Decimal(-40)

        # the next reconnect replays the same fills: stored and counted once
        await rig.drop_until_clear()
        await rig.reconnect()
        await asyncio.sleep(0.3)  # what the replay would write, it has written by now
        assert await pool.fetchval("SELECT count(*) FROM fills") == 2
        assert await pool.fetchval("SELECT count(*) FROM trades") == 1
        assert rig.engine.reconciler.pnl.realized([rig.sub], t0) == Decimal(-40)


async def test_a_strategy_entry_intent_follows_its_entry_order_after_a_reconnect(
    database: Database, settings: Settings
) -> None:
    """A strategy's orders carry no clOrdId: its entry takes the intent's id from the strategy's
    ``uuid`` and links. The entry rests (intent ``working``); the socket drops; the entry fills
    while nobody listens. The reconnect's snapshot carries the strategy and its links, so the
    entry comes back under the intent's id and the intent becomes ``filled``."""
    async with _rig(database, settings) as rig:
        pool = database.pool
        mnq = await rig.broker.find_contract("MNQ1!")
        sid, at = await store_signal(pool, rig.rec)
        intent = await pool.fetchval(
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
            " kind, symbol, side, qty, request, state, expires_at)"
            " VALUES ($1,$2,$3,'jt-mr-st',1,'strategy',$4,'Buy',2,'{}','sent',$5) RETURNING id",
            sid,
            rig.trader,
            rig.sub,
            mnq.symbol,
            at + timedelta(seconds=30),
        )
        entry = OrderRequest(
            rig.account, mnq.symbol, Side.BUY, 2, OrderType.LIMIT,
            cl_ord_id="jt-mr-st", price=Decimal(21490),
        )  # fmt: skip
        legs = tuple(
            StrategyBracket(qty=1, profit_target=Decimal(tp), stop_loss=Decimal(-15))
            for tp in (20, 40)
        )
        started = await rig.broker.start_strategy(StrategyRequest(entry, legs))
        entry_id = rig.sim.world.exchange.strategies[started.strategy_id or 0].entry_id

        async def intent_row() -> tuple[object, object]:
            row = await pool.fetchrow(
                "SELECT state, broker_order_id FROM order_intents WHERE id=$1", intent
            )
            return row["state"], row["broker_order_id"]

        async def reaches(want: tuple[object, object]) -> None:
            for _ in range(250):
                if await intent_row() == want:
                    return
                await asyncio.sleep(0.02)
            raise AssertionError(f"intent is {await intent_row()}, expected {want}")

        await reaches(("working", entry_id))
        await rig.drop_until_clear()
        await rig.sim.set_price("MNQ", "21485")  # through the limit: filled at the broker
        assert rig.sim.positions(ACCOUNT)
        await asyncio.sleep(0.3)
        assert await intent_row() == ("working", entry_id)  # nobody heard it
        await rig.reconnect()
        await reaches(("filled", entry_id))
        entry_order = rig.broker.session.view.order(entry_id)
        assert entry_order is not None
        assert entry_order.cl_ord_id == "jt-mr-st"
