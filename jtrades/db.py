"""The connection layer: an asyncpg pool, the claim's connection of its own, and connecting.

``connect`` opens the database named by ``database.url``, or with none the embedded server
(``jtrades.embedded_db``), and applies the migrations (``jtrades.migrations``) when asked. Every
connection that runs the daemon's statements is set up here: json codecs, a command timeout,
generic plans, and no reset query on release.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
import structlog

from jtrades.aio import within
from jtrades.config import Settings
from jtrades.config_values import redact_url, url_secrets
from jtrades.db_errors import describe_error
from jtrades.embedded_db import EMBEDDED_DB, EmbeddedPostgres, ensure_database, socket_host
from jtrades.errors import ConfigError, StorageUnavailable
from jtrades.logging import register_secret
from jtrades.migrations import migrate
from jtrades.store import Executor

log = structlog.get_logger(__name__)


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
            raise StorageUnavailable(f"cannot reach the database: {describe_error(exc)}") from None

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
                await within(self.pool.close(), timeout_s)
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
            log.warning("db.lane_unavailable", error=describe_error(exc))
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
        await within(conn.close(), 5)
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


async def connect(
    settings: Settings, *, migrate_now: bool = False, abandon: threading.Event | None = None
) -> Database:
    """Open the database named by settings, starting the embedded one when no URL is set.
    ``abandon``, set, ends the wait for an embedded server still starting (a stop signal)."""
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
                raise ConfigError(f"database.url is not usable: {describe_error(exc)}") from None
            display = redact_url(settings.database.url)
        else:
            embedded = EmbeddedPostgres(settings.data_dir, abandon)
            # every failure to start is a StorageUnavailable with one line (see ``start``)
            uri = await asyncio.to_thread(embedded.start)
            host = socket_host(uri)
            await ensure_database(host)
            kwargs = {"host": host, "user": "postgres", "database": EMBEDDED_DB}
            pool = await _create_pool(settings, **kwargs)
            display = f"embedded postgres in {embedded.pgdata}"
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        error = DatabaseUnreachable if unreachable(exc) else StorageUnavailable
        raise error(f"cannot reach the database: {describe_error(exc)}") from None
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
            raise StorageUnavailable(f"cannot reach the database: {describe_error(exc)}") from None
        except BaseException:
            await db.close()
            raise
    return db


@asynccontextmanager
async def open_database(
    settings: Settings, *, migrate_now: bool = False
) -> AsyncIterator[Database]:
    db = await connect(settings, migrate_now=migrate_now)
    try:
        yield db
    finally:
        await db.close()
