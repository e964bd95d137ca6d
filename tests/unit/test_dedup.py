"""Idempotency keys: the same alert gets the same key; a different alert never does."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.dedup import MAX_ID_CHARS, idempotency_key, minute_of, normalize_body

T0 = datetime(2026, 11, 25, 14, 30, 5, tzinfo=UTC)
TOKEN = b"\x01" * 32


def key(body: bytes, *, at: datetime = T0, alert_id: str | None = None, th: bytes = TOKEN) -> str:
    return idempotency_key(alert_id=alert_id, token_hash=th, body=body, received_at=at)


def test_explicit_id_wins_over_the_body() -> None:
    assert key(b'{"action":"buy"}', alert_id="A-1") == "id:A-1"
    assert key(b'{"action":"sell"}', alert_id="A-1", at=T0 + timedelta(hours=3)) == "id:A-1"
    assert key(b"x", alert_id="  A-1 ") == "id:A-1"


def test_blank_id_falls_back_to_the_hash() -> None:
    assert key(b"buy", alert_id="   ") == key(b"buy")
    assert key(b"buy").startswith("h:")


def test_long_ids_are_hashed_to_a_bounded_key() -> None:
    long_id = "x" * (MAX_ID_CHARS + 1)
    k = key(b"buy", alert_id=long_id)
    assert k.startswith("idh:")
    assert len(k) == 4 + 64
    assert k != key(b"buy", alert_id=long_id + "y")
    assert key(b"buy", alert_id="x" * MAX_ID_CHARS) == "id:" + "x" * MAX_ID_CHARS


def test_same_minute_same_key_next_minute_new_key() -> None:
    body = b'{"action":"buy","ticker":"MNQ1!"}'
    assert key(body) == key(body, at=T0.replace(second=59))
    assert key(body) != key(body, at=T0 + timedelta(minutes=1))


def test_minute_is_taken_in_utc() -> None:
    chicago_like = timezone(timedelta(hours=-6))
    assert minute_of(T0.astimezone(chicago_like)) == "2026-11-25T14:30"
    assert key(b"buy") == key(b"buy", at=T0.astimezone(chicago_like))


def test_json_formatting_and_body_token_do_not_matter() -> None:
    a = b'{"action": "buy", "ticker": "MNQ1!", "quantity": 2}'
    b = b'{"quantity":2,"ticker":"MNQ1!","action":"buy","Token":"secret-abc"}'
    assert key(a) == key(b)
    assert key(a) != key(b'{"action": "buy", "ticker": "MNQ1!", "quantity": 3}')


def test_text_is_trimmed_collapsed_and_case_folded() -> None:
    assert key(b"  BUY   MNQ1!  2\n") == key(b"buy mnq1! 2")
    assert key(b"buy MNQ1! 2") != key(b"sell MNQ1! 2")


def test_token_hash_separates_keys() -> None:
    assert key(b"buy") != key(b"buy", th=b"\x02" * 32)


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        minute_of(datetime(2026, 1, 1, 12, 0))


def test_normalize_keeps_non_object_json() -> None:
    assert normalize_body(b"[1, 2]") == b"[1,2]"
    assert normalize_body(b"\xff\xfe buy") == "\ufffd\ufffd buy".encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@given(st.dictionaries(st.text(max_size=6), json_values, max_size=6), st.randoms())
def test_key_order_and_spacing_never_change_the_key(doc: dict[str, object], rnd: object) -> None:
    items = list(doc.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    compact = json.dumps(doc, separators=(",", ":")).encode()
    spaced = json.dumps(dict(items), indent=2).encode()
    assert key(compact) == key(spaced)


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_different_bodies_in_one_minute_get_different_keys_unless_equivalent(
    a: bytes, b: bytes
) -> None:
    if normalize_body(a) != normalize_body(b):
        assert key(a) != key(b)
    else:
        assert key(a) == key(b)
