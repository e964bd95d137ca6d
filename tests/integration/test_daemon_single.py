"""One ``jtrades serve`` per database. A second one (another port, another host) would open
the same broker sessions, run its own reconciliation and send every alert's orders again;
before it found its port taken, it had already marked the running daemon's in-flight signals
interrupted and, leaving, written "stopped" over its status. It is refused first, with the
running one named, and touches nothing."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import asyncpg
import pytest
import structlog.testing

from jtrades import migrations as jmig
from jtrades.config import Settings
from jtrades.daemon import Daemon
from jtrades.errors import ConfigError
from jtrades.instance_lock import INSTANCE_LOCK, InstanceLock
from jtrades.store import instance as instance_store
from jtrades.store import status as status_store
from tests.integration.test_daemon_crash import status_state


def _on_free_port(settings: Settings) -> Settings:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = settings.server.model_copy(update={"host": "127.0.0.1", "port": port})
    return settings.model_copy(update={"server": server})


async def test_a_second_daemon_on_the_same_database_is_refused(
    settings: Settings, db_url: str
) -> None:
    first = Daemon(_on_free_port(settings))
    running = asyncio.create_task(first.run())
    try:
        for _ in range(300):
            if first.port is not None and first.hooks is not None:
                break
            await asyncio.sleep(0.05)
        assert first.port is not None

        with pytest.raises(ConfigError, match="another jtrades serve"):
            await asyncio.wait_for(Daemon(_on_free_port(settings)).run(), 30)

        assert await status_state(db_url) == "running"
        socket.create_connection(("127.0.0.1", first.port), timeout=1).close()  # still serving
    finally:
        first.request_stop("test")
        await asyncio.wait_for(running, 30)


# --- the lock held for the whole run ------------------------------------------------------------


async def _started(d: Daemon, task: asyncio.Task[None]) -> bool:
    """Listening, and past its first status write (a connection cut before it fails the
    start, which is not what these tests are about)."""
    for _ in range(400):
        if task.done():
            return False
        if d.port is not None and d.hooks is not None and d.db is not None:
            beat = await status_store.get(d.db.pool)
            if beat is not None and beat.pid == os.getpid():
                return True
        await asyncio.sleep(0.05)
    return False


async def _stopped(d: Daemon, task: asyncio.Task[None]) -> None:
    d.request_stop("test")
    with contextlib.suppress(BaseException):
        await asyncio.wait_for(task, 30)


async def _refused(settings: Settings) -> None:
    """Another daemon on this database is refused at start, as it must be while one runs."""
    with pytest.raises(ConfigError, match="another jtrades serve"):
        await asyncio.wait_for(Daemon(_on_free_port(settings)).run(), 30)


async def test_a_daemon_whose_lock_connection_dropped_takes_the_lock_again(
    settings: Settings, db_url: str
) -> None:
    """The lock is the session's: a Postgres restart, an idle-session timeout or a terminated
    backend freed it while the daemon ran on (its pool simply reconnects), and a second
    ``jtrades serve`` started beside it: every alert's orders sent twice. A blip is no reason to
    stop, though: the daemon takes the lock again on a new connection."""
    first = Daemon(_on_free_port(settings))
    running = asyncio.create_task(first.run())
    try:
        assert await _started(first, running)
        admin = await asyncpg.connect(db_url)
        try:
            pid = first.instance.conn.get_server_pid()
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        finally:
            await admin.close()
        for _ in range(100):
            if first.instance.conn is not None and first.instance.conn.get_server_pid() != pid:
                break
            await asyncio.sleep(0.05)
        assert not running.done(), "the first daemon keeps running and serving"
        assert first.instance.conn is not None
        assert first.instance.conn.get_server_pid() != pid
        socket.create_connection(("127.0.0.1", first.port), timeout=1).close()
        await _refused(settings)
        assert first.hooks is not None
        assert first.hooks.accepting
    finally:
        await _stopped(first, running)


class ClientCutter:
    """A TCP relay to the test's Postgres that can drop the client side of every connection
    while the server side stays open (a NAT or firewall forgetting them): the server's sessions
    live on, holding their locks, until it notices. It can also refuse new connections."""

    def __init__(self, db_url: str) -> None:
        u = urlsplit(db_url)
        self.socket_dir = parse_qs(u.query).get("host", [None])[0]
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 5432
        self.dbname = u.path.lstrip("/")
        self.user = u.username or "postgres"
        self.refusing = False
        self._links: list[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self._cut: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"postgresql://{self.user}@127.0.0.1:{port}/{self.dbname}"

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        if self.socket_dir:
            up_r, up_w = await asyncio.open_unix_connection(
                f"{self.socket_dir}/.s.PGSQL.{self.port}"
            )
        else:
            up_r, up_w = await asyncio.open_connection(self.host, self.port)
        self._links.append((writer, up_w))
        for src, dst, upstream in ((reader, up_w, True), (up_r, writer, False)):
            t = asyncio.create_task(self._pump(src, dst, writer, upstream))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        to_server: bool,
    ) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                if id(client) not in self._cut:  # once cut, the server's answers go nowhere
                    dst.write(data)
        if to_server and id(client) in self._cut:
            return  # the server's side stays open: its session lives on
        dst.close()

    def cut_clients(self) -> None:
        for client, _up in self._links:
            if id(client) not in self._cut:
                self._cut.add(id(client))
                client.transport.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client, up in self._links:
            client.transport.abort()
            up.transport.abort()
        for t in list(self._tasks):
            t.cancel()


async def test_a_daemon_that_lost_its_lock_to_another_stops_loudly(
    settings: Settings, db_url: str
) -> None:
    """Whoever took the lock while this daemon's connection was down is another daemon: this
    one stops taking alerts at once, says why as an error (notified), and exits with an error
    (systemd restarts it, and the restarted one meets the usual refusal). It leaves the status
    row alone: it is the other daemon's now."""
    relay = ClientCutter(db_url)
    url = await relay.start()
    db = settings.database.model_copy(update={"url": url})
    first = Daemon(_on_free_port(settings.model_copy(update={"database": db})))
    running = asyncio.create_task(first.run())
    other = await asyncpg.connect(db_url)
    try:
        assert await _started(first, running)
        port = first.port
        assert port is not None
        pid = first.instance.conn.get_server_pid()
        with structlog.testing.capture_logs() as logs:
            relay.refusing = True  # the daemon cannot come back before the other one is in
            relay.cut_clients()
            await other.execute(
                f"DO $$ BEGIN PERFORM pg_terminate_backend({pid}, 5000);"
                f" PERFORM pg_advisory_lock({INSTANCE_LOCK}); END $$"
            )
            relay.refusing = False
            with pytest.raises(ConfigError, match="another jtrades serve"):
                await asyncio.wait_for(running, 30)
        (lost,) = [e for e in logs if e["event"] == "daemon.instance_lost"]
        assert lost["log_level"] == "error"
        assert any(e["event"] == "daemon.failed" for e in logs)
        assert first.hooks is not None
        assert not first.hooks.accepting
        with pytest.raises(OSError):  # nothing listens any more
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        assert await status_state(db_url) == "running"  # not written "stopped" over
    finally:
        await other.close()
        await _stopped(first, running)
        await relay.close()


async def test_a_lock_left_with_a_session_the_server_still_keeps_is_taken_back(
    settings: Settings, db_url: str
) -> None:
    """The daemon's side of its lock connection dies, the server's does not (until its TCP
    keepalive, hours by default): the lock stays with that session, no other daemon can start,
    and a new session of this daemon cannot take it either. Stopping then would keep the
    restarted daemon refused for those hours: the daemon ends its own leftover session (named
    by pid and start, never another daemon's) and takes the lock again."""
    relay = ClientCutter(db_url)
    url = await relay.start()
    db = settings.database.model_copy(update={"url": url})
    first = Daemon(_on_free_port(settings.model_copy(update={"database": db})))
    running = asyncio.create_task(first.run())
    try:
        assert await _started(first, running)
        pid = first.instance.conn.get_server_pid()
        relay.cut_clients()
        admin = await asyncpg.connect(db_url)
        try:
            for _ in range(300):
                if first.instance.conn is not None and first.instance.conn.get_server_pid() != pid:
                    break
                await asyncio.sleep(0.05)
            assert not running.done()
            assert first.instance.conn is not None
            assert first.instance.conn.get_server_pid() != pid
            assert not await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            )
        finally:
            await admin.close()
        await _refused(settings)
    finally:
        await _stopped(first, running)
        await relay.close()


class StallingRelay(ClientCutter):
    """A ``ClientCutter`` that, armed, lets the next ``pg_try_advisory_lock`` reach the server
    and loses the server's answer (a partition at that moment): the client gives up and hangs
    up, and the server's session lives on holding the lock, as it would until its keepalive."""

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url)
        self.armed = False
        self.stalled: set[int] = set()  # the clients whose lock request was let through
        self._seen_parse: set[int] = set()

    async def _pump(
        self,
        src: asyncio.StreamReader,
        dst: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        to_server: bool,
    ) -> None:
        cid = id(client)
        with contextlib.suppress(OSError, ConnectionError):
            while data := await src.read(65536):
                if to_server and self.armed and b"pg_try_advisory_lock" in data:
                    self._seen_parse.add(cid)  # its Parse: the Bind/Execute comes next
                elif to_server and cid in self._seen_parse and cid not in self.stalled:
                    self.armed = False
                    self.stalled.add(cid)
                    self._cut.add(cid)  # nothing more either way; the server's side stays open
                    dst.write(data)  # the Bind/Execute reaches the server, its answer does not
                    continue
                if cid not in self._cut:
                    dst.write(data)
        if to_server and cid in self._cut:
            return
        dst.close()


async def _lock_holders(admin: asyncpg.Connection) -> list[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
        " AND classid = $1 AND objid = $2"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        INSTANCE_LOCK >> 32,
        INSTANCE_LOCK & 0xFFFFFFFF,
    )
    return [int(r["pid"]) for r in rows]


async def test_a_retake_answered_late_is_not_taken_for_another_daemon(
    settings: Settings, db_url: str
) -> None:
    """The lock's connection lost, the daemon asks for the lock again on a new one; the server
    grants it but the answer never arrives. The daemon gave up on that connection (its side
    only), looked for its earlier session alone, found it gone, and stopped blaming "another
    jtrades serve", and every restart after it was refused by that orphan, which the server
    kept for hours. Every session this process opened for the lock is known as its own before
    it asks, and one left holding the lock is ended."""
    relay = StallingRelay(db_url)
    url = await relay.start()
    db = settings.database.model_copy(update={"url": url})
    first = Daemon(_on_free_port(settings.model_copy(update={"database": db})))
    first.instance.probe_timeout_s = 2.0
    running = asyncio.create_task(first.run())
    admin = await asyncpg.connect(db_url)
    try:
        assert await _started(first, running)
        pid = first.instance.conn.get_server_pid()
        with structlog.testing.capture_logs() as logs:
            relay.armed = True
            assert await admin.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
            for _ in range(300):
                if running.done() or any(e["event"] == "daemon.instance_retaken" for e in logs):
                    break
                await asyncio.sleep(0.05)
        assert not running.done(), f"the daemon stopped: {running.exception()!r}"
        assert relay.stalled, "the retake's answer was never held back"
        (ended,) = [e for e in logs if e["event"] == "daemon.instance_leftover_ended"]
        assert first.instance.conn is not None
        now = first.instance.conn.get_server_pid()
        assert ended["pid"] != now
        assert await _lock_holders(admin) == [now]
        assert (
            await admin.fetchval(
                "SELECT application_name FROM pg_stat_activity WHERE pid = $1", now
            )
            == first.instance.name
        )
        assert not await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", ended["pid"]
        )
        assert first.hooks is not None
        assert first.hooks.accepting
        await _refused(settings)
    finally:
        await admin.close()
        await _stopped(first, running)
        await relay.close()


async def test_looking_for_a_leftover_session_gives_up_within_the_probe_timeout() -> None:
    """A database that accepts connections and answers nothing (a half-dead failover): the
    look for the daemon's own leftover session waited on asyncpg's 60 s connect timeout, and a
    stop signal waited with it."""

    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    class SilentDatabase:
        async def connect_one(self, **options: object) -> asyncpg.Connection:
            return await asyncpg.connect(
                host="127.0.0.1",
                port=port,
                user="x",
                ssl=False,  # type: ignore[arg-type]
                **options,  # type: ignore[arg-type]
            )

    lock = InstanceLock(asyncio.Event(), lambda _accepting: None, lambda _exc: None)
    lock.db = SilentDatabase()  # type: ignore[assignment]
    lock.probe_timeout_s = 0.5
    lock._ours = [instance_store.Holder(1, datetime.now(UTC), lock.name)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(5):
                await lock._end_leftovers()
        assert loop.time() - started < 2
    finally:
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


async def test_only_a_session_of_this_daemon_process_is_ever_ended(db_url: str) -> None:
    """A pid and its start name one session; the random nonce in its application_name makes
    sure it is one this process opened, never another daemon's."""
    mine = InstanceLock(asyncio.Event(), lambda _accepting: None, lambda _exc: None).name
    other = InstanceLock(asyncio.Event(), lambda _accepting: None, lambda _exc: None).name
    assert mine != other
    session = await asyncpg.connect(db_url, server_settings={"application_name": other})
    admin = await asyncpg.connect(db_url)
    try:
        theirs = await instance_store.whoami(session)
        assert theirs.name == other
        assert not await instance_store.end_session(admin, replace(theirs, name=mine))
        assert await session.fetchval("SELECT 1") == 1  # untouched
        assert await instance_store.end_session(admin, theirs)
        await admin.fetchval("SELECT pg_sleep(0.2)")
        assert not await instance_store.end_session(admin, theirs)  # gone: nothing ended
    finally:
        session.terminate()
        await admin.close()


async def test_a_daemon_whose_database_stays_unreachable_waits_and_says_so(
    settings: Settings, db_url: str
) -> None:
    """The database unreachable past ``instance_alert_s`` (a managed failover takes minutes):
    the daemon says so once, refusing alerts, and takes the lock again when it answers, rather
    than exiting into systemd's restart limit against a database still down."""
    relay = ClientCutter(db_url)
    url = await relay.start()
    db = settings.database.model_copy(update={"url": url})
    first = Daemon(_on_free_port(settings.model_copy(update={"database": db})))
    first.instance.alert_s = 1.0
    running = asyncio.create_task(first.run())
    try:
        assert await _started(first, running)
        relay.refusing = True
        with structlog.testing.capture_logs() as logs:
            relay.cut_clients()
            for _ in range(200):
                if any(e["event"] == "daemon.instance_unreachable" for e in logs):
                    break
                await asyncio.sleep(0.05)
            (unreachable,) = [e for e in logs if e["event"] == "daemon.instance_unreachable"]
            assert unreachable["log_level"] == "error"
            assert not running.done()
            assert first.hooks is not None
            assert not first.hooks.accepting
            relay.refusing = False
            for _ in range(200):
                if any(e["event"] == "daemon.instance_retaken" for e in logs):
                    break
                await asyncio.sleep(0.05)
        assert any(e["event"] == "daemon.instance_retaken" for e in logs)
        assert first.hooks.accepting
        assert not running.done()
    finally:
        await _stopped(first, running)
        await relay.close()


async def test_a_refused_daemon_does_not_migrate_the_database(
    settings: Settings, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A newer version started beside the running daemon migrated its database (under it)
    before it was refused: the lock comes before the migrations."""
    first = Daemon(_on_free_port(settings))
    running = asyncio.create_task(first.run())
    try:
        assert await _started(first, running)
        shipped = jmig.migrations()
        newer = tmp_path / f"{len(shipped) + 1:04d}_newer.sql"
        newer.write_text("CREATE TABLE newer_binary_was_here (x integer);")
        monkeypatch.setattr(
            jmig,
            "migrations",
            lambda: [*shipped, jmig.Migration(len(shipped) + 1, "newer", newer)],
        )
        await _refused(settings)
        conn = await asyncpg.connect(db_url)
        try:
            assert await conn.fetchval("SELECT to_regclass('newer_binary_was_here')") is None
            assert await conn.fetchval("SELECT max(version) FROM schema_migrations") == len(shipped)
        finally:
            await conn.close()
    finally:
        await _stopped(first, running)
