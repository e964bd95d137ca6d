"""The shortfalls 34a9b2e left out (``planning.Shortfall``): an add no account could take, an
add or cancel a halted login refuses whole, and a plan whose entry step did not go after its
earlier steps did (``account_plans.missed_entry``, set by the dispatcher)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

import pytest

from jtrades.broker.base import OrderRequest, Side
from jtrades.engine.account_plans import Prepared, missed_entry
from jtrades.engine.plan_context import ENTRY_REFUSED, ENTRY_UNSENT, NEEDS_DCA, NO_POSITION
from jtrades.engine.planning import (
    AccountPlan,
    PlannedOrder,
    PositionAction,
    Shortfall,
    refused_whole,
)
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Action, Signal
from jtrades.engine.steps import intent_for
from tests.unit.test_planning import ACCT, BUY, FLAT, PRICE, SELL, long, plan

ADD = Signal(Action.ADD, price=PRICE)
S = RiskSettings(size=1, add_size=1)


def test_an_add_with_no_position_names_its_cause() -> None:
    p = plan(ADD, S, FLAT)
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert p.short == Shortfall(NO_POSITION, "add with no open position")


def test_an_add_without_dca_on_a_position_with_exits_names_its_cause() -> None:
    with_stop = dataclasses.replace(S, sl=Decimal(40))
    p = plan(ADD, with_stop, long(1))
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert p.short is not None
    assert p.short.cause == NEEDS_DCA
    assert p.short.why.startswith("already long 1; adding needs --dca")
    # with --dca the add goes, and is all that was asked
    dca = plan(ADD, dataclasses.replace(with_stop, dca=True), long(1))
    assert dca.action is PositionAction.ADD
    assert dca.short is None


def test_an_add_without_exits_needs_no_dca() -> None:
    p = plan(ADD, S, long(1))
    assert p.action is PositionAction.ADD
    assert p.short is None


def test_a_refused_whole_plan_sends_nothing_whatever_the_account_holds() -> None:
    planner = refused_whole("halted: trading is halted (kill switch); only closes pass")
    for state in (FLAT, long(1)):
        p = planner(state)
        assert (p.action, p.orders) == (PositionAction.IGNORE, ())
        assert p.short == Shortfall("halted", "trading is halted (kill switch); only closes pass")


def _prepared(p: AccountPlan) -> Prepared:
    """The plan with its intents, as ``plan_groups`` makes it (no work item: not read)."""
    steps = [
        intent_for(
            po,
            prefix="jt-1-1",
            signal_id=1,
            trader_id=1,
            sub_account_id=1,
            symbol="MNQZ6",
            expires_at=datetime.now(UTC),
        )
        for po in sorted(p.orders, key=lambda o: o.step)
    ]
    return Prepared(cast(Any, None), p, steps, 0)


@pytest.mark.parametrize(
    ("sig", "state", "action", "entry"),
    [
        (SELL, long(1), PositionAction.REVERSE, 2),  # liquidation, then the short's entry
        (BUY, FLAT, PositionAction.OPEN, 1),
        (ADD, long(1), PositionAction.ADD, 1),
        (Signal(Action.CLOSE), long(1), PositionAction.CLOSE, None),
    ],
)
def test_the_entry_step_of_a_plan(
    sig: Signal, state: Any, action: PositionAction, entry: int | None
) -> None:
    p = plan(sig, S, state)
    assert p.action is action
    assert _prepared(p).entry_step() == entry


def test_the_entry_step_is_no_exit() -> None:
    """A DCA add's exits come after its entry: the add is the entry step, never an exit."""
    dca = dataclasses.replace(S, sl=Decimal(40), dca=True)
    p = plan(ADD, dca, long(1))
    assert p.action is PositionAction.ADD
    assert len(p.orders) > 1
    assert _prepared(p).entry_step() == 1
    exit_mark = OrderRequest(ACCT, "MNQZ6", Side.SELL, 1, cl_ord_id="jt-1-1-1x")
    only_exits = AccountPlan(PositionAction.OPEN, (PlannedOrder(1, "order", exit_mark),), "")
    assert _prepared(only_exits).entry_step() is None


def test_a_missed_entry_says_what_became_of_it() -> None:
    assert missed_entry("rejected", "MaxPosLimitReached: Insufficient margin") == Shortfall(
        ENTRY_REFUSED, "the broker refused the entry: MaxPosLimitReached: Insufficient margin"
    )
    assert (
        missed_entry("unavailable", "p-ticket").why == "the broker did not take the entry: p-ticket"
    )
    assert missed_entry("unsent", "signal older than its TTL") == Shortfall(
        ENTRY_UNSENT, "the entry was not sent: signal older than its TTL"
    )
