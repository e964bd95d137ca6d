"""What an accepted or refused signal's reason names (``verdicts.Judged``), pure: the recorder
and its traders are plain records here, as the config cache holds them."""

from __future__ import annotations

from types import SimpleNamespace as Rec
from typing import Any

from jtrades.engine.verdicts import Judged

OWNER, OTHER = 1, 2


def _judged(traders: list[tuple[int, int]], detail: dict[str, Any]) -> Judged:
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
    return Judged(rec, None, False, [], {**base, **detail})  # type: ignore[arg-type]


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
