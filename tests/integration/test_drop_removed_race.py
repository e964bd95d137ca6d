"""``BrokerRegistry._drop_removed`` (2d01265) asks the database which of the attached account
ids are still stored, then, after that await, walks ``self._tv_env`` as it is *now*: a login
attached while the query was in flight (a concurrent ``reach``: the configuration-change task,
the reconciliation tick's ``sync_accounts`` and a flatten's ``reach`` all run concurrently) was
never asked about, is "not stored", and is detached and its fresh session closed."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.config_cache import ConfigCache, LinkConfig
from jtrades.store import accounts as account_store
from tests.integration.test_engine import make_user
from tests.registry_world import registry_world
from tests.simutil import running_sim

PW = "alice-pw-123456"
CPW = "carol-pw-123456"


async def test_a_login_reached_during_the_removed_accounts_query_is_kept(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running_sim() as sim:
        sim.add_login("alice_tv", PW, ["DEMO-A1"])
        sim.add_login("carol_tv", CPW, ["DEMO-C1"])
        w = await registry_world(database, settings, sim, "alice", "alice_tv", PW, "DEMO-A1")
        reg = w.registry
        try:
            await reg.reach([w.link])
            carol = await make_user(database.pool, "carol")
            acct = await account_store.create(
                database.pool,
                user_id=carol,
                label="carol-demo",
                env="demo",
                username="carol_tv",
                password=w.box.seal(CPW, account_store.password_context("demo", "carol_tv")),
            )
            cbid = sim.account_id("DEMO-C1")
            carol_link = LinkConfig(
                0, 0, Decimal(1), acct.id, "demo", cbid, "DEMO-C1", "carol-demo", carol, False
            )  # fmt: skip
            snap = await ConfigCache(database.pool).load()

            real = account_store.existing_ids

            async def in_flight(ex, ids):  # type: ignore[no-untyped-def]
                got = await real(ex, ids)
                # carol's concurrent connect completes while this answer is on its way
                for _ in range(500):
                    if acct.id in dict(reg._tv_env):
                        break
                    await asyncio.sleep(0.01)
                return got

            monkeypatch.setattr(account_store, "existing_ids", in_flight)
            # carol's login reached (a flatten, a link made a moment ago) while a configuration
            # sync runs
            await asyncio.gather(reg.reach([carol_link]), reg.sync_accounts(snap))
            monkeypatch.setattr(account_store, "existing_ids", real)

            assert acct.id in [aid for aid, _e, _b in reg.sessions()], (
                "carol-demo (stored, just reached) was detached as a removed account"
            )
            broker = reg.broker_for(carol_link)
            assert broker.is_synced(cbid)
            assert sim.stats()["websockets_open"] == 2, sim.stats()
        finally:
            await reg.close()
