"""Tradovate REST auth and the token cache against the simulator over real sockets."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from aiohttp import web

from jtrades.broker.tradovate.auth import LoginBudget, TradovateAuth, oauth_authorize_url
from jtrades.broker.tradovate.penalties import PenaltyTicket
from jtrades.broker.tradovate.tokens import TokenCache
from jtrades.config import TradovateSettings
from jtrades.errors import BrokerAuthError, CaptchaRequired, TransientBrokerError
from jtrades.security import SecretBox
from jtrades.store import broker_tokens
from tests.simutil import LOGIN, PASSWORD, SimHandle, account_naming, running_sim


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
    await account_naming(pool, LOGIN)
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
    await account_naming(pool, LOGIN)
    await TokenCache(TradovateAuth(tv(sim), http), pool, box()).get("demo", LOGIN, PASSWORD)
    assert await broker_tokens.get(pool, "demo", LOGIN) is not None  # stored, under one key
    await TokenCache(TradovateAuth(tv(sim), http), pool, box()).get("demo", LOGIN, PASSWORD)
    assert (await stats(sim, http))["access_token_requests"] == 2


async def test_cache_renews_inside_the_margin_and_logs_in_when_renewal_is_refused(
    sim: SimHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    await account_naming(pool, LOGIN)
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


@asynccontextmanager
async def front(
    sim: SimHandle,
    http: aiohttp.ClientSession,
    answers: dict[str, list[tuple[int, bytes]]],
    *,
    refuse_with: int | None = None,
) -> AsyncIterator[str]:
    """A REST URL that answers the next requests to an endpoint from ``answers`` (status,
    body) and passes everything else to the simulator: the simulator cannot answer a plain
    HTTP 4xx, or a 200 nobody can read, as a gateway in front of Tradovate may.

    ``refuse_with``: the simulator's refusals and penalties (a 200 body with ``errorText`` or
    ``p-ticket``) are passed on with this status instead, the body unchanged."""

    async def handle(request: web.Request) -> web.StreamResponse:
        tail = request.match_info["tail"]
        queued = answers.get(tail)
        if queued:
            status, body = queued.pop(0)
            return web.Response(status=status, body=body, content_type="application/json")
        async with http.request(
            request.method,
            f"{sim.rest_url}/{tail}",
            data=await request.read(),
            headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
            params=request.query,
        ) as r:
            raw, status = await r.read(), r.status
        if (
            refuse_with is not None
            and status == 200
            and (b'"errorText"' in raw or b'"p-ticket"' in raw)
        ):
            status = refuse_with
        return web.Response(status=status, body=raw, content_type=r.content_type)

    app = web.Application()
    app.router.add_route("*", "/v1/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


LOGIN_URL = "auth/accesstokenrequest"
RENEW_URL = "auth/renewaccesstoken"


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (408, b"Request Timeout"),
        (404, b"<html>maintenance</html>"),
        (400, b""),
        (200, b"[]"),  # JSON, but not an answer
        (200, b'{"userStatus": "Active"}'),  # no accessToken
        (200, b'{"accessToken": "t0k3n-abcdefgh", "expirationTime": "soon"}'),
    ],
)
async def test_a_login_answer_that_refuses_no_credentials_is_transient(
    sim: SimHandle, http: aiohttp.ClientSession, status: int, body: bytes
) -> None:
    """One 408 (or a gateway's 404 or 400 during maintenance, or a 200 nobody can read) was
    taken for a wrong password: the session FAILED for good, and the pool refused the login
    until the password changed. Only Tradovate's definite refusals are final."""
    async with front(sim, http, {LOGIN_URL: [(status, body)]}) as url:
        auth = TradovateAuth(TradovateSettings(demo_rest_url=url, demo_ws_url=sim.ws_url), http)
        with pytest.raises(TransientBrokerError) as caught:
            await auth.request_token("demo", LOGIN, PASSWORD)
        assert not isinstance(caught.value, BrokerAuthError)
        assert (await auth.request_token("demo", LOGIN, PASSWORD)).user_id is not None


@pytest.mark.parametrize("status", [401, 403, 423])
async def test_a_definite_refusal_of_the_login_stays_an_auth_error(
    sim: SimHandle, http: aiohttp.ClientSession, status: int
) -> None:
    async with front(sim, http, {LOGIN_URL: [(status, b"")]}) as url:
        auth = TradovateAuth(TradovateSettings(demo_rest_url=url, demo_ws_url=sim.ws_url), http)
        with pytest.raises(BrokerAuthError):
            await auth.request_token("demo", LOGIN, PASSWORD)


async def test_one_http_408_on_login_does_not_fail_the_session_for_good(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    from jtrades.broker.tradovate.lifecycle import State
    from jtrades.broker.tradovate.pool import TradovatePool
    from tests.integration.test_tradovate_session import tv as session_tv

    async with front(sim, http, {LOGIN_URL: [(408, b"Request Timeout")]}) as url:
        pool = TradovatePool(session_tv(sim, demo_rest_url=url))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD, wait_s=5)
            assert broker.session.state is State.READY
            assert await pool.broker("demo", LOGIN, PASSWORD, wait_s=5) is broker
            assert (await stats(sim, http))["access_token_requests"] == 1  # the 408 never got there
        finally:
            await pool.close()


@pytest.mark.parametrize(
    ("status", "body"), [(408, b""), (400, b""), (200, b"[]"), (200, b'{"userId": 1}')]
)
async def test_a_renewal_answer_that_refuses_nothing_keeps_the_token_and_spends_no_login(
    sim: SimHandle, http: aiohttp.ClientSession, status: int, body: bytes
) -> None:
    """A renewal that fails without Tradovate refusing the token (a 408, a 429, an unreadable
    answer) keeps the current token while it is usable and leaves renewing to later: a new
    login costs budget and a session, and a reconnect that waited for the renewal stayed down."""
    offset = timedelta(0)
    async with front(sim, http, {RENEW_URL: [(status, body)]}) as url:
        cache = TokenCache(
            TradovateAuth(TradovateSettings(demo_rest_url=url, demo_ws_url=sim.ws_url), http),
            renew_margin_s=900,
            now=lambda: datetime.now(UTC) + offset,
        )
        first = await cache.get("demo", LOGIN, PASSWORD)
        offset = first.expires_at - datetime.now(UTC) - timedelta(seconds=600)  # 10 min left
        assert await cache.get("demo", LOGIN, PASSWORD) is first
        assert await cache.get("demo", LOGIN, PASSWORD) is first  # not asked again at once
        s = await stats(sim, http)
        assert (s["access_token_requests"], s["renewals"]) == (1, 0)
        offset += timedelta(seconds=301)  # later, still inside the margin: renewed
        renewed = await cache.get("demo", LOGIN, PASSWORD)
        assert renewed.token != first.token
        s = await stats(sim, http)
        assert (s["access_token_requests"], s["renewals"]) == (1, 1)


REFUSAL_STATUSES = [400, 404, 422]


@pytest.mark.parametrize("status", REFUSAL_STATUSES)
@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"errorText": "Incorrect username or password. Please try again."}, BrokerAuthError),
        ({"p-ticket": "t1ck3t-abcdefgh", "p-time": 3600, "p-captcha": True}, CaptchaRequired),
    ],
)
async def test_a_refusal_in_a_4xx_body_is_still_a_refusal(
    sim: SimHandle,
    http: aiohttp.ClientSession,
    status: int,
    body: dict[str, Any],
    expected: type[Exception],
) -> None:
    """A wrong password (or a captcha) answered with HTTP 400 was taken for a gateway's
    hiccup: the body was never read, and the session logged in again and again with the
    wrong password, into a 423 and a captcha lock. Tradovate's word in the body comes first."""
    async with front(sim, http, {LOGIN_URL: [(status, orjson.dumps(body))]}) as url:
        auth = TradovateAuth(TradovateSettings(demo_rest_url=url, demo_ws_url=sim.ws_url), http)
        with pytest.raises(expected):
            await auth.request_token("demo", LOGIN, PASSWORD)
        assert auth.budget.remaining("demo", LOGIN) == auth.budget.per_hour - 1  # never retried


async def test_a_penalty_ticket_in_a_400_body_is_waited_out_and_sent_once(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    sim.fault("penalty", p_time=1)
    async with front(sim, http, {}, refuse_with=400) as url:
        auth = TradovateAuth(TradovateSettings(demo_rest_url=url, demo_ws_url=sim.ws_url), http)
        assert (await auth.request_token("demo", LOGIN, PASSWORD)).user_id is not None
    log = sim.world.auth.token_request_log
    assert [ticket for _, ticket in log] == [False, True]
    assert log[1][0] - log[0][0] >= 0.9


@pytest.mark.parametrize("status", [401, 403, 423])
async def test_a_captcha_in_a_final_refusal_is_a_captcha_and_a_ticket_there_is_not_retried(
    sim: SimHandle, http: aiohttp.ClientSession, status: int
) -> None:
    captcha = orjson.dumps({"p-ticket": "t1ck3t-abcdefgh", "p-time": 3600, "p-captcha": True})
    ticket = orjson.dumps({"p-ticket": "t1ck3t-abcdefgh", "p-time": 1})
    async with front(sim, http, {LOGIN_URL: [(status, captcha), (status, ticket)]}) as url:
        auth = TradovateAuth(TradovateSettings(demo_rest_url=url, demo_ws_url=sim.ws_url), http)
        with pytest.raises(CaptchaRequired):
            await auth.request_token("demo", LOGIN, PASSWORD)
        with pytest.raises(BrokerAuthError) as caught:
            await auth.request_token("demo", LOGIN, PASSWORD)
        assert not isinstance(caught.value, CaptchaRequired)
        assert auth.budget.remaining("demo", LOGIN) == auth.budget.per_hour - 2


@pytest.mark.parametrize("status", REFUSAL_STATUSES)
async def test_a_wrong_password_refused_with_a_4xx_fails_the_session_after_one_login(
    sim: SimHandle, http: aiohttp.ClientSession, status: int
) -> None:
    """Three logins in 12 s with a refused password, the third answered with a penalty:
    the road to HTTP 423 and a captcha lock."""
    from jtrades.broker.tradovate.lifecycle import State
    from jtrades.broker.tradovate.pool import TradovatePool
    from tests.integration.test_tradovate_session import tv as session_tv

    async with front(sim, http, {}, refuse_with=status) as url:
        pool = TradovatePool(session_tv(sim, demo_rest_url=url))
        try:
            with pytest.raises(BrokerAuthError):
                await pool.broker("demo", LOGIN, "wrong-password", wait_s=8)
            await asyncio.sleep(1)  # the reconnect backoff is 0.05 s: time for many retries
            assert (await stats(sim, http))["access_token_requests"] == 1
            assert [s.state for s in pool.sessions().values()] == [State.FAILED]
            with pytest.raises(BrokerAuthError):  # the pool keeps refusing, sends nothing
                await pool.broker("demo", LOGIN, "wrong-password", wait_s=1)
            assert (await stats(sim, http))["access_token_requests"] == 1
        finally:
            await pool.close()


@pytest.mark.parametrize("status", REFUSAL_STATUSES)
async def test_a_renewal_refused_or_penalised_in_a_4xx_body_is_read_as_such(
    sim: SimHandle, http: aiohttp.ClientSession, status: int
) -> None:
    refused = orjson.dumps({"errorText": "Access is denied"})
    ticket = orjson.dumps({"p-ticket": "t1ck3t-abcdefgh", "p-time": 30})
    async with front(sim, http, {RENEW_URL: [(status, refused), (status, ticket)]}) as url:
        auth = TradovateAuth(TradovateSettings(demo_rest_url=url, demo_ws_url=sim.ws_url), http)
        token = await auth.request_token("demo", LOGIN, PASSWORD)
        with pytest.raises(BrokerAuthError, match="renewal failed: Access is denied"):
            await auth.renew("demo", token)
        with pytest.raises(PenaltyTicket) as caught:
            await auth.renew("demo", token)
        assert (caught.value.ticket, caught.value.wait_s, caught.value.captcha) == (
            "t1ck3t-abcdefgh",
            30.0,
            False,
        )
    s = await stats(sim, http)
    assert (s["access_token_requests"], s["renewals"]) == (1, 0)
