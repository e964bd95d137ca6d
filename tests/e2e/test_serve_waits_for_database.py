"""``jtrades serve`` started while its database cannot be reached waits for it.

It exited 1 in under a second; systemd restarted it five times in about 18 s, reached the unit's
start limit (StartLimitBurst=5 in 600 s) and left it failed until someone ran reset-failed:
the database back a minute later, nothing trading, nothing protecting open positions. Now a
database that does not answer (connection refused, no answer, the server starting up) is waited
for, saying so to the log and to systemd, and a stop signal ends the wait (exit 0). What a
retry cannot fix (a wrong password, a missing database or role, a malformed URL) still exits 1
at once with one line.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from tests.e2e.pgproxy import PgProxy
from tests.e2e.test_serve_lifecycle import Daemon, run_daemon

pytestmark = pytest.mark.e2e

LIMIT_S = 30.0  # a bound on a hung or dead daemon, never a timing check


def _waiting(out: str) -> list[dict[str, object]]:
    found = []
    for line in out.splitlines():
        if line.startswith("{"):
            entry = orjson.loads(line)
            if entry.get("event") == "daemon.waiting_for_database":
                found.append(entry)
    return found


async def _until_waiting(d: Daemon, n: int) -> list[dict[str, object]]:
    """The daemon's first ``n`` waiting lines; it must stay alive meanwhile."""
    end = time.monotonic() + LIMIT_S
    while len(lines := _waiting(d.output())) < n:
        assert d.proc.poll() is None, f"exited instead of waiting:\n{d.output()}"
        assert time.monotonic() < end, d.output()
        await asyncio.sleep(0.05)
    return lines


class Notifications:
    """What the daemon tells systemd over $NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.messages: list[str] = []

    def read(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages


@contextmanager
def notify_socket(tmp_path: Path) -> Iterator[tuple[Notifications, dict[str, str]]]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.setblocking(False)
        yield Notifications(sock), {"NOTIFY_SOCKET": str(path), "JTRADES_LOG__FORMAT": "json"}


def _proxy(db_url: str) -> PgProxy:
    try:
        return PgProxy(db_url)
    except ValueError:
        pytest.skip("the test database is reached over a Unix socket")


@pytest.mark.timeout(180)
async def test_serve_waits_for_the_database_then_starts(tmp_path: Path, db_url: str) -> None:
    proxy = _proxy(db_url)  # nothing listens on its port yet: the server is down
    try:
        with (
            notify_socket(tmp_path) as (sd, env),
            run_daemon(tmp_path, env, db_url=proxy.url()) as d,
        ):
            (first,) = await _until_waiting(d, 1)
            assert first["level"] == "warning"
            assert first["reason"], first
            assert "postgres@127.0.0.1" in str(first["database"])  # which one, no password
            told = "\n".join(sd.read())
            assert "STATUS=waiting for the database" in told, told
            assert "EXTEND_TIMEOUT_USEC=" in told, told  # TimeoutStartSec does not kill it
            assert "READY=1" not in told

            # the server comes up, but is still starting: another reason, said once
            proxy.refuse_with = ("57P03", "the database system is starting up")
            await proxy.listen()
            lines = await _until_waiting(d, 2)
            assert "starting up" in str(lines[1]["reason"]), lines
            end = time.monotonic() + LIMIT_S
            while proxy.connections < 3:  # tried again, not said again
                assert d.proc.poll() is None, d.output()
                assert time.monotonic() < end, d.output()
                await asyncio.sleep(0.05)
            assert len(_waiting(d.output())) == 2, d.output()

            # and now it answers: the daemon starts as if it had been there all along
            proxy.refuse_with = None
            ready = await asyncio.to_thread(d.wait_ready, 60)
            assert ready["ready"] is True
            # /readyz answers as soon as HTTP listens; READY=1 follows it, a moment later
            end = time.monotonic() + LIMIT_S
            while not any(m.startswith("READY=1") for m in sd.read()):
                assert d.proc.poll() is None, d.output()
                assert time.monotonic() < end, (sd.messages, d.output())
                await asyncio.sleep(0.05)
            d.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(d.proc.wait, 60)
            out = d.output()
    finally:
        await proxy.close()
    assert code == 0, out
    assert "daemon.ready" in out


@pytest.mark.timeout(120)
async def test_a_stop_signal_ends_the_wait_with_exit_0(tmp_path: Path, db_url: str) -> None:
    proxy = _proxy(db_url)  # never listens
    with run_daemon(tmp_path, {"JTRADES_LOG__FORMAT": "json"}, db_url=proxy.url()) as d:
        await _until_waiting(d, 1)
        d.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(d.proc.wait, LIMIT_S)
        out = d.output()
    assert code == 0, out
    assert "daemon.stopped" in out
    assert "Traceback" not in out


def _other_database(db_url: str, name: str) -> str:
    return urlunsplit(urlsplit(db_url)._replace(path=f"/{name}"))


def _other_user(db_url: str, user: str) -> str:
    parts = urlsplit(db_url)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.netloc.rsplit('@', 1)[-1]}"))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["wrong password", "missing database", "unknown role"])
async def test_what_a_retry_cannot_fix_still_exits_1_at_once(
    tmp_path: Path, db_url: str, case: str
) -> None:
    """Guards the line between the two: these must not be waited for."""
    if urlsplit(db_url).port is None:
        pytest.skip("the test database is reached over a Unix socket")
    proxy: PgProxy | None = None
    if case == "wrong password":
        proxy = PgProxy(db_url)
        proxy.refuse_with = ("28P01", 'password authentication failed for user "postgres"')
        await proxy.listen()
        url = proxy.url()
    elif case == "missing database":
        url = _other_database(db_url, "jt_no_such_database")
    else:
        url = _other_user(db_url, "jt_no_such_role")
    try:
        with run_daemon(tmp_path, {}, db_url=url) as d:
            code = await asyncio.to_thread(d.proc.wait, LIMIT_S)
            out = d.output()
    finally:
        if proxy is not None:
            await proxy.close()
    assert code == 1, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out
    assert errors[0].startswith("error: cannot reach the database"), out
    assert "waiting_for_database" not in out
    assert "Traceback" not in out
