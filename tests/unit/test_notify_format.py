"""The notifications' pure parts: which events are sent, how a batch becomes one Discord message
(within Discord's limits, pinging nobody), and Discord's retry_after."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jtrades.notify import (
    DISCORD_LIMIT,
    Notice,
    Repeats,
    _retry_after,
    discord_body,
    wanted,
    webhook_body,
)


def test_which_events_are_sent() -> None:
    assert wanted("reconcile.protect_failed", "error")
    assert wanted("anything.at_all", "critical")
    assert wanted("dispatch.account_failed", "exception")
    assert wanted("reconcile.protective_stop", "warning")
    assert wanted("daemon.ready", "info")
    assert not wanted("retry.scheduled", "warning")
    assert not wanted("webhook.signal", "info")
    assert not wanted("notify.failed", "error")  # never its own failures: no loop


def test_a_notice_keeps_flat_fields_and_drops_internal_ones() -> None:
    n = Notice.from_event(
        {
            "event": "dispatch.account_failed",
            "level": "exception",
            "timestamp": "2026-11-29T10:00:00Z",
            "exc_info": True,
            "_record": object(),
            "sub_account_id": 4,
            "price": 1.5,
            "detail": {"a": 1},
        }
    )
    assert (n.event, n.level, n.at) == ("dispatch.account_failed", "error", "2026-11-29T10:00:00Z")
    assert n.fields == {"sub_account_id": 4, "price": 1.5, "detail": "{'a': 1}"}


_text = st.text(st.characters(codec="utf-8"), max_size=400)
_notices = st.lists(
    st.builds(
        Notice,
        event=_text,
        level=st.sampled_from(["error", "warning", "info"]),
        at=st.just("2026-11-29T00:00:00Z"),
        fields=st.dictionaries(st.from_regex(r"[a-z_]{1,12}", fullmatch=True), _text, max_size=6),
    ),
    max_size=40,
)


@given(_notices, st.integers(0, 10_000))
def test_a_discord_message_fits_and_pings_nobody(notices: list[Notice], dropped: int) -> None:
    body = discord_body(notices, "box", dropped)
    lines = body["content"].split("\n")
    assert len(body["content"]) <= DISCORD_LIMIT
    assert body["allowed_mentions"] == {"parse": []}
    assert lines[0].startswith("**jtrades** on box")
    assert (f"({dropped} earlier events dropped)" in lines[0]) == (dropped > 0)
    # every notice has its line, or the last line says how many did not fit
    shown = len(lines) - 1
    if shown < len(notices) or (notices and lines[-1].startswith("… and ")):
        assert lines[-1] == f"… and {len(notices) - shown + 1} more"
    for line in lines[1:]:
        assert len(line) <= 300
        assert line.count("`") in (0, 2)  # the event name's code span, never broken open


@given(_notices)
def test_the_webhook_body_carries_every_event_whole(notices: list[Notice]) -> None:
    body = webhook_body(notices, "box", 3)
    assert body["dropped"] == 3
    assert body["source"] == "jtrades"
    assert [e["event"] for e in body["events"]] == [n.event for n in notices]


def test_retry_after_from_discord_body_or_header() -> None:
    assert _retry_after(None, '{"retry_after": 0.25, "global": false}') == 0.25
    assert _retry_after("3", "not json") == 3.0
    assert _retry_after(None, '{"retry_after": 3600}') == 30.0  # capped
    assert _retry_after(None, "") == 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _n(event: str = "reconcile.sessions_failed", **fields: object) -> Notice:
    return Notice(event, "error", "2026-11-29T00:00:00Z", dict(fields))


def test_repeats_of_one_source_are_held_back_and_counted() -> None:
    clock = Clock()
    repeats = Repeats(limit=3, window_s=600, clock=clock)
    passed = [repeats.admit(_n(error=f"try {i}")) for i in range(5)]
    assert [p is not None for p in passed] == [True, True, True, False, False]
    assert all("repeats_not_sent" not in p.fields for p in passed if p is not None)
    clock.now += 599
    assert repeats.admit(_n()) is None  # still the same window
    clock.now += 1
    after = repeats.admit(_n(error="try 6"))
    assert after is not None
    assert after.fields == {"error": "try 6", "repeats_not_sent": 3}
    again = repeats.admit(_n())
    assert again is not None
    assert "repeats_not_sent" not in again.fields  # counted once


def test_sources_are_told_apart() -> None:
    repeats = Repeats(limit=1, window_s=600, clock=Clock())
    assert repeats.admit(_n("dispatch.orders_failed", sub_account_id=1)) is not None
    assert repeats.admit(_n("dispatch.orders_failed", sub_account_id=2)) is not None
    assert repeats.admit(_n("dispatch.orders_failed", sub_account_id=1, reason="x")) is None
    assert repeats.admit(_n("engine.flattened", sub_account_id=1)) is not None


@given(st.lists(st.tuples(st.integers(0, 3), st.floats(0, 400)), max_size=200))
def test_nothing_is_lost_uncounted(events: list[tuple[int, float]]) -> None:
    """Every notice offered is either let through or counted in a later one (or still held)."""
    clock = Clock()
    repeats = Repeats(limit=2, window_s=600, clock=clock)
    passed = held = reported = 0
    for source, gap in events:
        clock.now += gap
        out = repeats.admit(_n(sub_account_id=source))
        if out is None:
            held += 1
        else:
            passed += 1
            reported += int(out.fields.get("repeats_not_sent", 0))
    still_held = sum(int(v[2]) for v in repeats._seen.values())
    assert reported + still_held == held
    assert passed + held == len(events)
