"""``halt --flatten``'s pure parts: its clOrdIds, and what one liquidation's result means."""

from __future__ import annotations

from decimal import Decimal

from jtrades.broker.base import Contract, OrderStatus, OrderType, Side, WorkingOrder
from jtrades.engine.config_cache import LinkConfig
from jtrades.engine.dispatch import AccountResult, DispatchResult
from jtrades.engine.flatten import attempt_of, judge, liquidate_plan
from jtrades.engine.planning import AccountState, PositionAction
from jtrades.engine.steps import flatten_prefix

AT = "2026-11-29T12:00:00.123456+00:00"


def test_flatten_clordids_are_deterministic_and_distinct_per_request_sub_account_contract() -> None:
    base = flatten_prefix(AT, 12, "MNQZ6")
    assert base == flatten_prefix(AT, 12, "MNQZ6")  # a run after a crash finds the same ones
    others = {
        flatten_prefix(AT, 12, "MESZ6"),
        flatten_prefix(AT, 13, "MNQZ6"),
        flatten_prefix(AT, 1, "MNQZ6"),
        flatten_prefix("2026-11-29T12:00:00.123457+00:00", 12, "MNQZ6"),
    }
    assert base not in others
    assert len(others) == 4
    # one prefix never starts another's attempts (sub 1 vs 12, MNQZ vs MNQZ6)
    assert not f"{base}-1".startswith(flatten_prefix(AT, 1, "MNQZ6") + "-")
    assert not f"{base}-1".startswith(flatten_prefix(AT, 12, "MNQZ") + "-")


def test_flatten_clordids_fit_in_64_characters() -> None:
    for symbol in ("MNQZ6", "X" * 20, "Y" * 200, "ES 12-26", "NQ:CME"):
        cl = f"{flatten_prefix(AT, 2**63 - 1, symbol)}-99999"
        assert len(cl) <= 64, cl


def test_attempt_numbers() -> None:
    base = flatten_prefix(AT, 3, "MNQZ6")
    assert attempt_of(f"{base}-1", base) == 1
    assert attempt_of(f"{base}-17", base) == 17
    assert attempt_of(f"{base}-x", base) == 0
    assert attempt_of(f"{base}-4-2", base) == 4  # the second cancel of attempt 4
    assert attempt_of("jt-12-3-1", base) == 0


def _result(**counts: int) -> DispatchResult:
    acct = AccountResult(None, 3, "close", "halt --flatten", **counts)
    if counts.get("rejected"):
        acct.messages.append("jt-f-3-MNQZ6-1: Market is closed")
    return DispatchResult([acct])


def test_a_liquidation_counts_as_closed_only_once_the_view_is_flat() -> None:
    assert judge(_result(sent=1), 0) == ("closed", "")
    verdict, why = judge(_result(sent=1), 2)
    assert verdict == "left"
    assert "net 2" in why
    verdict, why = judge(_result(sent=1), None)
    assert verdict == "left"
    assert "not synced" in why
    verdict, why = judge(_result(expired=1), 1)
    assert verdict == "left"
    # already flat when planned: nothing was sent, nothing is left
    assert judge(DispatchResult([AccountResult(None, 3, "nothing", "already flat")]), 0)[0] == (
        "closed"
    )


def test_a_refusal_is_the_brokers_final_word() -> None:
    verdict, why = judge(_result(rejected=1), 1)
    assert verdict == "refused"
    assert "Market is closed" in why


def _working(oid: int, status: OrderStatus = OrderStatus.WORKING) -> WorkingOrder:
    return WorkingOrder(
        oid, 101, 42, "MNQZ6", Side.BUY, 1, OrderType.LIMIT, status, price=Decimal("21400")
    )


def test_a_flat_sub_account_gets_its_working_orders_cancelled() -> None:
    """A limit entry resting when the kill switch flattens would open a position once the
    flatten is marked done (nobody would close it)."""
    link = LinkConfig(
        trader_id=1, sub_account_id=3, multiplier=Decimal(1), account_id=1, env="paper",
        broker_account_id=101, sub_name="S1", label="x", user_id=1, halted=True,
    )  # fmt: skip
    contract = Contract("MNQZ6", "MNQ", Decimal("0.25"), Decimal(2), contract_id=42)
    plan = liquidate_plan(link, contract, "jt-f1-3-MNQZ6-1")
    entry, bracket = _working(7), _working(8, OrderStatus.SUSPENDED)
    p = plan(AccountState(0, None, (entry, bracket)))
    assert p.action is PositionAction.CANCEL
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [("cancel", 7), ("cancel", 8)]
    assert plan(AccountState(0, None)).action is PositionAction.NOTHING
    held = plan(AccountState(2, Decimal("21500"), (entry,)))
    assert [o.kind for o in held.orders] == ["liquidate"]  # the broker's liquidate cancels


def test_a_flatten_is_not_done_while_orders_still_work() -> None:
    verdict, why = judge(_result(sent=1), 0, working=1)
    assert verdict == "left"
    assert "1 order(s) still working" in why
    cancels = DispatchResult([AccountResult(None, 3, "cancel", "halt --flatten", sent=2)])
    assert judge(cancels, 0, working=0) == ("cancelled", "")
    # a cancel refused (the order filled meanwhile) is no final word: the position it opened
    # is left for the next pass to close
    refused = DispatchResult([AccountResult(None, 3, "cancel", "halt --flatten", rejected=1)])
    verdict, why = judge(refused, 1, working=0)
    assert verdict == "left"
    assert "net 1" in why
