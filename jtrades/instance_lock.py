"""The one-daemon-per-database lock of ``jtrades serve``, held and watched for the whole run.

Apart from ``jtrades.daemon`` because the daemon composes parts, and this part has to get
Postgres's session semantics right on its own: a session advisory lock is the session's, and a
session lives on at the server after its client gave up on it (a lost answer, a dropped NAT
entry) until the server's TCP keepalive notices, hours by default. Such a leftover of this
process still holds the lock; taken for another daemon, it stopped this one, and kept every
restart refused for those hours. So:

- every session opened to take the lock names itself (pid, start) *before* it asks, and the
  names are kept (``_ours``) until that session is known gone: an answer lost on the way still
  leaves a session this process knows as its own, to end and take the lock again;
- those sessions carry an ``application_name`` with a random nonce of this process, and only a
  session matching pid, start and that name is ever ended: never another daemon's;
- they ask the server for TCP keepalives of minutes, so an idle leftover the process cannot
  end (it crashed, or was restarted) frees the lock in minutes rather than hours.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog

from jtrades import aio
from jtrades.aio import within
from jtrades.db import Database
from jtrades.errors import ConfigError, JtradesError
from jtrades.store import instance as instance_store

log = structlog.get_logger("jtrades.daemon")  # its events are the daemon's (README)

# the session advisory lock one `jtrades serve` holds on its database ("jtrades\x01")
INSTANCE_LOCK = 0x6A74726164657301
# The lock's connection lost: how long the database may stay unreachable before a person is told
# (the daemon waits on, refusing alerts: a managed failover takes minutes, and exiting would
# spend systemd's restarts on a database still down), how often it tries, and the bound on each
# exchange with a database that may not answer.
INSTANCE_ALERT_S = 60.0
INSTANCE_RETRY_S = 0.5
INSTANCE_PROBE_TIMEOUT_S = 10.0
PROBE_EVERY_S = 5.0  # how often a silent lock connection is probed

_DB_ERRORS = (JtradesError, asyncpg.PostgresError, OSError, TimeoutError)


class InstanceLock:
    """``INSTANCE_LOCK`` for one daemon process: ``take`` at start, then ``watch`` until stop.

    ``accepting(False)`` while the lock is being taken again (another daemon could be
    starting in that gap); ``fail`` when another daemon has it."""

    def __init__(
        self,
        stop: asyncio.Event,
        accepting: Callable[[bool], None],
        fail: Callable[[JtradesError], None],
    ) -> None:
        self.stop = stop
        self._accepting = accepting
        self._fail = fail
        self.db: Database | None = None
        self.conn: Any = None  # the connection holding the lock, while it is held
        self._lost = asyncio.Event()  # set when that connection closes
        # 63 bytes at most (NAMEDATALEN): "jtrades serve <pid> <16 hex>" fits
        self.name = f"jtrades serve {os.getpid()} {secrets.token_hex(8)}"
        # see the module doc; one more for each loss of the lock, pruned as they are seen gone
        self._ours: list[instance_store.Holder] = []
        self.alert_s = INSTANCE_ALERT_S
        self.probe_timeout_s = INSTANCE_PROBE_TIMEOUT_S

    @property
    def held(self) -> bool:
        return self.conn is not None

    async def take(self, db: Database) -> bool:
        """The lock on a new connection of its own, kept on success (False: another session
        holds it). A connection that closes sets ``_lost``."""
        self.db = db
        conn = await db.connect_one(server_settings={"application_name": self.name})
        try:
            await instance_store.ask_keepalives(conn)
            me = await instance_store.whoami(conn)
            if me.name == self.name:  # not renamed on the way (a proxy): never ended by name
                self._ours.append(me)
            held = await instance_store.try_lock(conn, INSTANCE_LOCK)
        except BaseException:
            conn.terminate()
            raise
        if not held:  # the server said so: this session never held it
            self._forget(me)
            await conn.close()
            return False
        self._lost.clear()
        conn.add_termination_listener(self._on_closed)
        self.conn = conn
        return True

    def _forget(self, holder: instance_store.Holder) -> None:
        if holder in self._ours:
            self._ours.remove(holder)

    def _on_closed(self, conn: Any) -> None:
        if conn is self.conn:  # not one given up already (its call comes a turn later)
            self._lost.set()

    async def close(self, timeout_s: float | None = None) -> bool:
        """Give the lock up by closing its connection (a session lock goes with its session).
        With ``timeout_s``, a close the database does not answer in time is given up and the
        connection terminated: the server frees the lock once it sees the session gone (its
        keepalives, module doc). True when closed gracefully."""
        conn, self.conn = self.conn, None
        if conn is None:
            return True
        try:
            # asyncpg aborts the connection itself when the close runs out of time
            await conn.close(timeout=timeout_s)
        except (*_DB_ERRORS, asyncpg.InterfaceError):
            if timeout_s is None:
                raise
            conn.terminate()
            return False
        return True

    def terminate(self) -> None:
        """Drop the lock's connection without a word to the server (it does not answer)."""
        conn, self.conn = self.conn, None
        if conn is not None:
            conn.terminate()

    async def watch(self) -> None:
        """Hold the lock for the whole run. A session lock goes with its session: a Postgres
        restart, an idle-session timeout or a terminated backend freed it while this daemon
        ran on (its pool reconnects by itself), and a second ``jtrades serve`` started beside
        it. A lost connection is heard at once (its termination), a silent one by a probe
        every heartbeat; the lock is then taken again on a new connection, and the daemon
        stops when another has it. While the database cannot be reached it waits, refusing
        alerts: nothing can be sent without a durable intent anyway (rule 1)."""
        while not self.stop.is_set():
            why = await self._gone()
            if why is None:
                return
            if not await self._retake(why):
                return

    async def _gone(self) -> str | None:
        """Why the lock's connection is gone, once it is; None when the daemon stops first."""
        while True:
            conn = self.conn
            if conn is None or conn.is_closed() or self._lost.is_set():
                return "its connection closed"
            await _first_set(PROBE_EVERY_S, self._lost, self.stop)
            if self.stop.is_set():
                return None
            if self._lost.is_set():
                continue
            try:
                await within(instance_store.ping(conn), self.probe_timeout_s)
            except _DB_ERRORS as exc:
                conn.terminate()
                return f"its connection stopped answering ({type(exc).__name__})"

    async def _retake(self, why: str) -> bool:
        """Take the lock again after its connection was lost (True), or stop the daemon
        (False). Alerts are refused (503: TradingView sends them again) until it is held: in
        that gap another daemon could be starting."""
        assert self.db is not None
        lost, self.conn = self.conn, None
        if lost is not None:
            lost.terminate()
        self._accepting(False)
        log.warning("daemon.instance_reconnecting", reason=why)
        loop = asyncio.get_running_loop()
        alert_at: float | None = loop.time() + self.alert_s
        last = why
        while not self.stop.is_set():
            try:
                taken = await within(self.take(self.db), self.probe_timeout_s)
                if not taken:
                    if not await self._end_leftovers():
                        self._fail(
                            ConfigError(
                                "another jtrades serve took this database while this one's "
                                f"connection holding the one-daemon lock was lost ({why}): "
                                "stopped; one daemon per database"
                            )
                        )
                        return False
                    last = "its own earlier session still held the lock"
            except _DB_ERRORS as exc:
                last = str(exc) or type(exc).__name__
            if self.conn is not None:  # taken (also when that came as the wait ran out)
                if not self.stop.is_set():
                    self._accepting(True)
                log.warning("daemon.instance_retaken", reason=why)
                return True
            if alert_at is not None and loop.time() >= alert_at:
                alert_at = None  # once per outage
                log.error(
                    "daemon.instance_unreachable",
                    waited_s=round(self.alert_s),
                    error=last,
                    effect="alerts refused (503, TradingView sends them again) until the "
                    "database answers and the one-daemon lock is held again",
                )
            await aio.set_within(self.stop, INSTANCE_RETRY_S)
        return False

    async def _end_leftovers(self) -> bool:
        """End the sessions of this process the server still keeps (see the module doc); False
        when none is left, so another holds the lock. Called while this process holds no lock
        connection, so none of them is in use. Bounded: a stop waits for it."""
        assert self.db is not None
        if not self._ours:
            return False
        async with asyncio.timeout(self.probe_timeout_s):
            conn = await self.db.connect_one()
            try:
                ended = False
                for holder in list(self._ours):
                    if await instance_store.end_session(conn, holder):
                        log.warning("daemon.instance_leftover_ended", pid=holder.pid)
                        ended = True  # kept until seen gone: it may take a moment to exit
                    else:
                        self._forget(holder)
            except BaseException:
                conn.terminate()  # a close would wait on a database that stopped answering
                raise
            await conn.close()
        return ended


async def _first_set(seconds: float, *events: asyncio.Event) -> None:
    """Wait ``seconds``, or less once any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
