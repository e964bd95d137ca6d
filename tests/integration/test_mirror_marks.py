"""The mirror's marks of what it has counted, and its sweep of what a replayed view no longer
holds, against the simulator (``engine.booked_fills``, ``mirror_positions.vanished``)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from structlog.testing import capture_logs

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import buy, make_recorder, make_trader, make_user, send, wait_for
from tests.sim_worlds import sim_tradovate
from tests.simutil import running_sim


async def test_an_account_linked_after_its_fills_can_still_enter(
    database: Database, settings: Settings
) -> None:
    """PX2 traded by hand in the morning, linked to a trader with a daily-loss limit in the
    afternoon: the mirror had skipped its fills (no sub-account followed it), so its mark
    stayed behind the view and every entry was refused for the day."""
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("px_tv", "px-pw", ["PX1", "PX2"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "px_tv", "px-pw")
            u = await make_user(pool, "pxs")
            rec1 = await make_recorder(pool, u, "rec1", size=1)
            rec2 = await make_recorder(pool, u, "rec2", size=1)
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'px-demo', 'demo', 'px_tv') RETURNING id",
                u,
            )
            b1, b2 = sim.account_id("PX1"), sim.account_id("PX2")
            s1 = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'PX1') RETURNING id",
                aid,
                b1,
            )
            s2 = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'PX2') RETURNING id",
                aid,
                b2,
            )
            await make_trader(pool, u, rec1, [(s1, 1)])  # only PX1 is linked at first
            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            try:
                # the morning: PX2 traded by hand (round trip at +$5), not linked to any trader
                contract = await broker.find_contract("MNQZ6")
                acct = SubAccount(b2, "PX2")
                await broker.place_order(OrderRequest(acct, contract.symbol, Side.BUY, 1))
                await sim.set_price("MNQ", "21510")
                await broker.place_order(OrderRequest(acct, contract.symbol, Side.SELL, 1))
                await sim.flush()

                async def two_fills() -> bool:
                    return len(broker.fills(b2)) == 2

                await wait_for(two_fills, "PX2's two fills in the view")
                # the afternoon: a trader with a $500 daily-loss limit on PX2
                await make_trader(pool, u, rec2, [(s2, 1)], max_daily_loss=Decimal(500))
                await engine.config.refresh()
                await engine.reconciler.tick()  # a reconciliation pass changes nothing
                outs = [await send(engine, pool, rec2, buy("21510")) for _ in range(2)]
                for o in outs:
                    assert o.verdict == "accepted", (o.verdict, o.filter, o.reason)
            finally:
                await engine.close()
        finally:
            await tv.close()


async def test_an_order_placed_after_an_overflow_replay_is_not_ended(
    database: Database, settings: Settings
) -> None:
    """The sweep ends the orders the view did not hold when the replay was queued; it ran
    after a batch that also held events queued later, so an order placed in between was
    written Working, then ended 'Unknown' while it worked at the broker."""
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("px_tv", "px-pw", ["PX1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "px_tv", "px-pw")
            assert isinstance(broker, TradovateBroker)
            broker.session.hub.maxsize = 3  # subscriptions made from here on overflow quickly
            u = await make_user(pool, "pxs")
            rec = await make_recorder(pool, u, "rec", size=1, tp=[{"target": "40"}], sl=Decimal(40))
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'px-demo', 'demo', 'px_tv') RETURNING id",
                u,
            )
            bid = sim.account_id("PX1")
            sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'PX1') RETURNING id",
                aid,
                bid,
            )
            await make_trader(pool, u, rec, [(sub, 1)])
            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            try:
                mirror = engine.reconciler.mirror
                await asyncio.sleep(0.3)
                mirror.coalesce_s = mirror.quiet_s = 0.3  # a busy stream: 300 ms batches
                with capture_logs() as logs:
                    # a market entry with its brackets: its burst of events (the order, its
                    # fill, the position, the cash, the brackets going Working) overflows the
                    # mirror's subscription, which re-reads the whole view
                    e1 = Signal(Action.BUY, ticker="MNQ1!", price=Decimal("21500"))
                    await send(engine, pool, rec, e1)
                    await asyncio.sleep(0.02)
                    # the user's own resting order on the account a moment later
                    r = await broker.place_order(
                        OrderRequest(
                            SubAccount(bid, "PX1"),
                            "MNQZ6",
                            Side.BUY,
                            1,
                            OrderType.LIMIT,
                            cl_ord_id="manual-1",
                            price=Decimal("21300"),
                        )
                    )
                    await sim.flush()
                    await asyncio.sleep(1.0)
                assert any(e["event"] == "mirror.overflow" for e in logs), "no overflow"
                at_broker = {o["id"] for o in sim.working_orders("PX1")}
                assert r.order_id in at_broker
                rows = dict(
                    await pool.fetch(
                        "SELECT broker_order_id, status FROM orders WHERE sub_account_id=$1", sub
                    )
                )
                assert all(rows[oid] == "Working" for oid in at_broker), rows
            finally:
                await engine.close()
        finally:
            await tv.close()
