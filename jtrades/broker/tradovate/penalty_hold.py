"""A session's hold on sending after a penalty ticket, apart from the connection loop.

A penalty ticket (TRADOVATE.md: over the WebSocket ``{"s":200,"i":n,"d":{"p-ticket":…}}``, on any
request, ``authorize`` included) holds the session: until its ``p-time`` has passed every request
is refused here, before anything is sent (``BrokerPenalty``, a ``TransientBrokerError``: "not
sent"), and the connection loop does not connect sooner; heartbeats go on. Each early request
lengthened the lock. TRADOVATE.md says how a ticket is presented on a JSON request, not on
``authorize`` (its body is the bare token), so none is presented there: the wait is what we honour.
With ``p-captcha`` the hold is at least an hour (waiting does not clear it), and on ``authorize``
the session fails as a login does (``CaptchaRequired``, see ``handshake``): a human has to act.

The hold is kept apart from the session because it outlives a connection: a ticket heard on a
request of a connection that ended still holds the next connect. The tickets of the auth calls
(logins, renewals) are ``penalties``' job.
"""

from __future__ import annotations

import asyncio

import structlog

from jtrades.broker.tradovate.outcomes import CaptchaPenalty
from jtrades.errors import BrokerPenalty

log = structlog.get_logger(__name__)


class PenaltyHold:
    """Until when one session sends nothing, and the ticket that said so."""

    def __init__(self, label: str = "") -> None:
        self.label = label
        self.until = 0.0  # loop time before which nothing is sent
        self.reason = ""

    def left_s(self) -> float:
        """Seconds the hold still lasts (zero or less: none)."""
        return self.until - asyncio.get_running_loop().time()

    def refuse(self, endpoint: str) -> None:
        """``BrokerPenalty`` while held: the request is refused here, never sent."""
        left = self.left_s()
        if left > 0:
            raise BrokerPenalty(
                f"{endpoint}: not sent: Tradovate asked session {self.label} to wait, "
                f"{left:.0f} s left ({self.reason})",
                left,
            )

    def hold(self, exc: BrokerPenalty) -> None:
        """Nothing more on this login before ``exc.wait_s`` has passed (see the module doc): a
        retry, the next order or a reconnect sooner would each lengthen the lock."""
        until = asyncio.get_running_loop().time() + exc.wait_s
        if until > self.until:
            self.until, self.reason = until, str(exc)
        captcha = isinstance(exc, CaptchaPenalty)
        (log.error if captcha else log.warning)(
            "tradovate.session.penalty",
            session=self.label,
            wait_s=round(exc.wait_s, 1),
            captcha=captcha,
            reason=str(exc),
        )
