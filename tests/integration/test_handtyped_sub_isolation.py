"""Found by review (hand-typed sub-account ids). Two *different* Tradovate logins: alice's (account AL1) and mallory's (ML1). Mallory's
account row also gets a sub-account recorded by hand (``accounts add-sub mallory-demo --id N``)
whose id N is AL1's: a typo, or on purpose; Tradovate ids are small sequential integers, and
nothing checks that mallory's login can see the account. The engine takes every row naming
(env, broker account id) for the same account at the broker, whatever its login, so:

- ``halt --account mallory-demo --flatten`` liquidates alice's position, through alice's own
  session (``Flattener._pass`` adds every row of the account, ``_reaching`` picks the synced one);
- ``halt --account mallory-demo`` (no flatten) stops alice's entries (``config_cache``'s
  ``stopped`` set).

Mallory's own login cannot even read AL1: the only session that acts is alice's."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.integration.test_engine import make_recorder, make_trader, make_user, wait_for
from tests.integration.test_flatten import fast_retries, flatten_flag, request_flatten
from tests.login_rows import hold_password
from tests.sim_worlds import sim_tradovate
from tests.simutil import running_sim


@asynccontextmanager
async def _world(
    database: Database, settings: Settings
) -> AsyncIterator[tuple[Engine, dict[str, Any]]]:
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("alice_tv", "al-pw", ["AL1"])
        sim.add_login("mal_tv", "ml-pw", ["ML1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            a_broker = await tv.broker("demo", "alice_tv", "al-pw")
            m_broker = await tv.broker("demo", "mal_tv", "ml-pw")
            al1, ml1 = sim.account_id("AL1"), sim.account_id("ML1")
            brokers = BrokerRegistry(database, settings)
            alice = await make_user(pool, "alice")
            arec = await make_recorder(pool, alice, "arec", size=1)
            a_aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'alice-demo', 'demo', 'alice_tv') RETURNING id",
                alice,
            )
            await hold_password(pool, a_aid, "al-pw", proven=True)  # each its own login's
            a_sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'AL1') RETURNING id",
                a_aid,
                al1,
            )
            await make_trader(pool, alice, arec, [(a_sub, 1)])
            brokers.attach(a_aid, "demo", a_broker)

            mallory = await make_user(pool, "mallory")
            m_aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'mallory-demo', 'demo', 'mal_tv') RETURNING id",
                mallory,
            )
            await hold_password(pool, m_aid, "ml-pw", proven=True)
            await pool.execute(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'ML1')",
                m_aid,
                ml1,
            )
            # what `accounts add-sub mallory-demo --id <AL1's id> --name X` stores
            typo = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'TYPO') RETURNING id",
                m_aid,
                al1,
            )
            brokers.attach(m_aid, "demo", m_broker)

            engine = Engine(database, settings, brokers)
            await engine.start()
            fast_retries(engine)
            try:
                symbol = (await a_broker.find_contract("MNQ1!")).symbol
                await a_broker.place_order(
                    OrderRequest(SubAccount(al1, "AL1"), symbol, Side.BUY, 1)
                )

                async def long1() -> bool:
                    return sum(p.net_pos for p in a_broker.positions(al1)) == 1

                await wait_for(long1, "alice long 1")
                yield (
                    engine,
                    {"a_broker": a_broker, "al1": al1, "arec": arec, "a_sub": a_sub, "typo": typo},
                )
            finally:
                await engine.close()
        finally:
            await tv.close()


async def test_flatten_of_mallorys_login_does_not_close_alices_account(
    database: Database, settings: Settings
) -> None:
    async with _world(database, settings) as (engine, w):
        await request_flatten(engine, database.pool, account="mallory-demo")

        # Fixed, the request is not done: the TYPO row names an account mallory's login cannot
        # read, which stays "not synced" (missing is not flat, rule 6). Wait for a pass that
        # says so (or, unfixed, for the request marked done).
        async def passed() -> bool:
            flag = await flatten_flag(database.pool)
            return "done_at" in flag or bool(flag.get("progress", {}).get("left"))

        await wait_for(passed, "a pass of mallory's flatten", 15)
        net = sum(p.net_pos for p in w["a_broker"].positions(w["al1"]))
        liq = await database.pool.fetch(
            "SELECT cl_ord_id, sub_account_id, state FROM order_intents WHERE kind='liquidate'"
        )
        assert net == 1, (
            f"alice's AL1 was liquidated by mallory's flatten: {[dict(r) for r in liq]}"
        )
        assert liq == [], "a liquidation was written on another login's account"
        left = (await flatten_flag(database.pool))["progress"]["left"]
        assert [x["sub_account_id"] for x in left] == [w["typo"]]
        assert "not synced" in left[0]["why"]


async def test_halt_of_mallorys_login_does_not_stop_alices_entries(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with _world(database, settings) as (engine, w):
        await pool.execute("UPDATE accounts SET halted = true WHERE label = 'mallory-demo'")
        await engine.config.refresh()
        assert engine.config.snapshot.links_by_sub[w["a_sub"]].halted is False, (
            "alice's link is halted by mallory's `halt --account mallory-demo`"
        )
