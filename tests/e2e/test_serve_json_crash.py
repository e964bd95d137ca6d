"""JSON mode (the unit sets JTRADES_LOG__FORMAT=json): a background loop that crashes takes the
daemon down with exit 1 and says so in one scrubbed JSON line; it ended the process with
Python's raw traceback on stderr, dozens of non-JSON journal lines no scrubber had seen. The
crash here: the heartbeat's table renamed, an error ``translate_errors`` does not map."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import asyncpg
import orjson

from tests.conftest import *  # noqa: F403
from tests.e2e.test_serve_lifecycle import run_daemon


async def test_a_crash_in_json_mode_writes_only_json_lines(tmp_path: Path, db_url: str) -> None:
    with run_daemon(tmp_path, {"JTRADES_LOG__FORMAT": "json"}, db_url=db_url) as d:
        await asyncio.to_thread(d.wait_ready)
        conn = await asyncpg.connect(db_url)
        try:
            await conn.execute("ALTER TABLE daemon_status RENAME TO daemon_status_x")
        finally:
            await conn.close()
        code = await asyncio.to_thread(d.proc.wait, 60)
        out = d.output()
    lines, bad = [], []
    for line in out.splitlines():
        try:
            lines.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            bad.append(line)
    assert not bad, "\n".join(bad[:8])
    assert code == 1
    crashed = [e for e in lines if e.get("event") == "daemon.crashed"]
    assert len(crashed) == 1, crashed
    (trace,) = [e for e in lines if e.get("event") == "daemon.crash_traceback"]
    assert "UndefinedTableError" in trace["exception"]


def test_a_failed_start_in_json_mode_writes_only_json_lines(tmp_path: Path, db_url: str) -> None:
    """A start that fails with a reason of its own (the port taken here) logs
    ``daemon.failed`` as JSON; the CLI then printed it again as a plain "error: …" line."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = {"JTRADES_SERVER__PORT": str(busy.getsockname()[1]), "JTRADES_LOG__FORMAT": "json"}
        with run_daemon(tmp_path, env, db_url=db_url) as d:
            code = d.proc.wait(timeout=60)
            out = d.output()
    assert code == 1, out
    lines = [orjson.loads(line) for line in out.splitlines()]  # each one JSON, or this raises
    (failed,) = [e for e in lines if e.get("event") == "daemon.failed"]
    assert "cannot listen" in failed["error"]
