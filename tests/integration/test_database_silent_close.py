"""The connection paths the daemon's start and stop rely on, against a database that does not
answer: which failures to connect are waited for, and closes that end within their bound.

Before, ``InstanceLock.close`` and ``Database.close`` had no bound at all: a stop with the
database partitioned away hung there (``jtrades serve`` under systemd: SIGKILL at 45 s).
"""

from __future__ import annotations

import asyncio
import ssl

import asyncpg
import pytest

from jtrades.config import Settings
from jtrades.db import connect, unreachable
from jtrades.instance_lock import InstanceLock
from tests.e2e.pgproxy import PgProxy


@pytest.mark.parametrize(
    ("exc", "wait"),
    [
        (ConnectionRefusedError(111, "Connection refused"), True),
        (TimeoutError(), True),
        (OSError(113, "No route to host"), True),
        (asyncpg.CannotConnectNowError("the database system is starting up"), True),
        (asyncpg.exceptions.AdminShutdownError("terminating connection"), True),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), True),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), True),
        (asyncpg.InvalidPasswordError("password authentication failed"), False),
        (asyncpg.InvalidAuthorizationSpecificationError('role "x" does not exist'), False),
        (asyncpg.InvalidCatalogNameError('database "x" does not exist'), False),
        (ssl.SSLCertVerificationError("certificate verify failed"), False),
        (ValueError("invalid DSN"), False),
    ],
)
def test_what_is_waited_for(exc: BaseException, wait: bool) -> None:
    assert unreachable(exc) is wait


async def test_lock_and_pool_closes_end_within_their_bound_on_a_silent_database(
    db_url: str, tmp_path: object
) -> None:
    try:
        proxy = PgProxy(db_url)
    except ValueError:
        pytest.skip("the test database is reached over a Unix socket")
    await proxy.listen()
    settings = Settings(data_dir=str(tmp_path), database={"url": proxy.url()})  # type: ignore[arg-type]
    try:
        db = await connect(settings)
        lock = InstanceLock(asyncio.Event(), lambda _accepting: None, lambda _exc: None)
        assert await lock.take(db)
        async with db.pool.acquire() as conn:  # a pooled connection that has been used
            await conn.fetchval("SELECT 1")
        proxy.freeze()
        # the bound of each close is 1 s; the 10 s only bounds a hang (the defect)
        assert await asyncio.wait_for(lock.close(1.0), 10) is False
        assert not lock.held
        assert await asyncio.wait_for(db.close(1.0), 10) is False
    finally:
        await proxy.close()
