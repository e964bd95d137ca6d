"""Following configuration changes: one reload per change announced, errors survived."""

from __future__ import annotations

import asyncio
from typing import Any

from jtrades.engine.changes import ChangeFeed


class Reloads:
    def __init__(self, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first
        self.called = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.called.set()
        if self.calls <= self.fail_first:
            raise OSError("database went away")


async def _reloaded(r: Reloads) -> None:
    await asyncio.wait_for(r.called.wait(), 5)
    r.called.clear()
    await asyncio.sleep(0.01)  # a second reload, if one were coming, would have started


async def test_a_follower_loads_once_at_start_then_once_per_change() -> None:
    feed = ChangeFeed(connect=None)  # type: ignore[arg-type]  # follow() needs no database
    stop = asyncio.Event()
    r = Reloads()
    task = asyncio.create_task(feed.follow(stop, r, "test"))
    await _reloaded(r)
    assert r.calls == 1  # it had not loaded yet
    feed.wake()
    feed.wake()  # two changes before it got to run: one reload covers both
    await _reloaded(r)
    assert r.calls == 2
    stop.set()
    await asyncio.wait_for(task, 5)
    feed.wake()
    await asyncio.sleep(0.01)
    assert r.calls == 2


async def test_a_failed_reload_is_logged_and_the_next_change_reloads_again() -> None:
    feed = ChangeFeed(connect=None)  # type: ignore[arg-type]
    stop = asyncio.Event()
    r = Reloads(fail_first=2)
    task = asyncio.create_task(feed.follow(stop, r, "test"))
    await _reloaded(r)
    feed.wake()
    await _reloaded(r)
    assert not task.done()
    feed.wake()
    await _reloaded(r)
    assert r.calls == 3
    stop.set()
    await asyncio.wait_for(task, 5)


async def test_a_change_during_a_reload_is_not_lost() -> None:
    feed = ChangeFeed(connect=None)  # type: ignore[arg-type]
    stop = asyncio.Event()
    seen: list[int] = []
    gate = asyncio.Event()

    async def slow_reload() -> Any:
        seen.append(len(seen))
        if len(seen) == 1:
            await gate.wait()  # the first reload is still reading when the change commits

    task = asyncio.create_task(feed.follow(stop, slow_reload, "test"))
    await asyncio.sleep(0.01)
    feed.wake()
    gate.set()
    for _ in range(100):
        if len(seen) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(seen) == 2
    stop.set()
    await asyncio.wait_for(task, 5)
