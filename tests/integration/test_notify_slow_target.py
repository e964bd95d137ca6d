"""Discord and a generic webhook configured together; Discord stops answering (a black-holed
route, a hung edge). The notifier posts each batch to the targets one after the other and
waits out Discord's timeout and retries before it even tries the webhook: the healthy
target's notices wait ~30 s per batch, and at shutdown (close within NOTIFY_CLOSE_S) the
last ones, ``daemon.stopped`` included, never reach it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from jtrades.daemon_stop import NOTIFY_CLOSE_S
from jtrades.notify import Notice, Notifier, Target
from tests.polling import until


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []

    async def hung(_request: web.Request) -> web.Response:  # Discord not answering
        await asyncio.sleep(3600)
        return web.Response(status=204)

    async def hook(request: web.Request) -> web.Response:
        received.append(await request.json())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/api/webhooks/1/tok", hung)
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield base, received
    await runner.cleanup()


async def test_a_hung_discord_does_not_lose_the_webhooks_last_notice_at_close(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    base, received = server
    notifier = Notifier(
        [Target("discord", base + "/api/webhooks/1/tok"), Target("webhook", base + "/hook")],
        host="box1",
    )  # as Notifier.from_settings makes it: Discord first
    await notifier.start()
    notifier.offer(Notice("daemon.stopped", "info", "2026-12-01T00:00:00Z", {}))
    started = time.monotonic()
    await notifier.close(NOTIFY_CLOSE_S)
    assert time.monotonic() - started < NOTIFY_CLOSE_S + 2
    events = [e["event"] for b in received for e in b["events"]]
    assert events == ["daemon.stopped"], "the healthy webhook never got the daemon's stop"


async def test_a_hung_discord_does_not_hold_up_the_webhook(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    """The webhook gets its copy while Discord's post still hangs (it never answers)."""
    base, received = server
    notifier = Notifier(
        [Target("discord", base + "/api/webhooks/1/tok"), Target("webhook", base + "/hook")],
        host="box1",
    )
    await notifier.start()
    try:
        notice = Notice("engine.flatten_refused", "error", "2026-12-01T00:00:00Z", {})
        notifier.offer(notice)
        await until(lambda: bool(received), within_s=15, what="the webhook's copy")
    finally:
        await notifier.close(0.1)
    assert [e["event"] for b in received for e in b["events"]] == ["engine.flatten_refused"]


def _events(received: list[dict[str, Any]]) -> list[str]:
    return [e["event"] for b in received for e in b["events"]]


async def test_daemon_stopped_reaches_the_webhook_when_discord_hung_on_an_earlier_batch(
    server: tuple[str, list[dict[str, Any]]],
) -> None:
    """Discord stopped answering while the daemon ran: an error went out (the webhook got it
    at once); the daemon is then stopped. ``daemon.stopped`` waits behind Discord's retries
    of the earlier batch (up to 30 s) unless each target has a lane of its own."""
    base, received = server
    notifier = Notifier(
        [Target("discord", base + "/api/webhooks/1/tok"), Target("webhook", base + "/hook")],
        host="box1",
    )
    await notifier.start()
    notifier.offer(Notice("engine.flatten_refused", "error", "2026-12-01T00:00:00Z", {}))
    await until(lambda: bool(received), within_s=15, what="the webhook's copy")
    notifier.offer(Notice("daemon.stopped", "info", "2026-12-01T00:00:05Z", {}))
    started = time.monotonic()
    await notifier.close(NOTIFY_CLOSE_S)
    assert time.monotonic() - started < NOTIFY_CLOSE_S + 2
    assert _events(received) == ["engine.flatten_refused", "daemon.stopped"], (
        "the healthy webhook never got the daemon's stop: its batch waited behind Discord's"
    )
