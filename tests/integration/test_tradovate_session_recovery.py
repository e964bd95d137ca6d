"""The connection loop outlives whatever ends a connection: a refused sync, an event the view
cannot read, and its backoff starts over after a connection that stayed up (simulator, real
sockets). A loop that died here left the login without exits or stops until a restart."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.tradovate.codec import (
    Event,
    Response,
    encode_messages,
    parse_request,
)
from jtrades.broker.tradovate.lifecycle import State
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.sim.api import Answer, Api
from jtrades.sim.config import default_config
from jtrades.sim.ws import WsConn
from tests.integration.test_tradovate_session import tv
from tests.polling import until
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


def delays(logs: list[dict[str, Any]]) -> list[float]:
    return [e["delay_s"] for e in logs if e["event"] == "tradovate.session.reconnecting"]


@pytest.mark.parametrize("status", [401, 400])
async def test_a_refused_sync_is_logged_and_the_session_reconnects(
    sim: SimHandle, status: int
) -> None:
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        token = pool.tokens.peek("demo", LOGIN)
        assert token is not None
        sim1 = sim.account_id("SIM1")
        with capture_logs() as logs:
            sim.fault("sync_error", status=status)
            sim.fault("drop", after=0)
            await until(lambda: session.connects == 2 and broker.is_synced(sim1), within_s=10)
        failed = [e for e in logs if e["event"] == "tradovate.session.failed"]
        assert len(failed) == 1
        assert failed[0]["log_level"] == "error"
        assert failed[0]["error"] == "BrokerRejected"
        assert f"user/syncrequest: {status}" in failed[0]["reason"]
        assert token.token not in repr(logs)
        assert sim.stats()["by_endpoint"]["user/syncrequest"] == 3
        # the token passed authorize on that very socket: a refused sync does not cost a login
        assert sim.stats()["access_token_requests"] == 1
        assert pool.tokens.peek("demo", LOGIN) == token
    finally:
        await pool.close()


async def test_a_malformed_event_is_logged_and_resynced_from_a_fresh_snapshot(
    sim: SimHandle,
) -> None:
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        sub = broker.events()
        sim1 = sim.account_id("SIM1")
        with capture_logs() as logs:
            assert sim.fault("malformed", login=LOGIN) == {"events": 1}
            await sim.flush()
            await until(lambda: session.connects == 2 and broker.is_synced(sim1), within_s=10)
        bad = [e for e in logs if e["event"] == "tradovate.session.bad_event"]
        assert len(bad) == 1
        assert bad[0]["log_level"] == "error"
        assert bad[0]["entity_type"] == "position"
        assert bad[0]["error"] == "ValueError"
        # not skipped: readers are told the view is unknown until the fresh snapshot is in
        seen: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            async for event in sub:
                if event.kind == "session" and event.account_id == sim1:
                    seen.append(event.detail)
                if [d["state"] for d in seen[-2:]] == ["unsynced", "synced"]:
                    break
        assert "unreadable position event" in seen[0]["reason"]
        assert sim.stats()["by_endpoint"]["user/syncrequest"] == 2
        assert session.state is State.READY
    finally:
        await pool.close()


async def test_a_frame_that_cannot_be_read_cuts_the_stream_at_once_and_resyncs(
    sim: SimHandle,
) -> None:
    """A frame that is no Tradovate frame (``a[{``) may have carried anything (a fill): the
    view is unsynced as it is read, as for an event it cannot read. It used to end the reader
    with the view still synced and the session ready through the close handshake (1 s)."""
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        sub = broker.events()
        sim1 = sim.account_id("SIM1")
        with capture_logs() as logs:
            assert sim.fault("garbage_frame", login=LOGIN) == {"sockets": 1}
            seen: list[dict[str, Any]] = []
            async with asyncio.timeout(10):
                async for event in sub:
                    if event.kind == "session" and event.account_id == sim1:
                        seen.append(event.detail)
                    if [d["state"] for d in seen[-2:]] == ["unsynced", "synced"]:
                        break
        assert seen[0]["state"] == "unsynced"
        assert "unreadable frame from Tradovate" in seen[0]["reason"]
        (bad,) = [e for e in logs if e["event"] == "tradovate.session.bad_frame"]
        assert bad["log_level"] == "error"
        assert session.connects == 2
        assert session.state is State.READY
    finally:
        await pool.close()


async def test_a_malformed_event_ahead_of_the_snapshot_is_not_applied_and_resynced(
    sim: SimHandle,
) -> None:
    """Events may overtake the sync answer: one the view cannot read breaks that sync too."""
    pool = TradovatePool(tv(sim))
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        sim1 = sim.account_id("SIM1")
        with capture_logs() as logs:
            sim.fault("malformed", login=LOGIN)  # queued: goes out ahead of the next sync answer
            sim.fault("drop", after=0)
            await until(lambda: session.connects == 2 and broker.is_synced(sim1), within_s=10)
        assert [e["error"] for e in logs if e["event"] == "tradovate.session.bad_event"] == [
            "ValueError"
        ]
        assert sim.stats()["by_endpoint"]["user/syncrequest"] == 3
    finally:
        await pool.close()


async def test_backoff_starts_over_after_a_connection_that_stayed_up(sim: SimHandle) -> None:
    settings = tv(sim, reconnect_initial_s=0.05, reconnect_max_s=1)
    pool = TradovatePool(settings)
    try:
        sim.fault("refuse_ws", count=4)  # four failures in a row before the first connection
        with capture_logs() as logs:
            broker = await pool.broker("demo", LOGIN, PASSWORD, wait_s=15)
        assert len(delays(logs)) == 4
        session = broker.session
        await asyncio.sleep(settings.reconnect_max_s + 0.2)  # up for longer than the cap
        with capture_logs() as logs:
            sim.fault("drop", after=0)
            await until(lambda: session.connects == 2, within_s=10)
        assert len(delays(logs)) == 1
        assert delays(logs)[0] <= settings.reconnect_initial_s
    finally:
        await pool.close()


async def test_a_connection_that_drops_soon_after_sync_keeps_backing_off() -> None:
    """Reaching READY alone does not start the backoff over: a login whose connection syncs
    and dies each time would otherwise sync about once per ``reconnect_initial_s``."""
    cfg = default_config()
    cfg.heartbeat_s = 0.5
    async with running_sim(cfg) as sim:
        settings = tv(sim, reconnect_initial_s=0.05, reconnect_max_s=5)
        pool = TradovatePool(settings)
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            with capture_logs() as logs:
                # each new socket is cut after its 4th frame (o, authorize, sync answer, the
                # first heartbeat): READY, then gone within half a second
                sim.fault("drop", after=4, sticky=True)
                await until(lambda: broker.session.connects >= 5, within_s=20)
            assert max(delays(logs)) > settings.reconnect_initial_s
        finally:
            await pool.close()


async def test_no_renewal_login_after_the_session_failed_on_a_captcha() -> None:
    """The token is revoked and logins now want a captcha: the session fails, and says why.
    Its renewal task went on: at the old token's renewal time it asked for a token, which was
    a login, and each one only lengthens the lock (TRADOVATE.md)."""
    cfg = default_config()
    cfg.token_lifetime_s = 8
    async with running_sim(cfg) as handle:
        pool = TradovatePool(tv(handle, renew_margin_s=5))  # renewal due 3 s after the login
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            session = broker.session
            first = pool.tokens.peek("demo", LOGIN)
            assert first is not None
            await asyncio.sleep(0.5)  # the renewal task waits for the renewal time
            handle.fault("unauthorized", token=first.token)
            handle.fault("penalty", captcha=True, count=10)
            handle.fault("drop", after=0)
            await until(lambda: session.state is State.FAILED, within_s=10)
            assert "captcha" in (session.last_error or "")
            logins = len(handle.world.auth.token_request_log)
            await asyncio.sleep(3.5)  # past the old token's renewal time
            assert len(handle.world.auth.token_request_log) == logins
        finally:
            await pool.close()


async def test_an_order_that_filled_during_an_outage_is_published_after_a_broken_sync() -> None:
    """A limit fills while the socket is down; the next sync has an unreadable event ahead of
    its answer. The view had taken the snapshot, then the stream was cut before its changes
    were published, and the good snapshot after that found nothing changed: no subscriber
    (the mirror: the intent and the order row) ever heard the order filled."""
    async with running_sim() as handle:
        pool = TradovatePool(tv(handle))
        try:
            broker = await pool.broker("demo", LOGIN, PASSWORD)
            session, sim1 = broker.session, handle.account_id("SIM1")
            price = handle.price("MNQ")
            placed = await broker.place_order(
                OrderRequest(
                    SubAccount(sim1, "SIM1"), handle.contract("MNQ").name, Side.BUY, 1,
                    OrderType.LIMIT, "lim-1", price=price - Decimal(10),
                )
            )  # fmt: skip
            await until(
                lambda: [o.order_id for o in broker.working_orders(sim1)] == [placed.order_id]
            )
            events = broker.events()
            handle.fault("refuse_ws", count=10_000)
            handle.fault("drop", after=0)
            await until(lambda: session.state is State.RECONNECTING, within_s=10)
            await handle.set_price("MNQ", price - Decimal(20))  # the limit fills meanwhile
            handle.fault("malformed", login=LOGIN)  # ahead of the next sync's answer
            handle.faults.refuse_ws = 0
            await until(
                lambda: (
                    handle.stats()["by_endpoint"]["user/syncrequest"] >= 3
                    and broker.is_synced(sim1)
                ),
                within_s=15,
            )
            seen: list[str] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    async for ev in events:
                        if ev.kind == "order" and ev.entity is not None:
                            seen.append(str(ev.entity.status))
            assert "Filled" in seen
        finally:
            await pool.close()


async def test_a_penalised_sync_waits_its_p_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A penalty ticket in the sync's answer: the next sync went out after the reconnect
    backoff (a fraction of a second), not after p-time, and each early one lengthens the lock."""
    syncs: list[float] = []
    real = Api.call

    def call(self: Api, endpoint: str, *args: Any, **kw: Any) -> Answer:
        if endpoint.lower().strip("/") == "user/syncrequest":
            syncs.append(time.monotonic())
            if len(syncs) == 1:
                return Answer(200, {"p-ticket": "tkt-1", "p-time": 2})
        return real(self, endpoint, *args, **kw)

    monkeypatch.setattr(Api, "call", call)
    async with running_sim() as handle:
        pool = TradovatePool(
            tv(handle, reconnect_initial_s=0.1, reconnect_max_s=5.0, rate_limit_cooldown_s=0.5)
        )
        try:
            with contextlib.suppress(Exception):
                await pool.broker("demo", LOGIN, PASSWORD, wait_s=0.2)
            await until(lambda: len(syncs) >= 2, within_s=10)
            assert syncs[1] - syncs[0] >= 1.9
        finally:
            await pool.close()


async def test_a_shutdown_heard_with_the_sync_answer_still_waits_the_floor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Another party takes the login's place while the session syncs: the ``shutdown`` comes
    in the frame of the sync's answer. The session went READY on the snapshot, which cleared
    the shutdown, and logged in again at once instead of after ``reconnect_max_s`` (the
    floor that keeps two parties knocking each other off from becoming a login storm)."""
    floor = 2.5
    real = WsConn._frame
    syncs: list[int] = []

    async def frame(self: WsConn, text: str) -> None:
        req = parse_request(text)
        if req is not None and req.endpoint.lower() == "user/syncrequest":
            syncs.append(1)
            if len(syncs) == 2:  # the reconnect after a drop is knocked off while syncing
                status, data = await self._call(req)
                self.session.revoked = True
                shutdown = Event("shutdown", {"reasonCode": "ConnectionQuotaReached"})
                # the client closes on a shutdown; closing here too could wait on a handshake
                # nobody answers, and keep the simulator from stopping
                await self.send(encode_messages([shutdown, Response(req.id, status, data)]))
                return
        await real(self, text)

    monkeypatch.setattr(WsConn, "_frame", frame)
    async with asyncio.timeout(30), running_sim() as handle:  # never the suite's 120 s
        pool = TradovatePool(tv(handle, reconnect_initial_s=0.05, reconnect_max_s=floor))
        try:
            await pool.broker("demo", LOGIN, PASSWORD)
            handle.fault("drop", after=0)
            logins = handle.world.auth.token_request_log
            await until(lambda: len(logins) >= 2, within_s=floor + 4)
            assert logins[1][0] - logins[0][0] >= floor - 0.5
        finally:
            await pool.close()
