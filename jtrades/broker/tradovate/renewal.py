"""Renewing a session's shared token ahead of its expiry, apart from the connection loop.

The socket stays authorized once ``authorize`` passed; what expires is the token a reconnect (or
another session of the login) would present. The session owns the current token (a connect sets
it); this loop reads it through ``current`` and hands a renewed one back through ``adopt``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import structlog

from jtrades.aio import set_within
from jtrades.broker.tradovate.auth import AccessToken
from jtrades.broker.tradovate.lifecycle import Timing, TokenSource, raised_at
from jtrades.errors import BrokerAuthError, LoginRefused, TransientBrokerError

log = structlog.get_logger(__name__)

# After a renewal, the next one not sooner than this (nor than half the new token's life): a
# token that looks due on arrival (a clock ahead of Tradovate's by most of a lifetime, a margin
# longer than the lifetime) was renewed again at once, thousands of times a second.
RENEW_MIN_PAUSE_S = 60.0


def pause_after_renewal(renewed: AccessToken, now: datetime) -> float:
    """How long to wait after a renewal before looking at the token again."""
    return max(0.5, min(RENEW_MIN_PAUSE_S, renewed.seconds_left(now) / 2))


async def renew_loop(
    tokens: TokenSource,
    timing: Timing,
    stopped: asyncio.Event,
    current: Callable[[], AccessToken | None],
    adopt: Callable[[AccessToken], None],
    refused: Callable[[str], Awaitable[None]],
    *,
    label: str = "",
) -> None:
    """Renew the shared token ahead of ``expirationTime`` (the socket itself stays authorized).

    A login refused for good on the way (a renewal refused, then the stored password refused,
    or no password to log in with) ends it through ``refused``: the session fails as a refused
    connect does, and the registry opens it again once the credentials have changed. Taken
    for a passing error, the refused login was repeated every few seconds into Tradovate's
    penalty and captcha lock, the budget spent, and the session stayed READY with the old
    password. Nothing else but cancellation ends it: a loop that stopped on an error nobody
    foresaw left the session to die at expiry. An error is logged (its type and where, never
    the token) and renewal tried again after a bounded delay."""
    retry_s = max(1.0, min(30.0, timing.renew_margin_s / 4))
    while not stopped.is_set():
        try:
            token = current()
            if token is None:
                await asyncio.sleep(0.5)
                continue
            wait = token.seconds_left(datetime.now(UTC)) - timing.renew_margin_s
            if wait > 0:
                if await set_within(stopped, min(wait, 3600)):
                    # the session failed meanwhile (a captcha, a wrong password): a renewal
                    # would be a login, which only lengthens the lock
                    return
                if current() is not token:
                    continue
            try:
                renewed = await tokens.get()
            except LoginRefused as exc:
                log.error("tradovate.token.renew_refused_for_good", session=label, reason=str(exc))
                await refused(str(exc))
                return
            adopt(renewed)
            if renewed.token == token.token:
                # nothing changed (another holder renewed, or a penalty ticket has us wait
                # with the current token): don't spin
                await asyncio.sleep(1.0)
            else:
                await asyncio.sleep(pause_after_renewal(renewed, datetime.now(UTC)))
        except (TransientBrokerError, BrokerAuthError) as exc:
            # no login was refused (a captcha on the renewal, no password to log in with, a
            # token run out): the socket stays authorized, and its next reconnect decides
            log.warning("tradovate.token.renew_failed", session=label, reason=str(exc))
            await asyncio.sleep(retry_s)
        except Exception as exc:
            log.error(
                "tradovate.token.renew_failed",
                session=label,
                error=type(exc).__name__,
                reason=str(exc),
                at=raised_at(exc),
            )
            await asyncio.sleep(retry_s)
