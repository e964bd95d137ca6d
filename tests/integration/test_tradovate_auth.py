"""Tradovate REST auth and the token cache against the simulator over real sockets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from jtrades.broker.tradovate.auth import LoginBudget, TradovateAuth, oauth_authorize_url
from jtrades.broker.tradovate.tokens import TokenCache
from jtrades.config import TradovateSettings
from jtrades.errors import BrokerAuthError, CaptchaRequired, TransientBrokerError
from jtrades.security import SecretBox
from jtrades.store import broker_tokens
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


def tv(handle: SimHandle, **kw: Any) -> TradovateSettings:
    return TradovateSettings(demo_rest_url=handle.rest_url, demo_ws_url=handle.ws_url, **kw)


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def stats(handle: SimHandle, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(f"{handle.base_url}/sim/stats") as resp:
        data: dict[str, Any] = await resp.json()
        return data


def box() -> SecretBox:
    return SecretBox([os.urandom(32)], "test")


async def test_login_returns_a_token_with_its_user(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    auth = TradovateAuth(tv(sim), http)
    token = await auth.request_token("demo", LOGIN, PASSWORD)
    assert token.user_id == sim.world.auth.login(LOGIN).user_id  # type: ignore[union-attr]
    assert token.seconds_left(datetime.now(UTC)) > 60
    assert token.token not in repr(token)
    assert (await stats(sim, http))["access_token_requests"] == 1


async def test_wrong_password_is_an_auth_error_from_a_200_body(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    auth = TradovateAuth(tv(sim), http)
    with pytest.raises(BrokerAuthError, match="Tradovate login failed"):
        await auth.request_token("demo", LOGIN, "wrong")


async def test_penalty_ticket_waits_p_time_then_retries_once(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    waited: list[float] = []

    async def sleep(s: float) -> None:
        waited.append(s)
        await asyncio.sleep(s)

    sim.fault("penalty", p_time=1)
    auth = TradovateAuth(tv(sim), http, sleep=sleep)
    token = await auth.request_token("demo", LOGIN, PASSWORD)
    assert token.user_id is not None
    assert waited == [1.0]
    assert (await stats(sim, http))["access_token_requests"] == 2


async def test_captcha_is_reported_at_once_never_retried(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    sim.fault("penalty", p_time=1, captcha=True)
    auth = TradovateAuth(tv(sim), http)
    with pytest.raises(CaptchaRequired, match="OAuth"):
        await auth.request_token("demo", LOGIN, PASSWORD)
    assert (await stats(sim, http))["access_token_requests"] == 1


async def test_login_budget_is_never_exceeded(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    auth = TradovateAuth(tv(sim), http, LoginBudget(2))
    await auth.request_token("demo", LOGIN, PASSWORD)
    await auth.request_token("demo", LOGIN, PASSWORD)
    with pytest.raises(TransientBrokerError, match="login budget"):
        await auth.request_token("demo", LOGIN, PASSWORD)
    assert (await stats(sim, http))["access_token_requests"] == 2
    assert auth.budget.remaining("demo", "other-login") == 2  # per login


async def test_renewal_keeps_the_user_and_spends_no_login(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    auth = TradovateAuth(tv(sim), http)
    first = await auth.request_token("demo", LOGIN, PASSWORD)
    renewed = await auth.renew("demo", first)
    assert renewed.token != first.token
    assert renewed.user_id == first.user_id
    s = await stats(sim, http)
    assert (s["access_token_requests"], s["renewals"]) == (1, 1)


async def test_oauth_code_exchange(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{sim.base_url}/sim/oauth/code", json={"login": LOGIN}) as resp:
        code = (await resp.json())["code"]
    auth = TradovateAuth(tv(sim, oauth_client_id="cid", oauth_redirect_url="https://x/cb"), http)
    token = await auth.oauth_exchange("demo", code)
    assert token.user_id == sim.world.auth.login(LOGIN).user_id  # type: ignore[union-attr]
    with pytest.raises(BrokerAuthError, match="OAuth"):
        await auth.oauth_exchange("demo", code)  # a code works once
    url = oauth_authorize_url(
        tv(sim, oauth_client_id="cid", oauth_redirect_url="https://x/cb"), "st8"
    )
    assert "response_type=code" in url
    assert "state=st8" in url


async def test_token_is_reused_across_a_restart_and_stored_encrypted(
    sim: SimHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    key = box()
    first = TokenCache(TradovateAuth(tv(sim), http), pool, key)
    token = await first.get("demo", LOGIN, PASSWORD)
    row = await broker_tokens.get(pool, "demo", LOGIN)
    assert row is not None
    assert token.token.encode() not in row.token_enc
    # a "restart": new HTTP client, new auth, new cache, same database and key
    async with aiohttp.ClientSession() as http2:
        again = await TokenCache(TradovateAuth(tv(sim), http2), pool, key).get(
            "demo", LOGIN, PASSWORD
        )
    assert again.token == token.token
    assert again.user_id == token.user_id
    assert (await stats(sim, http))["access_token_requests"] == 1


async def test_a_stored_token_under_another_key_is_not_used(
    sim: SimHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    await TokenCache(TradovateAuth(tv(sim), http), pool, box()).get("demo", LOGIN, PASSWORD)
    await TokenCache(TradovateAuth(tv(sim), http), pool, box()).get("demo", LOGIN, PASSWORD)
    assert (await stats(sim, http))["access_token_requests"] == 2


async def test_cache_renews_inside_the_margin_and_logs_in_when_renewal_is_refused(
    sim: SimHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    offset = timedelta(0)
    cache = TokenCache(
        TradovateAuth(tv(sim), http),
        pool,
        box(),
        renew_margin_s=900,
        now=lambda: datetime.now(UTC) + offset,
    )
    first = await cache.get("demo", LOGIN, PASSWORD)
    assert await cache.get("demo", LOGIN, PASSWORD) is first  # far from expiry: cached
    offset = first.expires_at - datetime.now(UTC) - timedelta(seconds=600)  # 10 min left
    renewed = await cache.get("demo", LOGIN, PASSWORD)
    assert renewed.token != first.token
    assert (await broker_tokens.get(pool, "demo", LOGIN)).expires_at == renewed.expires_at  # type: ignore[union-attr]
    offset = renewed.expires_at - datetime.now(UTC) - timedelta(seconds=600)
    sim.fault("unauthorized", token=renewed.token)
    fresh = await cache.get("demo", LOGIN, PASSWORD)
    assert fresh.token not in (first.token, renewed.token)
    s = await stats(sim, http)
    assert (s["access_token_requests"], s["renewals"]) == (2, 1)


async def test_concurrent_callers_share_one_login(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    cache = TokenCache(TradovateAuth(tv(sim), http))
    tokens = await asyncio.gather(*(cache.get("demo", LOGIN, PASSWORD) for _ in range(10)))
    assert len({t.token for t in tokens}) == 1
    assert (await stats(sim, http))["access_token_requests"] == 1


async def test_expired_token_without_password_asks_for_a_reconnect(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    cache = TokenCache(TradovateAuth(tv(sim), http))
    with pytest.raises(BrokerAuthError, match="connect the account again"):
        await cache.get("demo", LOGIN, None)


async def test_a_second_penalty_is_kept_the_next_login_waits_and_sends_the_ticket(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    sim.fault("penalty", p_time=1, count=2)
    auth = TradovateAuth(tv(sim), http)
    with pytest.raises(TransientBrokerError, match="wait 1 s"):
        await auth.request_token("demo", LOGIN, PASSWORD)  # ticket, wait, ticket again
    # the next attempt, however soon it comes, waits p-time and repeats with the new ticket
    token = await auth.request_token("demo", LOGIN, PASSWORD)
    assert token.user_id is not None
    log = sim.world.auth.token_request_log
    assert [ticket for _, ticket in log] == [False, True, True]
    assert log[2][0] - log[1][0] >= 0.9  # p-time (1 s) between the second ticket and its use


async def test_a_penalised_renewal_keeps_the_token_waits_p_time_and_never_logs_in(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    offset = timedelta(0)
    cache = TokenCache(
        TradovateAuth(tv(sim), http), renew_margin_s=900, now=lambda: datetime.now(UTC) + offset
    )
    first = await cache.get("demo", LOGIN, PASSWORD)
    offset = first.expires_at - datetime.now(UTC) - timedelta(seconds=600)  # 10 min left
    sim.fault("renew_penalty", p_time=1)
    assert (await cache.get("demo", LOGIN, PASSWORD)).token == first.token  # penalised: kept
    assert (await cache.get("demo", LOGIN, PASSWORD)).token == first.token  # still within p-time
    renewals = sim.world.auth.renewal_log
    assert len(renewals) == 1  # nothing sent while the penalty lasts
    assert (await stats(sim, http))["access_token_requests"] == 1  # and no password login
    await asyncio.sleep(1.1)
    renewed = await cache.get("demo", LOGIN, PASSWORD)
    assert renewed.token != first.token
    assert renewed.user_id == first.user_id
    assert [ticket for _, ticket in renewals] == [False, True]  # the retry carried the ticket
    assert renewals[1][0] - renewals[0][0] >= 0.9
    s = await stats(sim, http)
    assert (s["access_token_requests"], s["renewals"]) == (1, 1)
    offset = timedelta(0)
    assert await cache.get("demo", LOGIN, PASSWORD) is renewed  # far from expiry again: cached
