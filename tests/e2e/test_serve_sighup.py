"""SIGHUP (a closed terminal, or ``kill -HUP`` meant as "reload") must not kill ``jtrades serve``.

Killed by SIGHUP it stopped with no drain and no clean stop, left its status "running", and
systemd counts a death by SIGHUP as a clean exit, so ``Restart=on-failure`` did not start it
again: open positions unprotected until someone noticed. There is nothing to reload (jtrades.toml
is read at start; the trading configuration follows the database), so it says so and runs on.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.e2e.test_serve_lifecycle import http, run_daemon

pytestmark = pytest.mark.e2e


async def _state(db_url: str) -> str:
    conn = await asyncpg.connect(db_url)
    try:
        detail = await conn.fetchval("SELECT detail FROM daemon_status")
    finally:
        await conn.close()
    return str(orjson.loads(detail)["state"])


def _lines(out: str, event: str) -> list[dict[str, object]]:
    found = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                entry = orjson.loads(line)
            except orjson.JSONDecodeError:  # the last line, read while it is being written
                continue
            if entry.get("event") == event:
                found.append(entry)
    return found


async def test_sighup_is_logged_and_the_daemon_runs_on(tmp_path: Path, db_url: str) -> None:
    with run_daemon(tmp_path, {"JTRADES_LOG__FORMAT": "json"}, db_url=db_url) as d:
        await asyncio.to_thread(d.wait_ready)
        for n in (1, 2):
            d.proc.send_signal(signal.SIGHUP)
            end = time.monotonic() + 30  # a bound on a hung daemon, not a timing check
            while len(_lines(d.output(), "daemon.sighup_ignored")) < n:
                assert d.proc.poll() is None, f"SIGHUP killed it:\n{d.output()}"
                assert time.monotonic() < end, d.output()
                await asyncio.sleep(0.05)
        # still serving, and still ready to take alerts
        assert d.proc.poll() is None, d.output()
        assert http("GET", d.base + "/healthz")[0] == 200
        assert (await asyncio.to_thread(d.wait_ready))["ready"] is True
        assert await _state(db_url) == "running"
        d.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(d.proc.wait, 60)
        out = d.output()
    assert code == 0, out
    warned = _lines(out, "daemon.sighup_ignored")
    assert len(warned) == 2  # once per signal
    assert warned[0]["level"] == "warning"
    assert "restart" in str(warned[0])
    assert "jtrades.toml" in str(warned[0])
    assert _lines(out, "daemon.stopped")
    assert await _state(db_url) == "stopped"
