"""What a webhook delivery's HTTP request gives to be stored: its body, read within bounds, its
Content-Type as it can be stored, and the raw body with any webhook token masked (money rule 8).

Apart from the pipeline (``jtrades.webhook``) because reading a request is a job of its own: a
body that is too large, broken, stalled or cut short becomes what arrived of it and why, for
the pipeline to store and answer, never an error escaping it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.http_exceptions import ContentEncodingError

from jtrades.engine.body_tokens import mask_tokens
from jtrades.engine.parse_values import storable
from jtrades.logging import MASK

# How long a body may take to arrive once its headers have: TradingView gives up on a delivery
# after 3 s, and a sender that declares a body and stalls held a handler and its socket for
# good (and made every graceful stop time out waiting for it).
BODY_READ_S = 10.0

# A Content-Type is a word and a charset; it is stored with the signal, so it is bounded.
MAX_CONTENT_TYPE = 200


class Unreadable(Exception):
    """The body could not be read to its end: what arrived of it, and why."""

    def __init__(self, detail: str, partial: bytes, *, hung_up: bool = False) -> None:
        super().__init__(detail)
        self.detail = detail
        self.partial = partial
        self.hung_up = hung_up


# What no alert is sent as: the body is read as JSON or text whatever else it is declared as
# (TradingView sends text/plain or application/json, curl -d a form type, tools their own, and
# people paste JSON into a text alert), but an image, a sound, a file or XML is not an alert.
_NOT_ALERTS = ("image/", "audio/", "video/", "font/", "model/", "multipart/")
_NOT_ALERT_TYPES = ("application/xml", "text/xml", "application/pdf", "application/zip")


def unreadable_type(ctype: str | None) -> str | None:
    """The media type of a body no alert is sent as (an image, a file, XML), or None: 415."""
    if not ctype:
        return None
    media = ctype.split(";", 1)[0].strip().lower()
    if media.startswith(_NOT_ALERTS) or media in _NOT_ALERT_TYPES or media.endswith("+xml"):
        return media
    return None


def content_type(value: str | None) -> str | None:
    """The header as it can be stored: aiohttp hands over bytes that are not UTF-8 as lone
    surrogates, which the signal's insert refused (a valid alert answered 503)."""
    return None if value is None else storable(value[:MAX_CONTENT_TYPE])


def maskable(*tokens: str | None) -> tuple[str, ...]:
    """The known tokens masked wherever they appear (in the raw body and the parsed signal):
    too short a one would mask ordinary text."""
    return tuple(t for t in dict.fromkeys(tokens) if t and len(t) >= 6)


def strip_tokens(body: bytes, *tokens: str | None) -> bytes:
    """The raw body with any webhook token in it masked: stored bodies hold no secrets. The
    known tokens go wherever they appear; a token-named field's value goes whatever it is."""
    for token in maskable(*tokens):
        body = body.replace(token.encode("utf-8", errors="ignore"), MASK.encode())
    return mask_tokens(body)


async def read_body(request: web.Request, limit: int, timeout_s: float) -> tuple[bytes, int | None]:
    """The body, or its first ``limit`` bytes and the size seen when it is too large.

    Raises ``Unreadable`` with what arrived when the body cannot be read to its end (it does
    not decode as its Content-Encoding says, its framing is broken, the sender hung up or
    stalled past ``timeout_s``): bad input, stored and answered 400, where the escaping error
    was a 503."""
    declared = request.content_length
    chunks: list[bytes] = []
    try:
        async with asyncio.timeout(timeout_s):
            if declared is not None and declared > limit:
                return await request.content.read(limit), declared
            total = 0
            while True:
                chunk = await request.content.read(limit + 1 - total)
                if not chunk:
                    return b"".join(chunks), None
                chunks.append(chunk)
                total += len(chunk)
                if total > limit:
                    return b"".join(chunks)[:limit], total
    except TimeoutError:
        raise Unreadable(
            f"the body did not arrive within {timeout_s:g} s", b"".join(chunks)[:limit]
        ) from None
    except web.RequestPayloadError as exc:
        # aiohttp's own message may quote the framing bytes: it is not repeated
        if isinstance(exc.__cause__, ContentEncodingError):
            detail = "the body does not decode as its Content-Encoding header says"
        else:
            detail = "the body's length or chunked framing is broken"
        raise Unreadable(detail, b"".join(chunks)[:limit]) from None
    except ConnectionError:
        raise Unreadable(
            "the sender hung up before the whole body arrived",
            b"".join(chunks)[:limit],
            hung_up=True,
        ) from None
