"""Under systemd, serve refuses a data_dir taken from $STATE_DIRECTORY alone only where
something reads it. With a ``database.url`` (no embedded Postgres) and the master key from
``secrets.key_file`` (or JTRADES_SECRET_KEY), neither the daemon nor the CLI reads data_dir, so
they cannot diverge: that setup, the README's own, ran before and must still start (refused,
Restart=on-failure spent the unit's start limit and nothing watched open positions)."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from pathlib import Path

import pytest

from tests.conftest import *  # noqa: F403
from tests.e2e.test_serve_lifecycle import run_daemon

pytestmark = pytest.mark.e2e


async def test_serve_under_systemd_with_external_db_and_key_file_starts(
    tmp_path: Path, db_url: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    key = tmp_path / "master.key"
    key.write_text(base64.b64encode(os.urandom(32)).decode() + "\n", encoding="utf-8")
    key.chmod(0o600)
    (tmp_path / "data").mkdir()
    # the operator's jtrades.toml: an external database (here from the environment, as the
    # unit's EnvironmentFile gives it) and a key file; no data_dir: nothing would read it
    (tmp_path / "data" / "jtrades.toml").write_text(
        f'[secrets]\nkey_file = "{key}"\n', encoding="utf-8"
    )
    env = {"JTRADES_DATA_DIR": None, "STATE_DIRECTORY": str(state), "HOME": str(tmp_path)}
    with run_daemon(tmp_path, env, db_url=db_url) as d:
        code = None
        try:
            await asyncio.to_thread(d.wait_ready, 30)
        except AssertionError:
            code = d.proc.poll()
        if code is None:
            code = await asyncio.to_thread(d.stop, signal.SIGTERM)
        out = d.output()
    assert code == 0, out[-2000:]
    # and data_dir was indeed never used
    assert not any(state.iterdir())
