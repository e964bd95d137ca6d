"""While the daemon refuses alerts (503: TradingView sends them again; nothing stored or sent),
the reason says which refusal it is: a stop, or the one-daemon lock being taken again after its
database connection was lost (``InstanceLock`` switches ``accepting`` off for that gap)."""

from __future__ import annotations

import asyncpg

from jtrades import webhook
from jtrades.config import Settings
from jtrades.daemon import Daemon
from jtrades.errors import ConfigError
from tests.integration.test_server import ALERT, serving


async def test_a_lock_being_taken_again_is_not_called_a_shutdown(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with serving(settings, pool) as stack:
        daemon = Daemon(settings)
        daemon.hooks = stack.hooks
        before = await pool.fetchval("SELECT count(*) FROM signals")

        daemon._set_accepting(False)  # what InstanceLock._retake does first
        status, body = await stack.post(ALERT)
        assert (status, body["error"]) == (503, "unavailable")
        assert body["detail"] == webhook.RETAKING_LOCK
        assert "shutting down" not in body["detail"]

        daemon._set_accepting(True)  # the lock is held again
        status, body = await stack.post(ALERT)
        assert status == 200, body

        daemon._set_accepting(False)  # lost again, then the daemon stops meanwhile
        await stack.hooks.drain(1.0)
        status, body = await stack.post(b'{"action": "sell", "ticker": "MNQ1!"}')
        assert (status, body["detail"]) == (503, "the daemon is shutting down")
        assert await pool.fetchval("SELECT count(*) FROM signals") == before + 1


async def test_a_lock_lost_to_another_daemon_is_a_shutdown(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with serving(settings, pool) as stack:
        daemon = Daemon(settings)
        daemon.hooks = stack.hooks
        daemon._set_accepting(False)
        daemon._fail(ConfigError("another jtrades serve took this database"))  # stops the daemon
        status, body = await stack.post(ALERT)
        assert (status, body["detail"]) == (503, "the daemon is shutting down")
        daemon._set_accepting(False)  # a late switch-off while stopping keeps the reason
        status, body = await stack.post(ALERT)
        assert body["detail"] == "the daemon is shutting down"
