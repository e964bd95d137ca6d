"""Session counters: a trading day's counts, fresh when the CME day turns (the last entry
excepted: a cooldown spans the turn), and put back exactly as they were when a signal turns out
not to count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from jtrades.engine.counters import Counters, ForeignEntry, SessionCounters, Undo, count_entry
from jtrades.engine.filters import RecorderState, Rejection, check_recorder
from jtrades.engine.risk import Direction, RiskSettings
from jtrades.engine.signal import Action, Signal
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


def test_the_last_entry_outlives_the_day_turn() -> None:
    """``--cooldown`` is the least time between entries, whatever the session: an entry at
    15:55 Chicago and another at 17:05 are 70 minutes apart, and a 2 h cooldown refuses the
    second although the CME day turned in between (entries and every-Nth start again)."""
    chicago = ZoneInfo("America/Chicago")
    s = RiskSettings(cooldown_s=7200)
    counters = SessionCounters()

    def judge(at: datetime) -> str | None:
        c = counters.get("recorder", 1, at)
        rej = check_recorder(
            Signal(Action.BUY, ticker="MNQ1!", price=Decimal("21500")),
            s,
            RecorderState(c.signals, c.entries, c.last_entry_at, c.seen),
            at,
            chicago,
            enabled=True,
            owner_active=True,
            halted=False,
        )
        count_entry(c, rej.filter if rej is not None else None, at)
        return rej.filter if rej is not None else None

    first = datetime(2026, 3, 10, 15, 55, tzinfo=chicago)  # Tuesday, before the 16:00 halt
    assert judge(first) is None
    after_turn = datetime(2026, 3, 10, 17, 5, tzinfo=chicago)  # Wednesday's session
    assert judge(after_turn) == "cooldown"
    fresh = counters.get("recorder", 1, after_turn)
    assert (fresh.entries, fresh.seen, fresh.last_entry_at) == (0, 0, first)
    assert judge(first + timedelta(hours=2)) is None


def test_counting_an_entry_by_its_verdict() -> None:
    c = Counters(session_start(BEFORE_TURN))
    assert count_entry(c, None, BEFORE_TURN) == (True, True)
    assert count_entry(c, "every_nth", AFTER_TURN) == (False, True)  # seen, not taken
    assert count_entry(c, "cooldown", AFTER_TURN) == (False, False)
    assert (c.entries, c.seen, c.last_entry_at) == (1, 2, BEFORE_TURN)


def test_a_foreign_entry_is_judged_on_the_traders_counts_and_moves_none() -> None:
    """A sell the long-only recorder cannot open, read as an entry by a trader of its own
    reading: the recorder's filter values judge it on that trader's counts (another trader's,
    and the recorder's, are none of its business), and judging moves nothing."""
    s = RiskSettings(direction=Direction.LONG, max_signals=1)
    foreign = ForeignEntry(Signal(Action.SELL), s, ZoneInfo("America/Chicago"), BEFORE_TURN)
    fresh = Counters(session_start(BEFORE_TURN))
    assert foreign.judge(fresh) is None
    assert foreign.judge(fresh) is None
    assert (fresh.entries, fresh.seen) == (0, 0)
    spent = Counters(session_start(BEFORE_TURN), entries=1, seen=1)
    refused = foreign.judge(spent)
    assert refused is not None
    assert (refused.filter, refused.entry_only) == ("max_signals", True)
    nth = ForeignEntry(Signal(Action.SELL), RiskSettings(every_nth=2), ZoneInfo("UTC"), BEFORE_TURN)
    assert nth.judge(fresh) == Rejection(
        "every_nth", "signal 1 of this session; only every 2nd is taken", True
    )
    assert nth.judge(Counters(session_start(BEFORE_TURN), seen=1)) is None


# --- giving back what one signal moved, while the recorder's next ones move them too ---------


def _entry(counters: SessionCounters, at: datetime, undo: Undo) -> None:
    c = counters.get("recorder", 1, at, undo)
    c.signals += 1
    count_entry(c, None, at)


def test_a_give_back_leaves_what_later_signals_moved() -> None:
    """The recorder's lock is given up once a signal is stored: the next signal's entry may
    be counted before the first one's orders say it was never made. Putting back the first
    one's snapshot erased the second's entry (and its cooldown); only the first's move goes."""
    counters = SessionCounters()
    t1, t2 = BEFORE_TURN - timedelta(minutes=5), BEFORE_TURN - timedelta(minutes=4)
    counters.seed("recorder", 1, Counters(session_start(t1), 3, 1, t1 - timedelta(hours=1), 1))
    first: Undo = {}
    _entry(counters, t1, first)
    moved = counters.moved(first)  # stored: the lock goes
    _entry(counters, t2, {})  # the next alert's entry, made
    counters.give_back("recorder", 1, first[("recorder", 1)], moved[("recorder", 1)])
    c = counters.get("recorder", 1, t2)
    assert (c.signals, c.entries, c.seen, c.last_entry_at) == (4, 2, 2, t2)


def test_two_entries_given_back_in_arrival_order_leave_the_one_before_them() -> None:
    """Two entries in flight together, both refused by the broker, the first given back first:
    the second's give-back put back its own snapshot, the first's time, an entry never made,
    where a restart reads the last entry still counted from the rows."""
    counters = SessionCounters()
    t0, t1, t2 = (BEFORE_TURN - timedelta(minutes=m) for m in (60, 5, 4))
    counters.seed("recorder", 1, Counters(session_start(t1), 3, 1, t0, 1))
    first: Undo = {}
    _entry(counters, t1, first)
    moved_first = counters.moved(first)
    second: Undo = {}
    _entry(counters, t2, second)
    moved_second = counters.moved(second)
    counters.give_back("recorder", 1, first[("recorder", 1)], moved_first[("recorder", 1)])
    counters.give_back("recorder", 1, second[("recorder", 1)], moved_second[("recorder", 1)])
    c = counters.get("recorder", 1, t2)
    assert (c.signals, c.entries, c.seen, c.last_entry_at) == (3, 1, 1, t0)


def test_a_give_back_alone_is_the_undo() -> None:
    counters = SessionCounters()
    t1 = BEFORE_TURN - timedelta(minutes=5)
    counters.seed("recorder", 1, Counters(session_start(t1), 3, 1, t1 - timedelta(hours=1), 1))
    undo: Undo = {}
    _entry(counters, t1, undo)
    counters.give_back("recorder", 1, undo[("recorder", 1)], counters.moved(undo)[("recorder", 1)])
    c = counters.get("recorder", 1, t1)
    assert (c.signals, c.entries, c.seen, c.last_entry_at) == (3, 1, 1, t1 - timedelta(hours=1))


def test_a_give_back_after_the_day_turned_keeps_the_new_days_counts() -> None:
    counters = SessionCounters()
    undo: Undo = {}
    _entry(counters, BEFORE_TURN, undo)
    moved = counters.moved(undo)
    _entry(counters, AFTER_TURN, {})  # the next day's first entry
    counters.give_back("recorder", 1, undo[("recorder", 1)], moved[("recorder", 1)])
    c = counters.get("recorder", 1, AFTER_TURN)
    assert (c.signals, c.entries, c.seen, c.last_entry_at) == (1, 1, 1, AFTER_TURN)


def test_a_give_back_of_the_first_signal_of_a_day_takes_back_only_its_own() -> None:
    """The signal turned the day (yesterday's counts before it): what it moved is counted
    from nothing, and yesterday's last entry time comes back (a cooldown spans the turn)."""
    counters = SessionCounters()
    counters.get("recorder", 1, BEFORE_TURN).entries = 5
    counters.get("recorder", 1, BEFORE_TURN).last_entry_at = BEFORE_TURN
    undo: Undo = {}
    _entry(counters, AFTER_TURN, undo)
    moved = counters.moved(undo)
    later = AFTER_TURN + timedelta(minutes=1)
    _entry(counters, later, {})
    counters.give_back("recorder", 1, undo[("recorder", 1)], moved[("recorder", 1)])
    c = counters.get("recorder", 1, later)
    assert (c.signals, c.entries, c.seen, c.last_entry_at) == (1, 1, 1, later)
    only: Undo = {}
    _entry(counters, later + timedelta(minutes=1), only)
    counters.give_back("recorder", 1, only[("recorder", 1)], counters.moved(only)[("recorder", 1)])
    assert counters.get("recorder", 1, later).last_entry_at == later
