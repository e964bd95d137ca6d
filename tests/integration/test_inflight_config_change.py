"""An alert in flight when `trader edit --account` moves the trader off a sub-account.

The alert passed its gate on the old configuration and waits for the sub-account's lock (an
earlier alert's orders still settling there). Meanwhile the CLI moves the trader to another
sub-account: the sub-account is flat, so the held-position check lets it go. Once the lock
comes, the waiting alert opens a position on the sub-account its trader no longer trades: no
alert of the recorder reaches it again (its close goes to the new sub-account), and the
reconciler's protection and orphan sweep no longer walk it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.cli import ainvoke
from tests.integration.test_engine import (
    buy,
    close,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
)


async def _until(cond: Any, what: str) -> None:
    for _ in range(500):
        if await cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(what)


async def test_an_alert_waiting_for_the_lock_does_not_open_on_a_sub_account_unlinked_meanwhile(
    database: Database, settings: Settings
) -> None:
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "trend", size=1)
    sub, other = await make_paper_account(pool, u, "ap", subs=2)
    tid = await make_trader(pool, u, rec, [(sub, 1)])
    engine = Engine(database, settings)
    await engine.start()
    try:
        lock = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[sub])
        await lock.acquire()  # an earlier alert's orders still settling on ap-1
        inflight = asyncio.create_task(send(engine, pool, rec, buy()))

        async def queued() -> bool:
            return bool(getattr(lock, "_waiters", None))

        await _until(queued, "the alert never queued for the lock")
        r = await ainvoke(["trader", "edit", str(tid), "--account", "ap:ap-2"], **cli)
        assert r.exit_code == 0, r.stderr  # ap-1 is flat: nothing held

        async def moved() -> bool:
            t = engine.config.snapshot.traders[tid]
            return [lk.sub_account_id for lk in t.links] == [other]

        await _until(moved, "the daemon never loaded the edit")
        lock.release()
        await inflight

        # the strategy closes: its close reaches ap-2 only
        await send(engine, pool, rec, close())
        assert await net_pos(engine, pool, sub) == 0, (
            "ap-1, which the trader no longer trades, was opened by the alert in flight and "
            "is left long with no alert to close it"
        )
    finally:
        await engine.close()


async def test_an_alert_waiting_for_the_lock_does_not_open_for_a_user_disabled_meanwhile(
    database: Database, settings: Settings
) -> None:
    """`users disable` switches the user's traders off (they then send nothing, closes
    included): an alert queued on the lock before it opened a position after it, which no
    alert of the recorder ever closes."""
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "trend", size=1)
    (sub,) = await make_paper_account(pool, u, "ap")
    tid = await make_trader(pool, u, rec, [(sub, 1)])
    engine = Engine(database, settings)
    await engine.start()
    try:
        lock = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[sub])
        await lock.acquire()
        inflight = asyncio.create_task(send(engine, pool, rec, buy()))

        async def queued() -> bool:
            return bool(getattr(lock, "_waiters", None))

        await _until(queued, "the alert never queued for the lock")
        r = await ainvoke(["users", "disable", "alice"], **cli)
        assert r.exit_code == 0, r.stderr

        async def off() -> bool:
            return not engine.config.snapshot.traders[tid].enabled

        await _until(off, "the daemon never loaded the disable")
        lock.release()
        await inflight
        assert await net_pos(engine, pool, sub) == 0, (
            "the disabled user's sub-account was opened after `users disable` committed"
        )
    finally:
        await engine.close()
