"""``halt --flatten`` requests on the kill-switch flag: they accumulate until done or cancelled."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jtrades.engine.flatten import FlattenPass, Leftover, news
from jtrades.store.flatten import add, cancel, carried, covered_by, pending, resume_all

T0 = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def test_requests_of_different_accounts_are_all_kept() -> None:
    flattens, a = add({}, T0, "apex-1", "cli:ann")
    flattens, b = add(flattens, T0 + timedelta(seconds=1), "bob-demo", "cli:bob")
    assert a != b
    assert pending({"flattens": flattens}).keys() == {a, b}
    # the same account again is the request already pending, whatever the case of its label
    again, same = add(flattens, T0 + timedelta(seconds=2), "APEX-1", "cli:ann")
    assert (again, same) == (flattens, a)


def test_a_flatten_of_everything_covers_the_pending_ones() -> None:
    flattens, a = add({}, T0, "apex-1", "cli:ann")
    flattens, everything = add(flattens, T0 + timedelta(seconds=1), None, "cli:ops")
    assert list(pending({"flattens": flattens})) == [everything]
    assert everything in flattens[a]["cancelled"]
    # nothing more is pending while it is: it covers itself, and any login (whose request is
    # kept as covered, for a plain `resume` to give back: ``resume_all``)
    again, key = add(flattens, T0 + timedelta(seconds=2), None, "cli:ops")
    assert (again, key) == (flattens, everything)
    again, key = add(flattens, T0 + timedelta(seconds=2), "bob-demo", "cli:ops")
    assert key == everything
    assert list(pending({"flattens": again})) == [everything]
    (bob,) = [r for r in again.values() if r["account"] == "bob-demo"]
    assert bob["cancelled"] == covered_by(everything)


def test_a_plain_resume_ends_the_flatten_of_everything_not_a_halted_logins() -> None:
    """The global switch lifted: a login halted on its own stays halted, and the flatten asked
    for it goes on (a pending one stays, a covered one comes back); a login no longer halted
    gets nothing back."""
    flattens, _a = add({}, T0, "apex-1", "cli:ann")
    flattens, everything = add(flattens, T0 + timedelta(seconds=1), None, "cli:ops")
    flattens, _ = add(flattens, T0 + timedelta(seconds=2), "bob-demo", "cli:bob")
    flattens, _ = add(flattens, T0 + timedelta(seconds=3), "cy-demo", "cli:cy")
    carried_on = carried({"flattens": flattens})
    assert carried_on.keys() == flattens.keys()  # the covered ones are carried along
    out, ended, kept = resume_all(carried_on, T0, "resume (ops)", ["APEX-1", "bob-demo"])
    assert ended == [everything]
    back = pending({"flattens": out})
    assert sorted(r["account"] for r in back.values()) == ["apex-1", "bob-demo"]
    assert sorted(kept) == sorted(back)
    assert out[everything]["cancelled"] == "resume (ops)"
    # once the flatten of everything is over, what it covered is not carried along
    assert set(carried({"flattens": out})) == set(back)


def test_a_plain_resume_keeps_a_halted_logins_pending_flatten() -> None:
    flattens, a = add({}, T0, "apex-1", "cli:ann")
    out, ended, kept = resume_all(flattens, T0, "resume (ops)", ["apex-1"])
    assert (ended, kept) == ([], [a])
    assert list(pending({"flattens": out})) == [a]


def test_two_requests_in_one_microsecond_keep_distinct_keys() -> None:
    flattens, a = add({}, T0, "apex-1", "cli:ann")
    flattens, b = add(flattens, T0, "bob-demo", "cli:bob")
    assert a != b
    assert len(flattens) == 2


def test_resume_cancels_the_accounts_requests_or_every_one() -> None:
    flattens, a = add({}, T0, "apex-1", "cli:ann")
    flattens, b = add(flattens, T0, "bob-demo", "cli:bob")
    one, ended = cancel(flattens, T0, "Apex-1", "resume --account apex-1")
    assert ended == [a]
    assert list(pending({"flattens": one})) == [b]
    assert one[a]["cancelled"] == "resume --account apex-1"
    every, ended = cancel(one, T0, None, "resume")
    assert ended == [b]
    assert pending({"flattens": every}) == {}


def test_a_done_request_is_not_pending() -> None:
    flattens, a = add({}, T0, None, "cli:ops")
    flattens[a]["done_at"] = T0.isoformat()
    assert pending({"flattens": flattens}) == {}
    assert pending({"halted": True}) == {}
    assert pending(None) == {}


def test_progress_is_news_only_when_what_is_left_changed() -> None:
    stuck = FlattenPass(left=[Leftover(3, None, "broker view not synced")])
    first = stuck.progress(1, 0, 0, T0)
    later = stuck.progress(7, 0, 0, T0 + timedelta(minutes=3))
    assert news(first) == news(later)  # nothing to write
    closed = FlattenPass(sent=1, closed=1).progress(8, 1, 1, T0)
    assert news(closed) != news(later)
