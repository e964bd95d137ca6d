"""Configuration changes made in another process (the CLI), heard as they commit.

Statement triggers on the tables the daemon caches (recorders, traders and their links, users,
broker accounts and sub-accounts, system flags: migration 0003) send ``NOTIFY jtrades_config``;
the feed listens on a connection of its own (outside the pool) and wakes every follower, which
reloads what it caches (the configuration snapshot, the webhook token hashes). A halt, a
disabled trader or a rotated token takes effect within milliseconds, and an idle daemon asks
the database nothing but the safety reload.

A notification cannot arrive while the connection is down, so every (re)start of listening
wakes the followers once to catch up, and while it is down they are woken every ``poll_s``
instead. Listening starts with a ping to itself: where notifications do not come back (a
connection pooler in transaction mode hands LISTEN and NOTIFY to different server sessions)
the feed polls for good rather than trust a silence a kill switch depends on. ``safety_s``
wakes the followers anyway: a reload costs one small query, and a cache that is wrong for
longer than that would be worse.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from jtrades.aio import within

log = structlog.get_logger(__name__)

CHANNEL = "jtrades_config"
_PING = "jtrades-ping"  # a payload no trigger sends (they send their table's name)


class _Deaf(Exception):
    """Listening, but our own notification never came back."""


Connect = Callable[[], Awaitable[asyncpg.Connection]]


class ChangeFeed:
    def __init__(
        self,
        connect: Connect,
        *,
        poll_s: float = 1.0,
        safety_s: float = 10.0,
        ping_within_s: float = 2.0,
    ) -> None:
        self._connect = connect
        self._failing = False  # the last attempt to listen failed (logged once, not per retry)
        self._deaf = False  # notifications do not come back here: poll for good
        self._ping_within = ping_within_s
        self._pong = asyncio.Event()
        self._poll = poll_s
        self._safety = safety_s
        self._followers: list[asyncio.Event] = []
        self._lost = asyncio.Event()
        self._heard = asyncio.Event()  # set while listening

    @property
    def listening(self) -> bool:
        return self._heard.is_set()

    async def wait_listening(self, within_s: float) -> bool:
        """Whether the feed listens within ``within_s`` (else its followers poll)."""
        try:
            await within(self._heard.wait(), within_s)
        except TimeoutError:
            return False
        return True

    def subscribe(self) -> asyncio.Event:
        """An event set on every change (and set at once: the subscriber has not loaded yet)."""
        changed = asyncio.Event()
        changed.set()
        self._followers.append(changed)
        return changed

    def wake(self) -> None:
        for changed in self._followers:
            changed.set()

    async def follow(
        self, stop: asyncio.Event, reload: Callable[[], Awaitable[Any]], what: str
    ) -> None:
        """Call ``reload`` after every change until ``stop`` is set; a failed reload keeps the
        old picture (logged) and is tried again at the next change or safety wake."""
        changed = self.subscribe()
        while True:
            await _first(changed, stop)
            if stop.is_set():
                return
            changed.clear()  # before reloading: a change during the reload sets it again
            try:
                await reload()
            except Exception as exc:
                log.warning("changes.reload_failed", cache=what, error=str(exc))

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop`` is set, polling while the connection is lost."""
        while not stop.is_set():
            try:
                if not self._deaf:
                    await self._listen(stop)
            except _Deaf:
                self._deaf = True
                log.warning(
                    "changes.notifications_lost",
                    effect=f"configuration polled every {self._poll:g} s",
                    hint="a connection pooler in transaction mode? point database.url past it",
                )
            except Exception as exc:  # whatever it was, the caches must not stop following
                if not self._failing:
                    log.warning(
                        "changes.listen_failed",
                        error=f"{type(exc).__name__}: {exc}",
                        effect=f"polled every {self._poll:g} s until it listens again",
                    )
                self._failing = True
            self.wake()  # changes may have gone unheard: the poll that stands in for them
            with contextlib.suppress(TimeoutError):
                await within(stop.wait(), self._poll)

    async def _listen(self, stop: asyncio.Event) -> None:
        conn = await self._connect()
        try:
            self._lost.clear()
            conn.add_termination_listener(self._on_lost)
            await conn.add_listener(CHANNEL, self._on_notify)
            self._pong.clear()
            await conn.execute(f"NOTIFY {CHANNEL}, '{_PING}'")
            try:
                await within(self._pong.wait(), self._ping_within)
            except TimeoutError:
                raise _Deaf from None
            self._heard.set()
            if self._failing:
                log.info("changes.listening_again")
                self._failing = False
            self.wake()  # whatever changed before we listened
            while not stop.is_set() and not self._lost.is_set():
                try:
                    await within(_first(stop, self._lost), self._safety)
                except TimeoutError:
                    self.wake()  # the safety reload
        finally:
            self._heard.clear()
            conn.remove_termination_listener(self._on_lost)
            with contextlib.suppress(Exception):
                await within(conn.close(), 2)
            conn.terminate()  # after close(), a no-op; if close() hung, the end of it
        if self._lost.is_set() and not stop.is_set():
            raise ConnectionError("the listening connection was closed")

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: object) -> None:
        if payload == _PING:
            self._pong.set()
        else:
            self.wake()

    def _on_lost(self, _conn: Any) -> None:
        self._lost.set()


async def _first(*events: asyncio.Event) -> None:
    """Return once any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
