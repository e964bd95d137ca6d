"""The Tradovate WebSocket wire format, both directions, as pure functions.

Client → server is one text frame ``endpoint\\nid\\nquery\\nbody`` (empty parts keep their newline;
``[]`` alone is the client heartbeat). Server → client is SockJS-shaped: ``o`` (open), ``h``
(heartbeat), ``a[...]`` (a JSON array of messages, where an element may itself be a JSON string),
``c[code,"reason"]`` (close). A message is either a response ``{"s","i","d"}`` to a request id, or
an event ``{"e","d"}`` (``props``, ``shutdown``, ``md``…).

The client and the simulator share this module so they cannot drift apart; both stay strict: a
frame that fits none of these shapes raises ``FrameError`` rather than being guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import orjson

CLIENT_HEARTBEAT = "[]"
OPEN = "o"
SERVER_HEARTBEAT = "h"


class FrameError(ValueError):
    """A frame that is not valid Tradovate wire format."""


@dataclass(frozen=True, slots=True)
class Request:
    endpoint: str
    id: int
    query: str
    body: str  # raw JSON text, or "" when there is none; ``authorize`` carries a bare token

    def json(self) -> Any:
        """The body parsed as JSON (``None`` when empty)."""
        if not self.body:
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise FrameError(f"{self.endpoint}: body is not JSON") from exc


@dataclass(frozen=True, slots=True)
class Response:
    id: int
    status: int
    data: Any = None


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: Any


Message = Response | Event


@dataclass(frozen=True, slots=True)
class ServerFrame:
    kind: Literal["open", "heartbeat", "messages", "close"]
    messages: tuple[Message, ...] = ()
    close_code: int | None = None
    close_reason: str = ""


# --- client side -----------------------------------------------------------------------------


def encode_request(endpoint: str, request_id: int, body: Any = None, query: str = "") -> str:
    """One request frame. ``body`` is JSON-encoded unless it is already a ``str`` (a token)."""
    if "\n" in endpoint or "\n" in query:
        raise FrameError("endpoint and query cannot contain newlines")
    if body is None:
        text = ""
    elif isinstance(body, str):
        text = body
    else:
        text = orjson.dumps(body).decode()
    return f"{endpoint}\n{request_id}\n{query}\n{text}"


def parse_server_frame(frame: str | bytes) -> ServerFrame:
    """Decode one server frame; responses and events come out typed, in order."""
    if isinstance(frame, bytes):
        frame = frame.decode()
    if frame == OPEN:
        return ServerFrame("open")
    if frame == SERVER_HEARTBEAT:
        return ServerFrame("heartbeat")
    if not frame:
        raise FrameError("empty frame")
    head, rest = frame[0], frame[1:]
    if head == "a":
        items = _load_array(rest)
        return ServerFrame("messages", tuple(_message(item) for item in items))
    if head == "c":
        items = _load_array(rest)
        if len(items) != 2 or not isinstance(items[0], int):
            raise FrameError("close frame must be c[code,reason]")
        return ServerFrame("close", close_code=items[0], close_reason=str(items[1]))
    raise FrameError(f"unknown frame type {head!r}")


def _load_array(text: str) -> list[Any]:
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise FrameError("frame payload is not JSON") from exc
    if not isinstance(value, list):
        raise FrameError("frame payload is not a JSON array")
    return value


def _message(item: Any) -> Message:
    if isinstance(item, str):  # Tradovate sometimes double-encodes an element
        try:
            item = orjson.loads(item)
        except orjson.JSONDecodeError as exc:
            raise FrameError("message element is not JSON") from exc
    if not isinstance(item, dict):
        raise FrameError("message element is not an object")
    if "e" in item:
        return Event(str(item["e"]), item.get("d"))
    if "i" in item and "s" in item:
        try:
            return Response(int(item["i"]), int(item["s"]), item.get("d"))
        except (TypeError, ValueError) as exc:
            raise FrameError("response id and status must be integers") from exc
    raise FrameError("message is neither a response nor an event")


# --- server side (the simulator) ---------------------------------------------------------------


def parse_request(frame: str | bytes) -> Request | None:
    """Decode one client frame; ``None`` for the heartbeat ``[]``."""
    if isinstance(frame, bytes):
        frame = frame.decode()
    if frame == CLIENT_HEARTBEAT:
        return None
    parts = frame.split("\n", 3)
    if len(parts) != 4:
        raise FrameError("request frame must be endpoint\\nid\\nquery\\nbody")
    endpoint, raw_id, query, body = parts
    if not endpoint:
        raise FrameError("request has no endpoint")
    try:
        request_id = int(raw_id)
    except ValueError as exc:
        raise FrameError("request id must be an integer") from exc
    return Request(endpoint, request_id, query, body)


def encode_messages(messages: list[Message]) -> str:
    """An ``a[...]`` frame carrying responses and events in order."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if isinstance(m, Response):
            entry: dict[str, Any] = {"s": m.status, "i": m.id}
            if m.data is not None:
                entry["d"] = m.data
            out.append(entry)
        else:
            out.append({"e": m.name, "d": m.data})
    return "a" + orjson.dumps(out).decode()


def encode_close(code: int, reason: str) -> str:
    return "c" + orjson.dumps([code, reason]).decode()
