"""`status --check` exits 1 unless every login it trades has a broker session: a session down
past ``SESSION_DOWN_ALERT_S`` (reconnecting, a penalty held) is an outage, one down a moment is
a reconnect. It said healthy for both, while the login's alerts answered "not traded"."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jtrades.session_health import SESSION_DOWN_ALERT_S
from jtrades.store import status as status_store
from tests.cli import ainvoke


def _detail(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "state": "running", "ready": True, "host": "127.0.0.1", "port": 8080,
        "sessions": [{"account_id": 3, "env": "live", **session}], "failed_sessions": [],
    }  # fmt: skip


@pytest.mark.parametrize(
    ("session", "healthy"),
    [
        ({"up": True, "down_s": 0}, True),
        ({"up": False, "down_s": 5}, True),  # reconnecting
        ({"up": False, "down_s": int(SESSION_DOWN_ALERT_S) + 1}, False),
        ({"up": False}, False),  # a daemon that does not say for how long
    ],
)
async def test_check_fails_while_a_logins_session_is_down_for_long(
    pool: asyncpg.Pool, db_url: str, data_dir: Path, session: dict[str, Any], healthy: bool
) -> None:
    detail = _detail(session)
    await status_store.heartbeat(pool, pid=4242, started_at=datetime.now(UTC), detail=detail)
    r = await ainvoke(["status", "--check"], db_url=db_url, data_dir=data_dir)
    assert (r.exit_code == 0) is healthy, r.stdout + r.stderr
    if not healthy:
        assert "broker session(s) are down: account 3 (live)" in r.stderr, r.stderr
