"""Accounts another dispatch holds are planned once their locks come, after the signal's other
accounts went: a dispatch took every account's lock before planning any, so one follower's
silent broker (its sends waiting out the request timeout) held every other account of the
signal. Real Postgres; the paper broker behind the dispatch tests' wrapper."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import pytest

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.db import _init_connection
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.planning import AccountPlan, AccountState, PlannedOrder, PositionAction
from tests.integration.test_dispatch import (
    FaultyBroker,
    entry_with_stop,
    intents,
    items,
    link,
    setup,
)
from tests.integration.test_engine import store_signal
from tests.polling import until

__all__ = ["setup"]  # the fixture, used by name


def _waited_on(lock: asyncio.Lock) -> bool:
    return bool(getattr(lock, "_waiters", None))


def _net(paper: Any, acct: int) -> int:
    return sum(p.net_pos for p in paper.positions(acct))


async def test_a_held_account_does_not_hold_the_others(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    sid, at = await _signal(pool, setup)
    d = Dispatcher(pool, ttl_s=30)
    seen: list[int] = []
    held = d.lock_for(link(subs[0], 1))  # an earlier alert's settle, a protection
    await held.acquire()
    plan = entry_with_stop(Side.BUY, 1, "21490")
    run = asyncio.create_task(d.dispatch(sid, at, items(paper, contract, subs, plan, seen)))
    await until(lambda: _net(paper, 2) == 1 and _net(paper, 3) == 1, what="the free accounts")
    assert _net(paper, 1) == 0
    assert not run.done()
    # rule 1: the held account's intents are written once it is planned, not before
    assert {r["sub_account_id"] for r in await intents(pool)} == set(subs[1:])

    held.release()
    res = await asyncio.wait_for(run, 30)
    assert res.orders == 6
    assert _net(paper, 1) == 1
    rows = await intents(pool)
    assert [r["cl_ord_id"] for r in rows if r["sub_account_id"] == subs[0]] == [
        f"jt-{sid}-{subs[0]}-1",
        f"jt-{sid}-{subs[0]}-2",
    ]
    assert {r["state"] for r in rows} == {"sent"}
    assert sorted(seen) == [0, 0, 0]


async def test_a_held_account_plans_from_what_the_holder_left(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    """Rule 3 across the wait: the second signal plans the held account once the first one's
    orders are in, from the position they made."""
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    broker = FaultyBroker(paper, delay_s=0.05)
    d = Dispatcher(pool, ttl_s=30)
    seen: list[int] = []
    plan = entry_with_stop(Side.BUY, 1, "21490")
    (s1, a1), (s2, a2) = await _signal(pool, setup), await _signal(pool, setup)
    first = asyncio.create_task(d.dispatch(s1, a1, items(broker, contract, subs[:1], plan, seen)))
    await until(lambda: d.lock_for(link(subs[0], 1)).locked(), what="the first one's lock")
    second = await d.dispatch(s2, a2, items(broker, contract, subs[:2], plan, seen))
    await first
    assert second.orders == 4
    assert seen == [0, 0, 1]  # sub 1 first, free sub 2, then sub 1 again from the first's fill
    assert _net(paper, 1) == 2


async def test_a_held_account_whose_intents_cannot_be_written_sends_nothing(
    db_url: str, setup: dict[str, Any], pool: asyncpg.Pool
) -> None:
    """Rule 1 for an account planned after the wait: the signal's other orders are out, and
    its intents cannot be written: nothing is sent to it, and its result says why."""
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    sid, at = await _signal(pool, setup)
    own = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=_init_connection)
    assert own is not None
    d = Dispatcher(own, ttl_s=30)
    held = d.lock_for(link(subs[0], 1))
    await held.acquire()
    plan = entry_with_stop(Side.BUY, 1, "21490")
    run = asyncio.create_task(
        d.dispatch(sid, at, items(paper, contract, subs, plan), defer_outcomes=True)
    )
    await until(lambda: _net(paper, 2) == 1 and _net(paper, 3) == 1, what="the free accounts")
    await own.close()  # the database is gone for the held account's intents
    held.release()
    res = await asyncio.wait_for(run, 30)
    assert _net(paper, 1) == 0
    assert paper.all_orders(1) == []
    (mine,) = [a for a in res.accounts if a.sub_account_id == subs[0]]
    assert "the order intents could not be written" in (mine.reason or "")
    assert mine.sent == 0
    assert not res.storage_failed  # the others' orders went: not "nothing was sent"
    assert res.orders == 4
    assert not held.locked()


async def test_a_dispatch_cancelled_while_waiting_gives_the_lock_back(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    sid, at = await _signal(pool, setup)
    d = Dispatcher(pool, ttl_s=30)
    held = d.lock_for(link(subs[0], 1))
    await held.acquire()
    plan = entry_with_stop(Side.BUY, 1, "21490")
    run = asyncio.create_task(d.dispatch(sid, at, items(paper, contract, subs[:2], plan)))
    await until(lambda: _net(paper, 2) == 1 and _waited_on(held), what="waiting for the lock")
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    held.release()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not held.locked()  # nobody took it on the cancelled dispatch's behalf
    assert _net(paper, 1) == 0
    assert {r["sub_account_id"] for r in await intents(pool)} == {subs[1]}
    s2, a2 = await _signal(pool, setup)
    res = await d.dispatch(s2, a2, items(paper, contract, subs[:1], plan))
    assert res.orders == 2


async def _signal(pool: asyncpg.Pool, setup: dict[str, Any]) -> tuple[int, Any]:
    return await store_signal(pool, setup["rec"])


async def test_a_held_account_whose_lock_comes_past_the_ttl_says_it_did_not_trade(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    """Its lock came after the signal's TTL: every step is written expired and nothing is
    sent (rule 2), while the others traded. Its result had no shortfall, and the row,
    accepted, said nothing of the follower that missed the entry."""
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    sid, at = await _signal(pool, setup)
    clock = _Clock(at)
    d = Dispatcher(pool, ttl_s=30, clock=clock)
    held = d.lock_for(link(subs[0], 1))
    await held.acquire()
    plan = entry_with_stop(Side.BUY, 1, "21490")
    run = asyncio.create_task(d.dispatch(sid, at, items(paper, contract, subs[:2], plan)))
    await until(lambda: _net(paper, 2) == 1 and _waited_on(held), what="the free account")
    clock.now = at + timedelta(seconds=31)  # the lock comes past the TTL
    held.release()
    res = await asyncio.wait_for(run, 30)
    (late,) = [a for a in res.accounts if a.sub_account_id == subs[0]]
    assert (late.sent, late.expired) == (0, 2)
    assert _net(paper, 1) == 0
    assert late.short is not None
    assert "the entry was not sent: signal older than its TTL" in late.short.why


class _Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_intents_not_written_name_the_held_accounts_too(
    db_url: str, setup: dict[str, Any], pool: asyncpg.Pool
) -> None:
    """The free accounts' intents cannot be written: nothing of the signal is sent (rule 1),
    the held account is not waited for, and its result says so too (it had none)."""
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    sid, at = await _signal(pool, setup)
    dead = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    assert dead is not None
    await dead.close()
    d = Dispatcher(dead, ttl_s=30)
    held = d.lock_for(link(subs[0], 1))
    await held.acquire()
    plan = entry_with_stop(Side.BUY, 1, "21490")
    res = await asyncio.wait_for(d.dispatch(sid, at, items(paper, contract, subs[:2], plan)), 30)
    assert res.storage_failed
    assert {a.sub_account_id for a in res.accounts} == set(subs[:2])
    assert all("could not be written" in (a.reason or "") for a in res.accounts)
    assert not _waited_on(held)  # not waited for
    held.release()
    assert _net(paper, 1) == 0
    assert _net(paper, 2) == 0


def _close(state: AccountState, account: SubAccount, symbol: str) -> AccountPlan:
    return AccountPlan(
        PositionAction.CLOSE,
        (PlannedOrder(1, "order", OrderRequest(account, symbol, Side.SELL, 1)),),
        "close long 1",
    )


async def test_a_held_account_whose_close_comes_past_the_ttl_says_it_did_not_trade(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    """A close, not an entry: the late account's sell expired unsent, it stayed long while
    the others closed, and its result (the row) said nothing."""
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    sid, at = await _signal(pool, setup)
    d = Dispatcher(pool, ttl_s=30)
    await d.dispatch(sid, at, items(paper, contract, subs[:2], entry_with_stop(Side.BUY, 1, "1")))
    assert (_net(paper, 1), _net(paper, 2)) == (1, 1)
    s2, a2 = await _signal(pool, setup)
    clock = _Clock(a2)
    d = Dispatcher(pool, ttl_s=30, clock=clock)
    held = d.lock_for(link(subs[0], 1))
    await held.acquire()
    run = asyncio.create_task(d.dispatch(s2, a2, items(paper, contract, subs[:2], _close)))
    await until(lambda: _net(paper, 2) == 0 and _waited_on(held), what="the free account")
    clock.now = a2 + timedelta(seconds=31)
    held.release()
    res = await asyncio.wait_for(run, 30)
    (late,) = [a for a in res.accounts if a.sub_account_id == subs[0]]
    assert (late.sent, late.expired, _net(paper, 1)) == (0, 1, 1)
    assert late.short is not None
    assert late.short.why == "nothing was sent: signal older than its TTL"
