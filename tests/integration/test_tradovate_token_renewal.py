"""Token renewal and penalty tickets through a live session (simulator, real sockets).

Tradovate allows few logins per hour per login (DESIGN.md §5 rule 7): a penalised renewal must
not turn into a password login, a login penalised twice must wait ``p-time`` and send its ticket,
and renewal must outlive whatever goes wrong in it — a renewal loop that ended silently left the
session to die at ``expirationTime``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.sim.config import default_config
from tests.integration.test_tradovate_session import tv
from tests.polling import until
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


async def test_a_penalised_renewal_waits_p_time_and_never_logs_in() -> None:
    cfg = default_config()
    cfg.token_lifetime_s = 20
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim, renew_margin_s=18))  # renew 2 s after the login
        try:
            sim.fault("renew_penalty", p_time=2)
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            first = pool.tokens.peek("demo", LOGIN)
            assert first is not None
            with capture_logs() as logs:
                await until(lambda: sim.stats()["renewals"] >= 1, within_s=15)
            renewals = sim.world.auth.renewal_log
            assert [ticket for _, ticket in renewals] == [False, True]
            assert renewals[1][0] - renewals[0][0] >= 1.9  # p-time waited out
            assert sim.stats()["access_token_requests"] == 1  # never a login for it
            assert broker.session.connects == 1
            renewed = pool.tokens.peek("demo", LOGIN)
            assert renewed is not None
            assert renewed.token != first.token
            penalised = [e for e in logs if e["event"] == "tradovate.token.renew_penalised"]
            assert penalised
            assert penalised[0]["wait_s"] == 2
            assert all(t not in repr(logs) for t in sim.world.auth.tokens)
        finally:
            await pool.close()


async def test_a_login_penalised_twice_waits_p_time_and_sends_the_ticket(
    sim: SimHandle,
) -> None:
    sim.fault("penalty", p_time=1, count=2)
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD, wait_s=15)
        assert broker.session.ready
        log = sim.world.auth.token_request_log
        assert [ticket for _, ticket in log] == [False, True, True]
        # at most two login requests within any p-time: each ticket is waited out
        assert log[1][0] - log[0][0] >= 0.9
        assert log[2][0] - log[1][0] >= 0.9
    finally:
        await pool.close()


async def test_an_unexpected_error_in_renewal_is_logged_and_renewal_goes_on() -> None:
    cfg = default_config()
    cfg.token_lifetime_s = 12
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim, renew_margin_s=8))  # renew 4 s after each login/renewal
        try:
            sim.fault("malformed_renewal")
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            first = pool.tokens.peek("demo", LOGIN)
            assert first is not None
            with capture_logs() as logs:
                # the first renewal cannot be read; a later one must still happen
                await until(lambda: sim.stats()["renewals"] >= 2, within_s=15)
                await until(lambda: pool.tokens.peek("demo", LOGIN) is not first, within_s=5)
            failed = [e for e in logs if e["event"] == "tradovate.token.renew_failed"]
            assert failed
            assert failed[0]["log_level"] == "error"
            assert failed[0]["error"] == "ValueError"
            assert sim.stats()["access_token_requests"] == 1
            assert broker.session.connects == 1
            assert all(t not in repr(logs) for t in sim.world.auth.tokens)
        finally:
            await pool.close()


async def test_a_reconnect_uses_the_valid_token_while_renewal_is_rate_limited() -> None:
    """Inside the renewal margin a reconnect insisted on renewing first: while
    renewaccesstoken answered 429 (about 15 renewals an hour are allowed) the session stayed
    down, up to the whole margin (15 minutes), with a token still good for the socket, and
    each try asked the rate-limited endpoint again."""
    cfg = default_config()
    cfg.token_lifetime_s = 120
    async with running_sim(cfg) as sim:
        # margin 115 s of 120 s: the token enters its renewal window 5 s after the login
        settings = tv(sim, renew_margin_s=115, rate_limit_cooldown_s=0)
        sim.fault("rate_limit", endpoint="auth/renewaccesstoken", count=1000)
        pool = TradovatePool(settings)
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            token = pool.tokens.peek("demo", LOGIN)
            assert token is not None
            await asyncio.sleep(6)
            sim.fault("drop", after=0)  # a network blip
            await until(lambda: broker.session.connects >= 2, within_s=8)
            assert broker.session.ready
            assert pool.tokens.peek("demo", LOGIN) is token
            assert sim.stats()["access_token_requests"] == 1  # no login for it either
            # the renewal is left for later, not asked again at every reconnect or second
            assert sim.stats()["by_endpoint"].get("auth/renewaccesstoken", 0) <= 2
        finally:
            await pool.close()
