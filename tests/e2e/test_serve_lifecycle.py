"""``jtrades serve`` as a real process: starts, migrates, answers /readyz, stops cleanly on a signal."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from tests.cli import cli_env

pytestmark = pytest.mark.e2e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Daemon:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.proc = proc
        self.base = f"http://127.0.0.1:{port}"
        self.log = log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, limit_s: float = 90) -> dict[str, object]:
        """Poll /readyz until it answers 200 (the limit only bounds a hung start)."""
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"daemon exited early:\n{self.output()}"
            try:
                status, body = http("GET", self.base + "/readyz")
            except OSError:
                time.sleep(0.1)
                continue
            if status == 200:
                return dict(orjson.loads(body))
            time.sleep(0.1)
        raise AssertionError(f"daemon never became ready:\n{self.output()}")

    def stop(self, sig: signal.Signals) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=60)


@contextmanager
def run_daemon(
    tmp_path: Path, env: Mapping[str, str | None], *, db_url: str = ""
) -> Iterator[Daemon]:
    port = int(env.get("JTRADES_SERVER__PORT") or free_port())
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    full = dict(os.environ)
    overrides = cli_env(db_url=db_url, data_dir=data_dir, env=env)
    overrides["JTRADES_SERVER__PORT"] = str(port)
    for key, value in overrides.items():
        if value is None or (key == "JTRADES_DATABASE__URL" and not db_url):
            full.pop(key, None)
        else:
            full[key] = value
    log = tmp_path / "daemon.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jtrades.cli", "serve"],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=full,
            cwd=tmp_path,
        )
    try:
        yield Daemon(proc, port, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def _fetch(db_url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(db_url)
    try:
        return await conn.fetch(sql)
    finally:
        await conn.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_serve_on_the_test_database(tmp_path: Path, db_url: str, sig: signal.Signals) -> None:
    # a signal a previous daemon left half-handled gets an explainable verdict at start
    left = await _fetch(
        db_url,
        "WITH u AS (INSERT INTO users (name, email) VALUES ('u', 'u@x.io') RETURNING id),"
        " r AS (INSERT INTO recorders (user_id, name, symbol, token_hash)"
        "       SELECT id, 'r', 'MNQ1!', sha256('t'::bytea) FROM u RETURNING id)"
        " INSERT INTO signals (recorder_id, raw_body, verdict, received_at)"
        " SELECT id, 'buy', 'received', now() - interval '1 minute' FROM r RETURNING id",
    )
    with run_daemon(tmp_path, {"JTRADES_LOG__FORMAT": "json"}, db_url=db_url) as d:
        ready = d.wait_ready()
        assert ready["ready"] is True
        status, _ = http("GET", d.base + "/healthz")
        assert status == 200
        status, body = http("POST", d.base + "/webhook/not-a-real-token-123", b"buy MNQ1! 1")
        assert status == 404
        signal_id = orjson.loads(body)["signal_id"]
        code = d.stop(sig)
        out = d.output()
    assert code == 0, out
    assert "daemon.stopped" in out
    assert "not-a-real-token-123" not in out
    rows = await _fetch(db_url, "SELECT id, http_status, verdict, reason FROM signals ORDER BY id")
    assert [(r["id"], r["http_status"], r["verdict"]) for r in rows] == [
        (left[0]["id"], 200, "expired"),
        (signal_id, 404, "invalid"),
    ]
    assert rows[0]["reason"].startswith("interrupted")
    beat = await _fetch(db_url, "SELECT pid, detail FROM daemon_status")
    assert beat[0]["pid"] == d.proc.pid
    assert orjson.loads(beat[0]["detail"])["state"] == "stopped"


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A temporary folder others may traverse: as root, pgserver runs Postgres as its own
    ``pgserver`` user, which cannot enter pytest's 0700 temporary tree."""
    path = Path(tempfile.mkdtemp(prefix="jt-e2e-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_serve_on_the_embedded_default_with_no_config(open_tmp: Path) -> None:
    """The README's run command: no config file, no database URL."""
    tmp_path = open_tmp
    with run_daemon(tmp_path, {"JTRADES_CONFIG": None}) as d:
        d.wait_ready()
        code = d.stop(signal.SIGTERM)
        out = d.output()
    assert code == 0, out
    assert "embedded postgres" in out
    assert "changes.listen_failed" not in out  # configuration changes are heard here too
    pgdata = tmp_path / "data" / "pg"
    assert (pgdata / "PG_VERSION").exists()
    # the embedded server we started was stopped with us
    assert not (pgdata / "postmaster.pid").exists(), out


def test_systemd_notify_ready_watchdog_stopping(tmp_path: Path, db_url: str) -> None:
    """Under systemd (Type=notify, WatchdogSec): READY=1, then WATCHDOG=1 pings, then STOPPING=1."""
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(sock_path))
        sock.settimeout(0.2)
        env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000"}  # ping every 0.2 s
        with run_daemon(tmp_path, env, db_url=db_url) as d:
            d.wait_ready()
            messages: list[str] = []
            while sum("WATCHDOG=1" in m for m in messages) < 2:
                assert d.proc.poll() is None, d.output()
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    continue
            code = d.stop(signal.SIGTERM)
            while True:
                try:
                    messages.append(sock.recv(4096).decode())
                except TimeoutError:
                    break
    assert code == 0, d.output()
    assert messages[0].startswith("READY=1")
    assert "STOPPING=1" in messages[-1]


def test_port_in_use_is_one_line_and_exit_1(tmp_path: Path, db_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with run_daemon(tmp_path, {"JTRADES_SERVER__PORT": str(port)}, db_url=db_url) as d:
            code = d.proc.wait(timeout=60)
            out = d.output()
    assert code == 1, out
    assert f"error: cannot listen on 127.0.0.1:{port}" in out
    assert "Traceback" not in out
    assert "daemon.stopped" in out  # the engine and database were closed on the way out


async def test_sigterm_under_load_leaves_no_signal_half_handled(
    tmp_path: Path, db_url: str
) -> None:
    """Alerts keep arriving while the daemon is told to stop: each one is either handled to the
    end (200, final verdict stored) or refused before anything was stored (503 / no answer)."""
    import asyncio

    import aiohttp

    token = "load-token-abcdefghijklmnop"
    await _fetch(
        db_url,
        "WITH u AS (INSERT INTO users (name, email, status) VALUES ('u', 'u@x.io', 'approved')"
        "           RETURNING id),"
        " r AS (INSERT INTO recorders (user_id, name, symbol, token_hash)"
        f"       SELECT id, 'r', 'MNQ1!', sha256('{token}'::bytea) FROM u RETURNING id, user_id),"
        " a AS (INSERT INTO accounts (user_id, label, env) SELECT user_id, 'p', 'paper' FROM r"
        "       RETURNING id),"
        " s AS (INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        "       SELECT id, 1, 'P1' FROM a RETURNING id),"
        " t AS (INSERT INTO traders (user_id, recorder_id, enabled)"
        "       SELECT user_id, id, true FROM r RETURNING id)"
        " INSERT INTO trader_accounts (trader_id, sub_account_id) SELECT t.id, s.id FROM t, s"
        " RETURNING trader_id",
    )
    with run_daemon(tmp_path, {}, db_url=db_url) as d:
        d.wait_ready()
        answers: list[int] = []

        async def post(client: aiohttp.ClientSession, i: int) -> None:
            side = "buy" if i % 2 == 0 else "close"
            body = f'{{"action": "{side}", "ticker": "MNQ1!", "price": 21500, "id": "a{i}"}}'
            try:
                async with client.post(f"{d.base}/webhook/{token}", data=body) as r:
                    answers.append(r.status)
            except aiohttp.ClientError:
                answers.append(0)  # the listener had closed: nothing was received

        async with aiohttp.ClientSession() as client:
            first = [asyncio.create_task(post(client, i)) for i in range(40)]
            await asyncio.sleep(0.05)
            d.proc.send_signal(signal.SIGTERM)
            rest = [asyncio.create_task(post(client, i)) for i in range(40, 80)]
            await asyncio.gather(*first, *rest)
        code = await asyncio.to_thread(d.proc.wait, 60)
        out = d.output()
    assert code == 0, out
    assert set(answers) <= {200, 503, 0}, answers
    rows = await _fetch(db_url, "SELECT id, verdict FROM signals")
    assert answers.count(200) == len(rows)
    assert all(r["verdict"] in ("accepted", "rejected") for r in rows), rows
    assert "daemon.drained" in out
    assert "complete=True" in out


class _Hooks(ThreadingHTTPServer):
    """Stands in for Discord and a webhook endpoint: keeps every JSON body by path."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = orjson.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with hooks.lock:
                    hooks.bodies.append((self.path, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)

    def events(self, path: str) -> list[str]:
        with self.lock:
            return [e["event"] for p, b in self.bodies if p == path for e in b["events"]]

    def discord(self) -> str:
        with self.lock:
            return "\n".join(b["content"] for p, b in self.bodies if p != "/hook")


@contextmanager
def notify_hooks() -> Iterator[tuple[_Hooks, dict[str, str]]]:
    """The stand-in endpoints, served on a thread, and the daemon settings that point at them."""
    hooks = _Hooks()
    threading.Thread(target=hooks.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{hooks.server_address[1]}"
    env = {
        "JTRADES_NOTIFY__WEBHOOK_URL": base + "/hook",
        "JTRADES_NOTIFY__DISCORD_WEBHOOK_URL": base + "/api/webhooks/77/e2e-canary-hook-token",
        "JTRADES_LOG__FORMAT": "json",
    }
    try:
        yield hooks, env
    finally:
        hooks.shutdown()
        hooks.server_close()


def test_serve_notifies_why_it_could_not_start(tmp_path: Path, db_url: str) -> None:
    with notify_hooks() as (hooks, env), socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env["JTRADES_SERVER__PORT"] = str(port)
        with run_daemon(tmp_path, env, db_url=db_url) as d:
            assert d.proc.wait(timeout=60) == 1, d.output()
        events = hooks.events("/hook")
    # the reason, then the stop: posted before the process exited
    assert events[-2:] == ["daemon.failed", "daemon.stopped"], events
    assert f"cannot listen on 127.0.0.1:{port}" in hooks.discord()


def test_serve_notifies_its_start_and_stop(tmp_path: Path, db_url: str) -> None:
    with notify_hooks() as (hooks, env):
        with run_daemon(tmp_path, env, db_url=db_url) as d:
            d.wait_ready()
            end = time.monotonic() + 30
            while "daemon.ready" not in hooks.events("/hook") and time.monotonic() < end:
                time.sleep(0.05)
            assert "daemon.ready" in hooks.events("/hook"), d.output()
            assert d.stop(signal.SIGTERM) == 0
            out = d.output()
        events, discord = hooks.events("/hook"), hooks.discord()
    # the last events are posted before the process exits
    assert events[-1] == "daemon.stopped"
    assert "daemon.failed" not in events
    assert "`daemon.ready`" in discord
    assert "`daemon.stopped`" in discord
    assert '"targets": "discord,webhook"' in out or "targets=discord,webhook" in out
    assert "e2e-canary-hook-token" not in out
