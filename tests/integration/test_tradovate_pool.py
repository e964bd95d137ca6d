"""The session pool: one WebSocket per login however many accounts, shared tokens, paced connects."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from jtrades.broker.tradovate.accounts import list_sub_accounts
from jtrades.broker.tradovate.pool import ConnectGate, TradovatePool
from jtrades.config import Settings, TradovateSettings
from jtrades.errors import BrokerAuthError
from jtrades.security import SecretBox
from jtrades.sim.config import SimConfig
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, account_naming, running_sim


def tv(handle: SimHandle, **kw: Any) -> TradovateSettings:
    return sim_tradovate_defaults(
        handle, **{"connect_stagger_s": 0.01, "request_timeout_s": 5, **kw}
    )


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


async def test_100_accounts_on_10_logins_use_exactly_10_websockets() -> None:
    cfg = SimConfig()
    logins = [cfg.add_login(f"trader{i}", f"pw{i}", account_count=10) for i in range(10)]
    async with running_sim(cfg) as sim:
        pool = TradovatePool(tv(sim))
        try:
            # every sub-account asks for its broker, all at once
            wanted = [(lg, acct) for lg in logins for acct in lg.accounts]
            brokers = await asyncio.gather(
                *(pool.broker("demo", lg.name, lg.password) for lg, _ in wanted)
            )
            assert len(wanted) == 100
            for (lg, acct), broker in zip(wanted, brokers, strict=True):
                assert broker.is_synced(acct.id)
                assert broker.positions(acct.id) == []
                assert broker is brokers[logins.index(lg) * 10]  # one broker per login
            stats = sim.stats()
            assert stats["websockets_opened"] == 10
            assert stats["websockets_open"] == 10
            assert stats["access_token_requests"] == 10
            assert stats["by_endpoint"]["user/syncrequest"] == 10
            assert len(pool.sessions()) == 10
        finally:
            await pool.close()
        await asyncio.sleep(0.1)
        assert sim.stats()["websockets_open"] == 0


async def test_a_restart_reuses_the_stored_token(sim: SimHandle, pool: asyncpg.Pool) -> None:
    await account_naming(pool, LOGIN)
    key = SecretBox([os.urandom(32)], "test")
    first = TradovatePool(tv(sim), pool, key)
    try:
        await first.broker("demo", LOGIN, PASSWORD)
    finally:
        await first.close()
    second = TradovatePool(tv(sim), pool, key)  # a new process: new pool, same database
    try:
        broker = await second.broker("demo", LOGIN, PASSWORD)
        assert broker.is_synced(sim.account_id("SIM1"))
    finally:
        await second.close()
    stats = sim.stats()
    assert stats["access_token_requests"] == 1
    assert stats["websockets_opened"] == 2


async def test_connects_are_staggered_and_a_429_cools_everyone_down() -> None:
    gate = ConnectGate(stagger_s=0.05, cooldown_s=0.2)
    start = time.monotonic()
    await asyncio.gather(*(gate() for _ in range(4)))
    assert time.monotonic() - start >= 0.15  # three waits of the stagger, at least
    gate.rate_limited()
    start = time.monotonic()
    await gate()
    assert time.monotonic() - start >= 0.15


async def test_a_429_heard_while_waiting_out_the_stagger_extends_the_wait() -> None:
    gate = ConnectGate(stagger_s=0.1, cooldown_s=0.5)
    await gate()
    start = time.monotonic()
    waiting = asyncio.ensure_future(gate())  # due 0.1 s from now
    await asyncio.sleep(0.02)
    gate.rate_limited()
    await waiting
    assert time.monotonic() - start >= 0.45  # not 0.1: the cooldown holds it too


async def test_a_429_on_the_login_itself_cools_every_connect_down() -> None:
    """The pool pauses every connect after a 429 "from anywhere"; one on the login request
    (``auth/accesstokenrequest``) did not, and the next logins went out 0.3 s apart."""
    async with running_sim() as handle:
        for i in range(2):
            handle.add_login(f"u{i}", "pw", [f"U{i}A"])
        pool = TradovatePool(
            tv(handle, rate_limit_cooldown_s=1.0, connect_stagger_s=0.05,
               reconnect_initial_s=0.05, reconnect_max_s=0.2)
        )  # fmt: skip
        try:
            handle.fault("rate_limit", count=1)  # the first login is answered 429
            start = time.monotonic()
            with pytest.raises(Exception, match="429"):
                await pool.broker("demo", LOGIN, PASSWORD, wait_s=0.5)
            await pool.broker("demo", "u0", "pw")
            assert time.monotonic() - start >= 0.9
        finally:
            await pool.close()


async def test_list_sub_accounts_logs_in_through_the_token_cache(
    sim: SimHandle, pool: asyncpg.Pool
) -> None:
    await account_naming(pool, LOGIN)
    key = SecretBox([os.urandom(32)], "test")
    settings = Settings(tradovate=tv(sim))
    subs = await list_sub_accounts(settings, "demo", LOGIN, PASSWORD, db=pool, cipher=key)
    assert sorted(s.name for s in subs) == ["SIM1", "SIM2"]
    assert {s.account_id for s in subs} == {sim.account_id("SIM1"), sim.account_id("SIM2")}
    again = await list_sub_accounts(settings, "demo", LOGIN, PASSWORD, db=pool, cipher=key)
    assert again == subs
    assert sim.stats()["access_token_requests"] == 1  # the second call reused the stored token


async def test_a_refused_login_is_not_retried_until_the_password_changes(sim: SimHandle) -> None:
    pool = TradovatePool(tv(sim))
    try:
        for _ in range(3):
            with pytest.raises(BrokerAuthError):
                await pool.broker("demo", LOGIN, "wrong")
        assert sim.stats()["access_token_requests"] == 1
        broker = await pool.broker("demo", LOGIN, PASSWORD)  # fixed credentials: a new session
        assert broker.is_synced(sim.account_id("SIM1"))
        assert sim.stats()["access_token_requests"] == 2
    finally:
        await pool.close()


async def test_two_refused_passwords_of_one_login_are_each_tried_once(sim: SimHandle) -> None:
    """Two rows name one login with two wrong passwords (one left with the old password after
    a change at Tradovate, another typed wrong), and the registry hands both back on every
    pass. Each is refused once: when only the last refused password was kept, every pass
    logged in once per row, piling failed logins into a penalty, a 423 and the captcha lock."""
    pool = TradovatePool(tv(sim))
    try:
        for _pass in range(3):
            for wrong in ("old-password", "mistyped"):
                with pytest.raises(BrokerAuthError):
                    await pool.broker("demo", LOGIN, wrong)
        assert sim.stats()["access_token_requests"] == 2
        broker = await pool.broker("demo", LOGIN, PASSWORD)  # the right one still connects
        assert broker.is_synced(sim.account_id("SIM1"))
        assert sim.stats()["access_token_requests"] == 3
    finally:
        await pool.close()
