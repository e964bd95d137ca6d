"""The daemon's in-memory map of webhook token hashes to recorders.

The hot path must not query the database to authenticate (DESIGN §2), so the SHA-256 of every
recorder's token is held here. It changes when the CLI creates, rotates or deletes a recorder, in
another process: the cache reloads whenever the database announces a change
(``changes.ChangeFeed``: a rotated token stops working once the daemon has heard the change
and reloaded, milliseconds after the rotation commits, up to a second while the change feed is
down and polled; a reload that fails keeps the old set until one succeeds), and a token it
does not know triggers a reload before the delivery is refused, so a recorder created a moment
ago already works.
Concurrent misses share one reload (a flood of bad tokens costs about one small query per
request, no more than storing each refused delivery already does); ``miss_refresh_min_s`` can
space reloads further.

Only hashes are held; the token from the request is hashed and the candidate compared in
constant time, so response timing reveals nothing about stored tokens.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable

import structlog

from jtrades.security import hash_token

log = structlog.get_logger(__name__)

Loader = Callable[[], Awaitable[dict[bytes, int]]]


class TokenCache:
    """Token hash → recorder id, reloaded on every change and on a miss."""

    def __init__(
        self,
        loader: Loader,
        *,
        miss_refresh_min_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._hashes: dict[bytes, tuple[bytes, int]] = {}
        self._miss_min = miss_refresh_min_s
        self._clock = clock
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded_at is not None

    def __len__(self) -> int:
        return len(self._hashes)

    async def refresh(self) -> None:
        """Reload every hash (one small query); concurrent callers share one reload."""
        started = self._clock()
        async with self._lock:
            # A reload that *began* after this call read what the caller came for (a rotation
            # committed before it asked); one that only finished since may have read before it.
            if self._loaded_at is not None and self._loaded_at > started:
                return
            load_started = self._clock()
            hashes = await self._loader()
            self._hashes = {h: (h, rid) for h, rid in hashes.items()}
            self._loaded_at = load_started

    def lookup_hash(self, token_hash: bytes) -> int | None:
        """The recorder id for a token hash from the current snapshot, or None."""
        entry = self._hashes.get(token_hash)
        if entry is None:
            return None
        # The dict matched on a digest of the token, which leaks nothing usable about the token
        # itself; the stored hash is still confirmed in constant time.
        stored, recorder_id = entry
        return recorder_id if hmac.compare_digest(stored, token_hash) else None

    async def resolve(self, token: str) -> tuple[bytes, int | None]:
        """The token's hash and its recorder id (None = unknown, after a fresh reload)."""
        token_hash = hash_token(token)
        recorder_id = self.lookup_hash(token_hash)
        if recorder_id is not None:
            return token_hash, recorder_id
        last = self._loaded_at
        if last is None or self._clock() - last >= self._miss_min:
            await self.refresh()
            recorder_id = self.lookup_hash(token_hash)
        return token_hash, recorder_id
