"""b35bfbc: ``halt --flatten`` names every demo/live *row* with no sub-account row
(``trading.config_rowless``) as a login it cannot reach, and stays pending while there is one.
A row of a login another user's synced row reaches (two users add one Tradovate login: one
session, the same accounts; ``flatten_left.rowless`` already counts any proven row of the
login as naming its accounts) is no unreachable login: every position of it is closed, yet
the request is never marked done and tells the operator to sync the second row."""

from __future__ import annotations

import asyncio

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.integration.test_engine import make_user, wait_for
from tests.integration.test_flatten import fast_retries, flatten_flag, request_flatten
from tests.login_rows import hold_password
from tests.sim_worlds import sim_tradovate
from tests.simutil import running_sim


async def test_flatten_of_a_login_reached_through_another_users_row_is_done(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("sh_tv", "sh-pw", ["SH1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "sh_tv", "sh-pw")
            bid = sim.account_id("SH1")
            brokers = BrokerRegistry(database, settings)
            for name, synced in (("alice", True), ("bob", False)):
                u = await make_user(pool, name)
                aid = await pool.fetchval(
                    "INSERT INTO accounts (user_id, label, env, username)"
                    " VALUES ($1, $2, 'demo', 'sh_tv') RETURNING id",
                    u,
                    f"{name}-demo",
                )
                await hold_password(pool, aid, "sh-pw", proven=True)  # the login's password
                if synced:
                    await pool.execute(
                        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                        " VALUES ($1, $2, 'SH1')",
                        aid,
                        bid,
                    )
                brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            fast_retries(engine)
            try:
                symbol = (await broker.find_contract("MNQ1!")).symbol
                await broker.place_order(OrderRequest(SubAccount(bid, "SH1"), symbol, Side.BUY, 1))
                assert sum(sim.positions("SH1").values()) == 1

                await request_flatten(engine, pool, None)  # halt --flatten

                async def flat() -> bool:
                    return sum(sim.positions("SH1").values()) == 0

                await wait_for(flat, "the login's only account flattened", 10)
                await asyncio.sleep(1.0)  # several passes
                f = await flatten_flag(pool)
                assert "done_at" in f, (
                    "every account of the login is flat and reached, yet the request is pending:"
                    f" {(f.get('progress') or {}).get('left')}"
                )
            finally:
                await engine.close()
        finally:
            await tv.close()
