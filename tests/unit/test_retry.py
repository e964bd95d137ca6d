"""The retry policy retries only transient errors, and stops at its bounds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from jtrades import retry
from jtrades.errors import BrokerPenalty, BrokerRejected, OutcomeUnknown, TransientBrokerError


class Flaky:
    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.calls = 0

    async def __call__(self, value: int) -> int:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return value


async def test_transient_errors_are_retried_until_success() -> None:
    fn = Flaky([TransientBrokerError("blip"), TransientBrokerError("blip")])
    with retry.waits_disabled(), capture_logs() as logs:
        assert await retry.call(fn, 7) == 7
    assert fn.calls == 3
    assert [e["event"] for e in logs] == ["retry.scheduled", "retry.scheduled"]


@pytest.mark.parametrize("exc", [BrokerRejected("no"), OutcomeUnknown("lost"), ValueError("bug")])
async def test_other_errors_pass_through_at_once(exc: Exception) -> None:
    fn = Flaky([exc])
    with retry.waits_disabled(), pytest.raises(type(exc)):
        await retry.call(fn, 1)
    assert fn.calls == 1


async def test_a_penalty_is_not_retried() -> None:
    """A penalty ticket asks for nothing before its p-time; the policy's sub-second waits
    would ask again well within it, and each early try lengthens the lock."""
    fn = Flaky([BrokerPenalty("wait", 30.0)])
    with retry.waits_disabled(), pytest.raises(BrokerPenalty):
        await retry.call(fn, 1)
    assert fn.calls == 1


@settings(max_examples=25, deadline=None)
@given(attempts=st.integers(1, 6), failures=st.integers(0, 8))
async def test_attempts_are_bounded(attempts: int, failures: int) -> None:
    fn = Flaky([TransientBrokerError("x") for _ in range(failures)])
    policy = retry.RetryPolicy(attempts=attempts, total_s=60)
    with retry.waits_disabled():
        if failures < attempts:
            assert await retry.call_with(policy, fn, 3) == 3
            assert fn.calls == failures + 1
        else:
            with pytest.raises(TransientBrokerError):
                await retry.call_with(policy, fn, 3)
            assert fn.calls == attempts


async def test_total_time_bounds_the_attempts() -> None:
    # The waits are real here (20 ms) and exceed the 10 ms budget: the second attempt is the last.
    fn = Flaky([TransientBrokerError("x") for _ in range(10)])
    policy = retry.RetryPolicy(attempts=10, total_s=0.01, initial_s=0.02, max_s=0.02, jitter_s=0)
    with pytest.raises(TransientBrokerError):
        await retry.call_with(policy, fn, 1)
    assert fn.calls == 2


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="attempts"):
        retry.RetryPolicy(attempts=0)
