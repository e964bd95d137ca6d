"""A webhook token found and masked in bodies the parser refuses or that were cut short."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.body_tokens import find_token, mask_tokens
from jtrades.engine.parsing import parse_payload
from jtrades.errors import InvalidSignal

TOKEN = "tok_AbC-123456789xyz"


@pytest.mark.parametrize(
    "body",
    [
        b'{"action":"purchase","token":"%s"}',
        b'{"action":"purchase","passphrase":"%s"}',
        b'{"action":"purchase","Webhook-Token":"%s"}',
        b'{"action":"purchase","Token ":"%s"}',
        b'\xef\xbb\xbf{"action":"purchase","secret":"%s"}',
        b'{"action":"buy","key":"%s","comment":"cut off here',  # truncated at the size limit
        b"purchase MNQ1! 1 token=%s",
        b"purchase, MNQ1!, webhook_token=%s, 2",
    ],
)
def test_the_token_of_a_refused_body_is_found_and_masked(body: bytes) -> None:
    body = body.replace(b"%s", TOKEN.encode())
    with pytest.raises(InvalidSignal):
        parse_payload(body, None)
    assert find_token(body) == TOKEN
    masked = mask_tokens(body)
    assert TOKEN.encode() not in masked
    assert b"***" in masked


def test_bodies_without_a_token() -> None:
    for body in (b'{"action":"buy"}', b"buy MNQ1! 1", b"", b"\xff\xfe", b'{"token":""}', b"[1]"):
        assert find_token(body) is None
        assert mask_tokens(body) == body


def test_only_token_fields_are_masked() -> None:
    body = b'{"action":"buy","ticker":"MNQ1!","comment":"key=value","token":"abcdefgh"}'
    assert (
        mask_tokens(body)
        == b'{"action":"buy","ticker":"MNQ1!","comment":"key=value","token":"***"}'
    )


@given(
    key=st.sampled_from(
        ["token", "Token", "key", "secret", "passphrase", "password", "webhook_token"]
    ),
    value=st.text(alphabet="abcdefghijkLMNOP0123456789_-", min_size=1, max_size=40),
    action=st.sampled_from(["buy", "sell", "close", "purchase"]),
)
def test_agrees_with_the_parser(key: str, value: str, action: str) -> None:
    """Where the parser reads a token, ``find_token`` finds the same one, and masking leaves
    a body the parser reads the same way, token aside."""
    body = json.dumps({"action": action, "ticker": "MNQ1!", key: value}).encode()
    assert find_token(body) == value
    masked = mask_tokens(body)
    try:
        parsed = parse_payload(body, None)
    except InvalidSignal:
        return
    assert parsed.token == value
    assert parse_payload(masked, None).action == parsed.action
