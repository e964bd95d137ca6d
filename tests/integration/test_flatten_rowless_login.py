"""``halt --account LABEL --flatten`` of a stored Tradovate login that has no sub-account row
(added, `accounts sync` not run yet) while its account holds a position at the broker.

The flatten of one login whose rows name only some of its accounts keeps the request pending
and names the rest ("has no sub-account row: `jtrades accounts sync`", ``flatten_left.rowless``):
marked done without a word, it left a position open under the kill switch. A login with no row
at all is never reached: the request is marked done on an empty pass, status says
"done (0 closed, 0 left)", and the position stays open."""

from __future__ import annotations

import asyncio

import pytest

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


@pytest.mark.parametrize(
    "label", ["ot-demo", None]
)  # halt --account ot-demo --flatten; halt --flatten
async def test_flatten_of_a_login_with_no_sub_account_row_is_not_done_while_it_holds_a_position(
    database: Database, settings: Settings, label: str | None
) -> None:
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("ot_tv", "ot-pw", ["OT1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "ot_tv", "ot-pw")
            bid = sim.account_id("OT1")
            u = await make_user(pool, "ot")
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'ot-demo', 'demo', 'ot_tv') RETURNING id",
                u,
            )
            await hold_password(pool, aid, "ot-pw", proven=True)  # added, then used
            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", broker)  # its session is even up
            engine = Engine(database, settings, brokers)
            await engine.start()
            fast_retries(engine)
            try:
                symbol = (await broker.find_contract("MNQ1!")).symbol
                await broker.place_order(OrderRequest(SubAccount(bid, "OT1"), symbol, Side.BUY, 1))
                assert sum(sim.positions("OT1").values()) == 1  # long 1 at the broker

                await request_flatten(engine, pool, label)

                async def settled() -> bool:
                    f = await flatten_flag(pool)
                    return "done_at" in f or bool((f.get("progress") or {}).get("left"))

                await wait_for(settled, "the flatten's first pass", 10)
                await asyncio.sleep(0.5)
                f = await flatten_flag(pool)
                net = sum(sim.positions("OT1").values())
                assert net == 1
                assert "done_at" not in f, (
                    f"the request is marked done ({f.get('progress')}) while OT1 of ot-demo"
                    f" still holds net {net} at the broker"
                )
                left = (f.get("progress") or {}).get("left") or []
                assert any("accounts sync ot-demo" in str(x) for x in left), left
            finally:
                await engine.close()
        finally:
            await tv.close()
