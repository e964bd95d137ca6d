"""``halt --flatten`` of an account at the broker that two users' rows name (both added the
Tradovate login ``px_tv``, account PX1): any row's live session reads, and sends for, the
account, as protection and the orphan sweep already did (``BrokerRegistry.synced_for``).

Before, a pass asked only the first row's session: with alice's stored password stale (no
session for her row) and bob's session live, every pass logged "no Tradovate session for
account alice-demo" and the position bob's alert opened stayed open under the kill switch.
With the real Tradovate client against the simulator over real sockets."""

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
async def _shared_login(
    database: Database, settings: Settings, live: tuple[str, ...]
) -> AsyncIterator[tuple[Engine, BrokerRegistry, dict[str, Any]]]:
    """alice's and bob's rows for PX1, each with a trader; only the ``live`` users' rows have
    a session (the others' stored passwords are stale). Flatten passes follow fast."""
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("px_tv", "px-pw", ["PX1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "px_tv", "px-pw")
            bid = sim.account_id("PX1")
            brokers = BrokerRegistry(database, settings)
            w: dict[str, Any] = {"broker": broker, "bid": bid, "aid": {}, "sub": {}}
            for name in ("alice", "bob"):
                u = await make_user(pool, name)
                rec = await make_recorder(pool, u, f"{name}-rec", size=1)
                aid = await pool.fetchval(
                    "INSERT INTO accounts (user_id, label, env, username)"
                    " VALUES ($1, $2, 'demo', 'px_tv') RETURNING id",
                    u,
                    f"{name}-demo",
                )
                await hold_password(pool, aid, "px-pw", proven=True)  # added, then used
                w["sub"][name] = await pool.fetchval(
                    "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                    " VALUES ($1, $2, 'PX1') RETURNING id",
                    aid,
                    bid,
                )
                await make_trader(pool, u, rec, [(w["sub"][name], 1)])
                w["aid"][name] = aid
                if name in live:
                    brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            fast_retries(engine)
            try:
                symbol = (await broker.find_contract("MNQ1!")).symbol
                await broker.place_order(
                    OrderRequest(SubAccount(bid, "PX1"), symbol, Side.BUY, 1)
                )  # long 1 at the broker

                async def long1() -> bool:
                    return _net(w) == 1

                await wait_for(long1, "long 1 in the view")
                yield engine, brokers, w
            finally:
                await engine.close()
        finally:
            await tv.close()


def _net(w: dict[str, Any]) -> int:
    return sum(p.net_pos for p in w["broker"].positions(w["bid"]))


async def test_flatten_closes_a_shared_account_through_the_row_whose_session_is_live(
    database: Database, settings: Settings
) -> None:
    """alice's row (the first) has no session, bob's is live: the flatten goes through bob's,
    and the request is done with nothing left."""
    async with _shared_login(database, settings, live=("bob",)) as (engine, _, w):
        await request_flatten(engine, database.pool)

        async def flat() -> bool:
            return _net(w) == 0

        await wait_for(flat, "halt --flatten closed the position through bob's session", 10)

        async def done() -> bool:
            return "done_at" in await flatten_flag(database.pool)

        await wait_for(done, "the request marked done", 10)
        assert (await flatten_flag(database.pool))["progress"]["left"] == []


async def test_a_shared_account_no_row_can_reach_stays_pending_until_one_can(
    database: Database, settings: Settings
) -> None:
    """No row has a session: missing is not flat, the request is not done and says what is
    left; once bob's session is up the next pass closes the position."""
    pool = database.pool
    async with _shared_login(database, settings, live=()) as (engine, brokers, w):
        await request_flatten(engine, pool)

        async def reported() -> bool:
            return bool((await flatten_flag(pool)).get("progress", {}).get("left"))

        await wait_for(reported, "what is left reported on the request")
        f = await flatten_flag(pool)
        assert "done_at" not in f
        (left,) = f["progress"]["left"]
        assert left["sub_account_id"] in w["sub"].values()
        assert "no Tradovate session" in left["why"]
        assert _net(w) == 1

        brokers.attach(w["aid"]["bob"], "demo", w["broker"])

        async def flat() -> bool:
            return _net(w) == 0

        await wait_for(flat, "closed once bob's session is up", 10)

        async def done() -> bool:
            return "done_at" in await flatten_flag(pool)

        await wait_for(done, "the request marked done", 10)
