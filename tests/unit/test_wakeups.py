"""Keyed wake-ups: a change to one account wakes the tasks waiting on it, and only those."""

from __future__ import annotations

import asyncio

from jtrades.broker.wakeups import Wakeups


async def test_a_change_wakes_every_waiter_of_its_account_and_no_other() -> None:
    w = Wakeups()
    a1 = asyncio.create_task(w.wait(1, 30))
    a2 = asyncio.create_task(w.wait(1, 30))
    b = asyncio.create_task(w.wait(2, 30))
    await asyncio.sleep(0)
    w.fire(1)
    await asyncio.wait_for(asyncio.gather(a1, a2), 5)
    await asyncio.sleep(0)
    assert not b.done()
    w.fire_all()
    await asyncio.wait_for(b, 5)


async def test_a_wait_ends_at_its_bound_and_a_later_change_still_wakes_the_next() -> None:
    w = Wakeups()
    await asyncio.wait_for(w.wait(7, 0.01), 5)  # nothing fired: returns at the bound
    later = asyncio.create_task(w.wait(7, 30))
    await asyncio.sleep(0)
    assert not later.done()
    w.fire(7)
    await asyncio.wait_for(later, 5)


async def test_a_change_before_anyone_waits_is_not_remembered() -> None:
    w = Wakeups()
    w.fire(3)  # nobody waiting: a later wait is for the next change
    waiting = asyncio.create_task(w.wait(3, 30))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    w.fire(3)
    await asyncio.wait_for(waiting, 5)
