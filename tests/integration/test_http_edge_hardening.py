"""The public port's edge against anyone on the internet: a forged ``/oauth/callback`` (no valid
state) registered its ``code`` as a log secret, so any caller could mask any text in every
later log line (their own address in the access log) and grow the secret set without bound,
each new value rescanned on the event loop; and a request aiohttp could not parse crashed the
access logger (an ERROR traceback, an operator notification, and no access line at all)."""

from __future__ import annotations

import asyncio
import io
import logging
import os
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog

from jtrades import logging as jlog
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.tokens import TokenCache
from jtrades.metrics import Metrics
from jtrades.security import SecretBox
from jtrades.server import OAuthCallback, Webhooks, build_app, start_http
from tests.conftest import *  # noqa: F403
from tests.integration.test_server import serving
from tests.polling import until


class _IdleEngine:
    async def on_signal(self, **_kw: Any) -> Any:
        raise AssertionError("no delivery reaches the engine here")

    def ready(self) -> bool:
        return True

    def config_version(self) -> str | None:
        return None


async def _site(settings: Settings, pool: asyncpg.Pool) -> tuple[Any, int]:
    async def no_tokens() -> dict[str, Any]:
        return {}

    db = Database(pool, "test")
    hooks = Webhooks(db, settings, TokenCache(no_tokens), _IdleEngine(), Metrics())
    box = SecretBox([os.urandom(32)], "test")
    return await start_http(build_app(hooks, OAuthCallback(db, settings, box)), "127.0.0.1", 0)


async def test_a_forged_callback_code_is_no_log_secret(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    buf = io.StringIO()
    jlog.configure(fmt="json", stream=buf)
    held = len(jlog.known_secrets())
    runner, port = await _site(settings, pool)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as c:
            # no valid state, no account, no Tradovate: a GET anyone can send
            async with c.get("/oauth/callback", params={"code": "127.0.0.1", "state": "x.y"}) as r:
                assert r.status == 400
            for i in range(50):
                code = f"forged-code-{i}-" + "x" * 100
                async with c.get("/oauth/callback", params={"code": code, "state": "x.y"}) as r:
                    assert r.status == 400
            async with c.post("/webhook/nope", data=b"buy") as r:
                assert r.status in (401, 404)
    finally:
        await runner.cleanup()
    assert len(jlog.known_secrets()) == held
    access = [line for line in buf.getvalue().splitlines() if "http.request" in line]
    assert access
    assert all('"remote": "127.0.0.1"' in line for line in access), access


async def _raw(port: int, data: bytes) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(data)
    await w.drain()
    out = await asyncio.wait_for(r.read(), 5)
    w.close()
    return out


async def test_a_request_aiohttp_cannot_parse_is_access_logged_not_an_error(
    settings: Settings, pool: asyncpg.Pool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with serving(settings, pool) as s:
        with structlog.testing.capture_logs() as events:
            # a header line longer than aiohttp's 8190 bytes: a scanner, a broken proxy
            out = await _raw(
                s.port,
                b"POST /webhook/x HTTP/1.1\r\nHost: x\r\nX-A: "
                + b"a" * 9000
                + b"\r\nContent-Length: 5\r\nConnection: close\r\n\r\nclose",
            )
            assert out.startswith((b"HTTP/1.0 400", b"HTTP/1.1 400")), out[:100]

            def logged() -> bool:
                return any(e.get("event") == "http.request" for e in events)

            await until(logged, what="an access line for the refused request")
    # aiohttp's own "Error handling request" is aiohttp's; this was the access logger's crash
    errors = [r for r in caplog.records if r.getMessage() == "Unhandled exception"]
    assert not errors, [(r.name, r.getMessage()) for r in errors]
    line = next(e for e in events if e.get("event") == "http.request")
    assert (line["route"], line["status"]) == ("<unmatched>", 400), line


async def test_the_api_key_secret_and_oauth_client_secret_are_log_secrets() -> None:
    """They go out in request bodies (login, code exchange): an error quoting one is scrubbed."""
    from pydantic import SecretStr

    from jtrades.broker.tradovate.auth import TradovateAuth
    from jtrades.config import TradovateSettings

    cfg = TradovateSettings(
        sec=SecretStr("api-sec-5f2e9a"), oauth_client_secret=SecretStr("oc-7d1b44")
    )
    async with aiohttp.ClientSession() as http:
        TradovateAuth(cfg, http)
    assert (
        jlog.scrub("sec api-sec-5f2e9a, client oc-7d1b44") == f"sec {jlog.MASK}, client {jlog.MASK}"
    )


async def test_a_body_that_stalls_is_refused_and_stored_not_waited_for(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """A sender that declares a body and stops sending held a handler and its socket for good,
    and a graceful stop then timed out waiting for it."""
    async with serving(settings, pool) as s:
        s.hooks.body_read_s = 0.5
        r, w = await asyncio.open_connection("127.0.0.1", s.port)
        try:
            w.write(
                f"POST /webhook/{s.token} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
                '{"action":'.encode()
            )
            await w.drain()
            head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 400"), head
            assert await s.hooks.drain(5.0)
        finally:
            w.close()
        row = await pool.fetchrow("SELECT verdict, filter, reason, raw_body FROM signals")
    assert (row["verdict"], row["filter"]) == ("invalid", "bad_body"), dict(row)
    assert "did not arrive within 0.5 s" in row["reason"]
    assert bytes(row["raw_body"]) == b'{"action":'
