"""``status --check`` "exits 1 unless the daemon is alive and ready" (README). It judged by the
heartbeat's age alone (≤ ``ALIVE_WITHIN_S``, a beat every 5 s), so for up to 15 s after a
``kill -9`` it said alive. The status row now says where its pid is the daemon's process (host,
boot, pid namespace, and the process's start): on that host a pid that is gone, exited or
another process's now means dead at once, with the reason said; elsewhere the heartbeat rule
stays."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jtrades.cli.control import ALIVE_WITHIN_S
from jtrades.store import status as status_store
from tests.cli import ainvoke
from tests.e2e.test_serve_lifecycle import run_daemon

RUNNING = {"state": "running", "ready": True}


async def _status(db_url: str, data_dir: Path) -> dict[str, Any]:
    r = await ainvoke(["status", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    daemon: dict[str, Any] = r.json()["daemon"]
    return daemon


async def _check(db_url: str, data_dir: Path) -> tuple[int, str]:
    """``status --check``: its exit code and, when it fails, its one error line."""
    r = await ainvoke(["status", "--check"], db_url=db_url, data_dir=data_dir)
    return r.exit_code, r.error_line() if r.exit_code else ""


async def _alive_and_ready(db_url: str, data_dir: Path) -> dict[str, Any]:
    """``status --json``'s daemon once it says alive and ready (its first heartbeats may say
    not ready yet); the bound only stops a hang."""
    daemon: dict[str, Any] = {}
    try:
        async with asyncio.timeout(30):
            while not (daemon.get("alive") and daemon.get("ready")):
                await asyncio.sleep(0.1)
                daemon = await _status(db_url, data_dir)
    except TimeoutError:
        raise AssertionError(f"never alive and ready: {daemon}") from None
    return daemon


@pytest.mark.e2e
async def test_check_says_dead_right_after_kill_9(
    tmp_path: Path, db_url: str, data_dir: Path
) -> None:
    with run_daemon(tmp_path, {}, db_url=db_url) as d:
        d.wait_ready()
        pid = d.proc.pid
        before = await _alive_and_ready(db_url, data_dir)  # the pid found is the daemon's
        assert (before["pid"], before["reason"]) == (pid, None)
        assert await _check(db_url, data_dir) == (0, "")

        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait(timeout=30)
        code, said = await _check(db_url, data_dir)
        after = await _status(db_url, data_dir)
        halt = await ainvoke(["halt", "--json"], db_url=db_url, data_dir=data_dir)
    # no new heartbeat: the row is the one the killed daemon wrote, still fresh by its age ...
    assert after["pid"] == pid
    assert after["heartbeat_age_s"] < ALIVE_WITHIN_S, after
    # ... and yet it is dead, and says why
    assert code == 1, said
    assert f"daemon process {pid} no longer exists on this host" in said, said
    assert after["alive"] is False, after
    assert after["state"] == "not running"
    assert f"process {pid} no longer exists on this host" in after["reason"], after
    assert halt.json()["daemon_alive"] is False  # halt --flatten would say "queued" too
    table = await ainvoke(["status"], db_url=db_url, data_dir=data_dir)
    assert "no longer exists on this host" in table.stdout, table.stdout


def _spawn() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])


def _state(pid: int) -> str:
    """The process's state letter (``/proc/PID/stat``): ``Z`` for exited, not yet reaped."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]


def _dead_pid() -> int:
    """The pid of a process that ran and was reaped: no process here has it any more."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    return gone.pid


async def test_an_exited_process_not_yet_reaped_is_dead(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """Killed, its parent not having waited for it yet: ``kill(pid, 0)`` still finds it."""
    child = _spawn()
    try:
        ticks = status_store.start_ticks(child.pid)
        assert ticks is not None
        child.send_signal(signal.SIGKILL)
        for _ in range(500):  # until the kernel has made it a zombie
            if _state(child.pid) == "Z":
                break
            await asyncio.sleep(0.01)
        await status_store.heartbeat(
            pool,
            pid=child.pid,
            started_at=datetime.now(UTC),
            detail=RUNNING,
            host_id=status_store.host_id(),
            pid_start_ticks=ticks,
        )
        code, said = await _check(db_url, data_dir)
        assert code == 1, said
        assert f"daemon process {child.pid} has exited on this host" in said
    finally:
        child.wait()


async def test_a_pid_now_another_process_is_not_the_daemon(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """The pid exists, but its process started at another time than the daemon's did."""
    ticks = status_store.start_ticks(os.getpid())
    assert ticks is not None

    async def beat(started: int) -> None:
        await status_store.heartbeat(
            pool,
            pid=os.getpid(),
            started_at=datetime.now(UTC),
            detail=RUNNING,
            host_id=status_store.host_id(),
            pid_start_ticks=started,
        )

    await beat(ticks)
    assert await _check(db_url, data_dir) == (0, "")
    await beat(ticks - 1)
    code, said = await _check(db_url, data_dir)
    assert code == 1, said
    assert "the pid is another process's now" in said, said
    assert (await _status(db_url, data_dir))["alive"] is False


async def test_on_another_host_the_heartbeat_decides(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """There, a pid says nothing about the daemon's process: the heartbeat's age does."""
    gone = _dead_pid()

    async def beat(host: str | None) -> None:
        await status_store.heartbeat(
            pool,
            pid=gone,
            started_at=datetime.now(UTC),
            detail=RUNNING,
            host_id=host,
            pid_start_ticks=1,
        )

    here = status_store.host_id()
    for elsewhere in (
        f"another-{here}",  # another machine
        here.replace("pid:[", "pid:[9"),  # this one in another pid namespace (a container)
        None,  # a daemon that did not say (before migration 0007)
    ):
        await beat(elsewhere)
        assert await _check(db_url, data_dir) == (0, ""), elsewhere
    await pool.execute("UPDATE daemon_status SET heartbeat_at = now() - interval '1 minute'")
    code, said = await _check(db_url, data_dir)
    assert code == 1
    assert "no heartbeat for 60" in said
    await beat(here)
    code, said = await _check(db_url, data_dir)
    assert code == 1
    assert f"process {gone} no longer exists on this host" in said


async def test_a_stopped_daemon_says_it_stopped(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await status_store.heartbeat(
        pool, pid=os.getpid(), started_at=datetime.now(UTC), detail={"state": "stopped"}
    )
    code, said = await _check(db_url, data_dir)
    assert code == 1
    assert "daemon stopped (last heartbeat" in said, said


async def test_a_failed_check_in_json_prints_its_details_and_exits_1(
    db_url: str, data_dir: Path
) -> None:
    """``status --check --json`` for a monitor: the failed check printed no JSON (its error
    came first), so the details were missing exactly when they mattered."""
    r = await ainvoke(["status", "--check", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 1
    assert r.json()["daemon"]["state"] == "never started"
    assert "daemon" in r.error_line()
