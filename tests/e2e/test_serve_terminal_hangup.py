"""`jtrades serve` run in a terminal that then closes (ssh drops, the window is closed): it
lives on through the hangup's SIGHUP, its stdout and stderr a hung-up terminal where every
write fails with EIO. The log call raised in whatever logged: a real alert answered 500 after
its orders had left, and SIGTERM did nothing (its handler logs first). It must take alerts and
stop as ever."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import asyncpg
import orjson
import pytest

from tests.cli import cli_env
from tests.conftest import *  # noqa: F403
from tests.e2e.test_serve_lifecycle import free_port, http

pytestmark = pytest.mark.e2e


def _make_ctty() -> None:
    # runs in the child after setsid (start_new_session) and the dup2 of the slave to 0/1/2
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


async def _state(db_url: str) -> str:
    conn = await asyncpg.connect(db_url)
    try:
        detail = await conn.fetchval("SELECT detail FROM daemon_status")
    finally:
        await conn.close()
    return str(orjson.loads(detail)["state"])


async def _fetch(db_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


TOKEN = "tok-terminal-closed-0123456789"


async def test_daemon_in_a_terminal_that_closes(tmp_path: Path, db_url: str) -> None:
    # a recorder with one paper sub-account, as tests/e2e/test_serve_lifecycle.py sets it up
    await _fetch(
        db_url,
        "WITH u AS (INSERT INTO users (name, email, status) VALUES ('u', 'u@x.io', 'approved')"
        "           RETURNING id),"
        " r AS (INSERT INTO recorders (user_id, name, symbol, token_hash)"
        f"       SELECT id, 'r', 'MNQ1!', sha256('{TOKEN}'::bytea) FROM u RETURNING id, user_id),"
        " a AS (INSERT INTO accounts (user_id, label, env) SELECT user_id, 'p', 'paper' FROM r"
        "       RETURNING id),"
        " s AS (INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        "       SELECT id, 1, 'P1' FROM a RETURNING id),"
        " t AS (INSERT INTO traders (user_id, recorder_id, enabled)"
        "       SELECT user_id, id, true FROM r RETURNING id)"
        " INSERT INTO trader_accounts (trader_id, sub_account_id) SELECT t.id, s.id FROM t, s"
        " RETURNING trader_id",
    )
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    env = dict(os.environ)
    for k, v in cli_env(db_url=db_url, data_dir=data_dir, env={}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    env["JTRADES_SERVER__PORT"] = str(port)
    env["JTRADES_LOG__FORMAT"] = "json"
    master, slave = pty.openpty()
    proc = subprocess.Popen(  # noqa: ASYNC220 (a pty as its controlling terminal)
        [sys.executable, "-m", "jtrades.cli", "serve"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        preexec_fn=_make_ctty,
    )
    os.close(slave)
    out = bytearray()

    def reader() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            out.extend(chunk)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"
    try:
        end = time.monotonic() + 60
        while True:
            assert proc.poll() is None, out.decode(errors="replace")
            assert time.monotonic() < end, out.decode(errors="replace")
            try:
                if http("GET", base + "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            await asyncio.sleep(0.1)

        # the terminal closes: SIGHUP to the session, and the tty is hung up
        os.close(master)
        t.join(10)  # the reader has seen the hangup
        assert proc.poll() is None, "the daemon died of the hangup"

        # it still takes deliveries: an unknown token is a 404, a real alert is a 200
        answers: list[object] = []
        for path, body in [
            ("/webhook/not-a-real-token-123", b"buy MNQ1! 1"),
            (
                f"/webhook/{TOKEN}",
                b'{"action": "buy", "ticker": "MNQ1!", "price": 21500, "id": "a1"}',
            ),
        ]:
            try:
                answers.append(http("POST", base + path, body)[0])
            except OSError as exc:
                answers.append(repr(exc))
        alive = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(proc.wait, 45)
        except subprocess.TimeoutExpired:
            code = "no exit within 45 s of SIGTERM"
        state = await _state(db_url)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert alive
    assert (answers, code, state) == ([404, 200], 0, "stopped")
