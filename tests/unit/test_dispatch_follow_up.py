"""Which steps may still go past a signal's TTL (``dispatch.protective``, ``FOLLOW_UP_S``).

Once a step that changed the position went out, the steps that only protect that position
(cancels of the working exits, the exits re-placed for it) may go for ``FOLLOW_UP_S`` past the
TTL; anything that trades (an entry, a reversal's new side, a reduce) never does. What makes
an exit an exit is its clOrdId (the exit mark): checked here on the plans the planner makes,
as the intents name them (``steps.intent_for``). Pure: no broker, no database.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from jtrades.broker.base import (
    Contract,
    OrderStatus,
    OrderType,
    Side,
    SubAccount,
    WorkingOrder,
)
from jtrades.engine.account_plans import AccountResult
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings, SameDirection, parse_tp
from jtrades.engine.signal import Action, MarketPosition, Signal
from jtrades.engine.step_age import FOLLOW_UP_S, protective, too_late
from jtrades.engine.steps import intent_for

D = Decimal
ACCT = SubAccount(101, "DEMO101")
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)
RISK = RiskSettings(
    dca=True, same_direction=SameDirection.ADD, sl=D(100), tp=parse_tp("8:1,40")
)  # fmt: skip
BRACKET = (
    WorkingOrder(11, 101, 42, "MNQZ6", Side.SELL, 3, OrderType.LIMIT, OrderStatus.WORKING,
                 price=D(21502)),
    WorkingOrder(12, 101, 42, "MNQZ6", Side.SELL, 3, OrderType.STOP, OrderStatus.WORKING,
                 stop_price=D(21475)),
)  # fmt: skip


def plan(sig: Signal, state: AccountState) -> AccountPlan:
    return plan_account(
        sig, RISK, D(1), ACCT, MNQ, state, signal_price=sig.price, cl_ord_prefix="jt-9-4"
    )


def kinds(p: AccountPlan) -> list[tuple[str, bool]]:
    """(kind, protective) per step, with the clOrdId its intent carries."""
    out: list[tuple[str, bool]] = []
    for po in p.orders:
        po, ni = intent_for(
            po, prefix="jt-9-4", signal_id=9, trader_id=1, sub_account_id=4, symbol="MNQZ6",
            expires_at=datetime.now(UTC),
        )  # fmt: skip
        out.append((po.kind, protective(po, ni.cl_ord_id)))
    return out


def test_a_dca_adds_cancels_and_exits_are_protective_its_add_is_not() -> None:
    p = plan(Signal(Action.BUY, price=D(21490)), AccountState(3, D(21500), BRACKET))
    assert p.action is PositionAction.ADD, p.reason
    assert kinds(p) == [
        ("order", False),  # the add trades
        ("cancel", True),
        ("cancel", True),
        ("oco", True),  # a take-profit leg with its stop
        ("oco", True),
    ]


def test_a_reduces_exits_are_protective_its_market_order_is_not() -> None:
    sig = Signal(Action.SELL, price=D(21500), quantity=1, market_position=MarketPosition.LONG)
    p = plan(sig, AccountState(3, D(21500), BRACKET))
    assert p.action is PositionAction.REDUCE, p.reason
    assert kinds(p) == [
        ("cancel", True),
        ("cancel", True),
        ("order", False),  # the reduce trades
        ("oco", True),  # the far leg of the ladder (8:1, 40:2) keeps what is left
    ]


def test_a_reversals_new_side_is_not_protective() -> None:
    p = plan(Signal(Action.SELL, price=D(21500)), AccountState(3, D(21500), BRACKET))
    assert p.action is PositionAction.REVERSE, p.reason
    assert kinds(p) == [("liquidate", False), ("strategy", False)]


def test_an_entry_is_not_protective() -> None:
    p = plan(Signal(Action.BUY, price=D(21500)), AccountState(0, None))
    assert p.action is PositionAction.OPEN, p.reason
    assert not any(prot for _, prot in kinds(p))


def test_the_follow_up_window() -> None:
    """Within the TTL everything goes; past it only the protective steps after a change,
    decided once for all of them (at most FOLLOW_UP_S late at the first); a step that trades
    never."""
    t0 = datetime(2026, 11, 30, 15, tzinfo=UTC)
    p = plan(Signal(Action.BUY, price=D(21490)), AccountState(3, D(21500), BRACKET))
    add, cancel, _, exit_, _ = (
        intent_for(
            po, prefix="jt-9-4", signal_id=9, trader_id=1, sub_account_id=4, symbol="MNQZ6",
            expires_at=t0,
        )
        for po in p.orders
    )  # fmt: skip
    res = AccountResult(1, 4, "add", "")

    def late(at_s: float, changed: bool, step: Any, tail: bool | None = None) -> Any:
        past = timedelta(seconds=at_s - 30)  # past the 30 s TTL
        follow_up = timedelta(seconds=FOLLOW_UP_S)
        return too_late(past, follow_up, changed, tail, step[0], step[1].cl_ord_id, res)

    for step in (add, cancel, exit_):
        assert late(30, False, step)[0] is None
        assert late(30, True, step)[0] is None
    ttl = "signal older than its TTL"
    assert late(30.1, False, exit_)[0] == ttl  # nothing changed: nothing to protect
    assert late(30.1, True, add)[0] == ttl  # trades: never late
    # the protective tail is decided once, at its first step: all of it goes, or none of it
    assert late(30 + FOLLOW_UP_S, True, cancel) == (None, True)
    assert late(30 + FOLLOW_UP_S + 60, True, exit_, tail=True) == (None, True)
    assert late(30 + FOLLOW_UP_S + 0.1, True, cancel) == (ttl, False)
    assert late(30 + FOLLOW_UP_S - 1, True, exit_, tail=False) == (ttl, False)
    assert late(30 + FOLLOW_UP_S + 0.1, True, add, tail=True) == (ttl, True)  # trades: never
    assert any("past the signal's TTL" in m for m in res.messages)
