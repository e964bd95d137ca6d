"""The bounds of a session's 429 hold (``penalty_hold``): what each 429 in a row earns, what
ends a streak, and what an answer may ask for. The behaviour over real sockets is in
``tests/integration/test_tradovate_rate_limit_hold.py``."""

from __future__ import annotations

import asyncio

import pytest

from jtrades.broker.tradovate.codec import Response
from jtrades.broker.tradovate.outcomes import RateLimited, asked_wait_s, check_response
from jtrades.broker.tradovate.penalty_hold import (
    RATE_LIMIT_FIRST_S,
    RATE_LIMIT_MAX_S,
    PenaltyHold,
)
from jtrades.errors import BrokerPenalty


def _now() -> float:
    return asyncio.get_running_loop().time()


async def test_each_429_in_a_row_doubles_the_hold_up_to_an_hour() -> None:
    hold = PenaltyHold("t")
    earned = []
    for _ in range(12):
        exc = RateLimited("x: 429", 0.0)
        hold.hold(exc, _now())  # each sent after the hold before it began: a new offence
        earned.append(exc.wait_s)
    first = RATE_LIMIT_FIRST_S
    assert earned[:4] == [first, 2 * first, 4 * first, 8 * first]
    assert earned[-3:] == [RATE_LIMIT_MAX_S] * 3
    assert max(earned) == RATE_LIMIT_MAX_S


async def test_only_an_answer_sent_after_the_hold_began_ends_the_streak() -> None:
    hold = PenaltyHold("t")
    sent_before = _now()
    hold.hold(RateLimited("x: 429", 0.0), _now())
    hold.answered(sent_before)  # in flight before the 429: proves nothing of the lock
    assert hold.strikes == 1
    hold.answered(_now())
    assert hold.strikes == 0


async def test_a_429_does_not_shorten_a_longer_penalty() -> None:
    hold = PenaltyHold("t")
    hold.hold(BrokerPenalty("x: penalty, wait 600 s", 600.0))
    hold.hold(RateLimited("y: 429", 0.0), _now())
    held = hold.held()
    assert held is not None
    assert held.kind == "penalty"
    assert held.left_s > 590


def test_a_429_answer_is_a_rate_limit_with_the_wait_it_asks_for() -> None:
    told: list[bool] = []
    answer = Response(3, 429, {"p-time": 7})
    with pytest.raises(RateLimited, match=r"not carried out.*429") as raised:
        check_response("order/placeorder", answer, lambda: told.append(True))
    assert raised.value.wait_s == 7.0
    assert told == [True]  # the pool's connects cool down too
    assert asked_wait_s(None) == 0.0  # Tradovate's own 429: an empty answer
    assert asked_wait_s({"Retry-After": "2.5"}) == 2.5
    assert asked_wait_s({"p-time": "soon"}) == 0.0
