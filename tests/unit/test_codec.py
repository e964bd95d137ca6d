"""The wire codec: every shape both ways, and round trips over generated content."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.broker.tradovate.codec import (
    CLIENT_HEARTBEAT,
    Event,
    FrameError,
    Request,
    Response,
    encode_close,
    encode_messages,
    encode_request,
    parse_request,
    parse_server_frame,
)


def test_request_frame_keeps_empty_parts() -> None:
    assert encode_request("authorize", 0, "tok") == "authorize\n0\n\ntok"
    assert encode_request("account/list", 3) == "account/list\n3\n\n"
    assert encode_request("order/placeorder", 7, {"a": 1}) == 'order/placeorder\n7\n\n{"a":1}'


def test_server_frames() -> None:
    assert parse_server_frame("o").kind == "open"
    assert parse_server_frame("h").kind == "heartbeat"
    frame = parse_server_frame(
        'a[{"s":200,"i":4,"d":{"x":1}},{"e":"props","d":{"entityType":"order"}}]'
    )
    assert frame.messages == (
        Response(4, 200, {"x": 1}),
        Event("props", {"entityType": "order"}),
    )
    close = parse_server_frame('c[1000,"bye"]')
    assert (close.kind, close.close_code, close.close_reason) == ("close", 1000, "bye")


def test_double_encoded_element_is_decoded() -> None:
    frame = parse_server_frame('a["{\\"s\\":200,\\"i\\":1}"]')
    assert frame.messages == (Response(1, 200, None),)


@pytest.mark.parametrize(
    "bad", ["", "x", "a{", "a{}", "a[1]", 'a[{"s":"x","i":1}]', 'a[{"q":1}]', "c[1]", 'c["a","b"]']
)
def test_bad_server_frames_raise(bad: str) -> None:
    with pytest.raises(FrameError):
        parse_server_frame(bad)


@pytest.mark.parametrize("bad", ["nonewline", "a\nb\n\n", "\n1\n\n", "a\n1\n"])
def test_bad_request_frames_raise(bad: str) -> None:
    with pytest.raises(FrameError):
        parse_request(bad)


def test_heartbeat_request_is_none() -> None:
    assert parse_request(CLIENT_HEARTBEAT) is None


endpoints = st.from_regex(r"[a-z]+/[a-zA-Z]+", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(
    endpoints, st.integers(0, 2**31), st.dictionaries(st.text(max_size=8), json_values, max_size=5)
)
def test_request_round_trip(endpoint: str, rid: int, body: dict[str, object]) -> None:
    req = parse_request(encode_request(endpoint, rid, body))
    assert isinstance(req, Request)
    assert (req.endpoint, req.id, req.query) == (endpoint, rid, "")
    assert req.json() == body


@given(
    st.lists(
        st.one_of(
            st.builds(Response, st.integers(0, 2**31), st.integers(100, 599), json_values),
            st.builds(Event, st.sampled_from(["props", "shutdown", "md"]), json_values),
        ),
        max_size=6,
    )
)
def test_messages_round_trip(messages: list[Response | Event]) -> None:
    assert list(parse_server_frame(encode_messages(messages)).messages) == messages


@given(st.integers(1000, 4999), st.text(max_size=30))
def test_close_round_trip(code: int, reason: str) -> None:
    frame = parse_server_frame(encode_close(code, reason))
    assert (frame.close_code, frame.close_reason) == (code, reason)
