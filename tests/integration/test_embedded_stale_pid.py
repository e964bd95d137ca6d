"""The embedded Postgres after an unclean end (power loss, kill -9, a reboot): its
``postmaster.pid`` is left behind, and the pid written in it may by now belong to another,
unrelated process (pids are reused, at boot nearly deterministically). The file is stale: no
postmaster of this data directory runs. A careful start treats it so; it must never signal,
let alone kill, the process that happens to hold that pid."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from jtrades.config import Settings
from jtrades.db import connect
from jtrades.embedded_db import EmbeddedPostgres
from jtrades.errors import JtradesError


def _stale_pid_file(data_dir: Path, pid: int) -> Path:
    """A data dir initialised by an earlier run (server stopped), and the postmaster.pid a
    killed server left, naming ``pid``."""
    embedded = EmbeddedPostgres(data_dir)
    embedded.start()
    embedded.stop()
    pgdata = data_dir / "pg"
    lines = [str(pid), str(pgdata), str(int(time.time()) - 3600), "5432", str(pgdata), ""]
    lines += ["  1234  5678", "ready"]
    (pgdata / "postmaster.pid").write_text("\n".join(lines) + "\n")
    return pgdata


@pytest.mark.timeout(180)
async def test_a_stale_postmaster_pid_naming_an_unrelated_process_does_not_kill_it(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    bystander = await asyncio.create_subprocess_exec(
        "sleep", "300"
    )  # holds the pid the dead postmaster had
    try:
        _stale_pid_file(data_dir, bystander.pid)
        try:
            db = await connect(Settings(data_dir=data_dir))  # type: ignore[arg-type]
        except JtradesError:
            pass
        else:
            await db.close()
        await asyncio.sleep(0.5)
        # the unrelated process was never ours to stop
        assert bystander.returncode is None, (
            f"the unrelated process was killed (rc {bystander.returncode})"
        )
    finally:
        bystander.kill()
        await bystander.wait()


@pytest.mark.timeout(180)
async def test_a_stale_postmaster_pid_naming_an_unrelated_process_still_starts(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    bystander = await asyncio.create_subprocess_exec("sleep", "300")
    try:
        _stale_pid_file(data_dir, bystander.pid)
        # no postmaster runs in this data dir: the stale file is no reason to fail
        db = await connect(Settings(data_dir=data_dir))  # type: ignore[arg-type]
        try:
            assert await db.pool.fetchval("SELECT 1") == 1
        finally:
            await db.close()
    finally:
        bystander.kill()
        await bystander.wait()
