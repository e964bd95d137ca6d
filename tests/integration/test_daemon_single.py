"""One ``jtrades serve`` per database. A second one (another port, another host) would open
the same broker sessions, run its own reconciliation and send every alert's orders again;
before it found its port taken, it had already marked the running daemon's in-flight signals
interrupted and, leaving, written "stopped" over its status. It is refused first, with the
running one named, and touches nothing."""

from __future__ import annotations

import asyncio
import socket

import pytest

from jtrades.config import Settings
from jtrades.daemon import Daemon
from jtrades.errors import ConfigError
from tests.integration.test_daemon_crash import status_state


def _on_free_port(settings: Settings) -> Settings:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = settings.server.model_copy(update={"host": "127.0.0.1", "port": port})
    return settings.model_copy(update={"server": server})


async def test_a_second_daemon_on_the_same_database_is_refused(
    settings: Settings, db_url: str
) -> None:
    first = Daemon(_on_free_port(settings))
    running = asyncio.create_task(first.run())
    try:
        for _ in range(300):
            if first.port is not None and first.hooks is not None:
                break
            await asyncio.sleep(0.05)
        assert first.port is not None

        with pytest.raises(ConfigError, match="another jtrades serve"):
            await asyncio.wait_for(Daemon(_on_free_port(settings)).run(), 30)

        assert await status_state(db_url) == "running"
        socket.create_connection(("127.0.0.1", first.port), timeout=1).close()  # still serving
    finally:
        first.request_stop("test")
        await asyncio.wait_for(running, 30)
