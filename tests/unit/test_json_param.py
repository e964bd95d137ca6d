"""The json/jsonb parameter encoder: Postgres refuses NUL in jsonb, and nothing else may change."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st

from jtrades.db import encode_json

# Text heavy in the characters that matter: NUL, backslashes and the letters of an escape.
_TEXT = st.text(alphabet=st.sampled_from(["\x00", "\\", "u", "0", "a", "\n", "é", '"']))
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    if isinstance(value, dict):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    return value


@given(_JSON)
def test_nul_becomes_the_replacement_character_and_nothing_else_changes(value: Any) -> None:
    text = encode_json(value)
    assert "\\u0000" not in text.replace("\\\\", "")  # no NUL escape left for Postgres to refuse
    assert orjson.loads(text) == _without_nul(value)


def test_an_escaped_backslash_before_u0000_is_text_not_a_nul() -> None:
    assert orjson.loads(encode_json("\\u0000")) == "\\u0000"
    assert orjson.loads(encode_json("\\\x00")) == "\\\ufffd"
