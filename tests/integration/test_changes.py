"""The configuration change feed on a real Postgres: a CLI change reaches the daemon's caches as
it commits (no polling), an unrelated write does not, and a lost listening connection is
noticed, caught up on and listened on again."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from jtrades.engine.changes import ChangeFeed
from jtrades.engine.config_cache import ConfigCache
from jtrades.engine.tokens import TokenCache
from jtrades.security import hash_token
from jtrades.store import recorders as recorder_store
from jtrades.store import status as status_store
from tests.integration.test_engine import make_recorder, make_user
from tests.polling import until


class Counter:
    def __init__(self) -> None:
        self.calls = 0
        self.called = asyncio.Event()

    async def __call__(self) -> None:
        self.calls += 1
        self.called.set()

    async def next(self, within_s: float) -> None:
        await asyncio.wait_for(self.called.wait(), within_s)
        self.called.clear()


class Feed:
    """A listening feed, and the followers a test starts on it (all stopped at teardown)."""

    def __init__(self, changes: ChangeFeed, stop: asyncio.Event) -> None:
        self.changes, self.stop = changes, stop
        self.followers: list[asyncio.Task[None]] = []

    def follow(self, reload: Callable[[], Awaitable[Any]]) -> None:
        self.followers.append(asyncio.create_task(self.changes.follow(self.stop, reload, "test")))


@pytest.fixture
async def feed(db_url: str) -> AsyncIterator[Feed]:
    """A feed whose fallbacks never fire within a test: what reaches a follower was heard."""
    changes = ChangeFeed(lambda: asyncpg.connect(db_url), poll_s=0.05, safety_s=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(changes.run(stop))
    assert await changes.wait_listening(5)
    f = Feed(changes, stop)
    try:
        yield f
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, *f.followers), 5)


async def test_a_halt_reaches_the_snapshot_as_it_commits(pool: asyncpg.Pool, feed: Feed) -> None:
    config = ConfigCache(pool)
    await config.load()
    assert not config.snapshot.halted
    feed.follow(config.refresh)
    await asyncio.sleep(0.1)  # its first (catch-up) reload
    await status_store.set_halted(pool, {"halted": True, "reason": "test"})
    await until(lambda: config.snapshot.halted)


async def test_a_rotated_token_stops_working_at_once(pool: asyncpg.Pool, feed: Feed) -> None:
    uid = await make_user(pool, "rot")
    rec = await make_recorder(pool, uid, "rot-rec")
    await pool.execute("UPDATE recorders SET token_hash = $2 WHERE id = $1", rec, hash_token("old"))
    tokens = TokenCache(lambda: recorder_store.all_token_hashes(pool))
    await tokens.refresh()
    assert tokens.lookup_hash(hash_token("old")) == rec
    feed.follow(tokens.refresh)
    await asyncio.sleep(0.1)
    await pool.execute("UPDATE recorders SET token_hash = $2 WHERE id = $1", rec, hash_token("new"))
    await until(lambda: tokens.lookup_hash(hash_token("old")) is None)
    assert tokens.lookup_hash(hash_token("new")) == rec


async def test_only_the_cached_tables_wake_the_followers(pool: asyncpg.Pool, feed: Feed) -> None:
    reloads = Counter()
    feed.follow(reloads)
    await reloads.next(5)  # the catch-up at start
    await pool.execute(
        "INSERT INTO audit_log (actor, action, target) VALUES ('test', 'noop', $1)",
        os.urandom(4).hex(),
    )
    with pytest.raises(TimeoutError):
        await reloads.next(0.3)
    await make_user(pool, "wake")
    await reloads.next(5)
    assert reloads.calls == 2


async def test_a_lost_listener_is_caught_up_and_listens_again(
    pool: asyncpg.Pool, feed: Feed
) -> None:
    reloads = Counter()
    feed.follow(reloads)
    await reloads.next(5)
    killed = await pool.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND query LIKE '%jtrades_config%'"
    )
    assert killed == 1
    await reloads.next(5)  # the catch-up: a change made while it was down would be in it
    assert await feed.changes.wait_listening(5)
    await asyncio.sleep(0.1)  # past the re-listen's own catch-up
    reloads.called.clear()
    await make_user(pool, "after")
    await reloads.next(5)


async def test_where_notifications_never_come_back_it_polls(db_url: str) -> None:
    """A connection whose own NOTIFY is never heard (as behind a pooler in transaction mode):
    the feed does not trust it, and its followers are woken every poll instead."""

    class Deaf:
        """A real connection whose LISTEN "succeeds" and never delivers anything."""

        def __init__(self, conn: asyncpg.Connection) -> None:
            self._conn = conn

        async def add_listener(self, channel: str, callback: object) -> None:
            return None

        def __getattr__(self, name: str) -> object:
            return getattr(self._conn, name)

    async def deaf_connection() -> asyncpg.Connection:
        return Deaf(await asyncpg.connect(db_url))  # type: ignore[return-value]

    changes = ChangeFeed(deaf_connection, poll_s=0.05, safety_s=3600, ping_within_s=0.2)
    stop = asyncio.Event()
    reloads = Counter()
    tasks = [
        asyncio.create_task(changes.run(stop)),
        asyncio.create_task(changes.follow(stop, reloads, "test")),
    ]
    assert not await changes.wait_listening(0.5)
    for _ in range(3):
        await reloads.next(2)  # the polls
    assert not changes.listening
    stop.set()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
