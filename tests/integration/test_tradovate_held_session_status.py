"""A session held by a penalty ticket or a 429 is not "up", in the daemon's heartbeat.

A held session refuses every request (a captcha: for an hour) while its socket stays READY, and
``BrokerRegistry.session_up`` read only READY: `jtrades status` showed it up and
`status --check` passed while none of its sub-accounts could trade. The heartbeat's entry now says
it is down, what holds it and until when (``held``, ``held_reason``, ``held_until``), and comes
back up when the hold is over. Simulator over real sockets; the registry and the heartbeat's
``session_detail`` as the daemon uses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.cli.control import _down_sessions
from jtrades.config import Settings
from jtrades.errors import BrokerPenalty
from jtrades.session_health import SESSION_DOWN_ALERT_S, SessionOutages, session_detail
from jtrades.sim.faults import Refusal
from tests.sim_worlds import sim_tradovate
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
async def held(
    sim: SimHandle, settings: Settings
) -> AsyncIterator[tuple[BrokerRegistry, TradovateBroker]]:
    pool = TradovatePool(sim_tradovate(settings, sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        registry = BrokerRegistry(None, settings)
        registry.attach(7, "demo", broker)
        yield registry, broker
    finally:
        await pool.close()


def _entry(registry: BrokerRegistry) -> dict[str, object]:
    detail = session_detail(registry)
    assert detail["failed_sessions"] == []
    (entry,) = detail["sessions"]
    return entry


def _until(entry: dict[str, object]) -> float:
    """Seconds from now to the entry's ``held_until``."""
    until = datetime.fromisoformat(str(entry["held_until"]))
    return (until - datetime.now(UTC)).total_seconds()


async def test_a_session_held_by_a_penalty_ticket_is_down_with_why_and_until_when(
    sim: SimHandle, held: tuple[BrokerRegistry, TradovateBroker]
) -> None:
    registry, broker = held
    assert _entry(registry) == {"account_id": 7, "env": "demo", "up": True}
    sim.fault("request_penalty", endpoint="account/list", p_time=30)
    with pytest.raises(BrokerPenalty):
        await broker.session.request("account/list")
    assert broker.session.ready  # READY all the same: only the hold says it cannot trade
    entry = _entry(registry)
    assert entry["up"] is False
    assert registry.session_up(broker) is False
    assert entry["held"] == "penalty"
    assert "penalty" in str(entry["held_reason"])
    assert 25 < _until(entry) <= 31

    # the daemon's heartbeat: down past SESSION_DOWN_ALERT_S, `status --check` fails for it
    outages = SessionOutages()
    now = 1000.0
    outages.mark([entry], now)
    later = _entry(registry)
    outages.mark([later], now + SESSION_DOWN_ALERT_S + 1)
    assert _down_sessions([later]) == [later]


async def test_a_captcha_hold_is_down_for_its_hour(
    sim: SimHandle, held: tuple[BrokerRegistry, TradovateBroker]
) -> None:
    registry, broker = held
    sim.fault("request_penalty", endpoint="account/list", captcha=True)
    with pytest.raises(BrokerPenalty):
        await broker.session.request("account/list")
    entry = _entry(registry)
    assert (entry["up"], entry["held"]) == (False, "captcha")
    assert "captcha" in str(entry["held_reason"])
    assert 3590 < _until(entry) <= 3601
    assert datetime.fromisoformat(str(entry["held_until"])).utcoffset() == timedelta(0)


async def test_a_429_hold_is_down_until_it_ends(
    sim: SimHandle, held: tuple[BrokerRegistry, TradovateBroker]
) -> None:
    """Any hold counts, the shortest 429 hold included: nothing is sent while it lasts (the
    heartbeat's outage judgement lets a short one pass: ``SESSION_DOWN_ALERT_S``)."""
    registry, broker = held
    sim.faults.refusals.append(Refusal("account/list", 429, {"p-time": 0.5}))
    with pytest.raises(BrokerPenalty, match="429"):
        await broker.session.request("account/list")
    entry = _entry(registry)
    assert (entry["up"], entry["held"]) == (False, "rate_limit")
    assert "429" in str(entry["held_reason"])
    await asyncio.sleep(0.6)
    assert _entry(registry) == {"account_id": 7, "env": "demo", "up": True}
