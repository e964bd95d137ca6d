"""Idempotency keys: the same alert gets the same key; a different alert never does. (The
window that turns an equal key into a duplicate is applied by ``signals.claim``: see
tests/integration/test_server.py.)"""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.dedup import (
    HASH_WINDOW,
    ID_WINDOW,
    MAX_ID_CHARS,
    idempotency_key,
    normalize_body,
)

TOKEN = b"\x01" * 32


def key(body: bytes, *, alert_id: str | None = None, th: bytes = TOKEN) -> str:
    return idempotency_key(alert_id=alert_id, token_hash=th, body=body).key


def test_explicit_id_wins_over_the_body_for_a_day() -> None:
    k = idempotency_key(alert_id="A-1", token_hash=TOKEN, body=b'{"action":"buy"}')
    assert (k.key, k.window, k.explicit) == ("id:A-1", ID_WINDOW, True)
    assert timedelta(hours=24) <= ID_WINDOW
    assert key(b'{"action":"sell"}', alert_id="A-1") == "id:A-1"
    assert key(b"x", alert_id="  A-1 ") == "id:A-1"


def test_body_keys_have_a_short_window() -> None:
    k = idempotency_key(alert_id=None, token_hash=TOKEN, body=b"buy")
    assert (k.window, k.explicit) == (HASH_WINDOW, False)
    assert timedelta(seconds=15) < HASH_WINDOW <= timedelta(minutes=2)  # TradingView re-sends


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


def test_normalize_keeps_non_object_json() -> None:
    assert normalize_body(b"[1, 2]") == b"[1,2]"
    assert normalize_body(b"\xff\xfe buy") == "\ufffd\ufffd buy".encode()


def test_json_too_deep_to_write_back_is_keyed_as_text() -> None:
    """orjson reads JSON 300 levels deep but writes only 255: such a body is keyed as text,
    never raised (the webhook answered that 503). The parser refuses it first, at 64."""
    deep = b'{"action":"buy","x":' + b"[" * 300 + b"]" * 300 + b"}"
    assert normalize_body(deep) == deep.lower()
    assert key(deep) != key(deep.replace(b"[]", b"[1]"))


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
def test_different_bodies_get_different_keys_unless_equivalent(a: bytes, b: bytes) -> None:
    if normalize_body(a) != normalize_body(b):
        assert key(a) != key(b)
    else:
        assert key(a) == key(b)
