"""Tradovate's penalty tickets (``p-ticket``, ``p-time``, ``p-captcha``): what one says, as an
error to raise and as a ticket kept for the next try of a request.

Apart from the auth calls (``auth.TradovateAuth``) because a ticket outlives the request it came
with: the login keeps the ticket of a login penalised twice, and the token cache
(``tokens.TokenCache``) that of a penalised renewal, each to wait out and send with its next try.
How a ticket is read and kept secret is the same for both, and lives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jtrades.errors import TransientBrokerError
from jtrades.logging import register_secret


class PenaltyTicket(TransientBrokerError):
    """Tradovate answered with a penalty ticket: repeat the request with ``ticket`` once
    ``wait_s`` seconds have passed (``captcha``: never — a human has to log in)."""

    def __init__(self, message: str, *, ticket: str, wait_s: float, captcha: bool) -> None:
        super().__init__(message)
        self.ticket = ticket
        self.wait_s = wait_s
        self.captcha = captcha


@dataclass(frozen=True, slots=True)
class Penalty:
    """A ticket to send with the next try of a request, not before ``not_before``."""

    ticket: str
    not_before: datetime
    captcha: bool = False

    def __repr__(self) -> str:  # the ticket unlocks the login: kept out of reprs like a token
        return f"Penalty(not_before={self.not_before.isoformat()}, captcha={self.captcha})"

    def waiting(self, now: datetime) -> bool:
        """Whether the request must not be tried yet (a captcha ticket never clears by waiting)."""
        return self.captcha or now < self.not_before


def ticket_from(body: dict[str, Any], env: str, username: str) -> tuple[str, float, bool]:
    """The ticket of an answer that has one, registered as a secret; the seconds to wait before
    sending it; whether it wants a captcha."""
    ticket = str(body["p-ticket"])
    register_secret(ticket, slot=("tradovate-ticket", env, username))
    try:
        wait = max(0.0, float(body.get("p-time") or 0))
    except (TypeError, ValueError):
        wait = 60.0  # an unreadable p-time: wait a while rather than not at all
    return ticket, wait, bool(body.get("p-captcha"))
