"""Operator notifications posted over real HTTP to a local server standing in for Discord and a
generic webhook: what is sent (and what is not), redaction, batching, Discord's 429, failures
that name no URL, a full buffer, and the last events posted at close."""

from __future__ import annotations

import asyncio
import gc
import io
import logging
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import structlog
from aiohttp import web

from jtrades import logging as jlog
from jtrades import retry
from jtrades.notify import Notice, Notifier, Target

# the path carries a token, as a Discord webhook URL does
DISCORD_PATH = "/api/webhooks/1234/notify-canary-TOKEN-9f8e7d"


@dataclass
class Endpoint:
    """The local server: what each path received, and how it answers (a status per call)."""

    base: str = ""
    received: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    answers: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return self.received.get(path, [])

    async def wait_for(self, done: Callable[[], bool], limit_s: float = 10.0) -> None:
        async with asyncio.timeout(limit_s):
            while not done():
                self.arrived.clear()
                await self.arrived.wait()


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()

    async def handle(request: web.Request) -> web.Response:
        ep.received.setdefault(request.path, []).append(await request.json())
        ep.arrived.set()
        status, body = ep.answers.pop(0) if ep.answers else (204, None)
        if body is None:
            return web.Response(status=status)
        return web.json_response(body, status=status)

    app = web.Application()
    app.router.add_post("/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    ep.base = f"http://127.0.0.1:{port}"
    yield ep
    await runner.cleanup()


@pytest.fixture
def log_output() -> Any:
    """The process's log configured as the daemon's, its output kept; restored afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buf = io.StringIO()
    yield buf
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def notice(i: int) -> Notice:
    return Notice(f"test.event_{i}", "error", "2026-11-29T00:00:00Z", {"n": i})


async def test_errors_and_listed_events_reach_both_targets_redacted(
    endpoint: Endpoint, log_output: io.StringIO
) -> None:
    notifier = Notifier(
        [
            Target("discord", endpoint.base + DISCORD_PATH),
            Target("webhook", endpoint.base + "/hook"),
        ],
        window_s=0.05,
        host="box1",
    )
    jlog.configure("json", "info", stream=log_output, sink=notifier.processor)
    jlog.register_secret("notify-canary-password-1")
    await notifier.start()
    log = structlog.get_logger("t")
    try:
        log.info("webhook.signal", verdict="accepted")  # routine: not sent
        log.warning("retry.scheduled", attempt=1)  # a warning not on the list: not sent
        log.error(
            "reconcile.protect_failed",
            sub_account_id=7,
            error="login with notify-canary-password-1 refused",
            password="notify-canary-password-1",
        )
        log.warning("reconcile.protective_stop", sub_account_id=7, symbol="MNQZ6", stop="21480.25")
        logging.getLogger("aiohttp.server").error("Error handling request")  # stdlib, too
        await endpoint.wait_for(
            lambda: sum(len(b["events"]) for b in endpoint.bodies("/hook")) >= 3
        )
    finally:
        await notifier.close()

    events = [e for b in endpoint.bodies("/hook") for e in b["events"]]
    assert [e["event"] for e in events] == [
        "reconcile.protect_failed",
        "reconcile.protective_stop",
        "Error handling request",
    ]
    first = events[0]
    assert (first["level"], first["sub_account_id"]) == ("error", 7)
    assert first["error"] == "login with *** refused"
    assert first["password"] == "***"
    assert first["at"].startswith("20")
    assert endpoint.bodies("/hook")[0]["host"] == "box1"

    discord = endpoint.bodies(DISCORD_PATH)
    content = "\n".join(b["content"] for b in discord)
    assert content.startswith("**jtrades** on box1")
    assert "`reconcile.protect_failed`" in content
    assert "stop=21480.25" in content
    assert "notify-canary-password-1" not in content
    assert all(b["allowed_mentions"] == {"parse": []} for b in discord)
    assert notifier.sent == 3
    assert notifier.dropped == 0


async def test_a_burst_goes_out_as_few_messages(endpoint: Endpoint) -> None:
    notifier = Notifier([Target("webhook", endpoint.base + "/hook")], window_s=0.2, max_batch=20)
    await notifier.start()
    try:
        for i in range(30):
            notifier.offer(notice(i))
        await endpoint.wait_for(lambda: len(endpoint.bodies("/hook")) >= 2)
    finally:
        await notifier.close()
    sizes = [len(b["events"]) for b in endpoint.bodies("/hook")]
    assert sizes == [20, 10]
    names = [e["event"] for b in endpoint.bodies("/hook") for e in b["events"]]
    assert names == [f"test.event_{i}" for i in range(30)]  # in order, none twice


async def test_discord_429_is_waited_out_and_sent(endpoint: Endpoint) -> None:
    endpoint.answers = [(429, {"message": "You are being rate limited.", "retry_after": 0.05})]
    notifier = Notifier([Target("discord", endpoint.base + DISCORD_PATH)], window_s=0.01)
    await notifier.start()
    try:
        notifier.offer(notice(1))
        await endpoint.wait_for(lambda: len(endpoint.bodies(DISCORD_PATH)) >= 2)
    finally:
        await notifier.close()
    first, second = endpoint.bodies(DISCORD_PATH)
    assert first == second  # the same message again, once
    assert (notifier.sent, notifier.dropped) == (1, 0)


@pytest.mark.parametrize(
    ("answers", "attempts", "reason"),
    [
        ([(500, None)] * 5, 3, "discord answered 500"),
        ([(404, {"message": "Unknown Webhook"})], 1, "discord refused the message (404)"),
    ],
)
async def test_a_failing_target_is_logged_without_its_url(
    endpoint: Endpoint,
    log_output: io.StringIO,
    answers: list[tuple[int, dict[str, Any] | None]],
    attempts: int,
    reason: str,
) -> None:
    endpoint.answers = list(answers)
    notifier = Notifier([Target("discord", endpoint.base + DISCORD_PATH)], window_s=0.01)
    jlog.configure("json", "info", stream=log_output, sink=notifier.processor)
    await notifier.start()
    with retry.waits_disabled():
        notifier.offer(notice(1))
        await notifier.close()
    assert len(endpoint.bodies(DISCORD_PATH)) == attempts  # a 404 is not retried
    out = log_output.getvalue()
    assert "notify.failed" in out
    assert reason in out
    assert "notify-canary-TOKEN" not in out
    assert "/api/webhooks" not in out
    assert (notifier.sent, notifier.dropped) == (0, 1)


async def test_an_unreachable_target_names_no_url(log_output: io.StringIO) -> None:
    url = "http://127.0.0.1:9" + DISCORD_PATH  # the discard port: nothing listens
    notifier = Notifier([Target("discord", url)], window_s=0.01)
    jlog.configure("console", "info", stream=log_output, sink=notifier.processor)
    await notifier.start()
    with retry.waits_disabled():
        structlog.get_logger("t").error("broker.session_failed", account_id=3)
        await notifier.close()
    out = log_output.getvalue()
    assert "discord unreachable (ClientConnectorError)" in out
    assert "notify-canary-TOKEN" not in out
    assert out.count("notify.failed") == 1  # its own failure is not notified again
    assert notifier.dropped == 1


async def test_a_full_buffer_drops_the_newest_and_says_how_many(endpoint: Endpoint) -> None:
    notifier = Notifier([Target("webhook", endpoint.base + "/hook")], window_s=0.01, capacity=3)
    for i in range(5):  # before start: kept for it, up to the capacity
        notifier.offer(notice(i))
    await notifier.start()
    try:
        await endpoint.wait_for(lambda: bool(endpoint.bodies("/hook")))
    finally:
        await notifier.close()
    (body,) = endpoint.bodies("/hook")
    assert [e["event"] for e in body["events"]] == ["test.event_0", "test.event_1", "test.event_2"]
    assert body["dropped"] == 2
    assert (notifier.sent, notifier.dropped) == (3, 2)


async def test_close_posts_what_is_left_without_waiting_out_the_window(
    endpoint: Endpoint,
) -> None:
    notifier = Notifier([Target("webhook", endpoint.base + "/hook")], window_s=60.0)
    await notifier.start()
    notifier.offer(notice(1))
    async with asyncio.timeout(10):  # far below the window: close does not wait it out
        await notifier.close()
    assert [e["event"] for b in endpoint.bodies("/hook") for e in b["events"]] == ["test.event_1"]
    assert notifier.sent == 1


async def test_a_backlog_at_close_keeps_one_message_per_window(endpoint: Endpoint) -> None:
    """Closing skips the first wait (a lone notice goes at once), not the ones between
    messages: a backlog went out back to back, and Discord answers 429 past 5 in 2 s."""
    notifier = Notifier([Target("webhook", endpoint.base + "/hook")], window_s=0.3, max_batch=1)
    await notifier.start()
    for i in range(3):
        notifier.offer(notice(i))
    started = time.monotonic()
    await notifier.close()
    assert time.monotonic() - started >= 0.55  # two windows between three messages
    assert [len(b["events"]) for b in endpoint.bodies("/hook")] == [1, 1, 1]


async def test_offers_from_another_thread_are_sent(endpoint: Endpoint) -> None:
    notifier = Notifier([Target("webhook", endpoint.base + "/hook")], window_s=0.01)
    await notifier.start()
    try:
        await asyncio.to_thread(notifier.offer, notice(5))
        await endpoint.wait_for(lambda: bool(endpoint.bodies("/hook")))
    finally:
        await notifier.close()
    assert endpoint.bodies("/hook")[0]["events"][0]["event"] == "test.event_5"


async def test_an_outage_is_not_a_flood(endpoint: Endpoint, log_output: io.StringIO) -> None:
    notifier = Notifier([Target("webhook", endpoint.base + "/hook")], window_s=0.01)
    jlog.configure("json", "info", stream=log_output, sink=notifier.processor)
    await notifier.start()
    log = structlog.get_logger("t")
    for i in range(5):  # the same failure, every reconcile pass
        log.error("reconcile.sessions_failed", error=f"connection refused ({i})")
    log.error("broker.session_failed", account_id=3, error="refused")  # another source: sent
    await notifier.close()
    events = [e for b in endpoint.bodies("/hook") for e in b["events"]]
    assert [e["event"] for e in events] == ["reconcile.sessions_failed"] * 3 + [
        "broker.session_failed"
    ]
    assert (notifier.sent, notifier.held) == (4, 2)
    assert log_output.getvalue().count("reconcile.sessions_failed") == 5  # the log keeps them all


def test_a_notice_offered_by_a_finalizer_while_the_notifier_is_busy_does_not_hang() -> None:
    """The sink sits right after the redaction: a collection inside the notifier's lock (its
    repeat filter allocates) finalizes a future whose lost exception asyncio logs at error,
    a wanted notice, offered by the same thread. A plain lock hung the thread for good (the
    daemon's event loop, were it there: the hang the redaction had, review)."""
    n = Notifier([Target("webhook", "http://127.0.0.1:9/hook")])
    nested: list[bool] = []

    def in_admit() -> bool:
        frame = sys._getframe()
        while frame is not None:
            if frame.f_code.co_name == "admit":  # Repeats.admit: the lock held
                return True
            frame = frame.f_back  # type: ignore[assignment]
        return False

    def during_collection(phase: str, _info: dict[str, int]) -> None:
        if phase == "start" and not nested and in_admit():
            nested.append(True)
            n.processor(
                None, "error", {"event": "Future exception was never retrieved", "level": "error"}
            )

    def offer_one() -> None:
        n.offer(Notice("webhook.engine_failed", "error", "2026-01-01T00:00:00Z", {"x": 1}))

    old = gc.get_threshold()
    gc.callbacks.append(during_collection)
    gc.set_threshold(1)
    try:
        worker = threading.Thread(target=offer_one, daemon=True)
        worker.start()
        worker.join(5)
    finally:
        gc.callbacks.remove(during_collection)
        gc.set_threshold(*old)
    assert nested, "no collection ran inside the lock"
    assert not worker.is_alive(), "the thread hangs on the notifier's own lock"
    assert n.dropped == 1  # the nested notice, counted (and said in the next message)
    assert len(n._take()[0]) == 1  # the outer one queued
