"""``/metrics``' ``jtrades_ready`` and ``/readyz`` on a daemon that refuses every alert (the
one-daemon lock being taken again while the database is away, or the stop under way), or whose
start is not done: ``/readyz`` says 503 (commit 34ca0cd), the gauge named ready still says 1."""

from __future__ import annotations

from tests.integration.test_server import Stack
from tests.integration.test_server import stack as stack


async def test_jtrades_ready_agrees_with_readyz_while_alerts_are_refused(stack: Stack) -> None:
    stack.hooks.accepting = False  # Daemon._set_accepting(False): every alert answered 503
    async with stack.client.get("/readyz") as r:
        assert r.status == 503
    async with stack.client.get("/metrics") as r:
        text = await r.text()
    assert "jtrades_ready 0" in text, [ln for ln in text.splitlines() if "ready" in ln]


async def test_jtrades_ready_agrees_with_readyz_while_the_start_is_not_done(stack: Stack) -> None:
    stack.hooks.started = False  # Daemon._start: not done yet
    async with stack.client.get("/readyz") as r:
        assert r.status == 503
    async with stack.client.get("/metrics") as r:
        text = await r.text()
    assert "jtrades_ready 0" in text, [ln for ln in text.splitlines() if "ready" in ln]
