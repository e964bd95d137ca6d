"""A session's renewal ends it only when a login was sent and refused: a 429, one 401 on an
OAuth login (no login can follow), a captcha on the renewal or a token run out kept failing
the authorized socket for good once that rule was first written (anything a renewal raised
ended it). A garbled Date header is ignored, never the token lost with it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import aiohttp
import orjson
from aiohttp import web

from jtrades.broker.tradovate.auth import TradovateAuth
from jtrades.broker.tradovate.lifecycle import State
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.broker.tradovate.token_clock import server_time
from jtrades.sim.config import default_config
from tests.integration.test_tradovate_auth import tv as auth_tv
from tests.integration.test_tradovate_session import tv
from tests.polling import until
from tests.simutil import LOGIN, PASSWORD, running_sim


async def _oauth_token(sim):  # what `accounts connect` hands the daemon: an ordinary bearer token
    async with aiohttp.ClientSession() as http:
        return await TradovateAuth(auth_tv(sim), http).request_token("demo", LOGIN, PASSWORD)


# --- a renewal that is only rate-limited ends an OAuth session for good ---------------------------


async def test_oauth_session_is_not_failed_for_good_by_rate_limited_renewals() -> None:
    """renewaccesstoken answers 429 (about 15 an hour are allowed) until the OAuth token runs
    out. Nothing was refused; the socket is authorized and keeps working past token expiry
    (TRADOVATE.md). Before 15ed6d9 the session kept trading; now the renewal loop calls
    ``_refused``: the socket is closed, the session FAILED, and the registry never reopens it
    (same credentials)."""
    cfg = default_config()
    cfg.token_lifetime_s = 12
    async with running_sim(cfg) as sim:
        token = await _oauth_token(sim)
        pool = TradovatePool(tv(sim, renew_margin_s=8))
        try:
            broker = await pool.broker("demo", LOGIN, None, oauth_token=token)
            assert broker.session.ready
            sim.fault("rate_limit", endpoint="auth/renewaccesstoken", count=10_000)
            await asyncio.sleep(max(0.0, token.seconds_left(datetime.now(UTC))) + 3)
            s = broker.session
            assert s.state is State.READY, (
                f"session {s.state} after 429s on renewal only: {s.last_error}"
            )
            await s.request("account/list")  # the authorized socket still trades
        finally:
            await pool.close()


async def test_oauth_session_survives_one_401_on_renewal() -> None:
    """One renewaccesstoken answered 401 (the sim's one-shot fault); the token is good and the
    socket authorized. Before 15ed6d9 the renewal was tried again and succeeded; now the token
    is deleted (memory and broker_tokens) and the session failed for good at once."""
    cfg = default_config()
    cfg.token_lifetime_s = 12
    async with running_sim(cfg) as sim:
        token = await _oauth_token(sim)
        pool = TradovatePool(tv(sim, renew_margin_s=8))
        try:
            broker = await pool.broker("demo", LOGIN, None, oauth_token=token)
            assert broker.session.ready
            sim.fault("unauthorized")  # the next authenticated REST request: the renewal
            await asyncio.sleep(max(0.0, token.seconds_left(datetime.now(UTC))) + 3)
            s = broker.session
            assert s.state is State.READY, f"session {s.state} after one 401: {s.last_error}"
            assert pool.tokens.peek("demo", LOGIN) is not None
        finally:
            await pool.close()


async def test_password_session_with_captcha_on_renewal_keeps_its_socket() -> None:
    """Tradovate answers the renewal with a captcha ticket; nothing more is sent (right), and
    when the token runs out the authorized socket could go on trading. Before 15ed6d9 it did;
    now the session is failed (socket closed) and never reopened with the same password."""
    cfg = default_config()
    cfg.token_lifetime_s = 12
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim, renew_margin_s=8))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            token = pool.tokens.peek("demo", LOGIN)
            assert token is not None
            sim.fault("renew_penalty", captcha=True, p_time=3600)
            logins = sim.stats()["access_token_requests"]
            await asyncio.sleep(max(0.0, token.seconds_left(datetime.now(UTC))) + 3)
            assert sim.stats()["access_token_requests"] == logins  # no login: right
            s = broker.session
            assert s.state is State.READY, (
                f"session {s.state} (captcha, nothing sent): {s.last_error}"
            )
            await s.request("account/list")
        finally:
            await pool.close()


# --- a garbled Date header ---------------------------------------------------------------------

GARBLED = "Mon, 02 Mar 2026 14:00:00 +99999999999999999"


def test_a_garbled_date_is_ignored() -> None:
    assert server_time(GARBLED) is None


async def test_a_login_answered_with_a_garbled_date_still_yields_its_token() -> None:
    """A Date the parser overflows on (OverflowError, not ValueError): the login went through at
    Tradovate (a session opened, one of ~5 logins an hour spent) and the token is thrown away
    with an exception nobody handles; each reconnect logs in again."""

    async def login(_: web.Request) -> web.Response:
        body = {
            "accessToken": "tok-" + "x" * 40,
            "expirationTime": (datetime.now(UTC) + timedelta(minutes=80)).isoformat(),
            "userId": 7,
            "name": LOGIN,
        }
        return web.Response(
            body=orjson.dumps(body), content_type="application/json", headers={"Date": GARBLED}
        )

    app = web.Application()
    app.router.add_post("/v1/auth/accesstokenrequest", login)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:

        class H:
            rest_url = f"http://127.0.0.1:{port}/v1"
            ws_url = f"ws://127.0.0.1:{port}/v1/websocket"

        async with aiohttp.ClientSession() as http:
            auth = TradovateAuth(auth_tv(H), http)  # type: ignore[arg-type]
            try:
                token = await auth.request_token("demo", LOGIN, PASSWORD)
            except Exception as exc:
                raise AssertionError(f"login lost to the Date header: {exc!r}") from None
            assert token.seconds_left(datetime.now(UTC)) > 60 * 60
    finally:
        await runner.cleanup()


# --- sanity of the FAILED path (expected to pass) -----------------------------------------------


async def test_refused_renewal_login_closes_the_socket() -> None:
    cfg = default_config()
    cfg.token_lifetime_s = 12
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim, renew_margin_s=8))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            first = pool.tokens.peek("demo", LOGIN)
            assert first is not None
            sim.world.auth.login(LOGIN).password = "changed"  # type: ignore[union-attr]
            sim.fault("unauthorized", token=first.token)
            for _ in range(100):
                if broker.session.state is State.FAILED:
                    break
                await asyncio.sleep(0.1)
            assert broker.session.state is State.FAILED
            await asyncio.sleep(1.5)
            open_ = [s for s in sim.world.sockets if not s.ws.closed]
            assert not open_, f"{len(open_)} socket(s) still open"
        finally:
            await pool.close()


async def test_a_login_answered_423_in_renewal_fails_the_session_without_another_login() -> None:
    """The renewal is refused, and the login it falls back to is answered HTTP 423 (the next
    failure locks the login: the old password was tried before). That login is refused for
    good like a wrong password's 200: taken for a passing auth error, it was sent again a few
    seconds later, and that one set Tradovate's captcha lock."""
    cfg = default_config()
    cfg.token_lifetime_s = 14
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim, renew_margin_s=10, logins_per_hour=5))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            first = pool.tokens.peek("demo", LOGIN)
            assert first is not None
            auth = sim.world.auth
            auth.login(LOGIN).password = "changed"  # type: ignore[union-attr]
            auth.failures[LOGIN] = cfg.failures_before_captcha - 2
            logins = len(auth.token_request_log)
            sim.fault("unauthorized", token=first.token)  # the renewal is refused
            await until(lambda: broker.session.state is State.FAILED, within_s=15)
            await asyncio.sleep(3)  # the renewal loop's retry (2.5 s here) would have come
            assert len(auth.token_request_log) - logins == 1
            assert "423" in str(broker.session.last_error)
            blocked = auth.blocked.get(LOGIN)
            assert not (blocked and blocked[1]), "a retry walked into the captcha lock"
        finally:
            await pool.close()
