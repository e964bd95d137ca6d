"""An alert waiting for a sub-account's lock while the *recorder* stops trading.

At arrival, a recorder with recording disabled, or whose owner is no longer approved, has every
alert rejected (closes included, ``filters._gate``). ``plan_time.no_longer_traded`` re-reads the
configuration under the lock for the trader (deleted, off, owner, unlinked) but not for its
recorder: the follower's entry still opens after the CLI's change committed.
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


async def _run(database: Database, settings: Settings, change: list[str], loaded: Any) -> int:
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    pool = database.pool
    alice = await make_user(pool, "alice")
    bob = await make_user(pool, "bob")
    rec = await make_recorder(pool, alice, "trend", size=1)
    await pool.execute("UPDATE recorders SET is_private = false WHERE id = $1", rec)
    (sub,) = await make_paper_account(pool, bob, "bp")
    await make_trader(pool, bob, rec, [(sub, 1)])
    engine = Engine(database, settings)
    await engine.start()
    try:
        lock = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[sub])
        await lock.acquire()
        inflight = asyncio.create_task(send(engine, pool, rec, buy()))

        async def queued() -> bool:
            return bool(getattr(lock, "_waiters", None))

        await _until(queued, "the alert never queued for the lock")
        r = await ainvoke(change, **cli)
        assert r.exit_code == 0, r.stderr

        async def seen() -> bool:
            return loaded(engine.config.snapshot.recorders[rec])

        await _until(seen, "the daemon never loaded the change")
        lock.release()
        await inflight
        return await net_pos(engine, pool, sub)
    finally:
        await engine.close()


async def test_waiting_alert_does_not_open_after_recording_disabled(
    database: Database, settings: Settings
) -> None:
    pos = await _run(
        database,
        settings,
        ["recorder", "disable-recording", "trend"],
        lambda r: not r.recording_enabled,
    )
    assert pos == 0, (
        "the follower was opened after `recorder disable-recording` committed "
        "(its signals are to be rejected)"
    )


async def test_waiting_alert_does_not_open_after_recorder_owner_disabled(
    database: Database, settings: Settings
) -> None:
    pos = await _run(
        database, settings, ["users", "disable", "alice"], lambda r: not r.owner_active
    )
    assert pos == 0, "the follower was opened after the recorder's owner was disabled"
