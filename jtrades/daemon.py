"""``jtrades serve``: everything composed into one process, and taken apart again in order.

Start: settings → logging → what the settings would show wrong only late, checked first
(data_dir under systemd, ``server.host``, a configured secret key) → database (the embedded
one when no URL is set; a ``database.url`` that cannot be reached yet is waited for, see
``jtrades.db_wait``) → the one-daemon lock → migrations → token cache → engine
(configuration, broker sessions, startup reconciliation) → HTTP → READY=1.

Run: named background tasks under one ``TaskGroup`` (token refresh, heartbeat row, systemd
watchdog, idempotency-key pruning, the one-daemon lock's watch). Each loop survives its own
transient errors; a loop that crashes anyway takes the daemon down loudly so systemd restarts it,
instead of leaving it half alive. SIGHUP changes nothing (there is nothing to reload: jtrades.toml
is read at start, the trading configuration follows the database) and is logged as such; it
used to kill the daemon outright, which systemd counts as a clean exit and does not restart.

Stop (SIGINT/SIGTERM): at once STOPPING=1, and new deliveries get 503 (TradingView re-sends
them, and nothing was stored or sent); the loops end (one caught in a database call is
cancelled, not waited for); in-flight signals drain within a deadline; the HTTP server stops;
broker sessions close; the heartbeat says ``stopped``; the one-daemon lock is given up; the
database (and an embedded server we started) closes; the notifications still buffered are
posted. A clean stop exits 0. Every step is bounded, so the whole stop takes at most
``STOP_WITHIN_S`` (45 s, inside the unit's TimeoutStopSec=60) even when the database has
stopped answering: the bounds, and the helpers that hold each step to its own, are in
``jtrades.daemon_stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import structlog
from aiohttp import web

from jtrades import aio, webhook
from jtrades import logging as jlog
from jtrades.config import Settings, state_directory_only
from jtrades.config_values import check_listen_host
from jtrades.daemon_stop import (
    CANCEL_GRACE_S,
    ENGINE_CLOSE_S,
    HTTP_STOP_S,
    NOTIFY_CLOSE_S,
    LoopFailed,
    close_database,
    end_loops,
    reason,
    retrieved,
    within,
)
from jtrades.db import Database
from jtrades.db_wait import open_database
from jtrades.engine.tokens import TokenCache
from jtrades.errors import ConfigError, JtradesError, SecretKeyMissing, StorageUnavailable
from jtrades.instance_lock import InstanceLock
from jtrades.migrations import migrate
from jtrades.notify import Notifier, describe
from jtrades.security import ENV_KEY, SecretBox, load_secret_box
from jtrades.server import OAuthCallback, Webhooks, build_app, start_http
from jtrades.session_health import SessionOutages, session_detail
from jtrades.store import recorders as recorder_store
from jtrades.store import signals as signal_store
from jtrades.store import status as status_store
from jtrades.systemd import notify, watchdog_interval_s

log = structlog.get_logger("jtrades.daemon")
T = TypeVar("T")


def _version() -> str:
    try:
        return metadata.version("jtrades")
    except metadata.PackageNotFoundError:
        return "unknown"


__version__ = _version()

HEARTBEAT_S = 5.0
PRUNE_EVERY_S = 3600.0
KEY_RETENTION = timedelta(hours=48)  # dedup keys kept ≥ 24 h: pruned after 48
DRAIN_DEADLINE_S = 10.0


class Daemon:
    """One running ``jtrades serve``; ``run`` returns when a stop signal has been handled."""

    def __init__(
        self,
        settings: Settings,
        notifier: Notifier | None = None,
        config_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.notifier = notifier
        self.config_file = config_file  # the TOML file read, to say what to add to it
        self.stop = asyncio.Event()
        self._stopping_told = False
        self.started_at = datetime.now(UTC)
        self.port: int | None = None
        self.db: Database | None = None
        self.engine: Any = None
        self.hooks: Webhooks | None = None
        self._runner: web.AppRunner | None = None  # set once listening
        self.instance = InstanceLock(self.stop, self._set_accepting, self._fail)
        self._fatal: JtradesError | None = None  # why a background loop stopped the daemon
        self.outages = SessionOutages()  # how long each broker session has been down
        self._box: SecretBox | None = None  # the configured master key, read before the start

    def request_stop(self, signame: str = "") -> None:
        first = not self.stop.is_set()
        # the stop first, the log line after: nothing the log does may keep a stop from
        # happening (a signal handler's error is swallowed by the loop)
        self.stop.set()
        self._stopping()
        if first:
            log.info("daemon.stopping", signal=signame or None)

    def _stopping(self) -> None:
        """STOPPING=1 and no more deliveries, at once: before the loops end (one may be inside
        a database call that takes its time), the drain, or anything else of the stop."""
        if self.hooks is not None:
            self.hooks.refusal = webhook.SHUTTING_DOWN
            self.hooks.accepting = False
        if not self._stopping_told:
            self._stopping_told = True
            notify("STOPPING=1")

    def _sighup(self) -> None:
        """Nothing to reload: logged, once per signal, and the daemon runs on."""
        where = str(self.config_file) if self.config_file is not None else "jtrades.toml"
        log.warning(
            "daemon.sighup_ignored",
            effect="nothing reloaded, the daemon runs on; configuration made with the jtrades"
            " CLI (recorders, traders, accounts) applies without a signal",
            action=f"to apply a change to {where}, restart the daemon (systemctl restart jtrades)",
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        loop.add_signal_handler(signal.SIGHUP, self._sighup)
        if self.notifier is not None:
            await self.notifier.start()
            log.info("daemon.notifications", targets=describe(self.notifier.targets))
        try:
            self._check_data_dir()
            self._check_host()
            self._box = self._configured_key()
            db_or_none = await open_database(self.settings, self._until_stopped, self._sleep)
            if db_or_none is None:
                log.info("daemon.start_cancelled")
                return
            self.db = db = db_or_none
            log.info("daemon.database", database=db.url_for_display)
            # the whole start is cut short by a stop: each step may wait on a database that
            # stopped answering, or on brokers, and the stop has its bound to keep
            started = await self._until_stopped(self._start(db))
            if started is None:
                log.info("daemon.start_cancelled")
                return
            tokens = started.result()
            if self.stop.is_set():  # told to stop as the start ended: never ready
                return
            srv = self.settings.server
            aio.settle_heap()
            assert self.hooks is not None
            self.hooks.started = True
            notify(f"READY=1\nSTATUS=listening on {srv.host}:{self.port}")
            log.info(
                "daemon.ready",
                host=srv.host,
                port=self.port,
                webhook_url=f"{srv.public_url}/webhook/<token>",
                recorders=len(tokens),
                version=__version__,
                event_loop=aio.loop_name(),
            )
            if not self.stop.is_set():
                async with asyncio.TaskGroup() as tg:
                    loops = [
                        tg.create_task(_named(name, factory), name=name)
                        for name, factory in self._loops(tokens).items()
                    ]
                    await self.stop.wait()
                    await end_loops(loops)
            if self._fatal is not None:
                raise self._fatal
        except JtradesError as exc:
            # The CLI prints it as well; logged, it reaches the notifications before they close.
            log.error("daemon.failed", error=str(exc))
            exc.logged = True
            raise
        except Exception as exc:
            log.error("daemon.crashed", error=reason(exc))
            raise
        finally:
            try:
                await self._shutdown()
            finally:
                for sig in handled:
                    loop.remove_signal_handler(sig)
                if self.notifier is not None:  # last: "daemon.stopped" goes out too
                    await self.notifier.close(NOTIFY_CLOSE_S)

    async def _start(self, db: Database) -> TokenCache:
        """From an open database to a listening, "running" daemon; ``run`` cancels it on a
        stop. ``/readyz`` says ready only once ``run`` has told systemd (``Webhooks.started``):
        before, a probe passed while the "running" heartbeat still waited on the database."""
        await self._only_instance(db)
        await self._migrate(db)
        settled = await signal_store.settle_interrupted(db.pool, self.started_at)
        if settled:
            log.warning("daemon.interrupted_signals", signals=settled)
        tokens = TokenCache(lambda: recorder_store.all_token_hashes(db.pool))
        await tokens.refresh()
        from jtrades.engine.engine import Engine

        self.engine = Engine(db, self.settings)
        await self.engine.start()
        self.hooks = Webhooks(db, self.settings, tokens, self.engine)
        self.hooks.started = False
        oauth = OAuthCallback(db, self.settings, self._secret_box())
        srv = self.settings.server
        app = build_app(self.hooks, oauth)
        try:
            self._runner, self.port = await start_http(app, srv.host, srv.port)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {srv.host}:{srv.port}: {exc.strerror or exc} "
                "(another jtrades running? set server.port)"
            ) from None
        await self._beat("running")
        return tokens

    def _check_data_dir(self) -> None:
        """Under systemd, data_dir must be in the config file: from $STATE_DIRECTORY alone, the
        CLI run with the same file (it has no such variable) would read another embedded
        database and another secret.key, and say it succeeded."""
        state = state_directory_only(self.settings)
        if state is None:
            return
        line = f'data_dir = "{state}"'
        seen = "which the jtrades CLI does not see (another embedded database and secret key)"
        if self.config_file is not None:
            raise ConfigError(
                f"data_dir is not set in {self.config_file}: under systemd it came from"
                f" $STATE_DIRECTORY alone, {seen}; add the line {line} at the top of"
                f" {self.config_file}, above any [section]"
            )
        raise ConfigError(
            f"data_dir is not set: under systemd it came from $STATE_DIRECTORY alone, {seen};"
            f" put the line {line} in a config file (e.g. /etc/jtrades/jtrades.toml) and pass"
            " it with --config to serve and to the CLI"
        )

    def _check_host(self) -> None:
        """``server.host`` checked again before anything starts: loading validates it, but
        settings made in code (``model_copy``) skip the validators, and a host that cannot be
        listened on was found only at the end of the start, after the database, the
        migrations and the broker sessions."""
        try:
            check_listen_host(self.settings.server.host)
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: {exc}") from None

    def _configured_key(self) -> SecretBox | None:
        """The master key when one is configured (``secrets.key_file`` or ``JTRADES_SECRET_KEY``),
        read before anything starts: a key file missing, unreadable or holding no key was found
        only when the OAuth callback was set up, after the database, the migrations and the
        engine (whose broker sessions could not open their passwords meanwhile). Without either,
        None: the generated ``data_dir/secret.key`` may not exist yet, and ``_secret_box`` says
        so (``daemon.no_secret_key``) and runs on."""
        if not self.settings.secrets.key_file and not os.environ.get(ENV_KEY, "").strip():
            return None
        return load_secret_box(self.settings, create=False)

    async def _until_stopped(self, step: Awaitable[T]) -> asyncio.Future[T] | None:
        """Run ``step`` to its end (its future, done) unless a stop signal comes first (None,
        and ``step`` cancelled)."""
        task = asyncio.ensure_future(step)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if task.done():
            return task
        task.cancel()
        # a cancelled database call may wait on an answer that never comes: the stop's later
        # steps terminate its connection, which ends it
        await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
        task.add_done_callback(retrieved)
        return None

    def _secret_box(self) -> SecretBox | None:
        """The master key for storing OAuth tokens; without one, /oauth/callback loads it when
        a callback comes (`accounts connect` makes it), and says so if there is still none."""
        if self._box is not None:
            return self._box
        try:
            return load_secret_box(self.settings, create=False)
        except SecretKeyMissing:
            log.info(
                "daemon.no_secret_key", effect="OAuth connect is unavailable until one is made"
            )
            return None

    def _loops(self, tokens: TokenCache) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        assert self.engine is not None
        changes = self.engine.changes
        loops: dict[str, Callable[[], Coroutine[Any, Any, None]]] = {
            "tokens.refresh": lambda: changes.follow(self.stop, tokens.refresh, "tokens"),
            "daemon.heartbeat": self._heartbeat_loop,
            "daemon.prune_keys": self._prune_loop,
            "daemon.instance": self.instance.watch,
        }
        interval = watchdog_interval_s()
        if interval is not None:
            loops["daemon.watchdog"] = lambda: self._watchdog_loop(interval)
        return loops

    async def _only_instance(self, db: Database) -> None:
        """Refuse to run beside another ``jtrades serve`` on this database: it would open the
        same broker sessions and send every alert's orders again. Checked before anything is
        written, migrations included (the interrupted signals it would settle are the running
        daemon's own, and a newer version migrated the schema under it), with a session lock on
        a connection held until this daemon stops, so a crashed one frees it."""
        if await self.instance.take(db):
            return
        who = ""
        with contextlib.suppress(JtradesError, asyncpg.PostgresError):  # a schema not made yet
            beat = await status_store.get(db.pool)
            if beat:
                who = f"pid {beat.pid}, heartbeat {beat.heartbeat_at:%Y-%m-%d %H:%M:%S %Z}"
        raise ConfigError(
            f"another jtrades serve is running on this database ({who or 'no status yet'}):"
            " stop it first; one daemon per database"
        )

    async def _migrate(self, db: Database) -> None:
        try:
            async with db.pool.acquire() as conn:
                await migrate(conn)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise StorageUnavailable(f"cannot reach the database: {type(exc).__name__}") from None

    def _set_accepting(self, accepting: bool) -> None:
        """The instance lock's switch: off while it takes the lock again (its own 503 detail,
        unless the daemon is stopping), on once it holds it."""
        if self.hooks is not None:
            if not accepting and not self.stop.is_set():
                self.hooks.refusal = webhook.RETAKING_LOCK
            self.hooks.accepting = accepting

    def _fail(self, exc: JtradesError) -> None:
        """Stop taking alerts now, say why (an error: notified), and make ``run`` raise it, so
        the process exits non-zero and systemd restarts it (into the usual refusal, while
        another daemon runs)."""
        if self.hooks is not None:
            self.hooks.refusal = webhook.SHUTTING_DOWN
            self.hooks.accepting = False
        log.error("daemon.instance_lost", error=str(exc))
        self._fatal = exc
        self.request_stop("instance lock lost")

    async def _shutdown(self) -> None:
        """Take the daemon apart, every step bounded (``jtrades.daemon_stop``): at most
        ``STOP_WITHIN_S`` with the notifications' own ``NOTIFY_CLOSE_S``, even when the database has stopped
        answering. Never raises: a step that fails or runs out of time is logged, and the next
        one runs."""
        self._stopping()
        if self.hooks is not None:
            try:
                # its own deadline first: it says what it left unfinished
                drained = await within(self.hooks.drain(DRAIN_DEADLINE_S), DRAIN_DEADLINE_S + 1)
            except TimeoutError:
                drained = False
            except Exception as exc:
                drained = False
                log.error("daemon.drain_failed", error=reason(exc))
            log.info("daemon.drained", complete=drained)
        if self._runner is not None:
            limit = HTTP_STOP_S
            try:
                await within(self._runner.cleanup(), limit)
            except TimeoutError:
                log.error("daemon.http_close_failed", error=f"not closed within {limit:.3g} s")
            except Exception as exc:
                log.error("daemon.http_close_failed", error=reason(exc))
        if self.engine is not None:
            limit = ENGINE_CLOSE_S
            try:
                await within(self.engine.close(), limit)
            except TimeoutError:
                log.error("daemon.engine_close_failed", error=f"not closed within {limit:.3g} s")
            except Exception as exc:
                log.error("daemon.engine_close_failed", error=type(exc).__name__)
        await close_database(self.instance, self.db, lambda: self._beat("stopped"))
        log.info("daemon.stopped")

    # --- background loops ------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stop; True when it is time to stop."""
        return await aio.set_within(self.stop, seconds)

    async def _beat(self, state: str) -> None:
        assert self.db is not None
        engine_ready = bool(self.engine.ready()) if self.engine is not None else False
        brokers = getattr(self.engine, "brokers", None)
        sessions = session_detail(brokers)
        self.outages.mark(sessions["sessions"], time.monotonic())
        detail = {
            "state": state,
            "ready": engine_ready,
            "host": self.settings.server.host,
            "port": self.port,
            "version": __version__,
            "inflight": self.hooks.inflight if self.hooks is not None else 0,
            **sessions,
            "brokers_ready": bool(brokers.ready()) if brokers is not None else False,
            "config_changes": _changes_mode(self.engine),
        }
        pid = os.getpid()
        await status_store.heartbeat(
            self.db.pool,
            pid=pid,
            started_at=self.started_at,
            detail=detail,
            # where this pid is us: `status` on this host sees at once that we were killed
            host_id=status_store.host_id(),
            pid_start_ticks=status_store.start_ticks(pid),
        )

    async def _heartbeat_loop(self) -> None:
        while not await self._sleep(HEARTBEAT_S):
            if not self.instance.held:
                continue  # the lock is being taken again: the row may be another daemon's
            try:
                await self._beat("running")
            except JtradesError as exc:
                log.warning("daemon.heartbeat_failed", error=str(exc))

    async def _watchdog_loop(self, interval: float) -> None:
        # Pinged from the event loop itself: a blocked loop stops the pings and systemd restarts us.
        while not await self._sleep(interval):
            notify("WATCHDOG=1")

    async def _prune_loop(self) -> None:
        while True:
            assert self.db is not None
            try:
                n = await signal_store.prune_keys(self.db.pool, datetime.now(UTC) - KEY_RETENTION)
                if n:
                    log.info("daemon.keys_pruned", keys=n)
            except JtradesError as exc:
                log.warning("daemon.prune_failed", error=str(exc))
            if await self._sleep(PRUNE_EVERY_S):
                return


async def _named(name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run one loop as its own task. Cancelled (the stop, or a sibling loop failed), this ends
    at once and leaves the loop to end by itself: a loop inside a database call that gets no
    answer would otherwise hold the whole stop up (the connections are terminated later in the
    stop, which ends it)."""
    inner = asyncio.get_running_loop().create_task(factory(), name=f"{name}.run")
    try:
        await asyncio.shield(inner)
    except asyncio.CancelledError:
        inner.cancel()
        inner.add_done_callback(retrieved)
        raise
    except Exception as exc:
        raise LoopFailed(f"{name} failed: {type(exc).__name__}: {exc}") from exc


def serve(settings: Settings, config_file: Path | None = None) -> None:
    """Run the daemon until SIGINT/SIGTERM (blocking); ``JtradesError`` propagates to the CLI.
    ``config_file``: the TOML file the settings were read from, if any (named in errors)."""
    notifier = Notifier.from_settings(settings.notify)
    jlog.configure(
        settings.log.format, settings.log.level, sink=notifier.processor if notifier else None
    )
    aio.run(Daemon(settings, notifier, config_file).run())


def _changes_mode(engine: Any) -> str | None:
    """How the running daemon learns of CLI changes: "heard" as they commit, or "polled"."""
    changes = getattr(engine, "changes", None)
    if changes is None:
        return None
    return "heard" if changes.listening else "polled"
