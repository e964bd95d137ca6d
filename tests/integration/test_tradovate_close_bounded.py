"""A session's close always returns, and leaves nothing of the session running (simulator, real
sockets). A daemon whose stop hangs is killed by systemd with its pending requests never failed.

The close that hung: it cancelled the connection loop at the moment the server's ``o`` came in.
On Python 3.11 ``asyncio.wait_for`` returns its inner result and drops the cancellation when both
land in the same step, so the loop went on to authorize, sync and READY on a closed session, and
close waited for it forever."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection

from jtrades.aio import end_tasks
from jtrades.broker.tradovate import session as session_module
from jtrades.broker.tradovate.lifecycle import State
from jtrades.broker.tradovate.pool import ConnectGate, TradovatePool
from jtrades.broker.tradovate.session import Session
from jtrades.errors import JtradesError, OutcomeUnknown
from tests.integration.test_tradovate_session import tv
from tests.polling import until
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim

# Far above the bound close keeps to (a few seconds): only a hang reaches it, not a busy machine.
HANG_S = 25


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


async def returns(closing: Awaitable[None], what: str = "close") -> None:
    """Wait for ``closing`` without ever cancelling it (close swallowed the cancellation of a
    timeout around it and returned, hiding the hang): a hang is an assertion, not a timeout."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=HANG_S)
    assert done, f"{what} did not return within {HANG_S} s"
    task.result()


def session_tasks(session: Session) -> list[asyncio.Task[Any]]:
    """The session's own tasks still running (its loop, renewal, naming, a connection's)."""
    names = {f"{kind}-{session.label}" for kind in ("tradovate-session", "renew", "names")}
    return [t for t in asyncio.all_tasks() if t.get_name() in names and not t.done()]


async def test_a_close_landing_as_the_server_opens_a_reconnect_returns(
    sim: SimHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon stops just as a reconnect's ``o`` arrives (close is called in the very step the
    socket hands it over). Close returns, the session is CLOSED, nothing of it runs on, and the
    simulator sees no socket left open: before, the loop swallowed the cancellation, went READY
    on the closed session and close waited for it forever."""
    pool = TradovatePool(tv(sim))
    closing: list[asyncio.Task[None]] = []
    armed = False
    real_recv = ClientConnection.recv

    async def recv(self: ClientConnection, decode: bool | None = None) -> Any:
        message = await real_recv(self, decode)
        if armed and message == "o" and not closing:
            closing.append(asyncio.create_task(session.close()))
        return message

    monkeypatch.setattr(ClientConnection, "recv", recv)
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        armed = True
        sim.fault("drop", after=0)
        await until(lambda: bool(closing), within_s=HANG_S)
        await returns(closing[0])
        assert session.state is State.CLOSED
        assert not session.ready
        assert session_tasks(session) == []
        assert not broker.is_synced(sim.account_id("SIM1"))
        await until(lambda: sim.stats()["websockets_open"] == 0, within_s=HANG_S)
    finally:
        await returns(pool.close(), "pool.close")  # a hang fails this test, not the run


async def test_a_request_pending_when_a_deaf_peer_is_closed_fails_as_unknown(
    sim: SimHandle,
) -> None:
    """The peer stops reading, so nobody answers the closing handshake: close still returns
    (the handshake has its own bound), and the request it left waiting is an unknown outcome."""
    pool = TradovatePool(tv(sim, request_timeout_s=60, dead_after_s=60))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        sim.fault("deaf", login=LOGIN)
        pending = asyncio.create_task(session.request("account/list"))
        await asyncio.sleep(0.1)  # written, never answered
        await returns(session.close())
        with pytest.raises(OutcomeUnknown):
            await pending
        assert session.state is State.CLOSED
        assert session_tasks(session) == []
    finally:
        await returns(pool.close(), "pool.close")


async def test_a_loop_that_ignores_cancellation_is_abandoned_after_the_bound_and_logged(
    sim: SimHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backstop: a connection loop stuck in code that swallows every cancellation (a
    library's bug) does not hold close past its bound; close still fails what waits, marks the
    view unknown, and says in the log what it left running."""
    monkeypatch.setattr(session_module, "CLOSE_WITHIN_S", 1.0)
    release = asyncio.Event()

    async def stubborn_gate(self: ConnectGate) -> None:
        while not release.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await release.wait()

    monkeypatch.setattr(ConnectGate, "__call__", stubborn_gate)
    pool = TradovatePool(tv(sim))
    try:
        with contextlib.suppress(JtradesError):
            await pool.broker("demo", LOGIN, PASSWORD, wait_s=0.2)
        session = pool.sessions()[("demo", LOGIN)]
        with capture_logs() as logs:
            await returns(session.close())
        abandoned = [e for e in logs if e["event"] == "tradovate.session.close_abandoned"]
        assert len(abandoned) == 1
        assert abandoned[0]["log_level"] == "error"
        assert abandoned[0]["tasks"] == [f"tradovate-session-{session.label}"]
        assert session.state is State.CLOSED
        # released, the loop sees the session stopped and ends without connecting
        release.set()
        await until(lambda: session_tasks(session) == [], within_s=HANG_S)
        assert session.state is State.CLOSED
        assert sim.stats()["websockets_opened"] == 0
    finally:
        release.set()
        await returns(pool.close(), "pool.close")


async def test_end_tasks_cancels_again_a_task_that_dropped_a_cancellation() -> None:
    """What 3.11's ``wait_for`` does to its caller: one cancellation lost, the task goes on.
    Cancelled again, it ends; one that never ends is handed back after the bound."""

    async def drops_one() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await asyncio.sleep(3600)

    forever = asyncio.Event()

    async def never_ends() -> None:
        while not forever.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await forever.wait()

    dropping = asyncio.create_task(drops_one())
    stubborn = asyncio.create_task(never_ends())
    await asyncio.sleep(0)
    try:
        left = await asyncio.wait_for(end_tasks([dropping, stubborn, None], 1.0), HANG_S)
        assert dropping.cancelled()
        assert left == [stubborn]
    finally:
        forever.set()  # else the loop's teardown would wait for it forever
        await stubborn
