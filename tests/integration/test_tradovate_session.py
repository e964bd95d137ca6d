"""One WebSocket per login against the simulator: sync, reconnect, dead peers, shutdowns, renewal."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from jtrades.broker.base import BrokerEvent
from jtrades.broker.tradovate.auth import AccessToken, LoginBudget, TradovateAuth
from jtrades.broker.tradovate.lifecycle import State, backoff_delay
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import TradovateSettings
from jtrades.errors import BrokerAuthError, OutcomeUnknown, TransientBrokerError
from jtrades.sim.config import default_config
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


def tv(handle: SimHandle, **kw: Any) -> TradovateSettings:
    base: dict[str, Any] = {
        "reconnect_initial_s": 0.05,
        "reconnect_max_s": 0.5,
        "request_timeout_s": 3,
    }
    return sim_tradovate_defaults(handle, **{**base, **kw})


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


async def test_connect_authorize_and_sync(sim: SimHandle) -> None:
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        sim1 = sim.account_id("SIM1")
        assert broker.is_synced(sim1)
        assert broker.positions(sim1) == []
        assert broker.working_orders(sim1) == []
        assert broker.cash(sim1) is not None
        assert sim.stats()["websockets_open"] == 1
        assert await pool.broker("demo", LOGIN, PASSWORD) is broker
    finally:
        await pool.close()
    assert not broker.is_synced(sim1)
    with pytest.raises(TransientBrokerError):
        broker.positions(sim1)  # closed: unknown, not flat


async def test_bad_password_fails_the_session_without_retrying(sim: SimHandle) -> None:
    pool = TradovatePool(tv(sim))
    try:
        with pytest.raises(BrokerAuthError):
            await pool.broker("demo", LOGIN, "wrong")
        await asyncio.sleep(0.3)
        assert sim.stats()["access_token_requests"] == 1
        assert pool.sessions()[("demo", LOGIN)].state is State.FAILED
    finally:
        await pool.close()


async def test_reconnect_after_a_dropped_connection_resyncs(sim: SimHandle) -> None:
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        sub = broker.events()
        sim1 = sim.account_id("SIM1")
        sim.fault("drop", after=0)
        await sim.set_price("MNQ", 21500.25)  # any frame triggers the drop
        await until(lambda: session.connects == 2 and broker.is_synced(sim1), within_s=10)
        states = []
        async with asyncio.timeout(5):
            async for event in sub:
                if event.kind == "session" and event.account_id == sim1:
                    states.append(event.detail["state"])
                if states[-2:] == ["unsynced", "synced"]:
                    break
        assert sim.stats()["websockets_opened"] == 2
        assert sim.stats()["access_token_requests"] == 1  # the token is reused
        assert sim.stats()["by_endpoint"]["user/syncrequest"] == 2
    finally:
        await pool.close()


async def test_zombie_connection_is_detected_within_15_seconds(sim: SimHandle) -> None:
    pool = TradovatePool(tv(sim, dead_after_s=10))  # the production threshold
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        with capture_logs() as logs:
            sim.fault("zombie", login=LOGIN)
            await until(lambda: session.connects == 2, within_s=15)
        assert any(e["event"] == "tradovate.session.dead_peer" for e in logs)
        assert broker.is_synced(sim.account_id("SIM1"))
    finally:
        await pool.close()


async def test_a_send_stalled_by_a_peer_that_stops_reading_is_bounded_and_unknown(
    sim: SimHandle,
) -> None:
    """The simulator stops reading (its heartbeats go on, so the watchdog sees a live peer):
    30 MB of earlier requests fill the socket buffers, and an order behind them stalls in the
    write. Its own bound still ends it, as an unknown outcome (part of it may have left), by
    cutting the connection."""
    pool = TradovatePool(tv(sim, request_timeout_s=0.5, dead_after_s=60))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        sim.fault("deaf", login=LOGIN)
        filler = {"text": "x" * (1024 * 1024)}
        backlog = [
            asyncio.create_task(session.request("account/list", filler, within_s=30))
            for _ in range(30)
        ]
        await asyncio.sleep(0)  # written, or stalled in the write, before the order
        with capture_logs() as logs, pytest.raises(OutcomeUnknown, match="outcome unknown"):
            await asyncio.wait_for(session.request("order/placeorder", {"accountId": 1}), 10)
        cut = [e["reason"] for e in logs if e["event"] == "tradovate.session.dead_peer"]
        assert cut == ["order/placeorder not written within 0.5 s"]
        for task in backlog:  # the cut connection fails them all, none hangs
            with pytest.raises((OutcomeUnknown, TransientBrokerError)):
                await asyncio.wait_for(task, 10)
    finally:
        await pool.close()


async def test_unanswered_request_is_unknown_outcome_and_kills_the_connection(
    sim: SimHandle,
) -> None:
    pool = TradovatePool(tv(sim, request_timeout_s=0.5))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        sim.fault("delay", ms=1500)
        with pytest.raises(OutcomeUnknown, match="outcome unknown"):
            await broker.session.request("account/list")
        assert not broker.is_synced(sim.account_id("SIM1"))
        sim.fault("clear")
        await until(lambda: broker.session.connects == 2, within_s=10)
    finally:
        await pool.close()


async def test_requests_while_disconnected_are_transient_not_unknown(sim: SimHandle) -> None:
    pool = TradovatePool(tv(sim, reconnect_initial_s=5, reconnect_max_s=5))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        sim.fault("drop", after=0)
        await sim.set_price("MNQ", 21500.25)
        await until(lambda: broker.session.state is State.RECONNECTING, within_s=10)
        with pytest.raises(TransientBrokerError):
            await broker.session.request("account/list")
    finally:
        await pool.close()


async def test_a_third_session_closes_the_oldest_and_it_is_reported(sim: SimHandle) -> None:
    pool = TradovatePool(tv(sim, reconnect_max_s=30))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        sub = broker.events()
        async with aiohttp.ClientSession() as http:
            other = TradovateAuth(tv(sim), http, LoginBudget(5))
            with capture_logs() as logs:
                await other.request_token("demo", LOGIN, PASSWORD)  # second session: fine
                await other.request_token("demo", LOGIN, PASSWORD)  # third: ours is closed
                await until(lambda: session.shutdown_reason is not None, within_s=10)
        assert session.shutdown_reason == "ConnectionQuotaReached"
        assert "ConnectionQuotaReached" in (session.last_error or "")
        assert any(e["event"] == "tradovate.session.shutdown" for e in logs)
        seen: list[BrokerEvent] = []
        async with asyncio.timeout(5):
            async for event in sub:
                seen.append(event)
                if event.detail.get("state") == "shutdown":
                    break
        assert seen[-1].detail["reason"] == "ConnectionQuotaReached"
        assert not broker.is_synced(sim.account_id("SIM1"))
        # the revoked token is not kept: a reconnect will have to log in (after the long backoff)
        assert pool.tokens.peek("demo", LOGIN) is None
    finally:
        await pool.close()


async def test_token_is_renewed_before_expiry() -> None:
    cfg = default_config()
    cfg.token_lifetime_s = 12
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim, renew_margin_s=10))  # renew 2 s after each login/renewal
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            await until(lambda: sim.stats()["renewals"] >= 2, within_s=10)
            assert sim.stats()["access_token_requests"] == 1
            assert broker.session.connects == 1  # renewal does not touch the socket
        finally:
            await pool.close()


def test_backoff_is_jittered_exponential_and_capped() -> None:
    assert backoff_delay(0, 1, 60, 0.5) == 0
    assert backoff_delay(1, 1, 60, 0.0) == 0.5
    assert backoff_delay(1, 1, 60, 1.0) == 1.0
    assert backoff_delay(4, 1, 60, 1.0) == 8.0
    assert backoff_delay(40, 1, 60, 1.0) == 60.0
    assert backoff_delay(40, 1, 60, 0.0) == 30.0


async def test_a_token_without_user_id_syncs_by_account(sim: SimHandle) -> None:
    async with aiohttp.ClientSession() as http:
        got = await TradovateAuth(tv(sim), http).request_token("demo", LOGIN, PASSWORD)
    anonymous = AccessToken(got.token, got.expires_at, None, LOGIN)
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, None, oauth_token=anonymous)
        assert broker.is_synced(sim.account_id("SIM1"))
        assert broker.is_synced(sim.account_id("SIM2"))
        assert sim.stats()["access_token_requests"] == 1
    finally:
        await pool.close()
