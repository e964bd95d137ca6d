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


# --- a token written with JSON escapes -------------------------------------------------------
# ``json.loads`` decodes ``\u0067`` and ``\/``, so such a token authenticates; masking that
# stopped at the first backslash stored the rest of it in clear.

_SHORT = {'"': '\\"', "\\": "\\\\", "/": "\\/"}


def _escape(text: str, which: list[bool]) -> str:
    """``text`` as a JSON string's inside, escaping the characters ``which`` picks (and those
    JSON requires) either as ``\\uXXXX`` or in their short form."""
    out = []
    for i, ch in enumerate(text):
        pick = which[i % len(which)] if which else False
        if ch in _SHORT and (pick or ch != "/"):
            out.append(_SHORT[ch] if i % 2 else f"\\u{ord(ch):04x}")
        elif pick:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return "".join(out)


def test_an_escaped_token_is_found_and_masked_whole() -> None:
    escaped = TOKEN[:5] + f"\\u{ord(TOKEN[5]):04x}" + TOKEN[6:]
    body = b'{"action":"buy","ticker":"MNQ1!","token":"%s","id":"a1"}' % escaped.encode()
    assert parse_payload(body, None).token == TOKEN
    assert find_token(body) == TOKEN
    assert mask_tokens(body) == b'{"action":"buy","ticker":"MNQ1!","token":"***","id":"a1"}'


def test_an_escaped_quote_never_starts_a_member() -> None:
    """Text inside a string is not a member (the parser reads no token there), and scanning
    never starts in it: a run of escapes is read once, so the cost stays linear."""
    body = b'{"comment":"say \\"token\\":\\"abcdef\\" \\\\","token":"%s"}' % TOKEN.encode()
    assert json.loads(body)["comment"] == 'say "token":"abcdef" \\'
    assert find_token(body) == TOKEN
    assert mask_tokens(body) == body.replace(TOKEN.encode(), b"***")
    runs = b'"\\' * 4000 + b',"token":"%s"' % TOKEN.encode()
    assert mask_tokens(runs) == runs.replace(TOKEN.encode(), b"***")


@pytest.mark.parametrize(
    "body",
    [
        b'{"action":"purchase","token":"%s"}',  # JSON the parser refuses
        b'{"action":"buy","tok\\u0065n":"%s","comment":"cut off here',  # an escaped key, cut
        b'{"action":"buy","passphrase":"%s"',  # cut right after the value
    ],
)
def test_an_escaped_token_in_a_body_that_does_not_parse(body: bytes) -> None:
    escaped = "tok\\u005fAbC-12\\/34\\u0035\\u0036789xyz"  # "tok_AbC-12/3456789xyz"
    body = body.replace(b"%s", escaped.encode())
    assert find_token(body) == "tok_AbC-12/3456789xyz"
    masked = mask_tokens(body)
    assert escaped.encode() not in masked
    assert b"789xyz" not in masked
    assert b"***" in masked


@pytest.mark.parametrize(
    "body",
    [
        b'{"action":"purchase","token":"abc\\ud800def"}',  # JSON the parser refuses
        b'{"action":"buy","token":"abc\\ud800def","comment":"cut off here',  # cut short
    ],
)
def test_a_token_with_a_lone_surrogate_is_found_as_the_parser_reads_it(body: bytes) -> None:
    """The parser reads ``\\ud800`` as U+FFFD; found as a lone surrogate, the token reached
    the token hash, which cannot encode it: a 5xx for a delivery that is just a bad one."""
    assert find_token(body) == "abc\ufffddef"
    assert parse_payload(b'{"action":"buy","token":"abc\\ud800def"}', None).token == "abc\ufffddef"


@given(
    key=st.sampled_from(["token", "Token", "key", "secret", "passphrase", "webhook_token"]),
    value=st.text(alphabet='abcLMN0123456789_-/"\\é', min_size=1, max_size=40),
    which=st.lists(st.booleans(), max_size=8),
    key_which=st.lists(st.booleans(), max_size=4),
    cut=st.integers(min_value=1, max_value=400),
)
def test_escaped_tokens_are_masked_whole(
    key: str, value: str, which: list[bool], key_which: list[bool], cut: int
) -> None:
    """Whatever is escaped, in the key or the value: the parser and ``find_token`` read the
    same token, and the masked body holds neither it nor its escaped form, only ``***``; cut
    anywhere in the value (the size limit), nothing of the value is left after the mask."""
    raw_key = _escape(key, key_which)
    escaped = _escape(value, which)
    head = '{"action":"buy","ticker":"MNQ1!","' + raw_key + '":"'
    body = (head + escaped + '","id":"x"}').encode()
    assert json.loads(body)[key] == value
    assert find_token(body) == value
    assert parse_payload(body, None).token == value
    masked = mask_tokens(body)
    assert json.loads(masked)[key] == "***"
    if len(value) >= 6:  # shorter ones may be found in the rest of the body by chance
        assert value.encode() not in masked
        assert escaped.encode() not in masked
    # cut inside the value, even mid-escape: all of it that is left is masked
    start = len(head.encode())
    cut_body = body[: start + 1 + cut % len(escaped.encode())]
    assert mask_tokens(cut_body) == body[:start] + b"***"
