"""``jtrades serve``: everything composed into one process, and taken apart again in order.

Start: settings → logging → database (the embedded one when no URL is set) → the one-daemon
lock → migrations → token cache → engine (configuration, broker sessions, startup
reconciliation) → HTTP → READY=1.

Run: named background tasks under one ``TaskGroup`` (token refresh, heartbeat row, systemd
watchdog, idempotency-key pruning, the one-daemon lock's watch). Each loop survives its own
transient errors; a loop that crashes anyway takes the daemon down loudly so systemd restarts it,
instead of leaving it half alive.

Stop (SIGINT/SIGTERM): STOPPING=1; new deliveries get 503 (TradingView re-sends them, and
nothing was stored or sent); in-flight signals drain within a deadline; the HTTP server stops;
broker sessions close; the heartbeat says ``stopped``; the database (and an embedded server we
started) closes; the notifications still buffered are posted. A clean stop exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from importlib import metadata
from typing import Any

import asyncpg
import structlog

from jtrades import aio, webhook
from jtrades import logging as jlog
from jtrades.config import Settings
from jtrades.db import Database, connect, migrate
from jtrades.engine.tokens import TokenCache
from jtrades.errors import ConfigError, JtradesError, SecretKeyMissing, StorageUnavailable
from jtrades.instance_lock import InstanceLock
from jtrades.notify import Notifier, describe
from jtrades.security import SecretBox, load_secret_box
from jtrades.server import OAuthCallback, Webhooks, build_app, start_http
from jtrades.store import recorders as recorder_store
from jtrades.store import signals as signal_store
from jtrades.store import status as status_store
from jtrades.systemd import notify, watchdog_interval_s

log = structlog.get_logger("jtrades.daemon")


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

    def __init__(self, settings: Settings, notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.notifier = notifier
        self.stop = asyncio.Event()
        self.started_at = datetime.now(UTC)
        self.port: int | None = None
        self.db: Database | None = None
        self.engine: Any = None
        self.hooks: Webhooks | None = None
        self.instance = InstanceLock(self.stop, self._set_accepting, self._fail)
        self._fatal: JtradesError | None = None  # why a background loop stopped the daemon

    def request_stop(self, signame: str = "") -> None:
        if not self.stop.is_set():
            log.info("daemon.stopping", signal=signame or None)
        self.stop.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop, sig.name)
        runner = None
        if self.notifier is not None:
            await self.notifier.start()
            log.info("daemon.notifications", targets=describe(self.notifier.targets))
        try:
            self.db = db = await connect(self.settings)
            log.info("daemon.database", database=db.url_for_display)
            await self._only_instance(db)
            await self._migrate(db)
            settled = await signal_store.settle_interrupted(db.pool, self.started_at)
            if settled:
                log.warning("daemon.interrupted_signals", signals=settled)
            tokens = TokenCache(lambda: recorder_store.all_token_hashes(db.pool))
            await tokens.refresh()
            from jtrades.engine.engine import Engine

            self.engine = Engine(db, self.settings)
            if not await self._unless_stopped(self.engine.start()):
                return
            self.hooks = Webhooks(db, self.settings, tokens, self.engine)
            oauth = OAuthCallback(db, self.settings, self._secret_box())
            srv = self.settings.server
            app = build_app(self.hooks, oauth)
            try:
                runner, self.port = await start_http(app, srv.host, srv.port)
            except OSError as exc:
                raise ConfigError(
                    f"cannot listen on {srv.host}:{srv.port}: {exc.strerror or exc} "
                    "(another jtrades running? set server.port)"
                ) from None
            await self._beat("running")
            aio.settle_heap()
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
                    for name, factory in self._loops(tokens).items():
                        tg.create_task(_named(name, factory), name=name)
                    await self.stop.wait()
            if self._fatal is not None:
                raise self._fatal
        except JtradesError as exc:
            # The CLI prints it as well; logged, it reaches the notifications before they close.
            log.error("daemon.failed", error=str(exc))
            raise
        except Exception as exc:
            log.error("daemon.crashed", error=_reason(exc))
            raise
        finally:
            try:
                await self._shutdown(runner)
                for sig in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(sig)
            finally:
                if self.notifier is not None:  # last: "daemon.stopped" goes out too
                    await self.notifier.close()

    async def _unless_stopped(self, step: Coroutine[Any, Any, None]) -> bool:
        """Run a start-up step that may wait on brokers; a stop signal cancels it (False)."""
        task = asyncio.ensure_future(step)
        stopper = asyncio.ensure_future(self.stop.wait())
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if task.done():
            task.result()
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        log.info("daemon.start_cancelled")
        return False

    def _secret_box(self) -> SecretBox | None:
        """The master key for storing OAuth tokens; without one, /oauth/callback says so."""
        try:
            return load_secret_box(self.settings, create=False)
        except SecretKeyMissing:
            log.info("daemon.no_secret_key", effect="OAuth connect is unavailable")
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

    async def _shutdown(self, runner: Any) -> None:
        notify("STOPPING=1")
        if self.hooks is not None:
            drained = await self.hooks.drain(DRAIN_DEADLINE_S)
            log.info("daemon.drained", complete=drained)
        if runner is not None:
            await runner.cleanup()
        if self.engine is not None:
            try:
                await asyncio.wait_for(self.engine.close(), DRAIN_DEADLINE_S)
            except Exception as exc:
                log.error("daemon.engine_close_failed", error=type(exc).__name__)
        if self.instance.held:  # only the daemon that ran writes its status
            if self.db is not None:
                with contextlib.suppress(Exception):
                    await self._beat("stopped")
            with contextlib.suppress(Exception):
                await self.instance.close()
        if self.db is not None:
            await self.db.close()
        log.info("daemon.stopped")

    # --- background loops ------------------------------------------------------------------

    async def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` or until stop; True when it is time to stop."""
        return await aio.set_within(self.stop, seconds)

    async def _beat(self, state: str) -> None:
        assert self.db is not None
        engine_ready = bool(self.engine.ready()) if self.engine is not None else False
        sessions: list[dict[str, Any]] = []
        brokers = getattr(self.engine, "brokers", None)
        if brokers is not None and hasattr(brokers, "sessions"):
            sessions = [
                {"account_id": a, "env": env, "up": brokers.session_up(b)}
                for a, env, b in brokers.sessions()
            ]
        detail = {
            "state": state,
            "ready": engine_ready,
            "host": self.settings.server.host,
            "port": self.port,
            "version": __version__,
            "inflight": self.hooks.inflight if self.hooks is not None else 0,
            "sessions": sessions,
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


class _LoopFailed(Exception):
    """A background loop's error, with the loop's name (a TaskGroup's error does not say)."""


async def _named(name: str, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
    try:
        await factory()
    except Exception as exc:
        raise _LoopFailed(f"{name} failed: {type(exc).__name__}: {exc}") from exc


def _reason(exc: BaseException) -> str:
    """What failed, for the log and so the notification: a group's errors one by one (its own
    text, "unhandled errors in a TaskGroup", names neither the loop nor the error)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_reason(e) for e in exc.exceptions)
    if isinstance(exc, _LoopFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def serve(settings: Settings) -> None:
    """Run the daemon until SIGINT/SIGTERM (blocking); ``JtradesError`` propagates to the CLI."""
    notifier = Notifier.from_settings(settings.notify)
    jlog.configure(
        settings.log.format, settings.log.level, sink=notifier.processor if notifier else None
    )
    aio.run(Daemon(settings, notifier).run())


def _changes_mode(engine: Any) -> str | None:
    """How the running daemon learns of CLI changes: "heard" as they commit, or "polled"."""
    changes = getattr(engine, "changes", None)
    if changes is None:
        return None
    return "heard" if changes.listening else "polled"
