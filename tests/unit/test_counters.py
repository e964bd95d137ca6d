"""Session counters: a trading day's counts, fresh when the CME day turns, and put back exactly
as they were when a signal turns out not to count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jtrades.engine.counters import Counters, SessionCounters, Undo
from jtrades.engine.tradingday import session_start

# Tuesday 2026-11-24, 16:59 and 17:01 Chicago (CST, UTC-6): either side of the day's turn
BEFORE_TURN = datetime(2026, 11, 24, 22, 59, tzinfo=UTC)
AFTER_TURN = datetime(2026, 11, 24, 23, 1, tzinfo=UTC)


def test_counts_move_in_place_within_a_trading_day() -> None:
    counters = SessionCounters()
    c = counters.get("recorder", 1, BEFORE_TURN)
    c.entries += 1
    c.last_entry_at = BEFORE_TURN
    again = counters.get("recorder", 1, BEFORE_TURN + timedelta(seconds=30))
    assert again is c
    assert (again.entries, again.session) == (1, session_start(BEFORE_TURN))


def test_counts_start_again_when_the_cme_day_turns() -> None:
    counters = SessionCounters()
    counters.get("trader", 7, BEFORE_TURN).seen = 4
    fresh = counters.get("trader", 7, AFTER_TURN)
    assert fresh.session == session_start(AFTER_TURN) > session_start(BEFORE_TURN)
    assert (fresh.signals, fresh.entries, fresh.last_entry_at, fresh.seen) == (0, 0, None, 0)


def test_recorder_and_trader_counts_of_the_same_id_are_apart() -> None:
    counters = SessionCounters()
    counters.get("recorder", 3, BEFORE_TURN).entries = 2
    assert counters.get("trader", 3, BEFORE_TURN).entries == 0


def test_undo_puts_back_the_counts_before_the_signals_first_move() -> None:
    counters = SessionCounters()
    counters.seed("recorder", 1, Counters(session_start(BEFORE_TURN), 5, 2, BEFORE_TURN, 3))
    undo: Undo = {}
    c = counters.get("recorder", 1, BEFORE_TURN, undo)
    c.signals, c.entries, c.seen = 6, 3, 4
    # a second look by the same signal must not overwrite what it will put back
    counters.get("recorder", 1, BEFORE_TURN, undo).entries += 1
    counters.get("trader", 9, BEFORE_TURN, undo).entries = 1  # absent before: removed again
    counters.undo(undo)
    back = counters.get("recorder", 1, BEFORE_TURN)
    assert (back.signals, back.entries, back.last_entry_at, back.seen) == (5, 2, BEFORE_TURN, 3)
    assert counters.get("trader", 9, BEFORE_TURN).entries == 0


def test_undo_after_the_day_turned_restores_the_old_days_counts() -> None:
    """A signal that crossed the turn replaced yesterday's counts; undoing it puts them back,
    and the next look at today's turns them fresh again (never today's counts from yesterday)."""
    counters = SessionCounters()
    counters.get("recorder", 1, BEFORE_TURN).entries = 5
    undo: Undo = {}
    counters.get("recorder", 1, AFTER_TURN, undo).entries = 1
    counters.undo(undo)
    assert counters.get("recorder", 1, BEFORE_TURN).entries == 5
    assert counters.get("recorder", 1, AFTER_TURN).entries == 0
