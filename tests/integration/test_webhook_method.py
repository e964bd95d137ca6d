"""A webhook URL opened with another method than POST (a browser's GET) answers JSON, as every
other refusal does, not aiohttp's plain-text 405; and still never logs the token."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest
import structlog

from jtrades.config import Settings
from tests.integration.test_server import ALERT, Stack, serving


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with serving(settings, pool) as s:
        yield s


async def test_other_methods_are_a_json_405_naming_post(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    t = stack.token
    paths = [f"/webhook/{t}", f"/webhook/{t}/", "/webhook", "/webhook/", f"/webhook/{t}/extra"]
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        for path in paths:
            for method in ("GET", "PUT", "DELETE", "PATCH"):
                async with stack.client.request(method, path) as r:
                    assert (r.status, r.content_type) == (405, "application/json"), (method, path)
                    assert r.headers["Allow"] == "POST"
                    body = await r.json()
                assert body["error"] == "method_not_allowed"
                assert "POST" in body["detail"]
                assert t not in body["detail"]
        status, answer = await stack.post(ALERT)  # POST still reaches the webhook
    assert status == 200, answer
    assert await stack.pool.fetchval("SELECT count(*) FROM signals") == 1  # no 405 stored
    assert t not in repr(events)
    assert t not in caplog.text
