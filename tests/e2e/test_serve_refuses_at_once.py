"""``jtrades serve`` as a process: a setting it cannot run with is one line and exit 1, at once.

Each of these was waited on or found late. A password with an unencoded ``@`` made asyncpg
resolve the password's tail as the host: the daemon waited for ever for a database that never
answers. A missing ``secrets.key_file``, or a URL as ``server.host``, was found after the
database, the migrations and the broker sessions; with the database down, never, the daemon
waiting for it first. The database here refuses connections, so a refusal that came after
trying it would be a wait instead (``daemon.waiting_for_database``).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.e2e.test_serve_lifecycle import free_port, run_daemon

pytestmark = pytest.mark.e2e


def _unanswered_url(userinfo: str = "postgres") -> str:
    return f"postgresql://{userinfo}@127.0.0.1:{free_port()}/jt"


async def _refusal(tmp_path: Path, env: dict[str, str | None], db_url: str) -> str:
    with run_daemon(tmp_path, env, db_url=db_url) as d:
        try:
            code = await asyncio.to_thread(d.proc.wait, 30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after 30 s:\n{d.output()}")
        out = d.output()
    assert code == 1, out
    assert "daemon.waiting_for_database" not in out, out
    assert "Traceback" not in out, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out
    return errors[0]


async def test_a_password_with_an_unencoded_at_sign(tmp_path: Path) -> None:
    line = await _refusal(tmp_path, {}, _unanswered_url("postgres:pw@S3cretPw"))
    assert "database.url" in line, line
    assert "%40" in line, line
    assert "S3cret" not in (tmp_path / "daemon.log").read_text()


async def test_a_key_file_that_does_not_exist(tmp_path: Path) -> None:
    key_file = tmp_path / "nowhere" / "jtrades.key"
    env: dict[str, str | None] = {"JTRADES_SECRETS__KEY_FILE": str(key_file)}
    line = await _refusal(tmp_path, env, _unanswered_url())
    assert "secrets.key_file" in line, line
    assert str(key_file) in line, line


async def test_a_url_as_server_host(tmp_path: Path) -> None:
    env: dict[str, str | None] = {"JTRADES_SERVER__HOST": "http://0.0.0.0"}
    line = await _refusal(tmp_path, env, _unanswered_url())
    assert "server.host" in line, line
