"""A 429 on a request holds the session, against the simulator over real sockets.

TRADOVATE.md: "a 429 or a penalty ticket means back off; repeated offences lengthen the lock up to
an hour". The session backed off from nothing: the read that met the 429 was retried 0.25 s and
0.45 s later, and the next order went out at once, each one more offence. Now a 429 holds every
request of the session (``penalty_hold``): refused before sending, as "not sent", for a wait the
answer asks for, else 10 s doubled on each 429 in a row, back to 10 s after an answered request.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.tradovate.client import READ_RETRY, TradovateBroker
from jtrades.broker.tradovate.outcomes import RateLimited
from jtrades.broker.tradovate.penalty_hold import RATE_LIMIT_FIRST_S
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.errors import OutcomeUnknown, TransientBrokerError
from jtrades.sim.faults import Refusal
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        await handle.set_price("MNQ", 21500)
        yield handle


@pytest.fixture
async def broker(sim: SimHandle) -> AsyncIterator[TradovateBroker]:
    pool = TradovatePool(sim_tradovate_defaults(sim, request_timeout_s=5))
    try:
        yield await pool.broker("demo", LOGIN, PASSWORD)
    finally:
        await pool.close()


def _sent(sim: SimHandle) -> dict[str, int]:
    return dict(sim.stats()["by_endpoint"])


def _since(sim: SimHandle, before: dict[str, int]) -> dict[str, int]:
    now = _sent(sim)
    return {k: n - before.get(k, 0) for k, n in now.items() if n != before.get(k, 0)}


def _order(sim: SimHandle, cl: str) -> OrderRequest:
    account = SubAccount(sim.account_id("SIM1"), "SIM1")
    return OrderRequest(
        account, sim.contract("MNQ").name, Side.BUY, 1, OrderType.MARKET, cl_ord_id=cl
    )


def _answer_429(sim: SimHandle, endpoint: str, asked_s: float | None = None) -> None:
    """The next request to ``endpoint`` answers 429, with a ``p-time`` when ``asked_s``."""
    data = None if asked_s is None else {"p-time": asked_s}
    sim.faults.refusals.append(Refusal(endpoint, 429, data))


async def test_a_429_holds_every_request_of_the_session(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    """Tradovate answers every request 429: the read goes out once and fails at once, the order
    after it is refused here as not sent (a ``TransientBrokerError``: the dispatcher records it
    ``expired``, never ``unknown``), and nothing more leaves while the hold lasts. The socket
    stays READY and the view synced: the hold is on requests, not on the connection."""
    name = sim.contract("MNQ").name
    before = _sent(sim)
    sim.fault("rate_limit", count=100)
    t0 = time.monotonic()
    with pytest.raises(RateLimited, match="429"):
        await broker.find_contract(name)
    assert time.monotonic() - t0 < 1.0  # not retried at the policy's pace
    held = broker.session.held()
    assert held is not None
    assert held.kind == "rate_limit"
    assert RATE_LIMIT_FIRST_S - 1 < held.left_s <= RATE_LIMIT_FIRST_S

    with pytest.raises(RateLimited, match="not sent") as refused:
        await broker.place_order(_order(sim, "after-429"))
    assert isinstance(refused.value, TransientBrokerError)
    assert not isinstance(refused.value, OutcomeUnknown)
    with pytest.raises(RateLimited, match="not sent"):
        await broker.find_contract(name)
    assert _since(sim, before) == {"contract/find": 1}
    assert sim.positions("SIM1") == {}
    assert broker.session.ready
    assert broker.is_synced(sim.account_id("SIM1"))


async def test_a_read_waits_out_a_short_hold_instead_of_hammering(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    """A 429 asking for 1 s (a ``p-time`` in its answer; honoured as asked): the read is sent
    again once the second has passed, not 0.2 s later, and then succeeds."""
    name = sim.contract("MNQ").name
    assert READ_RETRY.total_s > 1.0
    before = _sent(sim)
    _answer_429(sim, "contract/find", asked_s=1.0)
    t0 = time.monotonic()
    contract = await broker.find_contract(name)
    assert time.monotonic() - t0 >= 1.0
    assert contract.contract_id == sim.contract("MNQ").id
    assert _since(sim, before) == {"contract/find": 2, "product/find": 1}
    assert broker.session.held() is None


async def _met_429(sim: SimHandle, broker: TradovateBroker, asked_s: float | None) -> float:
    """One request answered 429 (asking for ``asked_s``, waited out): the hold it earned."""
    _answer_429(sim, "cashbalance/getcashbalancesnapshot", asked_s)
    with pytest.raises(RateLimited):
        await _cash(sim, broker)
    held = broker.session.held()
    assert held is not None
    assert held.kind == "rate_limit"
    if asked_s is not None:
        await asyncio.sleep(asked_s + 0.05)
        assert broker.session.held() is None
    return held.left_s


async def _cash(sim: SimHandle, broker: TradovateBroker) -> object:
    body = {"accountId": sim.account_id("SIM1")}
    return await broker.session.request("cashBalance/getcashbalancesnapshot", body)


async def test_the_hold_grows_on_429s_in_a_row(sim: SimHandle, broker: TradovateBroker) -> None:
    """Each 429 in a row doubles the hold it earns (10 s, 20 s, 40 s …). Two short asked-for
    waits first (honoured as asked, each still a 429 in the row) keep the test quick."""
    await _met_429(sim, broker, 0.2)
    await _met_429(sim, broker, 0.2)
    third = await _met_429(sim, broker, None)
    assert 4 * RATE_LIMIT_FIRST_S - 1 < third <= 4 * RATE_LIMIT_FIRST_S
    before = _sent(sim)
    with pytest.raises(RateLimited, match="not sent"):
        await _cash(sim, broker)
    assert _since(sim, before) == {}


async def test_an_answered_request_starts_the_backoff_over(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    """A request answered between two 429s means the lock was gone: the next 429 earns the
    first hold again, not the third."""
    await _met_429(sim, broker, 0.2)
    await _met_429(sim, broker, 0.2)
    await _cash(sim, broker)
    after_answer = await _met_429(sim, broker, None)
    assert RATE_LIMIT_FIRST_S - 1 < after_answer <= RATE_LIMIT_FIRST_S


async def test_429s_of_requests_in_flight_together_are_one_offence(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    """Three reads sent together, all answered 429: one hold of the first length, not three
    strikes (which would have held the session eight times as long)."""
    account = sim.account_id("SIM1")
    sim.fault("rate_limit", count=3)
    results = await asyncio.gather(
        *(
            broker.session.request("cashBalance/getcashbalancesnapshot", {"accountId": account})
            for _ in range(3)
        ),
        return_exceptions=True,
    )
    assert all(isinstance(r, RateLimited) for r in results), results
    held = broker.session.held()
    assert held is not None
    assert held.left_s <= RATE_LIMIT_FIRST_S
