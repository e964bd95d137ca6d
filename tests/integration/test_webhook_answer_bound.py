"""The webhook answers a stored signal in time even when a follower's broker is silent.

Its answer waited for every account's last broker answer: a follower whose socket went silent
held it up to the request timeout (10 s), past TradingView's 3 s, and TradingView disables an
alert that keeps failing. Once the signal is stored (its orders on their way) and
``server.answer_within_s`` has passed, it is answered "received"; the row gets the verdict
when the last answer is in. Nothing is answered for a delivery before it is stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import asyncpg
import pytest
import structlog.testing

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.tokens import TokenCache
from jtrades.security import hash_token, new_webhook_token
from jtrades.server import Webhooks, build_app, start_http
from jtrades.store import recorders as recorder_store
from jtrades.webhook_answers import Unanswered, first_result, in_time
from tests.integration.test_dispatch import sim_engine
from tests.simutil import SimHandle

LIMIT_S = 30.0  # bounds a hung test, never a timing check


@dataclass
class Answering:
    client: aiohttp.ClientSession
    token: str
    sim: SimHandle
    pool: asyncpg.Pool
    hooks: Webhooks

    async def post(self, body: bytes) -> dict[str, Any]:
        async with self.client.post(f"/webhook/{self.token}", data=body) as r:
            assert r.status == 200
            return dict(await r.json())


@asynccontextmanager
async def answering(settings: Settings, request_timeout_s: float) -> AsyncIterator[Answering]:
    """The webhook in front of an engine with two followers' logins on the simulator (OK1
    answers, DEAD1 goes silent once told), answering within 0.2 s; a close has resolved the
    contract on both sessions."""
    logins = {"ok_tv": ["OK1"], "dead_tv": ["DEAD1"]}
    async with sim_engine(settings, logins, request_timeout_s=request_timeout_s) as (
        engine,
        sim,
        pool,
        rec,
        _subs,
    ):
        token = new_webhook_token()
        await pool.execute(
            "UPDATE recorders SET token_hash = $2 WHERE id = $1", rec, hash_token(token)
        )
        tokens = TokenCache(lambda: recorder_store.all_token_hashes(pool))
        await tokens.refresh()
        server = settings.server.model_copy(update={"answer_within_s": 0.2})
        db = Database(pool, "test", connect_kwargs={"dsn": settings.database.url})
        hooks = Webhooks(db, settings.model_copy(update={"server": server}), tokens, engine)
        runner, port = await start_http(build_app(hooks), "127.0.0.1", 0)
        try:
            async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as client:
                it = Answering(client, token, sim, pool, hooks)
                assert (await it.post(b"close"))["verdict"] == "accepted"
                yield it
                assert await hooks.drain(LIMIT_S)  # every signal's task ended
        finally:
            await runner.cleanup()


def _held(sim: SimHandle, name: str) -> list[int]:
    return [p["netPos"] for p in sim.state()["accounts"][name]["positions"]]


async def test_a_silent_followers_broker_does_not_hold_the_answer(settings: Settings) -> None:
    async with answering(settings, request_timeout_s=1.0) as it:
        it.sim.fault("zombie", login="dead_tv")  # open, and never answers again
        answer = await it.post(b'{"action": "buy", "ticker": "MNQ1!", "price": 21500}')
        # answered while the silent account's send was still waiting
        stored = await it.pool.fetchrow(
            "SELECT verdict FROM signals WHERE id = $1", answer["signal_id"]
        )
        assert answer["verdict"] == "received", answer
        assert answer["orders"] == 0
        assert "signals list" in answer["reason"]
        assert stored is not None  # never answered before it is stored
        row = await _settled(it.pool, answer["signal_id"])
        assert row["verdict"] == "accepted"
        assert row["orders"] == 1  # the healthy account's order; the silent one's unknown
        states = dict(
            await it.pool.fetch(
                "SELECT s.name, i.state FROM order_intents i"
                " JOIN sub_accounts s ON s.id = i.sub_account_id"
                " WHERE i.signal_id = $1",
                answer["signal_id"],
            )
        )
        assert states["DEAD1"] == "unknown"
        assert _held(it.sim, "OK1") == [1]


async def test_the_recorders_next_alert_is_not_held_by_a_silent_follower(
    settings: Settings,
) -> None:
    """The recorder's lock spanned the dispatch, and a dispatch took every account's lock
    before planning any: the next alert (a reversal) waited out the silent account's request
    timeout before its healthy follower traded it, and before it was answered."""
    async with answering(settings, request_timeout_s=8.0) as it:
        it.sim.fault("zombie", login="dead_tv")
        with structlog.testing.capture_logs() as logs:
            first = await it.post(b'{"action": "buy", "ticker": "MNQ1!", "price": 21500}')
            second = await it.post(b'{"action": "sell", "ticker": "MNQ1!", "price": 21500}')
            end = time.monotonic() + LIMIT_S
            while _held(it.sim, "OK1") != [-1]:
                assert time.monotonic() < end, it.sim.state()["accounts"]["OK1"]
                await asyncio.sleep(0.02)
            # reversed while the first alert's send to the silent account still waits
            timed_out = [e for e in logs if e["event"] == "dispatch.orders_failed"]
        assert timed_out == []
        assert (first["verdict"], second["verdict"]) == ("received", "received")
        row = await _settled(it.pool, second["signal_id"])
        assert row["verdict"] == "accepted"
        assert row["orders"] == 2  # OK1's close and entry
        assert _held(it.sim, "OK1") == [-1]


async def _settled(pool: asyncpg.Pool, signal_id: int) -> asyncpg.Record:
    """The signal's row once its verdict is written."""
    end = time.monotonic() + LIMIT_S
    while True:
        row = await pool.fetchrow("SELECT verdict, orders FROM signals WHERE id = $1", signal_id)
        assert row is not None
        if row["verdict"] != "received":
            return row
        assert time.monotonic() < end, dict(row)
        await asyncio.sleep(0.05)


# --- the wait itself, on tasks the test steps through ----------------------------------------


class _Step:
    """A stand-in for the delivery's task, finished (or failed) when the test says so."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.fail = False

    async def run(self) -> str:
        await self.go.wait()
        if self.fail:
            raise RuntimeError("not stored")
        return "answer"


async def test_a_task_done_in_time_gives_its_own_answer() -> None:
    step = _Step()
    step.go.set()
    task = asyncio.create_task(step.run())
    assert await in_time(task, asyncio.Event(), 5.0, asyncio.Event()) == "answer"


async def test_past_the_bound_a_claimed_delivery_is_answered_without_its_task() -> None:
    step = _Step()
    claimed = asyncio.Event()
    claimed.set()
    task = asyncio.create_task(step.run())
    assert await in_time(task, claimed, 0.0, asyncio.Event()) is Unanswered.SENDING
    assert not task.done()  # left running, never cancelled
    step.go.set()
    assert await task == "answer"


async def test_past_the_bound_an_unclaimed_delivery_waits_for_its_claim() -> None:
    step = _Step()
    claimed = asyncio.Event()
    task = asyncio.create_task(step.run())
    waiting = asyncio.create_task(in_time(task, claimed, 0.0, asyncio.Event()))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()  # past the bound, but nothing stored: no answer yet
    claimed.set()
    assert await asyncio.wait_for(waiting, LIMIT_S) is Unanswered.SENDING
    assert not task.done()
    step.go.set()
    await task


@pytest.mark.parametrize("fail", [False, True])
async def test_an_unclaimed_delivery_whose_task_ends_gives_the_tasks_answer(fail: bool) -> None:
    step = _Step()
    step.fail = fail
    task = asyncio.create_task(step.run())
    waiting = asyncio.create_task(in_time(task, asyncio.Event(), 0.0, asyncio.Event()))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()
    step.go.set()
    if fail:  # not stored: the caller's 503 path, as before
        with pytest.raises(RuntimeError, match="not stored"):
            await asyncio.wait_for(waiting, LIMIT_S)
    else:
        assert await asyncio.wait_for(waiting, LIMIT_S) == "answer"


async def test_past_the_bound_a_delivery_in_doubt_is_answered_without_its_task() -> None:
    """The claim's answer was lost and the database cannot say whether it committed: 503 at
    the bound (nothing sent; TradingView re-sends only a 5xx, and hangs up at 3 s), while the
    dispatch goes on asking, never cancelled."""
    step = _Step()
    doubt = asyncio.Event()
    doubt.set()
    task = asyncio.create_task(step.run())
    assert await in_time(task, asyncio.Event(), 0.0, doubt) is Unanswered.IN_DOUBT
    assert not task.done()
    step.go.set()
    assert await task == "answer"


async def test_a_doubt_that_comes_past_the_bound_is_answered_at_once() -> None:
    step = _Step()
    doubt = asyncio.Event()
    task = asyncio.create_task(step.run())
    waiting = asyncio.create_task(in_time(task, asyncio.Event(), 0.0, doubt))
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()  # nothing stored, nothing in doubt: no answer yet
    doubt.set()
    assert await asyncio.wait_for(waiting, LIMIT_S) is Unanswered.IN_DOUBT
    step.go.set()
    await task


@pytest.mark.parametrize("then", ["claimed", "answered"])
async def test_a_doubt_resolved_within_the_bound_is_not_answered_503(then: str) -> None:
    """The database said, within the bound, that the claim committed (stored: 200) or the
    task ended (its own answer): the doubt of the first ask is not the answer."""
    step = _Step()
    claimed, doubt = asyncio.Event(), asyncio.Event()
    doubt.set()
    task = asyncio.create_task(step.run())
    waiting = asyncio.create_task(in_time(task, claimed, 0.5, doubt))
    await asyncio.sleep(0)
    if then == "claimed":
        claimed.set()
        assert await asyncio.wait_for(waiting, LIMIT_S) is Unanswered.SENDING
        step.go.set()
        await task
    else:
        step.go.set()
        assert await asyncio.wait_for(waiting, LIMIT_S) == "answer"


async def test_the_caller_cancelled_leaves_the_task_running() -> None:
    step = _Step()
    task = asyncio.create_task(step.run())
    waiting = asyncio.create_task(in_time(task, asyncio.Event(), 5.0, asyncio.Event()))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert not task.cancelled()
    step.go.set()
    assert await task == "answer"


async def test_a_duplicate_waits_for_the_first_only_as_long_as_it_is_told() -> None:
    """A duplicate of a signal still sending waited its turn behind it (up to 1 s) and then
    up to 2 s for its result: past TradingView's 3 s. The webhook now tells ``first_result``
    what is left of ``answer_within_s``; nothing left, it answers at once."""
    loop = asyncio.get_running_loop()
    never: asyncio.Future[dict[str, object]] = loop.create_future()
    answer = await asyncio.wait_for(first_result(cast(Any, None), 7, never, 0.0), LIMIT_S)
    assert answer == {"signal_id": 7, "verdict": "received", "orders": 0}
    assert not never.cancelled()  # the first delivery's own answer is untouched
    known: asyncio.Future[dict[str, object]] = loop.create_future()
    known.set_result({"signal_id": 7, "verdict": "accepted", "orders": 2})
    assert (await first_result(cast(Any, None), 7, known, -1.0))["verdict"] == "accepted"
