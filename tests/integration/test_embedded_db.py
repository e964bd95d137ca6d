"""The embedded default: no URL → a Postgres in data_dir, shared by concurrent CLI processes,
stopped when the last one leaves."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson


def _jtrades(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("JTRADES_")}
    env["JTRADES_DATA_DIR"] = str(data_dir)
    return subprocess.run(
        [sys.executable, "-m", "jtrades.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        cwd=data_dir.parent,
        check=False,
    )


def _postmaster_running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    pid = int(pid_file.read_text().split()[0])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_two_processes_share_one_embedded_server_and_it_stops(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = _jtrades(data_dir, "db", "migrate", "--json")
    assert first.returncode == 0, first.stderr
    assert orjson.loads(first.stdout)["applied"][0]["version"] == 1
    assert not _postmaster_running(data_dir / "pg")

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: _jtrades(data_dir, "db", "status", "--json"), range(2)))
    for r in results:
        assert r.returncode == 0, r.stderr
        assert orjson.loads(r.stdout)[0]["applied_at"] is not None
        assert "Warning" not in r.stderr
    assert not _postmaster_running(data_dir / "pg")


def test_unreachable_database_is_one_line_and_exit_1(tmp_path: Path) -> None:
    env_url = "postgresql://postgres:hunter2secret@127.0.0.1:1/nothing"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JTRADES_")}
    env["JTRADES_DATABASE__URL"] = env_url
    r = subprocess.run(
        [sys.executable, "-m", "jtrades.cli", "db", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert r.returncode == 1
    assert r.stderr.startswith("error: cannot reach the database")
    assert len(r.stderr.strip().splitlines()) == 1
    assert "hunter2secret" not in r.stderr + r.stdout
