"""6fcafa2: the protector groups the rows of an account by ``lock_key``, which puts a row that
only typed alice's username (mallory's: no credential, never a session, keyed apart by
``account_key`` so it is not alice's account, rule 5) among the rows of alice's account. The
protection of alice's position then waits for the mirror to book fills for mallory's login,
which it never does (no session of hers), each time it protects."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import structlog.testing

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.integration.test_engine import buy, make_recorder, make_trader, make_user, send, wait_for
from tests.login_rows import hold_password
from tests.sim_worlds import sim_tradovate
from tests.simutil import running_sim


async def test_alices_protection_does_not_wait_on_a_row_that_only_typed_her_username(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("alice_tv", "al-pw", ["AL1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "alice_tv", "al-pw")
            al1 = sim.account_id("AL1")
            alice = await make_user(pool, "alice")
            arec = await make_recorder(pool, alice, "arec", size=1)
            a_aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username, synced_at)"
                " VALUES ($1, 'alice-demo', 'demo', 'alice_tv', now()) RETURNING id",
                alice,
            )
            await hold_password(pool, a_aid, "al-pw", proven=True)
            a_sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'AL1') RETURNING id",
                a_aid,
                al1,
            )
            a_trader = await make_trader(pool, alice, arec, [(a_sub, 1)])
            mallory = await make_user(pool, "mallory")
            mrec = await make_recorder(pool, mallory, "mrec", size=1)
            m_aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'mallory-demo', 'demo', 'ALICE_TV') RETURNING id",
                mallory,
            )  # no credential: `accounts add --username ALICE_TV`, then add-sub by hand
            typo = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'TYPO') RETURNING id",
                m_aid,
                al1,
            )
            await make_trader(pool, mallory, mrec, [(typo, 1)])
            brokers = BrokerRegistry(database, settings)
            brokers.attach(a_aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            try:
                assert (await send(engine, pool, arec, buy("21500"))).orders == 1

                async def long1() -> bool:
                    return sum(p.net_pos for p in broker.positions(al1)) == 1

                await wait_for(long1, "alice long 1")
                await pool.execute(
                    "UPDATE traders SET sl = $2, updated_at = now() WHERE id = $1",
                    a_trader,
                    Decimal(40),
                )
                await engine.config.refresh()
                await asyncio.sleep(0.5)  # the mirror books alice's fill
                assert await engine.reconciler.protect_positions() == 0  # first sighting
                with structlog.testing.capture_logs() as logs:
                    started = time.monotonic()
                    placed = await engine.reconciler.protect_positions()
                    took = time.monotonic() - started
                assert placed == 1
                events = [e["event"] for e in logs]
                assert "reconcile.protect_fills_unstored" not in events, (
                    f"alice's stop waited {took:.1f} s for fills of mallory's row to be booked"
                )
            finally:
                await engine.close()
        finally:
            await tv.close()
