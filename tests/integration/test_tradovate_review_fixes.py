"""Tradovate token handling found wrong in review: an OAuth login after a restart, a refused
login during renewal, a local clock ahead of Tradovate's, and a refused renewal kept."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.auth import AccessToken, LoginBudget, TradovateAuth
from jtrades.broker.tradovate.lifecycle import State
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.broker.tradovate.renewal import pause_after_renewal
from jtrades.broker.tradovate.token_clock import server_time, token_lifetime_s
from jtrades.broker.tradovate.tokens import TokenCache, adopt_offered
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.errors import TransientBrokerError
from jtrades.security import load_secret_box
from jtrades.sim.config import default_config
from jtrades.store import accounts as account_store
from jtrades.store import broker_tokens as token_store
from tests.conftest import *  # noqa: F403
from tests.integration.test_engine import make_user
from tests.integration.test_tradovate_auth import tv as auth_tv
from tests.integration.test_tradovate_session import tv
from tests.polling import until
from tests.registry_world import registry_world
from tests.simutil import LOGIN, PASSWORD, running_sim

# --- an OAuth login restarted after the token it was connected with expired ---------------------


async def test_an_oauth_login_reconnects_after_a_restart_past_its_connect_tokens_expiry(
    database: Database, settings: Settings
) -> None:
    """The daemon renews the login's token and stores each new one; the token the person
    connected with (accounts.oauth_token_enc) is never updated. A restart after it expired put
    it over the good stored one, and the session failed for good: "expired and there is no
    password: connect the account again"."""
    login, pw = "oa_restart", "pw-oa"
    cfg = default_config()
    cfg.token_lifetime_s = 12
    async with running_sim(cfg) as sim:
        sim.add_login(login, pw, ["OAR1"])
        w = await registry_world(
            database, settings, sim, "oar", login, None, "OAR1",
            tradovate={"renew_margin_s": 8, "request_timeout_s": 2.0},
        )  # fmt: skip
        pool, aid, link = database.pool, w.account_id, w.link
        async with aiohttp.ClientSession() as http:  # accounts connect
            token = await TradovateAuth(w.settings.tradovate, http).request_token("demo", login, pw)
        sealed = w.box.seal(token.token, account_store.oauth_context("demo", login))
        await pool.execute(
            "UPDATE accounts SET oauth_token_enc=$1, oauth_key_id=$2, oauth_expires_at=$3"
            " WHERE id=$4",
            sealed.ciphertext, sealed.key_id, token.expires_at, aid,
        )  # fmt: skip
        try:
            await w.registry.reach([link])
            session = w.registry.broker_for(link).session  # type: ignore[attr-defined]
            assert session.ready
            await until(lambda: sim.stats()["renewals"] >= 2, within_s=15)
            await asyncio.sleep(max(0.0, token.seconds_left(datetime.now(UTC))) + 0.5)
            assert session.ready
        finally:
            await w.registry.close()
        logins_before = sim.stats()["access_token_requests"]

        restarted = BrokerRegistry(database, w.settings)
        try:
            restarted._wanted = {aid}
            await restarted.reach([link])
            assert restarted.connected() == {aid: True}, restarted._failures.get(aid)
            assert restarted.broker_for(link).is_synced(w.broker_account_id)
            assert sim.stats()["access_token_requests"] == logins_before
        finally:
            await restarted.close()


# --- a refused login during renewal ------------------------------------------------------------


async def test_a_refused_login_during_renewal_fails_the_session_after_one_try() -> None:
    """The renewal is refused and the stored password no longer works (changed at Tradovate).
    The renewal loop took the refusal for a passing error and logged in with the old password
    every 2.5 s: four failed logins in 12 s, a penalty lock, the login budget spent, and the
    session stayed READY, so the password from ``accounts set-password`` was never used."""
    cfg = default_config()
    cfg.token_lifetime_s = 14
    cfg.penalty_s = 1.0
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim, renew_margin_s=10, logins_per_hour=5))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            first = pool.tokens.peek("demo", LOGIN)
            assert first is not None
            sim.world.auth.login(LOGIN).password = "changed"  # type: ignore[union-attr]
            sim.fault("unauthorized", token=first.token)
            logins = len(sim.world.auth.token_request_log)
            await until(lambda: broker.session.state is State.FAILED, within_s=10)
            assert "login failed" in (broker.session.last_error or "")
            await asyncio.sleep(6)
            assert len(sim.world.auth.token_request_log) - logins == 1
            # the changed password (as the registry hands it over) opens a new session
            again = await pool.broker("demo", LOGIN, "changed")
            assert again.session.ready
            assert again is not broker
        finally:
            await pool.close()


# --- a local clock ahead of Tradovate's ----------------------------------------------------------


async def test_a_clock_ahead_of_the_server_by_more_than_a_lifetime_logs_in_once() -> None:
    """Two hours ahead: every fresh token looked expired on arrival, and each connect logged
    in again: five logins in a second, the daemon's own session knocked off
    (ConnectionQuotaReached), the login budget spent."""
    async with running_sim(clock=lambda: datetime.now(UTC).timestamp() - 2 * 3600) as sim:
        pool = TradovatePool(tv(sim, logins_per_hour=5))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD, wait_s=10)
            assert broker.session.ready
            await asyncio.sleep(6)
            assert sim.stats()["access_token_requests"] == 1
            assert (broker.session.connects, broker.session.state) == (1, State.READY)
        finally:
            await pool.close()


async def test_a_clock_ahead_of_the_server_inside_a_lifetime_renews_at_a_sane_pace() -> None:
    """Seventy minutes ahead: an 80-minute token looked ten minutes from expiry, inside the
    15-minute renewal margin, and so did each renewed one: 6,986 renewals in 5 s (Tradovate
    allows about 15 an hour)."""
    async with running_sim(clock=lambda: datetime.now(UTC).timestamp() - 70 * 60) as sim:
        pool = TradovatePool(tv(sim))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD, wait_s=10)
            assert broker.session.ready
            await asyncio.sleep(5)
            assert sim.stats()["renewals"] <= 2
            assert sim.stats()["access_token_requests"] == 1
        finally:
            await pool.close()


# --- a renewal refused while no login can follow -------------------------------------------------


async def test_a_refused_renewal_forgets_the_dead_token() -> None:
    """Tradovate refused the renewal (HTTP 401: the token is dead) and the hourly login budget
    was spent: the dead token stayed in memory and in broker_tokens, and every reconnect
    attempt sent renewaccesstoken with it again (about 15 an hour are allowed; then 429s and
    a pool-wide connect cooldown)."""
    async with running_sim() as sim, aiohttp.ClientSession() as http:
        offset = timedelta(0)
        cache = TokenCache(
            TradovateAuth(auth_tv(sim), http, LoginBudget(1)),
            renew_margin_s=900,
            now=lambda: datetime.now(UTC) + offset,
        )
        first = await cache.get("demo", LOGIN, PASSWORD)  # the one login of the hour
        offset = first.expires_at - datetime.now(UTC) - timedelta(seconds=600)  # 10 min left
        sim.fault("unauthorized", token=first.token)
        for _ in range(5):  # five reconnect attempts
            with pytest.raises(TransientBrokerError, match="login budget"):
                await cache.get("demo", LOGIN, PASSWORD)
        assert sim.stats()["by_endpoint"].get("auth/renewaccesstoken", 0) == 1
        assert cache.peek("demo", LOGIN) is None


async def test_a_refused_renewal_deletes_the_stored_token(
    database: Database, settings: Settings
) -> None:
    """The dead token was also left in broker_tokens, for the next process to renew again."""
    pool = database.pool
    user_id = await make_user(pool, "tk")
    await pool.execute(
        "INSERT INTO accounts (user_id, label, env, username) VALUES ($1, 'tk-demo', 'demo', $2)",
        user_id, LOGIN,
    )  # fmt: skip
    box = load_secret_box(settings, create=True)
    async with running_sim() as sim, aiohttp.ClientSession() as http:
        offset = timedelta(0)
        cache = TokenCache(
            TradovateAuth(auth_tv(sim), http, LoginBudget(1)),
            pool,
            box,
            renew_margin_s=900,
            now=lambda: datetime.now(UTC) + offset,
        )
        first = await cache.get("demo", LOGIN, PASSWORD)
        assert await token_store.get(pool, "demo", LOGIN) is not None
        offset = first.expires_at - datetime.now(UTC) - timedelta(seconds=600)
        sim.fault("unauthorized", token=first.token)
        with pytest.raises(TransientBrokerError, match="login budget"):
            await cache.get("demo", LOGIN, PASSWORD)
        assert await token_store.get(pool, "demo", LOGIN) is None


# --- the decisions, one by one ------------------------------------------------------------------

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
LIFE = timedelta(minutes=80)


def test_a_tokens_lifetime_is_read_against_tradovates_clock() -> None:
    """Our clock two hours ahead: Tradovate's ``Date`` says how long the token is good for."""
    lifetime = token_lifetime_s(T0 + LIFE, T0, T0 + timedelta(hours=2))
    assert lifetime == LIFE.total_seconds() - 1  # the Date is to the second


def test_a_token_that_looks_expired_on_arrival_is_taken_for_the_shortest_lifetime() -> None:
    """No server issues an expired token: the clocks disagree (and no Date says by how much)."""
    assert token_lifetime_s(T0 + LIFE, None, T0 + timedelta(hours=2)) == 80 * 60
    # a Date that disagrees with expirationTime as much is no better
    late = T0 + timedelta(hours=2)
    assert token_lifetime_s(T0 + LIFE, late, late) == 80 * 60


def test_a_token_lifetime_is_believed_up_to_the_longest_documented() -> None:
    """Our clock behind Tradovate's, no Date: the token would look good for hours."""
    assert token_lifetime_s(T0 + LIFE, None, T0 - timedelta(hours=3)) == 90 * 60
    assert token_lifetime_s(T0 + LIFE, None, T0) == LIFE.total_seconds()


def test_an_http_date_is_read_or_ignored() -> None:
    assert server_time("Mon, 02 Mar 2026 14:00:00 GMT") == T0
    assert server_time("yesterday") is None
    assert server_time(None) is None


def test_an_offered_oauth_token_replaces_only_a_token_it_outlives() -> None:
    held = AccessToken("renewed", T0 + timedelta(minutes=70))
    connected = AccessToken("connected", T0 - timedelta(minutes=5))  # expired
    assert not adopt_offered(connected, held, T0)
    assert not adopt_offered(connected, None, T0)
    assert not adopt_offered(AccessToken("older", T0 + timedelta(minutes=30)), held, T0)
    assert adopt_offered(AccessToken("newer", T0 + timedelta(minutes=80)), held, T0)
    # connected again after the session failed: the held one may be the dead one
    assert adopt_offered(AccessToken("again", T0 + timedelta(minutes=30)), held, T0, over_held=True)
    assert not adopt_offered(connected, held, T0, over_held=True)


def test_the_pause_after_a_renewal_is_a_minute_or_half_the_new_token() -> None:
    assert pause_after_renewal(AccessToken("t", T0 + timedelta(minutes=10)), T0) == 60
    assert pause_after_renewal(AccessToken("t", T0 + timedelta(seconds=12)), T0) == 6
