"""A Tradovate session that was attached and later failed for good (its login refused on a
reconnect) is replaced once the stored credentials are fixed: it was kept, and the login stayed
untradeable until a restart."""

from __future__ import annotations

import asyncio

import aiohttp

from jtrades.broker.tradovate.auth import TradovateAuth
from jtrades.broker.tradovate.lifecycle import State
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.store import accounts as account_store
from tests.conftest import *  # noqa: F403
from tests.polling import until
from tests.registry_world import registry_world
from tests.simutil import running_sim

LOGIN, OLD_PW, NEW_PW = "rf_tv", "old-pw", "new-pw"
OAUTH_LOGIN, OAUTH_PW = "ro_tv", "pw-ro"


async def test_failed_session_is_reconnected_once_credentials_are_fixed(
    database: Database, settings: Settings
) -> None:
    async with running_sim() as sim:
        spec = sim.add_login(LOGIN, OLD_PW, ["RF1"])
        w = await registry_world(database, settings, sim, "rf", LOGIN, OLD_PW, "RF1")
        pool, aid, bid, box = database.pool, w.account_id, w.broker_account_id, w.box
        registry, link = w.registry, w.link
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
                aid,
            )
            sim.fault("clear")

            registry._wanted = {aid}
            assert registry.connected() == {aid: False}
            # Every configuration sync / reconciliation pass calls reach() again.
            await registry.reach([link])
            assert registry.connected() == {aid: True}
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


async def test_a_replacement_not_ready_within_the_wait_is_picked_up_on_the_next_pass(
    database: Database, settings: Settings
) -> None:
    async with running_sim() as sim:
        spec = sim.add_login(LOGIN, OLD_PW, ["RS1"])
        w = await registry_world(
            database, settings, sim, "rs", LOGIN, OLD_PW, "RS1",
            tradovate={"request_timeout_s": 1.0, "rate_limit_cooldown_s": 2.0},
        )  # fmt: skip
        pool, aid, box = database.pool, w.account_id, w.box
        registry, link = w.registry, w.link
        try:
            # the pool closes the failed session to replace it, and the replacement is not
            # ready within the registry's wait: the registry held the closed one for good
            await registry.reach([link])
            session = registry.broker_for(link).session  # type: ignore[attr-defined]
            assert session.ready

            spec.password = NEW_PW
            sim.fault("unauthorized", token=session._token.token)
            sim.fault("drop", after=0)
            await until(lambda: session.state is State.FAILED, within_s=10)
            sim.fault("clear")

            sealed = box.seal(NEW_PW, account_store.password_context("demo", LOGIN))
            await pool.execute(
                "UPDATE accounts SET password_enc=$1, password_key_id=$2 WHERE id=$3",
                sealed.ciphertext,
                sealed.key_id,
                aid,
            )
            # the new session's first login meets a 429: a cooldown longer than the wait
            sim.fault("rate_limit", count=1, endpoint="auth/accesstokenrequest")
            registry._wanted = {aid}
            await registry.reach([link])  # replacement not ready within 1 s: raises inside

            new = registry._pool.sessions()[("demo", LOGIN)]
            await until(lambda: new.ready, within_s=15, what="the pool's new session READY")
            await registry.reach([link])  # the next reconciliation pass
            held = registry.broker_for(link).session  # type: ignore[attr-defined]
            assert registry.connected() == {aid: True}
            assert held is new, (
                f"registry still trades through the replaced session (state {held.state}),"
                f" connected()={registry.connected()}, while the pool's new one is READY"
            )
        finally:
            await registry.close()


async def test_a_mistyped_new_password_then_the_right_one_reconnects(
    database: Database, settings: Settings
) -> None:
    """The first set-password has a typo: the pool closes the failed session and its
    replacement is refused too; the registry held the closed one (CLOSED is not FAILED) and
    never asked with the corrected password: untradeable until a restart."""
    async with running_sim() as sim:
        spec = sim.add_login(LOGIN, OLD_PW, ["RS1"])
        w = await registry_world(
            database, settings, sim, "rs", LOGIN, OLD_PW, "RS1",
            tradovate={"request_timeout_s": 1.0},
        )  # fmt: skip
        pool, aid, bid, box = database.pool, w.account_id, w.broker_account_id, w.box
        registry, link = w.registry, w.link

        async def store_pw(pw: str) -> None:
            sealed = box.seal(pw, account_store.password_context("demo", LOGIN))
            await pool.execute(
                "UPDATE accounts SET password_enc=$1, password_key_id=$2 WHERE id=$3",
                sealed.ciphertext,
                sealed.key_id,
                aid,
            )

        try:
            await registry.reach([link])
            session = registry.broker_for(link).session  # type: ignore[attr-defined]
            spec.password = NEW_PW
            sim.fault("unauthorized", token=session._token.token)
            sim.fault("drop", after=0)
            await until(lambda: session.state is State.FAILED, within_s=10)
            sim.fault("clear")
            registry._wanted = {aid}

            await store_pw("new-pw-typo")  # set-password, mistyped
            await registry.reach([link])
            await store_pw(NEW_PW)  # set-password again, right this time
            for _ in range(3):
                await registry.reach([link])
            b = registry.broker_for(link)
            assert b.is_synced(bid), (
                f"never reconnected: registry holds a session in state "
                f"{b.session.state}, connected()={registry.connected()}"  # type: ignore[attr-defined]
            )
        finally:
            await registry.close()


async def test_a_failed_oauth_session_is_not_retried_with_the_same_token(
    database: Database, settings: Settings
) -> None:
    """The pool took any OAuth token for changed credentials, and the registry passes the
    stored one every pass: under a captcha lock each pass opened a socket and authorized again,
    each try extending the lock (DESIGN §5.7)."""
    async with running_sim() as sim:
        sim.add_login(OAUTH_LOGIN, OAUTH_PW, ["RO1"])
        # an OAuth-connected account: no password, an OAuth token
        w = await registry_world(
            database, settings, sim, "ro", OAUTH_LOGIN, None, "RO1",
            tradovate={"request_timeout_s": 2.0, "rate_limit_cooldown_s": 0.0},
        )  # fmt: skip
        pool, aid, registry, link = database.pool, w.account_id, w.registry, w.link
        async with aiohttp.ClientSession() as http:
            token = await TradovateAuth(w.settings.tradovate, http).request_token(
                "demo", OAUTH_LOGIN, OAUTH_PW
            )
        sealed = w.box.seal(token.token, account_store.oauth_context("demo", OAUTH_LOGIN))
        await pool.execute(
            "UPDATE accounts SET oauth_token_enc=$1, oauth_key_id=$2, oauth_expires_at=$3"
            " WHERE id=$4",
            sealed.ciphertext,
            sealed.key_id,
            token.expires_at,
            aid,
        )
        try:
            await registry.reach([link])
            session = registry.broker_for(link).session  # type: ignore[attr-defined]
            assert session.ready

            # Tradovate now wants a captcha on this login: every authorize gets the ticket
            sim.fault("request_penalty", endpoint="authorize", captcha=True, p_time=5, count=100)
            sim.fault("drop", after=0)
            await until(lambda: session.state is State.FAILED, within_s=10)

            before = sim.stats()
            for _ in range(3):  # three reconciliation passes, nothing changed
                await registry.reach([link])
            after = sim.stats()
            opened = after["websockets_opened"] - before["websockets_opened"]
            authorizes = after["by_endpoint"].get("authorize", 0) - before["by_endpoint"].get(
                "authorize", 0
            )
            assert (opened, authorizes) == (0, 0), (
                f"{opened} new sockets, {authorizes} authorize attempts under a captcha lock"
                " across 3 passes with unchanged credentials"
            )
        finally:
            await registry.close()
