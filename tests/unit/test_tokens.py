"""The daemon's token cache: hashes only, reload on a miss, one reload for many misses."""

from __future__ import annotations

import asyncio

from jtrades.engine.tokens import TokenCache
from jtrades.security import hash_token


class Source:
    """Stands in for the recorders table: what ``all_token_hashes`` would return."""

    def __init__(self, tokens: dict[str, int]) -> None:
        self.tokens = dict(tokens)
        self.loads = 0

    async def load(self) -> dict[bytes, int]:
        self.loads += 1
        await asyncio.sleep(0)  # let concurrent callers pile up
        return {hash_token(t): rid for t, rid in self.tokens.items()}


async def test_known_token_resolves_without_a_reload() -> None:
    src = Source({"tok-aaaaaaaa": 1})
    cache = TokenCache(src.load)
    await cache.refresh()
    assert await cache.resolve("tok-aaaaaaaa") == (hash_token("tok-aaaaaaaa"), 1)
    assert src.loads == 1
    assert len(cache) == 1
    assert cache.loaded


async def test_a_miss_reloads_so_a_new_recorder_works_at_once() -> None:
    src = Source({})
    cache = TokenCache(src.load)
    await cache.refresh()
    src.tokens["tok-new-bbbbbbbb"] = 7
    assert (await cache.resolve("tok-new-bbbbbbbb"))[1] == 7
    assert (await cache.resolve("tok-unknown-zzz"))[1] is None


async def test_concurrent_misses_share_one_reload() -> None:
    src = Source({"tok-aaaaaaaa": 1})
    cache = TokenCache(src.load)
    await cache.refresh()
    results = await asyncio.gather(*(cache.resolve(f"bad-token-{i:04d}") for i in range(20)))
    assert all(rid is None for _, rid in results)
    assert src.loads <= 3  # not one per request


async def test_miss_reloads_can_be_spaced() -> None:
    now = [100.0]
    src = Source({})
    cache = TokenCache(src.load, miss_refresh_min_s=5, clock=lambda: now[0])
    await cache.refresh()
    await cache.resolve("bad-token-1")
    assert src.loads == 1  # loaded a moment ago: no reload
    now[0] += 6
    await cache.resolve("bad-token-1")
    assert src.loads == 2


async def test_rotation_and_deletion_take_effect_on_refresh() -> None:
    src = Source({"old-token-aaaa": 1})
    cache = TokenCache(src.load)
    await cache.refresh()
    src.tokens = {"new-token-bbbb": 1}
    await cache.refresh()
    assert cache.lookup_hash(hash_token("old-token-aaaa")) is None
    assert cache.lookup_hash(hash_token("new-token-bbbb")) == 1


async def test_a_rotation_during_a_reload_is_not_missed() -> None:
    """A reload in flight (a miss for a junk token) read the table before the rotation
    committed; the change feed's refresh waited for it and then skipped its own reload, so the
    old token kept working until the next change."""
    tokens = {"tok-old-aaaaaa": 1}
    read = asyncio.Event()

    async def load() -> dict[bytes, int]:
        snapshot = {hash_token(t): rid for t, rid in tokens.items()}  # the query reads now
        read.set()
        await asyncio.sleep(0.01)  # ...and its rows travel back
        return snapshot

    cache = TokenCache(load)
    await cache.refresh()
    read.clear()
    junk = asyncio.create_task(cache.resolve("tok-junk-aaaaa"))
    await read.wait()
    tokens.clear()
    tokens["tok-new-aaaaaa"] = 1  # the rotation commits; the feed calls refresh()
    await cache.refresh()
    await junk

    assert cache.lookup_hash(hash_token("tok-old-aaaaaa")) is None
    assert cache.lookup_hash(hash_token("tok-new-aaaaaa")) == 1
