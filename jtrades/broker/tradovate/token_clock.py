"""How long a Tradovate access token is good for, read against Tradovate's clock, not ours.

Apart from the auth calls (``auth.TradovateAuth``) because this is a pure decision with its own
failure story: read against our clock alone, a clock ahead of Tradovate's made fresh tokens look
expired (a login storm, the login budget spent) or due for renewal at once (a renewal storm).
The answer's ``Date`` header is Tradovate's time of it; a token's expiry is kept as our time of
receipt plus the lifetime read here (``token_lifetime_s``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from jtrades.errors import TransientBrokerError

# TRADOVATE.md: a token lives about 80–90 minutes. A lifetime is believed up to the longer (a
# clock behind Tradovate's, without a ``Date``, made a token look good for longer than it was,
# and it died before its renewal); one that looks (nearly) over on arrival — no server issues
# an expired token: the clocks disagree — is taken for the shorter.
TOKEN_LIFETIME_MAX_S = 90 * 60.0
TOKEN_LIFETIME_ASSUMED_S = 80 * 60.0
TOKEN_LIFETIME_MIN_S = 5.0  # a lifetime read on arrival shorter than this is not believed
CLOCK_SKEW_WARN_S = 30.0


def token_lifetime_s(expires: datetime, server_now: datetime | None, local_now: datetime) -> float:
    """How long a token just received is good for: ``expirationTime`` less Tradovate's time of
    the answer (its ``Date``, to the second: one second is taken off), else less ours; at most
    ``TOKEN_LIFETIME_MAX_S``, and ``TOKEN_LIFETIME_ASSUMED_S`` when it looks over on arrival.

    Compared with our clock alone, a clock two hours ahead of Tradovate's made every fresh token
    look expired (a login at each connect: five in a second, the budget spent), and one 70
    minutes ahead made each renewed token look due at once (thousands of renewals)."""
    readings = [] if server_now is None else [(expires - server_now).total_seconds() - 1.0]
    readings.append((expires - local_now).total_seconds())
    for life in readings:
        if life > TOKEN_LIFETIME_MIN_S:
            return min(life, TOKEN_LIFETIME_MAX_S)
    return TOKEN_LIFETIME_ASSUMED_S


def server_time(date_header: str | None) -> datetime | None:
    """The ``Date`` of an HTTP answer, if there is a readable one."""
    if not date_header:
        return None
    try:
        parsed = parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def expiration_time(value: Any) -> datetime:
    """A token's ``expirationTime`` (ISO text, or epoch milliseconds as some clients send)."""
    if isinstance(value, int | float):  # epoch milliseconds appear in some clients
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise TransientBrokerError("Tradovate sent an unreadable expirationTime") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
