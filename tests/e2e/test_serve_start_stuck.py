"""A stop while the start is still waiting on the database, and what ``/readyz`` says then.

The start's last step, the "running" heartbeat, was outside the stop's reach and ``/readyz``
already said ready while it waited: a probe passed, the database froze under it, and a SIGTERM
then took the heartbeat's 30 s command timeout before the bounded stop even began (CI saw the
daemon still running 48 s after SIGTERM). Here a lock held on the status table holds the
heartbeat as a silent database would, deterministically.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.e2e.test_serve_lifecycle import http, run_daemon

pytestmark = pytest.mark.e2e

BOUND_S = 20.0  # the stop's steps on a database that holds the heartbeat: ~5 s; 30 s before


async def _beat_waits(db_url: str, limit_s: float = 60) -> None:
    """Until the daemon's heartbeat waits on the test's lock (asked outside the lock's
    transaction: inside one, pg_stat_activity is a snapshot)."""
    conn = await asyncpg.connect(db_url)
    try:
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            waiting = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE wait_event_type = 'Lock' AND query ILIKE '%INSERT INTO daemon_status%'"
            )
            if waiting:
                return
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    raise AssertionError("the daemon's heartbeat never waited on the lock")


@pytest.mark.timeout(180)
async def test_a_stop_during_the_start_ends_within_the_bound_and_it_was_never_ready(
    tmp_path: Path, db_url: str
) -> None:
    conn = await asyncpg.connect(db_url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("LOCK TABLE daemon_status IN ACCESS EXCLUSIVE MODE")
        with run_daemon(tmp_path, {"JTRADES_LOG__FORMAT": "json"}, db_url=db_url) as d:
            await _beat_waits(db_url)
            # listening, the database answering a probe, but the start not done: not ready
            status, body = await asyncio.to_thread(http, "GET", d.base + "/readyz")
            checks = orjson.loads(body)["checks"]
            assert (status, checks["started"], checks["database"]) == (503, False, True)
            d.proc.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(d.proc.wait, BOUND_S)
            code = d.proc.poll()
            took = time.monotonic() - signalled
            out = d.output()
        await tx.rollback()
    finally:
        await conn.close()
    assert code is not None, f"still running {took:.1f} s after SIGTERM:\n{out[-3000:]}"
    assert "daemon.start_cancelled" in out, out[-3000:]
    assert "daemon.ready" not in out, out[-3000:]
    assert "daemon.stopped" in out, out[-3000:]
