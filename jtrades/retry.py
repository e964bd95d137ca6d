"""The one retry policy: jittered exponential backoff, bounded by attempts AND total time, and only
for errors that say a retry can help (``jtrades.errors.Transient``).

Anything else — a rejection, an auth failure, and above all ``OutcomeUnknown`` (the request may have
reached the broker) — passes straight through: re-sending an order whose fate is unknown is how
duplicate positions are born. A ``BrokerPenalty`` is transient but not retried here either: it
asks for nothing before its ``p-time``, far beyond these waits, and each early try lengthens the
lock (the broker session holds its requests until then). Waits can be switched off for tests
(``waits_disabled()``), in the spirit of stamina's testing mode, so a test of the policy does not
sleep.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
    wait_none,
)

from jtrades.errors import BrokerPenalty, Transient

log = structlog.get_logger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: at most ``attempts`` calls within ``total_s`` seconds overall."""

    attempts: int = 4
    total_s: float = 20.0
    initial_s: float = 0.25
    max_s: float = 5.0
    jitter_s: float = 0.5

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.total_s <= 0 or self.initial_s < 0 or self.max_s < 0:
            raise ValueError("retry policy needs attempts >= 1, total_s > 0 and waits >= 0")


DEFAULT = RetryPolicy()
_state = {"waits": True}


@contextlib.contextmanager
def waits_disabled() -> Iterator[None]:
    """Retry without sleeping (tests): the attempts and the error filter still apply."""
    before = _state["waits"]
    _state["waits"] = False
    try:
        yield
    finally:
        _state["waits"] = before


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    log.warning(
        "retry.scheduled",
        attempt=state.attempt_number,
        wait_s=round(state.upcoming_sleep, 3),
        error=type(exc).__name__ if exc else None,
        reason=str(exc) if exc else None,
    )


def retrying(policy: RetryPolicy = DEFAULT) -> AsyncRetrying:
    """A tenacity controller for ``async for attempt in retrying(): with attempt: ...`` loops."""
    wait = (
        wait_exponential_jitter(
            multiplier=policy.initial_s, max=policy.max_s, jitter=policy.jitter_s
        )
        if _state["waits"]
        else wait_none()
    )
    return AsyncRetrying(
        stop=stop_after_attempt(policy.attempts) | stop_after_delay(policy.total_s),
        wait=wait,
        retry=retry_if_exception_type(Transient) & retry_if_not_exception_type(BrokerPenalty),
        reraise=True,
        before_sleep=_log_retry,
    )


async def call(
    fn: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Call ``fn`` under the default policy; the last error is re-raised unchanged."""
    return await call_with(DEFAULT, fn, *args, **kwargs)


async def call_with(
    policy: RetryPolicy,
    fn: Callable[P, Awaitable[T]],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Call ``fn`` under ``policy``; only ``Transient`` errors (not penalties) are retried."""
    result: T
    async for attempt in retrying(policy):
        with attempt:
            result = await fn(*args, **kwargs)
    return result
