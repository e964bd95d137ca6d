"""The claim's connection of its own (``db.Lane``): used when free, the pool otherwise, given up
after any failure and replaced in the background, never waited for."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jtrades.config import Settings
from jtrades.db import Database, Lane, connect


async def _reopened(lane: Lane, old: asyncpg.Connection | None) -> asyncpg.Connection:
    for _ in range(100):
        conn = lane.connection
        if conn is not None and conn is not old:
            return conn
        await asyncio.sleep(0.05)
    raise AssertionError("the lane never opened a new connection")


async def _serves_anew(lane: Lane, first: asyncpg.Connection, probe: int) -> None:
    """The lane gave ``first`` up, opened another, and borrows that one now."""
    assert first.is_closed()
    second = await _reopened(lane, first)
    async with lane.borrow() as ex:
        assert ex is second
        assert await ex.fetchval(f"SELECT {probe}") == probe


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = await connect(settings)
    yield db
    await db.close()


@pytest.fixture
async def lane(database: Database) -> AsyncIterator[Lane]:
    """The database's lane with its connection open."""
    opened = database.lane()
    await opened.open()
    assert opened.connection is not None
    yield opened
    await opened.close()


async def test_one_statement_at_a_time_on_its_own_connection_the_rest_on_the_pool(
    database: Database, lane: Lane
) -> None:
    own = lane.connection
    assert own is not None
    pid = own.get_server_pid()
    async with lane.borrow() as ex:
        assert ex is own
        assert await ex.fetchval("SELECT pg_backend_pid()") == pid
        # a claim arriving meanwhile does not wait for it
        async with lane.borrow() as other:
            assert other is database.pool
            assert await other.fetchval("SELECT pg_backend_pid()") != pid
    async with lane.borrow() as ex:
        assert ex is own  # free again
        # set up as the pool's connections are: the jsonb codec, the generic plans
        assert await ex.fetchval("SELECT $1::jsonb", {"a": [1, "x"]}) == {"a": [1, "x"]}
        assert await ex.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
    await lane.close()
    assert own.is_closed()


async def test_a_failed_statement_gives_the_connection_up_and_a_new_one_follows(
    database: Database, lane: Lane
) -> None:
    first = lane.connection
    assert first is not None
    with pytest.raises(asyncpg.DivisionByZeroError):
        async with lane.borrow() as ex:
            await ex.fetchval("SELECT 1 / 0")
    assert first.is_closed()
    async with lane.borrow() as ex:
        assert ex is database.pool  # the pool serves while the new one opens
        assert await ex.fetchval("SELECT 2") == 2
    await _serves_anew(lane, first, 3)


async def test_a_cancelled_statement_leaves_no_half_read_connection_behind(
    database: Database, lane: Lane
) -> None:
    first = lane.connection
    assert first is not None

    async def slow() -> None:
        async with lane.borrow() as ex:
            await ex.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _serves_anew(lane, first, 4)


async def test_a_connection_killed_by_the_server_is_replaced(
    database: Database, lane: Lane
) -> None:
    first = lane.connection
    assert first is not None
    killed = await database.pool.fetchval("SELECT pg_terminate_backend($1)", first.get_server_pid())
    assert killed
    for _ in range(100):  # the socket's end reaches the client
        if first.is_closed():
            break
        await asyncio.sleep(0.02)
    else:
        # not noticed yet: the next statement on it fails, and gives it up
        with pytest.raises((asyncpg.PostgresError, asyncpg.InterfaceError, OSError)):
            async with lane.borrow() as ex:
                await ex.fetchval("SELECT 1")
    async with lane.borrow() as ex:
        assert ex is database.pool
        assert await ex.fetchval("SELECT 5") == 5
    second = await _reopened(lane, first)
    assert second.get_server_pid() != first.get_server_pid()


async def test_without_connection_parameters_the_pool_serves_alone(pool: asyncpg.Pool) -> None:
    lane = Database(pool, "test").lane()
    await lane.open()
    assert lane.connection is None
    async with lane.borrow() as ex:
        assert ex is pool
    await asyncio.sleep(0.05)
    assert lane.connection is None
    await lane.close()


async def test_a_closed_lane_opens_nothing_more(database: Database) -> None:
    lane = database.lane()
    await lane.close()
    async with lane.borrow() as ex:
        assert ex is database.pool
    await asyncio.sleep(0.1)
    assert lane.connection is None


async def test_a_failed_open_is_retried_at_a_borrow_after_retry_s(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    attempts = 0

    async def flaky() -> asyncpg.Connection:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise OSError("connection refused")
        return await database.connect_as_pooled()

    monkeypatch.setattr(Lane, "RETRY_S", 0.2)
    lane = Lane(database.pool, flaky)
    try:
        await lane.open()  # fails: logged, not raised
        assert (attempts, lane.connection) == (1, None)
        async with lane.borrow() as ex:  # too soon to try again
            assert ex is database.pool
        await asyncio.sleep(0.05)
        assert attempts == 1
        await asyncio.sleep(0.2)
        async with lane.borrow() as ex:  # due: the pool serves this one, the lane opens
            assert ex is database.pool
        conn = await _reopened(lane, None)
        assert attempts == 2
        async with lane.borrow() as ex:
            assert ex is conn
    finally:
        await lane.close()
