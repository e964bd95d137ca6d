"""SIGTERM while the database has stopped answering (a network partition to a managed Postgres,
a frozen database VM): the stop must still end, inside the unit's TimeoutStopSec=60.

It did not: after the drain, the "stopped" heartbeat waited out the 30 s command timeout and
asyncpg's cancel, then the one-daemon lock's ``conn.close()`` had no bound at all; under systemd
the SIGKILL at 45 s lost the stop notifications, elsewhere the process hung for good. And a
loop caught inside a database call held up STOPPING=1 and the webhook refusal (the TaskGroup
waited for it) for up to 30 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from jtrades import daemon, daemon_stop
from tests.e2e.pgproxy import PgProxy
from tests.e2e.test_serve_lifecycle import run_daemon

pytestmark = pytest.mark.e2e

TIMEOUT_STOP_SEC = 60  # contrib/jtrades.service
BOUND_S = 48.0  # signal to exit, the interpreter's own exit included: 12 s to spare


def test_the_documented_stop_bound_is_well_within_the_units_timeout() -> None:
    assert daemon_stop.STOP_WITHIN_S + 3 <= BOUND_S <= TIMEOUT_STOP_SEC - 10
    unit = (Path(__file__).parents[2] / "contrib" / "jtrades.service").read_text()
    assert f"TimeoutStopSec={TIMEOUT_STOP_SEC}\n" in unit


@pytest.mark.timeout(180)
async def test_sigterm_with_a_silent_database_stops_within_the_bound(
    tmp_path: Path, db_url: str
) -> None:
    try:
        proxy = PgProxy(db_url)
    except ValueError:
        pytest.skip("the test database is reached over a Unix socket: nothing to partition")
    await proxy.listen()
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.setblocking(False)
        env = {"JTRADES_LOG__FORMAT": "json", "NOTIFY_SOCKET": str(sock_path)}
        try:
            with run_daemon(tmp_path, env, db_url=proxy.url()) as d:
                await asyncio.to_thread(d.wait_ready)
                proxy.freeze()
                # past one heartbeat: a loop is now inside a database call that gets no answer
                await asyncio.sleep(daemon.HEARTBEAT_S + 1.5)
                assert d.proc.poll() is None, d.output()
                while True:  # what was sent before the stop
                    try:
                        sock.recv(4096)
                    except BlockingIOError:
                        break
                d.proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                # STOPPING=1 first: before the loops end, the drain and the database steps
                stopping_at = None
                end = signalled + 5  # a bound on a message that is sent at once
                while stopping_at is None and time.monotonic() < end:
                    try:
                        if "STOPPING=1" in sock.recv(4096).decode():
                            stopping_at = time.monotonic()
                    except BlockingIOError:
                        await asyncio.sleep(0.02)
                # the process ends within the bound (a deadline, not a measure of a fast path)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    await asyncio.to_thread(d.proc.wait, signalled + BOUND_S - time.monotonic())
                code = d.proc.poll()
                took = time.monotonic() - signalled
                out = d.output()
        finally:
            await proxy.close()
    print(f"exit {code} {took:.1f} s after SIGTERM")  # shown on failure
    assert code is not None, f"still running {took:.1f} s after SIGTERM:\n{out[-3000:]}"
    assert stopping_at is not None, f"no STOPPING=1 within 5 s of SIGTERM:\n{out[-3000:]}"
    assert "daemon.database_unanswered" in out, out[-3000:]
    assert "did not answer" in out, out[-3000:]
    assert "daemon.stopped" in out, out[-3000:]
