"""``halt --flatten``'s pure parts: its clOrdIds, and what one liquidation's result means."""

from __future__ import annotations

from jtrades.engine.dispatch import AccountResult, DispatchResult
from jtrades.engine.flatten import attempt_of, judge
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
