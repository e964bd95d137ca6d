"""Between two connections of a session: what the end of one means, and when the next is tried.

The connection loop owns the socket and the session's state; these are its decisions, as pure
functions. Nothing but cancellation and a failed login ends the loop: a refused sync, a ``props``
event the view cannot read (the view is then not trusted: the connection is cut and synced again
from a fresh snapshot), or a bug is logged as an error and retried like a drop — a session that
silently stopped reconnecting would leave positions without exits.

A dropped connection is retried with jittered exponential backoff capped at ``reconnect_max_s``
(``lifecycle.backoff_delay``). The backoff starts over once a connection has stayed READY for
``reconnect_max_s``: an isolated drop reconnects after about ``reconnect_initial_s``, a flapping
connection still backs off. Two holds come on top, whatever the backoff says: a penalty ticket
(no connect before its ``p-time``, ``penalty_hold``), and a ``shutdown`` event (another session or
a person took our place): the session comes back after ``reconnect_max_s`` with a new login, never
faster, so two parties knocking each other off cannot turn into a login storm.
"""

from __future__ import annotations

from dataclasses import dataclass

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from jtrades.broker.tradovate.codec import FrameError
from jtrades.broker.tradovate.feed import StreamBroken
from jtrades.broker.tradovate.lifecycle import Timing, backoff_delay, raised_at
from jtrades.broker.tradovate.outcomes import RateLimited
from jtrades.errors import (
    BrokerAuthError,
    BrokerPenalty,
    BrokerRejected,
    OutcomeUnknown,
    TransientBrokerError,
)


class ConnectionEnded(Exception):
    """A connection ended (cut, closed, or the session stopped); its reason is the message."""


# How a connection ends in the ordinary course of things: reconnect, nothing more to say.
DROPS = (
    OSError,
    TimeoutError,
    InvalidHandshake,
    InvalidURI,
    ConnectionClosed,
    FrameError,
    TransientBrokerError,
    OutcomeUnknown,
    ConnectionEnded,
    StreamBroken,
)


@dataclass(frozen=True, slots=True)
class Ending:
    """What the exception that ended a connection attempt means for the session."""

    reason: str  # the session's ``last_error`` from now on
    for_good: bool = False  # a login refused: the session FAILS and the loop ends
    penalty: BrokerPenalty | None = None  # hold the session, its next connect included
    refused_upgrade: int | None = None  # its HTTP status: one more failure; 429 pauses the pool
    error: dict[str, str] | None = None  # fields of a ``tradovate.session.failed`` error


def ending_of(exc: Exception) -> Ending:
    """Sorted most particular first: a penalty is a transient error, a refused upgrade a
    failed handshake, and each is more than a drop."""
    if isinstance(exc, BrokerAuthError):
        return Ending(str(exc), for_good=True)
    if isinstance(exc, BrokerPenalty) and not isinstance(exc, RateLimited):
        # a penalised authorize or sync: the next one not before its p-time (the reconnect
        # backoff alone sent it a second later, and each early one lengthens the lock); a
        # 429 there is a drop: the pool's gate holds every connect for its cooldown already
        return Ending(str(exc), penalty=exc)
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return Ending(f"WebSocket upgrade refused: HTTP {status}", refused_upgrade=status)
    if isinstance(exc, DROPS):
        return Ending(str(exc) or type(exc).__name__)
    if isinstance(exc, BrokerRejected):
        # The sync (or account/list) answered 4xx on a socket whose authorize the same token
        # just passed. A 401 here is Tradovate's answer for an API key without permissions,
        # which a new login would not fix: the token is kept (a login costs budget), and
        # should it really be dead, the next authorize says 401 and drops it.
        error = {
            "error": type(exc).__name__,
            "reason": str(exc),
            "hint": "Tradovate refused the sync; a 401 may mean the API key lacks permissions",
        }
        return Ending(str(exc), error=error)
    # A bug or an answer nobody foresaw must not end the loop for good (no exits, no stops
    # until a restart): log it and reconnect like after a drop.
    error = {"error": type(exc).__name__, "reason": str(exc), "at": raised_at(exc)}
    return Ending(f"{type(exc).__name__}: {exc}", error=error)


def next_connect(
    failures: int,
    ready_for_s: float | None,
    held_s: float,
    shut_down: bool,
    timing: Timing,
    rand: float,
) -> tuple[int, float]:
    """The failures in a row counting the connection that just ended, and the seconds to wait
    before the next connect.

    ``failures``: those counted before it; ``ready_for_s``: how long it stayed READY (None: it
    never got there); ``held_s``: what is left of a penalty hold; ``shut_down``: it ended on a
    ``shutdown`` event; ``rand``: in [0, 1), the jitter."""
    # A connection that stayed READY for reconnect_max_s starts the backoff over, so an isolated
    # drop hours after the last one waits ~reconnect_initial_s, not the cap. One that drops
    # sooner keeps counting: a connection that syncs and dies each time still backs off to the
    # cap, and reconnects (each a user/syncrequest, a few hundred allowed per hour) stay at most
    # about one per reconnect_max_s.
    if ready_for_s is not None and ready_for_s >= timing.reconnect_max_s:
        failures = 0
    failures += 1
    # a penalty, heard now or on a request of the connection that ended, holds connects
    floor = max(0.0, held_s)
    if shut_down:
        floor = max(floor, timing.reconnect_max_s)
    backoff = backoff_delay(failures, timing.reconnect_initial_s, timing.reconnect_max_s, rand)
    return failures, max(floor, backoff)
