"""`accounts remove` while the daemon runs: the login's Tradovate session is never closed. The
registry keeps it attached to the deleted account id (reconciliation and the mirror walk it,
`status` lists it), the WebSocket stays open and its token is renewed, holding one of the
login's two Tradovate sessions until the daemon restarts."""

from __future__ import annotations

import asyncio

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.config_cache import ConfigCache
from jtrades.store import accounts as account_store
from tests.registry_world import registry_world
from tests.simutil import running_sim

PW = "alice-pw-123456"


async def test_removed_account_session_is_closed(database: Database, settings: Settings) -> None:
    async with running_sim() as sim:
        sim.add_login("alice_tv", PW, ["DEMO-A1"])
        w = await registry_world(database, settings, sim, "alice", "alice_tv", PW, "DEMO-A1")
        try:
            await w.registry.reach([w.link])
            assert w.registry.broker_for(w.link).is_synced(w.broker_account_id)
            assert sim.stats()["websockets_open"] == 1

            async with database.pool.acquire() as c, c.transaction():
                await account_store.remove(c, "alice-demo")
            cache = ConfigCache(database.pool)
            snap = await cache.load()
            await w.registry.sync_accounts(snap)  # what the daemon does on the change
            await asyncio.sleep(0.5)

            kept = [aid for aid, _env, _b in w.registry.sessions()]
            assert w.account_id not in kept, "the removed account's session is still attached"
            assert sim.stats()["websockets_open"] == 0, (
                "the removed login's WebSocket session is still open at the broker"
            )
        finally:
            await w.registry.close()


async def test_a_session_another_account_of_the_login_uses_stays_open(
    database: Database, settings: Settings
) -> None:
    """bob's row of alice's login (the same Tradovate account, a proven password) keeps the
    session: only the removed row is detached."""
    from decimal import Decimal

    from jtrades.engine.config_cache import LinkConfig
    from tests.integration.test_engine import make_user

    async with running_sim() as sim:
        sim.add_login("alice_tv", PW, ["DEMO-A1"])
        w = await registry_world(database, settings, sim, "alice", "alice_tv", PW, "DEMO-A1")
        try:
            bob = await make_user(database.pool, "bob")
            acct = await account_store.create(
                database.pool,
                user_id=bob,
                label="bob-demo",
                env="demo",
                username="alice_tv",
                password=w.box.seal(PW, account_store.password_context("demo", "alice_tv")),
            )
            bobs = LinkConfig(
                0, 0, Decimal(1), acct.id, "demo", w.broker_account_id, "DEMO-A1", "bob-demo",
                bob, False,
            )  # fmt: skip
            await w.registry.reach([w.link, bobs])
            assert w.registry.broker_for(bobs) is w.registry.broker_for(w.link)

            async with database.pool.acquire() as c, c.transaction():
                await account_store.remove(c, "alice-demo")
            await w.registry.sync_accounts(await ConfigCache(database.pool).load())
            await asyncio.sleep(0.5)

            kept = [aid for aid, _env, _b in w.registry.sessions()]
            assert kept == [acct.id]
            assert sim.stats()["websockets_open"] == 1
            assert w.registry.broker_for(bobs).is_synced(w.broker_account_id)
        finally:
            await w.registry.close()
