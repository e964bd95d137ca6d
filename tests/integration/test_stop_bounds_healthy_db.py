"""The bounded stop with the database answering normally: each step keeps its own bound (a
slow drain cut the engine's close short, its mirror flush and broker sessions with it, when the
steps shared one budget), and the pool's close waits for a write still running (it terminated
it after 2 s and reported the healthy database as unanswered, an error, notified).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from jtrades.config import Settings
from jtrades.daemon import Daemon
from jtrades.db import connect
from tests.conftest import *  # noqa: F403


class _Hooks:
    """A webhook front with one delivery still in hand: its drain runs to its deadline."""

    refusal = ""
    accepting = True
    inflight = 1

    async def drain(self, timeout_s: float) -> bool:
        await asyncio.sleep(timeout_s)
        return False


class _Runner:
    """aiohttp's runner: its cleanup waits ``shutdown_timeout`` (5 s, server.make_runner) for
    the handler still awaiting that delivery."""

    async def cleanup(self) -> None:
        await asyncio.sleep(5.0)


class _Engine:
    """The engine: its close (cancel its loops, let the mirror write the queued fills, close
    the broker sessions) takes 4 s here, well inside the 10 s it was given before."""

    closed = False

    async def close(self) -> None:
        await asyncio.sleep(4.0)
        self.closed = True


@pytest.mark.timeout(60)
async def test_engine_close_is_not_cut_short_by_a_slow_drain(tmp_path: Path) -> None:
    d = Daemon(Settings(data_dir=tmp_path))  # type: ignore[arg-type]
    d.hooks = _Hooks()  # type: ignore[assignment]
    engine = _Engine()
    d.engine = engine
    d._runner = _Runner()  # type: ignore[assignment]
    d.request_stop("SIGTERM")
    with capture_logs() as logs:
        await d._shutdown()
    failed = [e for e in logs if e["event"] == "daemon.engine_close_failed"]
    assert engine.closed, failed


@pytest.mark.timeout(60)
async def test_stop_waits_for_a_pooled_connection_still_writing(settings: Settings) -> None:
    db = await connect(settings)
    d = Daemon(settings)
    d.db = db
    assert await d.instance.take(db)
    written = asyncio.Event()

    async def outcome_of_a_late_dispatch() -> None:
        # a signal's dispatch that outlived the drain, writing what became of its intents
        async with db.pool.acquire() as conn:
            await conn.execute("SELECT pg_sleep(3)")
            await conn.execute("CREATE TABLE rv_outcome_written (x int)")
        written.set()

    late = asyncio.create_task(outcome_of_a_late_dispatch())
    await asyncio.sleep(0.2)
    d.request_stop("SIGTERM")
    with capture_logs() as logs:
        await d._shutdown()
    try:
        await asyncio.wait_for(late, 10)
        error = None
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
    unanswered = [e for e in logs if e["event"] == "daemon.database_unanswered"]
    assert (written.is_set(), error, unanswered) == (True, None, [])
