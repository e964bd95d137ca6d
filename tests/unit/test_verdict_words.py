"""What an accepted or refused signal's reason names (``verdicts.Judged``), pure: the recorder
and its traders are plain records here, as the config cache holds them."""

from __future__ import annotations

from types import SimpleNamespace as Rec
from typing import Any

from jtrades.engine.account_plans import AccountResult
from jtrades.engine.filters import Rejection
from jtrades.engine.planning import Shortfall
from jtrades.engine.unsent import UNAVAILABLE
from jtrades.engine.verdicts import Judged

OWNER, OTHER = 1, 2


def _judged(
    traders: list[tuple[int, int]],
    detail: dict[str, Any],
    rejections: list[tuple[str, str]] | None = None,
) -> Judged:
    rec = Rec(
        id=1,
        user_id=OWNER,
        traders=[
            Rec(id=tid, user_id=uid, links=(), overridden=frozenset()) for tid, uid in traders
        ],
    )
    base = {
        "entry": True,
        "nth_seen": False,
        "trader_entries": [],
        "trader_seen": [],
        "traders": {},
    }
    return Judged(rec, None, False, rejections or [], {**base, **detail})  # type: ignore[arg-type]


def test_no_account_planned_does_not_quote_another_users_broker_error() -> None:
    """The first sub-account the fan-out left out was another user's: its note (the broker's
    words, its login) was the row's reason."""
    j = _judged(
        [(7, OTHER)], {"traders": {"7": {"11": "not traded: login bob-live: Incorrect password"}}}
    )
    verdict = j.settle([], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert verdict == ("accepted", None, "not traded: no sub-account of a follower could trade it")


def test_no_account_planned_quotes_the_owners_own_note() -> None:
    j = _judged(
        [(7, OTHER), (8, OWNER)],
        {"traders": {"7": {"11": "not traded: bob's"}, "8": {"12": "not traded: contract MBT?"}}},
    )
    verdict = j.settle([], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert verdict == ("accepted", None, "not traded: contract MBT?")


def test_refusals_name_five_of_the_owners_and_count_the_rest() -> None:
    traders = [(i, OWNER) for i in range(1, 8)] + [(i, OTHER) for i in range(8, 11)]
    j = _judged(
        traders, {"traders": {str(i): {"filter": "cooldown", "reason": "x"} for i in range(1, 11)}}
    )
    said = j._refusals([])
    assert said[:5] == [f"trader {i}: cooldown: x" for i in range(1, 6)]
    assert said[5:] == ["2 more traders refused", "3 traders of other users refused"]


def _result(tid: int, sub: int, **kw: Any) -> AccountResult:
    return AccountResult(tid, sub, kw.pop("action", "open"), kw.pop("reason", "open 1"), **kw)


BOB_TEXT = "jt-9-22-1: Insufficient buying power on account BOB-LIVE-7731 (position 12 MNQ)"


def test_a_broker_refusal_is_quoted_from_the_owners_account_only() -> None:
    """The first refused account's broker words were the reason, whoever's account it was."""
    j = _judged([(7, OTHER), (8, OWNER)], {})
    bob = _result(7, 22, rejected=1, messages=[BOB_TEXT])
    alice = _result(8, 11, rejected=1, messages=["jt-9-11-1: margin"])
    verdict = j.settle([bob, alice], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert verdict == ("rejected", "broker", "the broker refused its orders: jt-9-11-1: margin")
    alone = j.settle([bob], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert alone == (
        "rejected",
        "broker",
        "the broker refused its orders: 1 account of other users",
    )


def test_a_request_the_broker_did_not_take_is_quoted_from_the_owners_account_only() -> None:
    j = _judged([(7, OTHER)], {})
    said = f"jt-9-22-1: {UNAVAILABLE} (login bob-live: p-ticket 30s)"
    bob = _result(7, 22, unavailable=1, messages=[said])
    verdict = j.settle([bob], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert "bob-live" not in (verdict[2] or ""), verdict


def test_a_single_users_row_without_a_sub_account_reads_as_before() -> None:
    """A refused trader's entry holds only its filter: not another user's sub-account note."""
    j = _judged(
        [(1, OWNER), (2, OWNER)],
        {"traders": {"1": {"filter": "cooldown", "reason": "60s: 5s left"}}},
        rejections=[("cooldown", "trader 1: 60s: 5s left")],
    )
    verdict = j.settle([], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert verdict == (
        "accepted",
        None,
        "trader 1: cooldown: 60s: 5s left; "
        "not traded: its followers link no sub-account that could trade it",
    )


def test_a_mixed_rejection_names_the_owners_own_halt_and_counts_only_the_refused() -> None:
    """Bob's trader 7 refused for its daily loss, alice's 8 and bob's 9 halted: the row said
    "refused for 2 traders of other users (max_daily_loss)", one was, and alice's own kill
    switch, the one thing she may be told, was not named."""
    halted = Shortfall("halted", "trading is halted")
    j = _judged(
        [(7, OTHER), (8, OWNER), (9, OTHER)],
        {"traders": {"7": {"filter": "max_daily_loss", "reason": "P&L -150 USD"}}},
        rejections=[("max_daily_loss", "trader 7: P&L -150 USD")],
    )
    accounts = [
        _result(7, 21, action="ignore", reason="refused", short=Shortfall("max_daily_loss", "x")),
        _result(8, 11, action="ignore", reason="halted", short=halted),
        _result(9, 23, action="ignore", reason="halted", short=halted),
    ]
    verdict = j.settle(accounts, counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert verdict[:2] == ("rejected", "halted"), verdict
    assert "other users" not in (verdict[2] or ""), verdict  # their halt is theirs
    assert "P&L" not in (verdict[2] or "")
    only_others = _judged(
        [(7, OTHER), (9, OTHER)],
        {
            "traders": {
                "7": {"filter": "max_daily_loss", "reason": "P&L"},
                "9": {"filter": "window", "reason": "w"},
            }
        },
        rejections=[("max_daily_loss", "trader 7: P&L"), ("window", "trader 9: w")],
    )
    assert only_others.filtered() == (
        "rejected",
        "followers",
        "refused for 2 traders of other users",
    )


def _judged3(
    traders: list[tuple[int, int, tuple[str, ...]]],
    detail: dict[str, Any],
    rejections: list[tuple[str, str]] | None = None,
    refused: Rejection | None = None,
    own_way: bool = False,
) -> Judged:
    """``_judged`` with each trader's overridden fields, the recorder's refusal, ``own_way``."""
    rec = Rec(
        id=1,
        user_id=OWNER,
        traders=[
            Rec(id=tid, user_id=uid, links=(), overridden=frozenset(ov)) for tid, uid, ov in traders
        ],
    )
    base = {
        "entry": True,
        "nth_seen": False,
        "trader_entries": [],
        "trader_seen": [],
        "traders": {},
    }
    return Judged(rec, refused, own_way, rejections or [], {**base, **detail})  # type: ignore[arg-type]


# --- which filter a row names when what refused is other users' (a review) ----------------


def test_other_users_approval_state_is_not_the_rows_filter() -> None:
    """Public recorder, its owner follows nothing; bob's user was disabled/unapproved: the
    webhook's answer says 'owner_not_approved' (bob's account state)."""
    j = _judged3(
        [(7, OTHER, ())],
        {
            "traders": {
                "7": {
                    "filter": "owner_not_approved",
                    "reason": "the owner is not an approved, active user",
                }
            }
        },
        rejections=[("owner_not_approved", "trader 7: the owner is not an approved, active user")],
    )
    v = j.filtered()
    assert "approved" not in " ".join(str(x) for x in v), v
    assert v == ("rejected", "followers", "refused for 1 trader of other users")


def test_other_users_daily_loss_is_not_the_rows_filter() -> None:
    j = _judged3(
        [(7, OTHER, ())],
        {"traders": {"7": {"filter": "max_daily_loss", "reason": "P&L -150 USD"}}},
        rejections=[("max_daily_loss", "trader 7: P&L -150 USD")],
    )
    v = j.filtered()
    assert "max_daily_loss" not in " ".join(str(x) for x in v), v


def test_other_users_halt_is_not_the_rows_filter() -> None:
    """Bob's account halted (his kill switch): the row says filter 'halted'."""
    j = _judged3([(7, OTHER, ())], {})
    acc = _result(
        7, 21, action="ignore", reason="halted", short=Shortfall("halted", "trading is halted")
    )
    v = j.settle([acc], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert "halted" not in " ".join(str(x) for x in v), v
    assert v == ("rejected", "followers", "the accounts of other users are at limits of their own")


def test_owner_limit_not_hidden_behind_a_direction_refusal_that_bound_nobody() -> None:
    """Recorder refused a short for its --direction; every trader reads the signal its own way
    (overrides direction), so that refusal bound none. Bob's trader 7 was refused by its own
    cooldown; alice's trader 8 left the entry out at --max-contracts. Before: the row named bob's
    cooldown (leak). Now: the recorder's 'direction' that bound no trader, not alice's own cause."""
    refused = Rejection("direction", "recorder trades long only", entry_only=True)
    j = _judged3(
        [(7, OTHER, ("direction",)), (8, OWNER, ("direction",))],
        {"traders": {"7": {"filter": "cooldown", "reason": "60s: 5s left"}}},
        rejections=[("cooldown", "trader 7: 60s: 5s left")],
        refused=refused,
        own_way=True,
    )
    cap = Shortfall("max_contracts", "at --max-contracts 2: not traded")
    accounts = [
        _result(7, 21, action="ignore", reason="refused"),
        _result(8, 11, action="ignore", reason="at cap", short=cap),
    ]
    v = j.settle(accounts, counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert v == ("rejected", "max_contracts", "at --max-contracts 2: not traded"), v


def test_an_owners_refusal_without_words_does_not_read_as_other_users() -> None:
    """A refusal the broker gave no text for (the dispatcher adds a message only with one)
    read "1 account of other users" on a single user's recorder."""
    j = _judged([(8, OWNER)], {})
    alice = _result(8, 11, rejected=1)
    verdict = j.settle([alice], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert verdict == ("rejected", "broker", "the broker refused its orders: no reason given")


def test_a_close_only_account_that_sent_nothing_is_not_said_to_have_closed() -> None:
    """A long-only follower's close of a reversal, held past the TTL (its lock taken by
    another signal) while another account traded: it read "closed only", still long."""
    j = _judged([(8, OWNER)], {"entry": False})
    short = Shortfall("direction", "short entries are off (--direction long)")
    late = _result(8, 11, action="close", expired=1, short=short)
    free = _result(8, 12, sent=2)
    verdict = j.settle([late, free], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert verdict[0] == "accepted"
    assert "not traded: short entries are off" in (verdict[2] or ""), verdict
    assert "closed only" not in (verdict[2] or ""), verdict
    closed = _result(8, 11, action="close", sent=1, short=short)
    said = j.settle([closed, free], counters=None, undo={}, ttl=5)  # type: ignore[arg-type]
    assert "closed only: short entries are off" in (said[2] or ""), said
