"""A Tradovate session that was attached and later failed for good (its login refused on a
reconnect) is replaced once the stored credentials are fixed: it was kept, and the login stayed
untradeable until a restart."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.lifecycle import State
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.config_cache import LinkConfig
from jtrades.security import load_secret_box
from jtrades.store import accounts as account_store
from tests.conftest import *  # noqa: F403
from tests.integration.test_engine import make_user
from tests.polling import until
from tests.simutil import running_sim

LOGIN, OLD_PW, NEW_PW = "rf_tv", "old-pw", "new-pw"


async def test_failed_session_is_reconnected_once_credentials_are_fixed(
    database: Database, settings: Settings
) -> None:
    async with running_sim() as sim:
        spec = sim.add_login(LOGIN, OLD_PW, ["RF1"])
        tv = settings.tradovate.model_copy(
            update={
                "demo_rest_url": sim.rest_url,
                "demo_ws_url": sim.ws_url,
                "connect_stagger_s": 0,
                "reconnect_initial_s": 0.05,
                "reconnect_max_s": 0.3,
            }
        )
        st = settings.model_copy(update={"tradovate": tv})
        box = load_secret_box(st, create=True)
        pool = database.pool
        u = await make_user(pool, "rf")
        acct = await account_store.create(
            pool,
            user_id=u,
            label="rf-demo",
            env="demo",
            username=LOGIN,
            password=box.seal(OLD_PW, account_store.password_context("demo", LOGIN)),
        )
        bid = sim.account_id("RF1")
        link = LinkConfig(0, 0, Decimal(1), acct.id, "demo", bid, "RF1", "rf-demo", u, False)
        registry = BrokerRegistry(database, st)
        try:
            await registry.reach([link])
            broker = registry.broker_for(link)
            session = broker.session  # type: ignore[attr-defined]
            assert session.ready
            followed = broker.events()  # as the mirror follows the login

            # The person changes the Tradovate password; the daemon's token is revoked.
            spec.password = NEW_PW
            sim.fault("unauthorized", token=session._token.token)
            sim.fault("drop", after=0)
            await until(lambda: session.state is State.FAILED, within_s=10)

            # ... and updates jtrades with the new password (accounts set-password).
            sealed = box.seal(NEW_PW, account_store.password_context("demo", LOGIN))
            await pool.execute(
                "UPDATE accounts SET password_enc=$1, password_key_id=$2 WHERE id=$3",
                sealed.ciphertext,
                sealed.key_id,
                acct.id,
            )
            sim.fault("clear")

            registry._wanted = {acct.id}
            assert registry.connected() == {acct.id: False}
            # Every configuration sync / reconciliation pass calls reach() again.
            await registry.reach([link])
            assert registry.connected() == {acct.id: True}
            b = registry.broker_for(link)
            assert b.is_synced(bid), (
                f"session still {b.session.state}: {b.session.last_error}"  # type: ignore[attr-defined]
            )

            # the failed session's stream ended, so the mirror follows the new one
            async def drain() -> None:
                async for _ in followed:
                    pass

            await asyncio.wait_for(drain(), 5)
        finally:
            await registry.close()
