"""Webhook review fixes, through the real server and Postgres: the token inside another field
is masked in the stored signal too, a refused body is attributed by the token field the parser
reads, and the parser's new refusals are answered 422 and stored for the recorder."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from jtrades.config import Settings
from tests.integration.test_server import Stack, serving


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with serving(settings, pool) as s:
        yield s


def _leaks(row: asyncpg.Record, token: str) -> list[str]:
    """The columns, other than the raw body (masked on its own), that hold ``token``."""
    return [k for k, v in dict(row).items() if k != "raw_body" and v and token in str(v)]


@pytest.mark.parametrize("path", [None, "/webhook"])
async def test_a_token_inside_another_field_is_masked_in_the_stored_signal(
    stack: Stack, path: str | None
) -> None:
    """Before, the raw body had it masked and ``signals.parsed`` (extra, alert_id) kept it in
    clear (money rule 8)."""
    url = f"https://trade.example/webhook/{stack.token}"
    body = {
        "action": "buy", "ticker": "MNQ1!", "note": url, "id": f"a-{stack.token}",
        "nested": [{stack.token: url}],
    }  # fmt: skip
    if path is not None:
        body["token"] = stack.token
    status, answer = await stack.post(json.dumps(body).encode(), path=path)
    assert status == 200, answer
    row = await stack.row(answer["signal_id"])
    assert stack.token.encode() not in row["raw_body"]
    assert _leaks(row, stack.token) == []
    assert "***" in row["parsed"]["extra"]["note"]


async def test_a_refused_body_is_attributed_by_the_token_field_the_parser_reads(
    stack: Stack,
) -> None:
    """``key`` came first in the body, so a refused alert was answered 404 unknown_token and
    stored with no recorder: its user never saw "unknown action"."""
    good = json.dumps({"key": "MNQ-long", "token": stack.token, "action": "buy"}).encode()
    status, answer = await stack.post(good, path="/webhook")
    assert status == 200, answer
    bad = json.dumps({"key": "MNQ-long", "token": stack.token, "action": "buyy"}).encode()
    status, answer = await stack.post(bad, path="/webhook")
    row = await stack.row(answer["signal_id"])
    assert (status, answer["error"], row["recorder_id"]) == (
        422,
        "invalid_signal",
        stack.recorder_id,
    ), answer
    assert "unknown action" in row["reason"]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"action": "buy", "ticker": "MNQ1!", "quantity": 2, "quantity": 20}', "given twice"),
        (b'{"action": "buy", "ticker": "MNQ1!", "quantity": "2", "contracts": 6}', "conflicting"),
        (b'{"action": "buy", "ticker": "MNQ1!", "orderType": "limit", "limitPrice": 21500,'
         b' "timeInForce": "ioc"}', "timeInForce"),
    ],
)  # fmt: skip
async def test_an_alert_read_two_ways_is_refused_for_its_recorder(
    stack: Stack, body: bytes, reason: str
) -> None:
    status, answer = await stack.post(body)
    assert (status, answer["error"]) == (422, "invalid_signal"), answer
    row = await stack.row(answer["signal_id"])
    assert (row["recorder_id"], row["verdict"], row["http_status"]) == (
        stack.recorder_id,
        "invalid",
        422,
    )
    assert reason in row["reason"]
