"""A background loop of ``jtrades serve`` that fails on a bug takes the whole daemon down, not
half of it: HTTP stops answering, the engine closes, the status row says stopped (so systemd's
restart starts clean), and the error is logged, and so notified, as ``daemon.crashed`` with
the loop's own error, not just "unhandled errors in a TaskGroup".

In-process, on the test database, with the daemon's own loops plus one that fails.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg
import orjson
import pytest
import structlog.testing

from jtrades.config import Settings
from jtrades.daemon import Daemon
from jtrades.store import status as status_store


class WithABrokenLoop(Daemon):
    """The daemon, plus a background loop with a bug in it."""

    def _loops(self, tokens: Any) -> dict[str, Callable[[], Coroutine[Any, Any, None]]]:
        loops = super()._loops(tokens)

        async def broken() -> None:
            await asyncio.sleep(0.2)
            raise KeyError("sub_account_id")

        loops["test.broken"] = broken
        return loops


async def status_state(db_url: str) -> str:
    """The ``state`` the daemon status row says, read on a bare connection (jsonb as text)."""
    conn = await asyncpg.connect(db_url)
    try:
        beat = await status_store.get(conn)
    finally:
        await conn.close()
    assert beat is not None
    return str(orjson.loads(beat.detail)["state"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_loop_that_fails_takes_the_daemon_down_and_says_why(
    settings: Settings, db_url: str
) -> None:
    port = _free_port()
    s = settings.model_copy(
        update={"server": settings.server.model_copy(update={"host": "127.0.0.1", "port": port})}
    )
    daemon = WithABrokenLoop(s)

    with structlog.testing.capture_logs() as logs, pytest.raises(BaseExceptionGroup):
        await asyncio.wait_for(daemon.run(), 60)

    events = [e["event"] for e in logs]
    assert "daemon.ready" in events
    (crashed,) = [e for e in logs if e["event"] == "daemon.crashed"]
    assert crashed["log_level"] == "error"
    assert "test.broken" in crashed["error"]
    assert "KeyError" in crashed["error"]
    assert "sub_account_id" in crashed["error"]
    assert events.index("daemon.crashed") < events.index("daemon.stopped")
    with pytest.raises(OSError):  # nothing listens any more
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    assert await status_state(db_url) == "stopped"
