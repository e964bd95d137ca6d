"""The CME trading day and daily time windows: pure functions of an aware ``now``.

The CME day starts at 17:00 America/Chicago: a fill at 18:30 Chicago on Tuesday belongs to
Wednesday's day, so the daily-loss filter and the per-session counters reset at 17:00 Chicago,
not at midnight in any zone. Weekends roll forward: from Friday 17:00 until Sunday's open
(17:00 Chicago, 18:00 New York) every instant belongs to Monday's day. Exchange holidays are not
modelled: a holiday simply has no signals.

Windows are wall-clock times in the user's zone, so "09:30-16:00 America/New_York" means the same
local hours in summer and winter; a window whose end is before its start runs overnight.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from jtrades.engine.risk import Window

CHICAGO = ZoneInfo("America/Chicago")
DAY_START = time(17, 0)

_FRIDAY, _SATURDAY, _SUNDAY = 4, 5, 6


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("a naive datetime has no place in trading decisions: pass an aware one")


def trading_day(now: datetime) -> date:
    """The CME trading day ``now`` belongs to (a weekday; weekends belong to Monday)."""
    _require_aware(now)
    local = now.astimezone(CHICAGO)
    day = local.date()
    if local.time() >= DAY_START:
        day += timedelta(days=1)
    wd = day.weekday()
    if wd == _SATURDAY:
        day += timedelta(days=2)
    elif wd == _SUNDAY:
        day += timedelta(days=1)
    return day


def _at_chicago(day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=CHICAGO).astimezone(UTC)


def session_start(now: datetime) -> datetime:
    """Aware UTC instant at which ``now``'s trading day began: 17:00 Chicago the evening before.

    Monday's day begins on Friday at 17:00 (the weekend is folded into it), so
    ``session_start(now) <= now`` and every instant in between has the same ``trading_day``.
    Counters "this session" count from here.
    """
    day = trading_day(now)
    before = day - timedelta(days=3 if day.weekday() == 0 else 1)
    return _at_chicago(before, DAY_START)


def until_day_turn(now: datetime) -> float:
    """Seconds from ``now`` to the next 17:00 Chicago: how long a front month found for a
    continuous symbol may be kept (the roll happens at a trading day's start; kept an hour
    past it, the roll day's session opened on the expiring month)."""
    turn = next_wall_time(now + timedelta(seconds=1), DAY_START, CHICAGO)
    return (turn - now).total_seconds()


def session_open(day: date) -> datetime:
    """Aware UTC instant at which trading for ``day`` opens: 17:00 Chicago the calendar day before.

    Unlike ``session_start`` this is Sunday's open for a Monday, which is what a daily cutoff
    (auto-flat) is measured from: Saturday is not part of Monday's trading hours.
    """
    return _at_chicago(day - timedelta(days=1), DAY_START)


def next_wall_time(after: datetime, at: time, tz: ZoneInfo) -> datetime:
    """The first instant at or after ``after`` whose wall clock in ``tz`` reads ``at`` (UTC).

    A wall time skipped by a spring-forward gap maps to the instant the clocks jump (the gap's
    end), so a cutoff in the gap still fires that day, and no later than the wall clock passes
    it. A repeated (fall-back) wall time is its first occurrence.
    """
    _require_aware(after)
    local = after.astimezone(tz)
    for extra in (0, 1, 2):
        candidate = _instant(datetime.combine(local.date() + timedelta(days=extra), at), tz)
        if candidate >= after:
            return candidate
    raise AssertionError("unreachable: a wall time recurs within two days")  # pragma: no cover


def _instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of naive wall time ``wall`` in ``tz``; in a gap, the gap's end.

    zoneinfo reads a time that does not exist with the offset from before the gap (fold=0), an
    instant as far past the jump as the time is into the gap: 02:30 in a 02:00→03:00 gap came
    out as 03:30. The jump lies between that reading and the fold=1 one; it is found to the
    second (transitions fall on whole minutes)."""
    early = wall.replace(tzinfo=tz).astimezone(UTC)
    if early.astimezone(tz).replace(tzinfo=None) == wall:
        return early
    late = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    lo, hi = min(early, late), max(early, late)
    before = lo.astimezone(tz).utcoffset()
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi.replace(microsecond=0)


def in_window(now: datetime, window: Window, tz: ZoneInfo) -> bool:
    """Whether ``now`` falls in ``window`` read on the wall clock of ``tz``: [start, end).

    An overnight window (end before start, e.g. 22:00-02:00) is in force from start to
    midnight and from midnight to end. Reading the wall clock makes it DST-correct: 09:30 is
    09:30 local on both sides of a change; during a fall-back repeat hour both readings count.
    """
    _require_aware(now)
    t = now.astimezone(tz).time().replace(tzinfo=None)
    if window.start < window.end:
        return window.start <= t < window.end
    return t >= window.start or t < window.end
