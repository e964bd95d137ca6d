"""The webhook token of a delivery that is refused before it becomes a signal: it still names
the recorder (the body's own 4xx, not a 401), it is stored masked, and it never reaches a log
line, also when the failure is a traceback taken before the token was known to be one."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import asyncpg
import pytest
import structlog

from jtrades import logging as jlog
from jtrades.config import Settings
from tests.integration.test_server import Stack, make_recorder, serving


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with serving(settings, pool) as s:
        yield s


@pytest.mark.parametrize(
    "body",
    [
        b'{"action":"purchase","ticker":"MNQ1!","passphrase":"%s"}',
        b'{"action":"purchase","ticker":"MNQ1!","Webhook-Token":"%s"}',
        b'\xef\xbb\xbf{"action":"purchase","token":"%s"}',
        b"purchase MNQ1! 1 token=%s",
    ],
)
async def test_a_refused_body_is_answered_for_its_recorder_and_stored_masked(
    stack: Stack, body: bytes
) -> None:
    """Found by the exact key ``token`` in decodable JSON only, these were 401 "no webhook
    token", with no recorder on the row and the token in clear in its raw body."""
    body = body.replace(b"%s", stack.token.encode())
    status, answer = await stack.post(body, path="/webhook")
    assert (status, answer["error"]) == (422, "invalid_signal"), answer
    row = await stack.row(answer["signal_id"])
    assert row["recorder_id"] == stack.recorder_id
    assert stack.token.encode() not in bytes(row["raw_body"])


async def test_an_oversize_body_is_stored_with_its_token_masked(stack: Stack) -> None:
    pad = b"x" * (stack.hooks.max_body + 100)
    body = b'{"token":"%s","action":"buy","comment":"%s"}' % (stack.token.encode(), pad)
    status, answer = await stack.post(body, path="/webhook")
    assert status == 413
    raw = bytes((await stack.row(answer["signal_id"]))["raw_body"])
    assert raw.startswith(b'{"token":"***","action":"buy"')
    assert stack.token.encode() not in raw


async def test_a_failure_before_the_claim_logs_no_token(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A recorder created after the last token refresh, and the database down for the lookup
    that would find it: the 503's traceback printed the handler's local variables in the
    console format, the token among them (it is registered for masking only once found)."""
    out = io.StringIO()
    jlog.configure("console", "info", stream=out)
    try:
        async with serving(settings, pool) as s:
            token, _ = await make_recorder(pool, "fresh")

            async def down() -> dict[bytes, int]:
                raise ConnectionRefusedError("database down")

            s.hooks.tokens._loader = down
            status, answer = await s.post(b"buy", path=f"/webhook/{token}")
    finally:
        structlog.reset_defaults()
    assert (status, answer["error"]) == (503, "unavailable")
    text = out.getvalue()
    assert "webhook.failed_before_claim" in text
    assert "ConnectionRefusedError" in text
    assert token not in text
