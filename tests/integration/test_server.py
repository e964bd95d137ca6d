"""The webhook server against real Postgres and the real engine, over real sockets."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
import structlog
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from jtrades import webhook
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Signal
from jtrades.engine.tokens import TokenCache
from jtrades.security import hash_token, new_webhook_token
from jtrades.server import Webhooks, build_app, start_http
from jtrades.store import recorders as recorder_store
from jtrades.store import signals as signal_store
from jtrades.store import trading as trading_store

ALERT = b'{"action": "buy", "ticker": "MNQ1!", "quantity": 1, "price": 21500.25}'


@dataclass
class Stack:
    client: aiohttp.ClientSession
    pool: asyncpg.Pool
    hooks: Webhooks
    token: str
    recorder_id: int
    port: int = 0

    async def post(self, body: bytes, *, path: str | None = None, **kw: Any) -> tuple[int, Any]:
        url = path if path is not None else f"/webhook/{self.token}"
        async with self.client.post(url, data=body, **kw) as r:
            return r.status, await r.json()

    async def row(self, signal_id: int) -> asyncpg.Record:
        row = await self.pool.fetchrow("SELECT * FROM signals WHERE id = $1", signal_id)
        assert row is not None
        return row


async def make_recorder(pool: asyncpg.Pool, name: str = "strat") -> tuple[str, int]:
    token = new_webhook_token()
    uid = await pool.fetchval(
        "INSERT INTO users (name, email, status) VALUES ($1, $1 || '@x.io', 'approved') "
        "ON CONFLICT DO NOTHING RETURNING id",
        "alice",
    ) or await pool.fetchval("SELECT id FROM users WHERE name = 'alice'")
    rid = await pool.fetchval(
        "INSERT INTO recorders (user_id, name, symbol, token_hash) VALUES ($1, $2, 'MNQ1!', $3) "
        "RETURNING id",
        uid,
        name,
        hash_token(token),
    )
    return token, rid


@asynccontextmanager
async def serving(
    settings: Settings, pool: asyncpg.Pool, engine: Any = None
) -> AsyncIterator[Stack]:
    """A recorder, the real engine (unless one is given) and the server on a free port."""
    token, rid = await make_recorder(pool)
    db = Database(pool, "test", connect_kwargs={"dsn": settings.database.url})
    real = engine is None
    if real:
        engine = Engine(db, settings)
        await engine.start()
    tokens = TokenCache(lambda: recorder_store.all_token_hashes(pool))
    await tokens.refresh()
    hooks = Webhooks(db, settings, tokens, engine)
    runner, port = await start_http(build_app(hooks), "127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as client:
            yield Stack(client, pool, hooks, token, rid, port)
    finally:
        await runner.cleanup()
        if real:
            await engine.close()


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with serving(settings, pool) as s:
        yield s


# --- the happy path and the stored row ------------------------------------------------------


async def test_alert_is_accepted_and_stored(stack: Stack) -> None:
    status, body = await stack.post(ALERT, headers={"Content-Type": "application/json"})
    assert status == 200, body
    assert body["verdict"] == "accepted"
    assert body["orders"] == 0
    row = await stack.row(body["signal_id"])
    assert row["recorder_id"] == stack.recorder_id
    assert row["verdict"] == "accepted"
    assert row["action"] == "buy"
    assert row["symbol"] == "MNQ1!"
    assert row["raw_body"] == ALERT
    assert row["idem_key"].startswith("h:")
    keys = await stack.pool.fetchval("SELECT count(*) FROM signal_keys")
    assert keys == 1


async def test_url_pasted_with_a_trailing_slash_or_space_works(stack: Stack) -> None:
    for path in (f"/webhook/{stack.token}/", f"/webhook/{stack.token}%20"):
        status, body = await stack.post(b"close", path=path)
        assert status == 200, (path, body)


async def test_bare_url_with_a_trailing_slash_takes_the_token_in_the_body(stack: Stack) -> None:
    """``https://host/webhook/`` (token in the body) is ``/webhook``, as ``/webhook/<token>/`` is
    ``/webhook/<token>``: aiohttp's own text 404 stored nothing, and TradingView does not
    re-send a 4xx, so the alert was lost without a trace."""
    raw = b'{"action": "buy", "ticker": "MNQ1!", "token": "%s"}' % stack.token.encode()
    status, body = await stack.post(raw, path="/webhook/")
    assert status == 200, body
    row = await stack.row(body["signal_id"])
    assert (row["recorder_id"], row["verdict"]) == (stack.recorder_id, "accepted")
    assert stack.token.encode() not in row["raw_body"]


async def test_any_other_webhook_url_is_a_json_404_and_stored(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """A URL under /webhook that no route serves is answered by the webhook code, not by
    aiohttp's text 404: a JSON reason, a stored row (attributed when the URL or the body
    carries a known token, so the user sees it), and the token in neither the row nor a log."""
    t = stack.token
    raw = b'{"action": "buy", "ticker": "MNQ1!", "token": "%s"}' % t.encode()
    cases = [  # path, body, the recorder the row is attributed to
        (f"/webhook/{t}/extra", ALERT, stack.recorder_id),
        (f"/webhook/{t}/x", b'{"comment": "%s"}' % t.encode(), stack.recorder_id),
        (f"/webhook/{t}//", raw, stack.recorder_id),
        (f"/webhook//{t}", ALERT, stack.recorder_id),
        ("/webhook/a/b", raw, stack.recorder_id),
        ("/webhook//", raw, stack.recorder_id),
        ("/webhook/a/b/", ALERT, None),
        (f"/webhook/{new_webhook_token()}/x", ALERT, None),
    ]
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        for path, sent, recorder_id in cases:
            async with stack.client.post(path, data=sent) as r:
                status, ctype, body = r.status, r.content_type, await r.json()
            assert (status, ctype) == (404, "application/json"), (path, body)
            assert body["error"] == "not_found", (path, body)
            row = await stack.row(body["signal_id"])
            assert (row["verdict"], row["http_status"]) == ("invalid", 404)
            assert row["recorder_id"] == recorder_id, path
            assert t.encode() not in row["raw_body"], path
    assert {e["route"] for e in events if e["event"] == "http.request"} == {"/webhook/{stray}"}
    assert t not in repr(events)
    assert t not in caplog.text


async def test_plain_text_with_any_content_type(stack: Stack) -> None:
    status, body = await stack.post(b"sell MNQ1! 2", headers={"Content-Type": "text/plain"})
    assert status == 200, body
    row = await stack.row(body["signal_id"])
    assert (row["action"], row["quantity"]) == ("sell", 2)
    for ctype in (
        "application/x-whatever", "application/octet-stream", "application/x-www-form-urlencoded",
        "text/csv", "application/javascript", "json",
    ):  # fmt: skip
        status, body = await stack.post(b"close", headers={"Content-Type": ctype})
        assert status == 200, (ctype, body)


@pytest.mark.parametrize(
    "ctype", ["image/png", "application/xml", "multipart/form-data; boundary=x", "audio/mpeg"]
)
async def test_a_body_sent_as_a_type_no_alert_is_sent_as_is_415(stack: Stack, ctype: str) -> None:
    """An image, a file, XML: not an alert, whatever its bytes say ("close" as image/png was
    accepted and closed the position). Stored with its answer, as every refusal."""
    status, body = await stack.post(b"close", headers={"Content-Type": ctype})
    assert status == 415, body
    assert body["error"] == "unsupported_media_type"
    row = await stack.row(body["signal_id"])
    assert (row["http_status"], row["recorder_id"]) == (415, stack.recorder_id)


async def test_token_in_body_is_accepted_and_masked_in_storage(stack: Stack) -> None:
    raw = b'{"action": "buy", "ticker": "MNQ1!", "token": "%s"}' % stack.token.encode()
    status, body = await stack.post(raw, path="/webhook")
    assert status == 200, body
    assert body["verdict"] == "accepted"
    row = await stack.row(body["signal_id"])
    assert row["recorder_id"] == stack.recorder_id
    assert stack.token.encode() not in row["raw_body"]
    assert b"***" in row["raw_body"]
    assert "token" not in (row["parsed"] or {})


async def test_token_in_body_written_with_json_escapes_is_masked_whole(stack: Stack) -> None:
    """``"token":"abcde\\u0066…"`` authenticates (JSON decodes the escape); the stored body
    held everything after the first backslash in clear (money rule 8)."""
    t = stack.token
    escaped = t[:5] + f"\\u{ord(t[5]):04x}" + t[6:]
    raw = b'{"action": "buy", "ticker": "MNQ1!", "token": "%s"}' % escaped.encode()
    status, body = await stack.post(raw, path="/webhook")
    assert status == 200, body
    row = await stack.row(body["signal_id"])
    assert row["recorder_id"] == stack.recorder_id
    assert row["raw_body"] == b'{"action": "buy", "ticker": "MNQ1!", "token": "***"}'


# --- bad input: its 4xx and a stored row -------------------------------------------------------


async def test_unknown_token_is_404_and_stored(stack: Stack) -> None:
    status, body = await stack.post(ALERT, path="/webhook/" + new_webhook_token())
    assert status == 404
    assert body["error"] == "unknown_token"
    row = await stack.row(body["signal_id"])
    assert row["recorder_id"] is None
    assert (row["verdict"], row["http_status"]) == ("invalid", 404)


async def test_missing_token_is_401(stack: Stack) -> None:
    status, body = await stack.post(ALERT, path="/webhook")
    assert status == 401
    assert (await stack.row(body["signal_id"]))["http_status"] == 401


async def test_one_megabyte_body_is_413_and_stored_truncated(stack: Stack) -> None:
    big = b'{"action": "buy", "pad": "' + b"x" * 1_048_576 + b'"}'
    async with stack.client.post(f"/webhook/{stack.token}", data=io.BytesIO(big)) as r:
        status, body = r.status, await r.json()
    assert status == 413
    row = await stack.row(body["signal_id"])
    assert (row["verdict"], row["http_status"]) == ("invalid", 413)
    assert len(row["raw_body"]) == stack.hooks.max_body
    assert row["detail"]["size"] == len(big)
    # the connection is still usable for the next delivery
    status, _ = await stack.post(ALERT)
    assert status == 200


async def test_chunked_oversize_body_is_413(stack: Stack) -> None:
    async def gen() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 1024

    async with stack.client.post(f"/webhook/{stack.token}", data=gen()) as r:
        assert r.status == 413
        body = await r.json()
    assert (await stack.row(body["signal_id"]))["http_status"] == 413


async def test_malformed_json_is_400_and_stored(stack: Stack) -> None:
    status, body = await stack.post(
        b'{"action": "buy"', headers={"Content-Type": "application/json"}
    )
    assert status == 400
    assert body["error"] == "invalid_signal"
    assert "malformed JSON" in body["detail"]
    row = await stack.row(body["signal_id"])
    assert row["recorder_id"] == stack.recorder_id
    assert (row["verdict"], row["http_status"]) == ("invalid", 400)
    assert row["reason"] == body["detail"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"action":"buy","ticker":"MNQ1!","id":"a\\u0000b"}',
        b'{"action":"buy","ticker":"MNQ1!","id":"a\\ud800b"}',
        b'{"action":"buy","ticker":"MNQ\\ud8001!"}',
        b'{"action":"buy","ticker":"MNQ1!","note":"\\ud800"}',
        b'{"action":"buy","ticker":"MNQ1!","x":' + b"[" * 700 + b"1" + b"]" * 700 + b"}",
        b'{"action":"buy","ticker":"MNQ1!","x":' + b"[" * 300 + b"]" * 300 + b"}",
        b'{"action":"buy","ticker":"MNQ1!","quantity":1,"volume":123456789012345678901234}',
        b'{"action":"buy","ticker":"MNQ1!","note":1e30}',
    ],
    ids=[
        "nul-id", "surrogate-id", "surrogate-ticker", "surrogate-extra", "deep", "deep-300",
        "bigint-extra", "1e30-extra",
    ],
)  # fmt: skip
async def test_what_postgres_cannot_store_is_answered_4xx_or_200_and_stored(
    stack: Stack, body: bytes
) -> None:
    """These were answered 503 (the insert failed, the parser's recursion did, or the dedup
    key's encoder): TradingView re-sends a 5xx and the delivery was
    never stored."""
    status, answer = await stack.post(body)
    assert status in (200, 400, 422), answer
    row = await stack.row(answer["signal_id"])
    assert (row["raw_body"], row["http_status"]) == (body, status)


@pytest.mark.parametrize(
    "body",
    [b'{"action":"nope","token":"abc\\ud800def"}', b'{"action":"nope","token":"abc\\ud800'],
    ids=["unreadable", "cut-short"],
)
async def test_a_body_token_with_a_lone_surrogate_is_an_unknown_token(
    stack: Stack, body: bytes
) -> None:
    """Read from a body the parser refuses, such a token went to the token hash as is, which
    cannot encode it: answered 503 and never stored."""
    status, answer = await stack.post(body, path="/webhook")
    assert (status, answer["error"]) == (404, "unknown_token"), answer
    row = await stack.row(answer["signal_id"])
    assert row["http_status"] == 404
    assert b"abc" not in row["raw_body"]


async def test_unread_numbers_beyond_64_bits_are_stored_as_text(stack: Stack) -> None:
    """jsonb takes them, but the parameter encoder (orjson) refused an int beyond 64 bits:
    the claim failed and the alert was answered 503, every re-send too."""
    body = b'{"action":"buy","ticker":"MNQ1!","volume":123456789012345678901234,"note":1e30}'
    status, answer = await stack.post(body)
    assert (status, answer["verdict"]) == (200, "accepted"), answer
    row = await stack.row(answer["signal_id"])
    assert row["parsed"]["extra"] == {"volume": "123456789012345678901234", "note": "1E+30"}


async def test_a_parsed_alert_that_cannot_be_stored_is_422_and_stored_raw(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The backstop for a value the parser should have made storable and did not: the claim
    fails the same way on every re-send, so it is a 4xx with the raw body, never a 503."""
    real = webhook.parse_payload

    def leaky(body: bytes, ctype: str | None) -> Signal:
        return dataclasses.replace(real(body, ctype), extra={"volume": 2**70})

    monkeypatch.setattr(webhook, "parse_payload", leaky)
    status, answer = await stack.post(ALERT)
    assert (status, answer["error"]) == (422, "invalid_signal"), answer
    row = await stack.row(answer["signal_id"])
    assert (row["recorder_id"], row["http_status"], row["parsed"]) == (stack.recorder_id, 422, None)
    assert row["raw_body"] == ALERT


async def test_json_nested_deeper_than_64_levels_is_400_and_stored(stack: Stack) -> None:
    """300 levels parsed, but the dedup key's encoder stops at 255: answered 503."""
    status, answer = await stack.post(
        b'{"action":"buy","ticker":"MNQ1!","x":' + b"[" * 300 + b"]" * 300 + b"}"
    )
    assert (status, answer["error"]) == (400, "invalid_signal"), answer
    assert "nested" in answer["detail"]
    row = await stack.row(answer["signal_id"])
    assert (row["recorder_id"], row["http_status"]) == (stack.recorder_id, 400)


async def _raw_post(port: int, head: bytes, body: bytes, *, hang_up: bool = False) -> bytes:
    """A request written byte for byte (what aiohttp's client will not send); ``hang_up``
    closes the connection after ``body`` instead of reading the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + b"\r\nConnection: close\r\n\r\n" + body)
    await writer.drain()
    data = b"" if hang_up else await reader.read()
    writer.close()
    await writer.wait_closed()
    return data


async def test_a_content_type_that_is_not_utf8_is_stored_replaced(stack: Stack) -> None:
    """aiohttp hands a header's non-UTF-8 bytes over as lone surrogates, which the signal's
    insert refused: a valid alert answered 503."""
    body = b"buy MNQ1! 1"
    request = f"POST /webhook/{stack.token} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
    head = request.encode() + b"\r\nContent-Type: text/plain; charset=\xff" + b"x" * 400
    raw = await _raw_post(stack.port, head, body)
    assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
    answer = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    row = await stack.row(answer["signal_id"])
    assert row["content_type"].startswith("text/plain; charset=\ufffdxxx")
    assert len(row["content_type"]) == 200


async def test_a_body_that_cannot_be_decoded_is_400_bad_body_and_stored(stack: Stack) -> None:
    """aiohttp's decompression error escaped the handler as a 503 and left no row."""
    errors = stack.hooks.metrics.errors
    status, answer = await stack.post(b"buy MNQ1! 1", headers={"Content-Encoding": "gzip"})
    assert (status, answer["error"]) == (400, "bad_body"), answer
    row = await stack.row(answer["signal_id"])
    assert (row["verdict"], row["http_status"], row["filter"]) == ("invalid", 400, "bad_body")
    assert stack.hooks.metrics.errors == errors


async def test_a_client_hanging_up_mid_body_is_stored_as_bad_body(stack: Stack) -> None:
    errors = stack.hooks.metrics.errors
    head = f"POST /webhook/{stack.token} HTTP/1.1\r\nHost: x\r\nContent-Length: 100".encode()
    await _raw_post(stack.port, head, b'{"action":"buy","tok', hang_up=True)
    for _ in range(200):
        row = await stack.pool.fetchrow("SELECT * FROM signals")
        if row is not None:
            break
        await asyncio.sleep(0.01)
    assert row is not None
    assert (row["http_status"], row["filter"]) == (400, "bad_body")
    assert row["reason"] == "the sender hung up before the whole body arrived"
    assert row["raw_body"] == b'{"action":"buy","tok'
    assert stack.hooks.metrics.errors == errors


async def test_unknown_action_is_422_and_stored(stack: Stack) -> None:
    status, body = await stack.post(b'{"action": "jump", "ticker": "MNQ1!"}')
    assert status == 422
    assert "unknown action" in body["detail"]
    row = await stack.row(body["signal_id"])
    assert (row["verdict"], row["http_status"]) == ("invalid", 422)


async def test_ip_allowlist_refuses_other_senders(settings: Settings, pool: asyncpg.Pool) -> None:
    narrowed = settings.model_copy(
        update={"server": settings.server.model_copy(update={"allowed_ips": ("10.0.0.0/8",)})}
    )
    async with serving(narrowed, pool) as s:
        status, body = await s.post(ALERT)
        assert status == 403
        assert (await s.row(body["signal_id"]))["http_status"] == 403
    widened = settings.model_copy(
        update={"server": settings.server.model_copy(update={"allowed_ips": ("127.0.0.1",)})}
    )
    await pool.execute("DELETE FROM recorders")
    async with serving(widened, pool) as s:
        status, body = await s.post(ALERT)
        assert status == 200, body


# --- dedup ------------------------------------------------------------------------------------


async def test_fifty_concurrent_copies_make_one_signal(stack: Stack) -> None:
    alert = b'{"action": "buy", "ticker": "MNQ1!", "quantity": 1, "id": "alert-50"}'
    results = await asyncio.gather(*(stack.post(alert) for _ in range(50)))
    assert all(status == 200 for status, _ in results), results
    accepted = [b for _, b in results if b["verdict"] == "accepted"]
    dups = [b for _, b in results if b["verdict"] == "duplicate"]
    assert len(accepted) == 1
    assert len(dups) == 49
    first = accepted[0]["signal_id"]
    assert {d["duplicate_of"] for d in dups} == {first}
    assert all(d["orders"] == 0 for d in dups)
    assert all(d["first"]["verdict"] == "accepted" for d in dups)
    rows = await stack.pool.fetch("SELECT id, verdict, duplicate_of FROM signals ORDER BY id")
    assert len(rows) == 50
    assert [r["id"] for r in rows if r["verdict"] == "accepted"] == [first]
    assert {r["duplicate_of"] for r in rows if r["id"] != first} == {first}
    assert await stack.pool.fetchval("SELECT count(*) FROM signal_keys") == 1
    assert await stack.pool.fetchval("SELECT count(*) FROM order_intents") == 0


async def test_resend_later_answers_with_the_first_result(stack: Stack) -> None:
    status, first = await stack.post(ALERT)
    assert status == 200
    status, again = await stack.post(ALERT)
    assert status == 200
    assert again["verdict"] == "duplicate"
    assert again["duplicate_of"] == first["signal_id"]
    assert again["first"] == {k: first[k] for k in ("signal_id", "verdict", "orders")}
    # a different alert is not a duplicate
    status, other = await stack.post(ALERT.replace(b"21500.25", b"21501.00"))
    assert other["verdict"] == "accepted"


# --- outcomes ---------------------------------------------------------------------------------


async def test_expired_signal_is_stored_as_expired(settings: Settings, pool: asyncpg.Pool) -> None:
    stale = settings.model_copy(
        update={"trading": settings.trading.model_copy(update={"signal_ttl_s": 1e-9})}
    )
    async with serving(stale, pool) as s:
        status, body = await s.post(ALERT)
        assert status == 200
        assert body["verdict"] == "expired"
        assert (await s.row(body["signal_id"]))["verdict"] == "expired"


class FakeEngine:
    """A fake through the engine's port: stores each delivery (the port's contract) and then
    does what ``act`` says."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def on_signal(self, *, delivery: signal_store.Delivery, **_kw: Any) -> Any:
        claim = await signal_store.claim_delivery(self.pool, delivery)
        if claim.duplicate_of is not None:
            return _outcome("duplicate", duplicate_of=claim.duplicate_of)
        return await self.act()

    async def act(self) -> Any:
        raise NotImplementedError

    def ready(self) -> bool:
        return True

    def config_version(self) -> str | None:
        return None


def _outcome(verdict: str, **fields: Any) -> Any:
    values = {"filter": None, "reason": None, "orders": 0, "detail": {}, "duplicate_of": None}
    return type("O", (), {"verdict": verdict, **values, **fields})()


class BrokenEngine(FakeEngine):
    """Fails after the signal was stored."""

    async def act(self) -> Any:
        raise RuntimeError("boom after intents were written")


class BrokenBeforeStoring(FakeEngine):
    """Fails before storing anything."""

    async def on_signal(self, **_kw: Any) -> Any:
        raise RuntimeError("boom before the claim")


async def test_engine_failure_before_claim_is_503_and_stores_nothing(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with serving(settings, pool, engine=BrokenBeforeStoring(pool)) as s:
        status, body = await s.post(ALERT)
        assert (status, body["error"]) == (503, "unavailable")
        assert await s.pool.fetchval("SELECT count(*) FROM signals") == 0


async def test_engine_failure_after_claim_is_never_5xx(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with serving(settings, pool, engine=BrokenEngine(pool)) as s:
        status, body = await s.post(ALERT)
        assert status == 200
        assert body["verdict"] == "accepted"
        assert "RuntimeError" in body["error"]
        row = await s.row(body["signal_id"])
        assert row["verdict"] == "accepted"
        assert "internal error" in row["reason"]


# --- health, readiness, metrics ---------------------------------------------------------------


async def test_health_ready_metrics(stack: Stack) -> None:
    async with stack.client.get("/healthz") as r:
        assert r.status == 200
    async with stack.client.get("/readyz") as r:
        body = await r.json()
        assert body["checks"]["database"] is True
        assert body["checks"]["tokens"] is True
        assert r.status == (200 if body["ready"] else 503)
    await stack.post(ALERT)
    await stack.post(b"nonsense {", path="/webhook/" + new_webhook_token())
    async with stack.client.get("/metrics") as r:
        text = await r.text()
    assert 'jtrades_webhook_responses_total{status="200"} 1' in text
    assert 'jtrades_webhook_responses_total{status="404"} 1' in text
    assert 'jtrades_signals_total{verdict="accepted"} 1' in text
    assert "jtrades_webhook_seconds_count 2" in text
    # the configuration the engine trades with is the database's
    fingerprint = await trading_store.config_fingerprint(stack.pool)
    assert f'jtrades_config_info{{fingerprint="{fingerprint}"}} 1' in text


async def test_readyz_reports_the_engine(settings: Settings, pool: asyncpg.Pool) -> None:
    class NotReady(BrokenEngine):
        def ready(self) -> bool:
            return False

    async with serving(settings, pool, engine=NotReady(pool)) as s, s.client.get("/readyz") as r:
        assert r.status == 503
        assert (await r.json())["checks"]["engine"] is False


# --- secrets ----------------------------------------------------------------------------------


async def test_access_log_never_prints_the_token(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        await stack.post(ALERT)
        await stack.post(b'{"action": "jump"}')
        async with stack.client.post(f"/webhook/{stack.token}/extra", data=ALERT) as r:
            assert r.status == 404
        raw = b'{"action": "buy", "token": "%s"}' % stack.token.encode()
        await stack.post(raw, path="/webhook")
        async with stack.client.get(f"/nowhere/{stack.token}") as r:
            assert r.status == 404
    access = [e for e in events if e["event"] == "http.request"]
    assert len(access) == 5
    assert {e["route"] for e in access} == {
        "/webhook/{token}",
        "/webhook/{stray}",
        "/webhook",
        "<unmatched>",
    }
    assert stack.token not in repr(events)
    assert stack.token not in caplog.text


async def test_new_recorder_works_without_waiting_for_refresh(stack: Stack) -> None:
    token, rid = await make_recorder(stack.pool, "fresh")
    status, body = await stack.post(ALERT, path=f"/webhook/{token}")
    assert status == 200, body
    assert (await stack.row(body["signal_id"]))["recorder_id"] == rid


# --- property: no body ever produces a 5xx ---------------------------------------------------

bodies = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.dictionaries(
        st.sampled_from(["action", "ticker", "quantity", "price", "id", "token", "side", "qty"]),
        st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=12), st.booleans()),
        max_size=6,
    ).map(lambda d: json.dumps(d).encode()),
)


@hsettings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=bodies, ctype=st.sampled_from(["application/json", "text/plain", None]))
async def test_arbitrary_bodies_never_answer_5xx(
    stack: Stack, body: bytes, ctype: str | None
) -> None:
    headers = {"Content-Type": ctype} if ctype else {}
    async with stack.client.post(f"/webhook/{stack.token}", data=body, headers=headers) as r:
        assert r.status < 500, await r.text()
        payload = await r.json()
    assert "signal_id" in payload
    row = await stack.row(payload["signal_id"])
    assert row["http_status"] == r.status


async def test_recorder_deleted_after_the_token_check_is_404(stack: Stack) -> None:
    # the cache still holds the token (its periodic refresh is not running here)
    await stack.pool.execute("DELETE FROM recorders WHERE id = $1", stack.recorder_id)
    status, body = await stack.post(ALERT)
    assert status == 404, body
    row = await stack.row(body["signal_id"])
    assert (row["recorder_id"], row["http_status"]) == (None, 404)


async def test_database_down_before_the_claim_fails_closed_with_503(
    settings: Settings, db_url: str
) -> None:
    from jtrades.db import _init_connection

    own = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=_init_connection)
    assert own is not None
    async with serving(settings, own) as s:
        await own.close()  # the database is gone; the token is still in the cache
        status, body = await s.post(ALERT)
        assert status == 503
        assert body["error"] == "storage_unavailable"
        status, body = await s.post(ALERT, path="/webhook/" + new_webhook_token())
        assert status == 503  # an unknown token cannot be checked either: retry later
        async with s.client.get("/readyz") as r:
            assert r.status == 503
            assert (await r.json())["checks"]["database"] is False
    check = await asyncpg.connect(db_url)
    try:
        assert await check.fetchval("SELECT count(*) FROM signals") == 0
        assert await check.fetchval("SELECT count(*) FROM order_intents") == 0
    finally:
        await check.close()


async def test_allowlist_behind_a_trusted_proxy_reads_x_forwarded_for(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    tv = "52.89.214.238"  # one of TradingView's published webhook senders
    server = settings.server.model_copy(
        update={"allowed_ips": (tv,), "trusted_proxies": ("127.0.0.1",)}
    )
    async with serving(settings.model_copy(update={"server": server}), pool) as s:
        status, body = await s.post(ALERT, headers={"X-Forwarded-For": tv})
        assert status == 200, body
        assert str((await s.row(body["signal_id"]))["remote_addr"]) == tv
        # a client cannot claim TradingView's address: the proxy appends the real one
        spoofed = {"X-Forwarded-For": f"{tv}, 203.0.113.9"}
        status, body = await s.post(b"sell", headers=spoofed)
        assert status == 403
        assert str((await s.row(body["signal_id"]))["remote_addr"]) == "203.0.113.9"
    untrusting = settings.server.model_copy(update={"allowed_ips": (tv,)})
    await pool.execute("DELETE FROM recorders")
    async with serving(settings.model_copy(update={"server": untrusting}), pool) as s:
        status, _ = await s.post(ALERT, headers={"X-Forwarded-For": tv})
        assert status == 403  # without a trusted proxy the header is ignored


async def add_paper_trader(pool: asyncpg.Pool, recorder_id: int) -> int:
    """A paper account following the recorder: real orders through the paper broker."""
    uid = await pool.fetchval("SELECT user_id FROM recorders WHERE id = $1", recorder_id)
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, 'paper-1', 'paper') RETURNING id",
        uid,
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name) VALUES ($1, 1, 'P1')"
        " RETURNING id",
        aid,
    )
    tid = await pool.fetchval(
        "INSERT INTO traders (user_id, recorder_id, enabled) VALUES ($1, $2, true) RETURNING id",
        uid,
        recorder_id,
    )
    await pool.execute(
        "INSERT INTO trader_accounts (trader_id, sub_account_id) VALUES ($1, $2)", tid, sub
    )
    return int(sub)


async def test_fifty_copies_with_a_follower_send_one_set_of_orders(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    token, rid = await make_recorder(pool, "followed")
    await add_paper_trader(pool, rid)
    async with serving(settings, pool) as s:
        alert = b'{"action": "buy", "ticker": "MNQ1!", "quantity": 1, "price": 21500.25}'
        path = f"/webhook/{token}"
        results = await asyncio.gather(*(s.post(alert, path=path) for _ in range(50)))
    assert all(status == 200 for status, _ in results), results
    accepted = [b for _, b in results if b["verdict"] == "accepted"]
    assert len(accepted) == 1, [b for _, b in results if b["verdict"] != "duplicate"]
    assert accepted[0]["orders"] >= 1
    first = accepted[0]["signal_id"]
    intents = await pool.fetch("SELECT signal_id, state FROM order_intents")
    assert intents
    assert {i["signal_id"] for i in intents} == {first}
    assert accepted[0]["orders"] <= len(intents)
    assert all(d["orders"] == 0 for _, d in results if d["verdict"] == "duplicate")
    row = await pool.fetchrow("SELECT verdict, orders, detail FROM signals WHERE id = $1", first)
    assert (row["verdict"], row["orders"]) == ("accepted", accepted[0]["orders"])


class GatedEngine(FakeEngine):
    """Holds each stored signal until the gate opens."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def act(self) -> Any:
        self.entered.set()
        await self.gate.wait()
        return _outcome("accepted", orders=2)


async def test_drain_waits_for_signals_in_hand_and_refuses_new_ones(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    engine = GatedEngine(pool)
    async with serving(settings, pool, engine=engine) as s:
        in_flight = asyncio.create_task(s.post(ALERT))
        await engine.entered.wait()
        assert await s.hooks.drain(0.05) is False  # still held: the deadline passes
        draining = asyncio.create_task(s.hooks.drain(30))
        status, body = await s.post(b"sell MNQ1! 1")
        assert status == 503  # stopping: nothing stored, TradingView re-sends
        assert not draining.done()
        engine.gate.set()
        assert await draining is True
        status, body = await in_flight
        assert (status, body["verdict"], body["orders"]) == (200, "accepted", 2)
        assert await s.pool.fetchval("SELECT count(*) FROM signals") == 1


async def test_body_key_window_slides_across_minute_boundaries(stack: Stack) -> None:
    async def post() -> dict[str, Any]:
        status, body = await stack.post(ALERT)
        assert status == 200, body
        return dict(body)

    first = await post()
    # 50 s later (whatever the clock minute): still the same alert, e.g. TradingView's re-send
    await stack.pool.execute("UPDATE signal_keys SET created_at = created_at - interval '50 s'")
    again = await post()
    assert (again["verdict"], again["duplicate_of"]) == ("duplicate", first["signal_id"])
    # past the 60 s window the same body is a new alert, and takes the key over
    await stack.pool.execute("UPDATE signal_keys SET created_at = created_at - interval '11 s'")
    later = await post()
    assert later["verdict"] == "accepted"
    assert later["signal_id"] != first["signal_id"]
    assert await stack.pool.fetchval("SELECT signal_id FROM signal_keys") == later["signal_id"]
    assert (await post())["duplicate_of"] == later["signal_id"]


async def test_explicit_id_dedups_for_a_day(stack: Stack) -> None:
    alert = b'{"action": "buy", "ticker": "MNQ1!", "id": "order-7"}'
    _, first = await stack.post(alert)
    await stack.pool.execute("UPDATE signal_keys SET created_at = created_at - interval '23 h'")
    status, again = await stack.post(alert.replace(b"buy", b"sell"))  # same id: same alert
    assert (status, again["duplicate_of"]) == (200, first["signal_id"])
    await stack.pool.execute("UPDATE signal_keys SET created_at = created_at - interval '2 h'")
    status, later = await stack.post(alert)
    assert (status, later["verdict"]) == (200, "accepted")


@hsettings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(token=st.text(min_size=1, max_size=80), body=bodies)
async def test_arbitrary_tokens_never_answer_5xx(stack: Stack, token: str, body: bytes) -> None:
    path = "/webhook/" + urllib.parse.quote(token, safe="")
    async with stack.client.post(path, data=body) as r:
        assert r.status < 500, await r.text()
        assert r.status in (200, 400, 401, 404, 405, 413, 422)


async def test_a_rejection_always_stores_a_reason(settings: Settings, pool: asyncpg.Pool) -> None:
    class Terse(FakeEngine):
        async def act(self) -> Any:
            return _outcome("rejected", filter="direction")

    async with serving(settings, pool, engine=Terse(pool)) as s:
        status, body = await s.post(ALERT)
        assert (status, body["verdict"], body["filter"]) == (200, "rejected", "direction")
        row = await s.row(body["signal_id"])
        assert (row["verdict"], row["filter"], row["reason"]) == (
            "rejected",
            "direction",
            "direction",
        )


async def test_a_doubled_leading_slash_is_the_webhook(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    """``https://host//webhook/<token>`` (a base URL ending in "/" joined to "/webhook/…"): the
    same path, as nginx passes it on; it got aiohttp's text 404 and stored nothing, and
    TradingView does not re-send a 4xx."""
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        body = ALERT
        head = f"POST //webhook/{stack.token} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}"
        raw = await _raw_post(stack.port, head.encode(), body)
        assert raw.startswith(b"HTTP/1.1 200 "), raw[:300]
        answer = json.loads(raw.split(b"\r\n\r\n", 1)[1])
        row = await stack.row(answer["signal_id"])
        assert (row["recorder_id"], row["http_status"]) == (stack.recorder_id, 200)
    access = [e for e in events if e["event"] == "http.request"]
    assert [e["route"] for e in access] == ["//webhook/{token}"]
    assert stack.token not in repr(events)
    assert stack.token not in caplog.text
