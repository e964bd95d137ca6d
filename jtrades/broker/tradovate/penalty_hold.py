"""A session's hold on sending after a penalty ticket or a 429, apart from the connection loop.

A penalty ticket (TRADOVATE.md: over the WebSocket ``{"s":200,"i":n,"d":{"p-ticket":…}}``, on any
request, ``authorize`` included) holds the session: until its ``p-time`` has passed every request
is refused here, before anything is sent (``BrokerPenalty``, a ``TransientBrokerError``: "not
sent"), and the connection loop does not connect sooner; heartbeats go on. Each early request
lengthened the lock. TRADOVATE.md says how a ticket is presented on a JSON request, not on
``authorize`` (its body is the bare token), so none is presented there: the wait is what we honour.
With ``p-captcha`` the hold is at least an hour (waiting does not clear it), and on ``authorize``
the session fails as a login does (``CaptchaRequired``, see ``handshake``): a human has to act.

A 429 (``RateLimited``) holds the session the same way: "a 429 or a penalty ticket means back
off; repeated offences lengthen the lock up to an hour". Without the hold, the read that got it
was retried 0.25 s later and the next order went out at once, each one more offence. Tradovate's
429 says for how long nothing (partner docs: the server "stops handling requests for a period of
time"; an empty body), so unless the answer asks for a wait, the hold is ours
(``RATE_LIMIT_FIRST_S``, growing on repeated 429s). A 429 on ``authorize`` or the sync is not
held here: the pool's gate already pauses every connect for ``rate_limit_cooldown_s``.

The hold is kept apart from the session because it outlives a connection: a ticket heard on a
request of a connection that ended still holds the next connect. The tickets of the auth calls
(logins, renewals) are ``penalties``' job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import structlog

from jtrades.broker.tradovate.outcomes import CaptchaPenalty, RateLimited
from jtrades.errors import BrokerPenalty

log = structlog.get_logger(__name__)

# The hold of a first 429 that does not say for how long, doubled for each 429 in a row up to
# ``RATE_LIMIT_MAX_S`` (10 s, 20 s, 40 s … 43 min, then an hour), and back to the first after an
# answered request. Why these bounds:
# - longer than a read's whole retry budget (``client.READ_RETRY``, 5 s): the read that met the
#   429 is not sent again within its own call, its caller comes back later;
# - short enough that a limit of the second or the minute (Tradovate counts requests per
#   second, minute and hour) costs seconds of trading (exits, stops), not minutes;
# - growing, so that the lock of the hour the partner docs describe ("wait 1 hour") sees about
#   eight requests in its hour, never a stream of them;
# - at most an hour: Tradovate's own lock is "up to an hour", holding longer only delays the
#   first request that would pass.
RATE_LIMIT_FIRST_S = 10.0
RATE_LIMIT_MAX_S = 3600.0


@dataclass(frozen=True, slots=True)
class Held:
    """What holds a session now: ``kind`` is ``penalty``, ``captcha`` or ``rate_limit``."""

    kind: str
    reason: str
    left_s: float


class PenaltyHold:
    """Until when one session sends nothing, and the ticket (or 429) that said so."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.until = 0.0  # loop time before which nothing is sent
        self.reason = ""
        self.kind = "penalty"
        self.strikes = 0  # 429s in a row, none answered between them
        self._limited_at = float("-inf")  # loop time the current 429 hold began

    def left_s(self) -> float:
        """Seconds the hold still lasts (zero or less: none)."""
        return self.until - asyncio.get_running_loop().time()

    def held(self) -> Held | None:
        """What holds the session now, or None."""
        left = self.left_s()
        return Held(self.kind, self.reason, left) if left > 0 else None

    def refuse(self, endpoint: str) -> None:
        """``BrokerPenalty`` (``RateLimited`` after a 429) while held: the request is refused
        here, never sent."""
        left = self.left_s()
        if left <= 0:
            return
        if self.kind == "rate_limit":
            raise RateLimited(
                f"{endpoint}: not sent: Tradovate rate limit (429) on session {self.label}, "
                f"backing off, {left:.0f} s left",
                left,
            )
        raise BrokerPenalty(
            f"{endpoint}: not sent: Tradovate asked session {self.label} to wait, "
            f"{left:.0f} s left ({self.reason})",
            left,
        )

    def hold(self, exc: BrokerPenalty, sent_at: float | None = None) -> None:
        """Nothing more on this login before ``exc.wait_s`` has passed (see the module doc): a
        retry, the next order or a reconnect sooner would each lengthen the lock. A 429 that
        did not say for how long gets the hold its strike earns, written into ``exc.wait_s``;
        ``sent_at`` (loop time its request left): one sent before the current 429 hold began
        is the same offence as the one that began it, not another strike."""
        now = asyncio.get_running_loop().time()
        if isinstance(exc, RateLimited):
            self._rate_limited(exc, now, sent_at)
            return
        self._extend(now + exc.wait_s, str(exc), "captcha" if _captcha(exc) else "penalty")
        (log.error if _captcha(exc) else log.warning)(
            "tradovate.session.penalty",
            session=self.label,
            wait_s=round(exc.wait_s, 1),
            captcha=_captcha(exc),
            reason=str(exc),
        )

    def answered(self, sent_at: float | None = None) -> None:
        """A request (sent at ``sent_at``, loop time; None: just now) was carried out: a 429
        lock is over, the next 429 starts the backoff from the first hold again. One sent
        before the current 429 hold began proves nothing of it."""
        if sent_at is None or sent_at >= self._limited_at:
            self.strikes = 0

    def _rate_limited(self, exc: RateLimited, now: float, sent_at: float | None) -> None:
        if sent_at is not None and sent_at < self._limited_at and self.until > now:
            exc.wait_s = self.until - now  # in flight when the hold began: already counted
            return
        self.strikes += 1
        earned = min(RATE_LIMIT_MAX_S, RATE_LIMIT_FIRST_S * 2.0 ** min(self.strikes - 1, 30))
        exc.wait_s = exc.wait_s or earned  # a wait the answer asked for is honoured as is
        self._limited_at = now
        self._extend(now + exc.wait_s, str(exc), "rate_limit")
        log.warning(
            "tradovate.session.rate_limited",
            session=self.label,
            wait_s=round(exc.wait_s, 1),
            strikes=self.strikes,
            reason=str(exc),
        )

    def _extend(self, until: float, reason: str, kind: str) -> None:
        if until > self.until:
            self.until, self.reason, self.kind = until, reason, kind


def _captcha(exc: BrokerPenalty) -> bool:
    return isinstance(exc, CaptchaPenalty)
