"""The per-account locks: one per account at the broker (``broker_account``), taken by
everything that changes an account's orders (a signal's dispatch, a protection, a flatten).

A dispatch takes at once the locks nothing holds or waits for, and waits for the others
after its signal is stored, each on its own (``Waiting``): waiting for them all first let one
follower's silent broker, its sends waiting out the request timeout, hold every other account
of the signal, the recorder's next alert and the webhook's answer. A wait holds no other lock,
so no two dispatches can wait on each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from jtrades.engine.account_plans import key_order, lock_key, may_be_account
from jtrades.engine.config_cache import AccountKey, LinkConfig


def _queued(lock: asyncio.Lock) -> bool:
    """Whether something waits for ``lock`` (released, its next holder not yet running):
    taking it then would wait too. asyncio keeps its waiters in ``_waiters``."""
    waiters: Iterable[asyncio.Future[Any]] | None = getattr(lock, "_waiters", None)
    return waiters is not None and any(not w.cancelled() for w in waiters)


class AccountLocks:
    def __init__(self) -> None:
        self._locks: dict[AccountKey, asyncio.Lock] = {}

    def lock_for(self, link: LinkConfig) -> asyncio.Lock:
        """The lock of the account at the broker ``link`` trades (``lock_key``)."""
        key = lock_key(link)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    def busy(self, env: str, account_id: int, broker_account_id: int) -> bool:
        """Whether something holds a lock of that account."""
        return any(
            lock.locked()
            for key, lock in self._locks.items()
            if may_be_account(key, env, account_id, broker_account_id)
        )

    async def take_free(
        self, links: dict[AccountKey, LinkConfig]
    ) -> tuple[list[AccountKey], list[AccountKey]]:
        """Take, in key order, the locks of ``links`` that nothing holds or waits for (taking
        one of those never waits); the keys taken, and the others."""
        free: list[AccountKey] = []
        behind: list[AccountKey] = []
        for key in sorted(links, key=key_order):
            lock = self.lock_for(links[key])
            if lock.locked() or _queued(lock):
                behind.append(key)
            else:
                await lock.acquire()
                free.append(key)
        return free, behind

    def wait_for(self, links: dict[AccountKey, LinkConfig], keys: Iterable[AccountKey]) -> Waiting:
        return Waiting({key: self.lock_for(links[key]) for key in keys})


class Waiting:
    """Waits for several locks at once, each on its own; ``next`` gives the keys whose locks
    came (held now, the caller's to release), ``abandon`` gives back any that came to nobody."""

    def __init__(self, locks: dict[AccountKey, asyncio.Lock]) -> None:
        self._locks = locks
        self._waits = {asyncio.ensure_future(lock.acquire()): key for key, lock in locks.items()}

    def __bool__(self) -> bool:
        return bool(self._waits)

    async def next(self) -> list[AccountKey]:
        came, _ = await asyncio.wait(self._waits, return_when=asyncio.FIRST_COMPLETED)
        return sorted((self._waits.pop(w) for w in came), key=key_order)

    def abandon(self) -> None:
        for w, key in self._waits.items():
            if not w.cancel() and not w.cancelled() and w.exception() is None:
                self._locks[key].release()  # it came as the wait was given up
        self._waits.clear()
