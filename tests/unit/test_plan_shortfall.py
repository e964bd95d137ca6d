"""What a plan left out of its alert, as a field the verdict reads (``planning.Shortfall``).

The verdict used to match the plan's words ("direction: ", "at --max-contracts "), and knew
no other: an entry a halted account ignored read as accepted, with no reason, and a reversal
that could only close said so nowhere a user looks. Every plan that does less than its alert
asked now names a stable cause (the filter the row names) and the words; one that does all of
it names none.
"""

from __future__ import annotations

import dataclasses

import pytest

from jtrades.engine.plan_context import CANNOT_PLAN
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction, Shortfall
from jtrades.engine.risk import Direction, RiskSettings, SameDirection, TpUnits, parse_tp
from jtrades.engine.signal import Action, MarketPosition, Signal
from tests.unit.test_planning import BUY, FLAT, PRICE, SELL, long, plan

HALTED = "halted: trading is halted (kill switch); only closes pass"
S = RiskSettings(size=1)


def _short(p: AccountPlan) -> tuple[str, str] | None:
    return (p.short.cause, p.short.why) if p.short is not None else None


@pytest.mark.parametrize(
    ("sig", "state", "action"),
    [
        (BUY, FLAT, PositionAction.IGNORE),  # flat: nothing opens
        (SELL, long(1), PositionAction.CLOSE),  # a reversal: the close half only
        (BUY, long(1), PositionAction.IGNORE),  # held: nothing added
    ],
)
def test_an_entry_a_halt_refused_names_halted(
    sig: Signal, state: AccountState, action: str
) -> None:
    p = plan(sig, S, state, refused=HALTED)
    assert p.action is action
    assert _short(p) == ("halted", "trading is halted (kill switch); only closes pass")


def test_direction_and_max_contracts_are_named_as_the_row_names_them() -> None:
    long_only = dataclasses.replace(S, direction=Direction.LONG)
    assert _short(plan(SELL, long_only, FLAT)) == (
        "direction",
        "short entries are off (--direction long)",
    )
    closed = plan(SELL, long_only, long(1))
    assert closed.action is PositionAction.CLOSE
    assert _short(closed) == ("direction", "short entries are off (--direction long)")
    capped = dataclasses.replace(S, same_direction=SameDirection.ADD, max_contracts=1, dca=True)
    p = plan(BUY, capped, long(1))
    assert p.action is PositionAction.IGNORE
    assert p.short is not None
    assert p.short.cause == "max_contracts"
    assert "at --max-contracts 1" in p.short.why


def test_a_reversal_that_cannot_be_sized_closes_and_says_why() -> None:
    sig = Signal(
        Action.SELL,
        price=PRICE,
        quantity=2,
        market_position=MarketPosition.SHORT,
        prev_market_position=MarketPosition.LONG,
    )
    p = plan(sig, S, long(1))
    assert p.action is PositionAction.CLOSE
    assert p.short is not None
    assert p.short.cause == CANNOT_PLAN
    assert p.short.why.startswith("cannot plan the reversal: ")
    assert "market_position_size" in p.short.why


def test_an_entry_that_cannot_be_planned_names_cannot_plan() -> None:
    percent = dataclasses.replace(S, tp=parse_tp("1"), tp_units=TpUnits.PERCENT)
    p = plan(Signal(Action.BUY), percent, FLAT, price=None)
    assert p.action is PositionAction.IGNORE
    assert p.short is not None
    assert p.short.cause == CANNOT_PLAN


@pytest.mark.parametrize(
    ("sig", "state"), [(BUY, FLAT), (SELL, long(1)), (Signal(Action.CLOSE), long(1))]
)
def test_a_plan_that_does_what_was_asked_has_no_shortfall(sig: Signal, state: AccountState) -> None:
    assert plan(sig, S, state).short is None


def test_the_shortfall_is_a_plain_value() -> None:
    assert Shortfall("halted", "x") == Shortfall("halted", "x")
