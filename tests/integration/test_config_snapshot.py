"""The engine's configuration is one snapshot of the database: a CLI change committing while the
daemon reloads is in it whole or not at all, and every column the engine caches wakes a reload."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from jtrades.engine.config_cache import ConfigCache
from jtrades.queries import q
from jtrades.store import accounts as account_store
from tests.cli import ainvoke


class _CommitsAfter:
    """A connection that lets ``hook`` commit on another connection right after one statement."""

    def __init__(self, conn: Any, after: str, hook: Callable[[], Awaitable[None]]) -> None:
        self._conn, self._after, self._hook, self.fired = conn, q(after), hook, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def fetch(self, sql: str, *args: Any) -> Any:
        rows = await self._conn.fetch(sql, *args)
        if sql == self._after and not self.fired:
            self.fired = True
            await self._hook()
        return rows


class _Pool:
    """The pool whose statements, on it or on a connection taken from it, run the hook."""

    def __init__(self, pool: asyncpg.Pool, after: str, hook: Callable[[], Awaitable[None]]):
        self._pool, self._after, self._hook = pool, after, hook
        self.conns: list[_CommitsAfter] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    async def fetch(self, sql: str, *args: Any) -> Any:  # statements straight on the pool
        async with self.acquire() as c:
            return await c.fetch(sql, *args)

    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[_CommitsAfter]:
        async with self._pool.acquire() as c:
            wrapped = _CommitsAfter(c, self._after, self._hook)
            self.conns.append(wrapped)
            yield wrapped

    @property
    def fired(self) -> bool:
        return any(c.fired for c in self.conns)


async def _cli(db_url: str, data_dir: Path, *args: str) -> None:
    r = await ainvoke(list(args), db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr


async def test_a_trader_edit_committed_during_a_reload_is_never_half_in_it(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """5 contracts × 1 edited to 1 × 5 between the reload's traders and links reads: the
    snapshot held the old size with the new multiplier, 25 contracts nobody configured."""
    await _cli(db_url, data_dir, "users", "register", "alice", "--email", "a@x.com", "--admin")
    await _cli(db_url, data_dir, "accounts", "add", "ap", "--user", "alice", "--env", "paper")
    await _cli(db_url, data_dir, "recorder", "create", "r1", "--user", "alice", "--symbol", "MNQ1!")
    await _cli(
        db_url, data_dir, "trader", "create", "--user", "alice", "--recorder", "r1",
        "--account", "ap*1", "--size", "5", "--enabled",
    )  # fmt: skip

    async def edit() -> None:
        await _cli(db_url, data_dir, "trader", "edit", "1", "--size", "1", "--account", "ap*5")

    wrapped = _Pool(pool, "trading.config_traders", edit)
    snap = await ConfigCache(wrapped).load()  # type: ignore[arg-type]
    assert wrapped.fired  # the edit did commit in the middle of the reload
    t = snap.traders[1]
    sizes = {(t.settings.size, int(lk.multiplier)) for lk in t.links}
    assert sizes == {(5, 1)}, f"half-applied: size × multiplier {sizes}"
    fresh = await ConfigCache(pool).load()
    t = fresh.traders[1]
    assert {(t.settings.size, int(lk.multiplier)) for lk in t.links} == {(1, 5)}


async def test_a_sub_account_renamed_by_a_sync_reaches_the_engine(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """The name is the accountSpec every order is sent with: the NOTIFY woke a refresh whose
    fingerprint did not cover it, and the daemon kept sending as the old name."""
    await _cli(db_url, data_dir, "users", "register", "alice", "--email", "a@x.com", "--admin")
    await _cli(
        db_url, data_dir, "accounts", "add", "ap", "--user", "alice", "--env", "demo",
        "--username", "bob",
    )  # fmt: skip
    await _cli(db_url, data_dir, "accounts", "add-sub", "ap", "--id", "777", "--name", "OLDNAME")
    await _cli(db_url, data_dir, "recorder", "create", "r1", "--user", "alice", "--symbol", "MNQ1!")
    await _cli(
        db_url, data_dir, "trader", "create", "--user", "alice", "--recorder", "r1",
        "--account", "ap:OLDNAME", "--enabled",
    )  # fmt: skip
    cache = ConfigCache(pool)
    snap = await cache.load()
    assert [lk.sub_name for lk in snap.traders[1].links] == ["OLDNAME"]

    account = await account_store.get(pool, "ap")
    async with pool.acquire() as c, c.transaction():  # what `accounts sync` writes
        await account_store.store_synced_subs(c, account.id, [(777, "NEWNAME")])

    assert await cache.refresh()
    assert [lk.sub_name for lk in cache.snapshot.traders[1].links] == ["NEWNAME"]
