"""Penalty tickets and 429s on the trading WebSocket, against the simulator (fault
``request_penalty`` / ``rate_limit`` with an endpoint).

TRADOVATE.md: over the WebSocket a penalty arrives inside a normal answer,
``{"s":200,"i":n,"d":{"p-ticket":…,"p-time":…}}``; "a 429 or a penalty ticket means back off;
repeated offences lengthen the lock", and with ``p-captcha`` retrying only extends the lock. A
session that read the ticket as success, or retried within ``p-time``, made the lock longer.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from structlog.testing import capture_logs

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.lifecycle import State
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.errors import BrokerAuthError, BrokerPenalty, TransientBrokerError
from tests.integration.test_tradovate_session import tv
from tests.polling import until
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


def sent(sim: SimHandle, endpoint: str) -> int:
    count: int = sim.stats()["by_endpoint"].get(endpoint, 0)
    return count


@pytest.fixture
async def ready(sim: SimHandle) -> AsyncIterator[TradovateBroker]:
    pool = TradovatePool(tv(sim, rate_limit_cooldown_s=0.1))
    try:
        yield await pool.broker("demo", LOGIN, PASSWORD)
    finally:
        await pool.close()


async def test_a_penalised_authorize_is_not_success_and_waits_its_p_time(sim: SimHandle) -> None:
    """The ticket was read as "authorized": the session synced on an unauthorized socket, got
    refused, and presented its token again after the sub-second reconnect backoff."""
    pool = TradovatePool(tv(sim, rate_limit_cooldown_s=0.1))
    try:
        sim.fault("request_penalty", endpoint="authorize", p_time=2)
        with pytest.raises(TransientBrokerError):
            await pool.broker("demo", LOGIN, PASSWORD, wait_s=1.2)
        assert (sent(sim, "authorize"), sent(sim, "user/syncrequest")) == (1, 0)
        session = pool.sessions()[("demo", LOGIN)]
        assert "penalty" in (session.last_error or "")
        await session.wait_ready(5)  # after p-time, one authorize more
        assert sent(sim, "authorize") == 2
    finally:
        await pool.close()


async def test_a_captcha_on_authorize_fails_the_session_without_retrying(sim: SimHandle) -> None:
    """As for a login (auth.py): a captcha wants a human; each try lengthens the lock."""
    pool = TradovatePool(tv(sim, rate_limit_cooldown_s=0.1))
    try:
        sim.fault("request_penalty", endpoint="authorize", p_time=1, captcha=True, count=5)
        with pytest.raises(BrokerAuthError, match="captcha"):
            await pool.broker("demo", LOGIN, PASSWORD, wait_s=3)
        session = pool.sessions()[("demo", LOGIN)]
        assert session.state is State.FAILED
        assert "captcha" in (session.last_error or "")
        await asyncio.sleep(1.5)
        assert sent(sim, "authorize") == 1
    finally:
        await pool.close()


async def test_a_429_on_authorize_cools_every_connect_down(sim: SimHandle) -> None:
    """A 429 on the sync paused every connect of the pool; one on authorize was a plain
    reconnect after the sub-second backoff."""
    pool = TradovatePool(tv(sim, rate_limit_cooldown_s=2))
    try:
        sim.fault("rate_limit", endpoint="authorize", count=1)
        with pytest.raises(TransientBrokerError):
            await pool.broker("demo", LOGIN, PASSWORD, wait_s=1.2)
        assert sent(sim, "authorize") == 1
        await pool.sessions()[("demo", LOGIN)].wait_ready(5)
        assert sent(sim, "authorize") == 2
    finally:
        await pool.close()


async def test_a_penalised_read_is_not_retried_and_holds_the_session(
    sim: SimHandle, ready: TradovateBroker
) -> None:
    """READ_RETRY sent the read again 0.2 s later, well within p-time."""
    sim.fault("request_penalty", endpoint="contract/find", p_time=2)
    with pytest.raises(BrokerPenalty):
        await ready.find_contract("MNQZ6")
    assert sent(sim, "contract/find") == 1
    with pytest.raises(BrokerPenalty, match="not sent"):  # refused here: nothing goes out
        await ready.find_contract("MNQZ6")
    assert sent(sim, "contract/find") == 1
    await asyncio.sleep(2.1)
    contract = await ready.find_contract(sim.contract("MNQ").name)
    assert contract.contract_id == sim.contract("MNQ").id
    assert sent(sim, "contract/find") == 2


async def test_after_a_penalised_order_the_next_is_not_sent_before_p_time(
    sim: SimHandle, ready: TradovateBroker
) -> None:
    """Three sub-accounts' orders of one signal: the two after the penalty went out at once.
    They are refused before sending (a ``TransientBrokerError``, which the dispatcher records
    as ``expired``, never ``unknown``); heartbeats go on, the session stays READY."""
    acct = SubAccount(sim.account_id("SIM1"), "SIM1")
    symbol = sim.contract("MNQ").name
    sim.fault("request_penalty", endpoint="order/placeorder", p_time=2)
    for i in range(3):
        with pytest.raises(BrokerPenalty):
            await ready.place_order(OrderRequest(acct, symbol, Side.BUY, 1, cl_ord_id=f"c{i}"))
    assert sent(sim, "order/placeorder") == 1
    assert sim.state()["accounts"]["SIM1"]["positions"] == []
    await asyncio.sleep(2.1)
    assert ready.session.ready  # the hold is on requests, not on the connection
    await ready.place_order(OrderRequest(acct, symbol, Side.BUY, 1, cl_ord_id="c3"))
    assert sent(sim, "order/placeorder") == 2


async def test_a_captcha_on_a_request_holds_the_session_about_an_hour(
    sim: SimHandle, ready: TradovateBroker
) -> None:
    """A captcha ticket never clears by waiting p-time (TRADOVATE.md: retrying only extends the
    lock, about an hour): it was waited out like a plain ticket."""
    sim.fault("request_penalty", endpoint="contract/find", p_time=1, captcha=True)
    with capture_logs() as logs, pytest.raises(BrokerPenalty):
        await ready.find_contract("MNQZ6")
    assert any(e["event"] == "tradovate.session.penalty" and e["captcha"] for e in logs)
    await asyncio.sleep(1.2)
    with pytest.raises(BrokerPenalty) as refused:
        await ready.find_contract("MNQZ6")
    assert refused.value.wait_s > 3000
    assert sent(sim, "contract/find") == 1


async def test_a_penalised_request_holds_the_reconnect_too(sim: SimHandle) -> None:
    """The penalty is the login's: a connection lost during the hold does not authorize and
    sync again before it has passed."""
    pool = TradovatePool(tv(sim, rate_limit_cooldown_s=0.1))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        sim.fault("request_penalty", endpoint="contract/find", p_time=2)
        with contextlib.suppress(BrokerPenalty):
            await broker.find_contract("MNQZ6")
        sim.fault("drop", after=0)
        await asyncio.sleep(1.2)
        assert sent(sim, "authorize") == 1
        await until(lambda: broker.session.ready, within_s=5)
        assert sent(sim, "authorize") == 2
    finally:
        await pool.close()
