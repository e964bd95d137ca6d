"""What became of a request sent on a session's socket: answered, refused, or unknown.

Outcomes of a request are kept apart on purpose: ``BrokerRejected`` (the broker answered no, with
its text), ``TransientBrokerError`` (nothing was sent, or the broker asked us to back off: safe to
retry), ``OutcomeUnknown`` (sent, but no answer: reconcile by clOrdId, never re-send blindly).
The session owns the socket and the verdict that a connection is dead; the requests waiting on it,
and which of the three an answer (or its absence) is, are decided here, in one place.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State as SocketState

from jtrades.broker.tradovate.codec import Response, encode_request
from jtrades.errors import BrokerPenalty, BrokerRejected, OutcomeUnknown, TransientBrokerError

# A ticket with ``p-captcha`` never clears by waiting its p-time: a human has to log in, and each
# try meanwhile extends the lock, "about an hour" (TRADOVATE.md "Authentication").
CAPTCHA_LOCK_S = 3600.0


class CaptchaPenalty(BrokerPenalty):
    """A penalty ticket with ``p-captcha``: ``wait_s`` is at least ``CAPTCHA_LOCK_S``."""


class RateLimited(BrokerPenalty):
    """A 429: Tradovate did not carry the request out, and answers every request with 429 for
    a while. A ``BrokerPenalty`` so that nothing retries it at once (``retry``) and the session
    holds its requests (``penalty_hold``); ``wait_s`` is what the answer asked for (0 when it
    said nothing, as Tradovate's 429s do: the session's hold then decides, and fills it in)."""


class _Expired(Exception):
    """A request's own timer ran out (its answer may still be on the way)."""


def _fail(fut: asyncio.Future[Response], exc: Exception) -> None:
    """Fail a request's future, its exception taken as seen: the caller raises it if it still
    waits, and one cancelled meanwhile (a stop, a bound) leaves no "Future exception was never
    retrieved" error in the log when the future is collected."""
    if not fut.done():
        fut.set_exception(exc)
        fut.exception()


def _expire(fut: asyncio.Future[Response]) -> None:
    _fail(fut, _Expired())


class PendingRequests:
    """The requests of one session waiting for their answer, by request id."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Response]] = {}

    async def call(
        self,
        ws: ClientConnection,
        endpoint: str,
        body: Any,
        query: str,
        limit: float,
        kill: Callable[[str], None],
    ) -> Response:
        """Send one request on ``ws`` and wait up to ``limit`` s for its answer; ``kill`` cuts
        the connection when the request cannot be written or answered in time."""
        rid = next(self._ids)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Response] = loop.create_future()
        self._pending[rid] = fut
        sending = True

        def expire() -> None:
            # The bound covers the write too: a peer that stops reading stalls the send in
            # websockets' flow control, and only cutting the connection ends that wait.
            if sending:
                kill(f"{endpoint} not written within {limit:g} s")
            _expire(fut)

        # A timer on the future is cheaper than wait_for's wrapper on the hot path.
        timer = loop.call_later(limit, expire)
        try:
            # Once the socket is open, websockets hands the frame to the transport before it
            # can fail: from then on the order may have left, and only "unknown" is safe.
            handed_over = ws.state is SocketState.OPEN
            try:
                await ws.send(encode_request(endpoint, rid, body, query))
            except ConnectionClosed:
                if handed_over:
                    raise OutcomeUnknown(
                        f"{endpoint}: connection lost while sending; outcome unknown"
                    ) from None
                raise TransientBrokerError(f"{endpoint}: connection lost before sending") from None
            sending = False
            return await fut
        except _Expired:
            kill(f"{endpoint} unanswered after {limit:g} s")
            raise OutcomeUnknown(
                f"{endpoint}: no answer from Tradovate within {limit:g} s; outcome unknown"
            ) from None
        finally:
            timer.cancel()
            self._pending.pop(rid, None)

    def answer(self, response: Response) -> None:
        fut = self._pending.get(response.id)
        if fut is not None and not fut.done():
            fut.set_result(response)

    def fail_all(self, reason: str) -> None:
        for fut in self._pending.values():
            _fail(fut, OutcomeUnknown(f"connection lost before the answer ({reason})"))
        self._pending.clear()


def check_response(
    endpoint: str, r: Response, on_rate_limited: Callable[[], None] | None = None
) -> Any:
    """The answer's ``d``, or the failure it means (one of the three kinds above)."""
    d = r.data
    if r.status == 429:
        if on_rate_limited is not None:
            on_rate_limited()
        raise RateLimited(
            f"{endpoint}: not carried out: Tradovate rate limit (429), backing off",
            asked_wait_s(d),
        )
    if isinstance(d, dict) and "p-ticket" in d:
        try:
            wait_s = max(0.0, float(d.get("p-time") or 0))
        except (TypeError, ValueError):
            wait_s = 0.0
        if on_rate_limited is not None:
            on_rate_limited()
        if d.get("p-captcha"):
            hold = max(wait_s, CAPTCHA_LOCK_S)
            raise CaptchaPenalty(
                f"{endpoint}: Tradovate wants a captcha: log in once on the Tradovate website; "
                f"nothing is sent for {int(hold)} s (retrying extends the lock)",
                hold,
            )
        raise BrokerPenalty(
            f"{endpoint}: Tradovate penalty, wait {d.get('p-time', '?')} s before retrying",
            wait_s,
        )
    if 200 <= r.status < 300:
        return d
    text = d if isinstance(d, str) else (str(d) if d is not None else "")
    text = text.strip('"')
    if r.status >= 500:
        raise OutcomeUnknown(f"{endpoint}: Tradovate server error {r.status}: {text}")
    raise BrokerRejected(f"{endpoint}: {r.status} {text}".strip())


def asked_wait_s(d: Any) -> float:
    """The seconds a 429's answer asks us to wait, 0 when it does not say. Tradovate documents
    an empty 429 (``{"s":429,"i":n}``); should one carry a ``p-time`` (its penalty tickets'
    field) or a ``retry-after``, that is honoured instead of our own backoff."""
    if not isinstance(d, dict):
        return 0.0
    for key, value in d.items():
        if str(key).lower() in ("p-time", "retry-after", "retryafter"):
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return 0.0
    return 0.0
