"""What a session's connection lifecycle is made of, apart from the session itself: its states,
its timings (from ``[tradovate]`` settings), the reconnect backoff, where it gets its token, and how
its loops name where an error came from.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from jtrades.broker.tradovate.auth import AccessToken
from jtrades.config import TradovateSettings


class TokenSource(Protocol):
    """Where a session gets its login's shared token (the pool binds the token cache to a login)."""

    async def get(self) -> AccessToken: ...

    async def invalidate(self, token: str) -> None: ...


class State(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    READY = "ready"
    RECONNECTING = "reconnecting"
    FAILED = "failed"  # an auth error a retry cannot fix; see ``last_error``
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Timing:
    heartbeat_s: float = 2.5
    dead_after_s: float = 10.0
    request_timeout_s: float = 10.0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 60.0
    renew_margin_s: float = 900.0

    @classmethod
    def from_settings(cls, s: TradovateSettings) -> Timing:
        return cls(
            heartbeat_s=s.heartbeat_s,
            dead_after_s=s.dead_after_s,
            request_timeout_s=s.request_timeout_s,
            reconnect_initial_s=s.reconnect_initial_s,
            reconnect_max_s=s.reconnect_max_s,
            renew_margin_s=s.renew_margin_s,
        )


def backoff_delay(failures: int, initial: float, cap: float, rand: float) -> float:
    """Jittered exponential backoff: between half and all of ``initial·2^(n-1)``, at most ``cap``."""
    if failures <= 0:
        return 0.0
    base = min(cap, initial * float(2 ** min(failures - 1, 30)))
    return base * (0.5 + 0.5 * rand)


def raised_at(exc: BaseException) -> str:
    """Where an exception came from, without a traceback: a rendered one may show locals,
    and the connection's locals hold the access token."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
