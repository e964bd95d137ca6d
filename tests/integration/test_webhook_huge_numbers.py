"""A number past Decimal's range (``1e99999999999999999999``) in a compared value, or
unquoted in the JSON, is a 4xx like any malformed value: the check that compares two values of
one field read numeric text with Decimal() and its InvalidOperation answered 503, storing
nothing (and TradingView re-sends a 5xx)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from jtrades.config import Settings
from tests.integration.test_server import Stack, serving


@pytest.fixture
async def stack(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Stack]:
    async with serving(settings, pool) as s:
        yield s


@pytest.mark.parametrize(
    "body",
    [
        # two spellings of the quantity, one with a huge exponent (before: 422 naming quantity)
        b'{"action":"buy","ticker":"MNQ1!","quantity":"1e99999999999999999999","contracts":"2"}',
        # an unread field repeated (before: traded, the field kept in extra)
        b'{"action":"buy","ticker":"MNQ1!","note":"1e99999999999999999999","note":"2"}',
        # a text alert with qty= beside the word (before: traded 2)
        b"buy MNQ1! qty=1e99999999999999999999 2",
    ],
)
async def test_a_huge_exponent_in_a_compared_value_is_not_a_500(stack: Stack, body: bytes) -> None:
    status, answer = await stack.post(body)
    assert status < 500, f"answered {status}: {answer}"


async def test_an_unquoted_huge_exponent_is_not_a_503_preexisting(stack: Stack) -> None:
    """Not from this commit (json.loads' parse_float=Decimal raises InvalidOperation, which
    _load_json does not catch): answered 503, which TradingView re-sends, and never stored."""
    status, answer = await stack.post(
        b'{"action":"buy","ticker":"MNQ1!","price":1e99999999999999999999}'
    )
    assert status < 500, f"answered {status}: {answer}"
