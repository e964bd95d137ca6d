"""The CME trading day (17:00 Chicago, weekends to Monday) and DST-correct daily windows."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.risk import Window
from jtrades.engine.tradingday import (
    CHICAGO,
    in_window,
    next_wall_time,
    session_open,
    session_start,
    trading_day,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def chi(y: int, mo: int, d: int, h: int, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=CHICAGO)


# 2026: US DST starts Sun 8 March, ends Sun 1 November; UK BST starts 29 March, ends 25 October.
@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (chi(2026, 11, 24, 16, 59), date(2026, 11, 24)),  # Tuesday before the break
        (chi(2026, 11, 24, 17, 0), date(2026, 11, 25)),  # 17:00 Chicago starts Wednesday
        (chi(2026, 11, 24, 23, 59), date(2026, 11, 25)),
        (chi(2026, 11, 25, 0, 0), date(2026, 11, 25)),
        (chi(2026, 11, 27, 17, 0), date(2026, 11, 30)),  # Friday evening → Monday
        (chi(2026, 11, 28, 12, 0), date(2026, 11, 30)),  # Saturday → Monday
        (chi(2026, 11, 29, 16, 59), date(2026, 11, 30)),  # Sunday before the open → Monday
        (datetime(2026, 11, 29, 18, 0, tzinfo=NY), date(2026, 11, 30)),  # Sunday 18:00 ET open
        (chi(2026, 11, 30, 16, 59), date(2026, 11, 30)),
        (chi(2026, 11, 30, 17, 0), date(2026, 12, 1)),
        # DST: the boundary is 17:00 local on both sides, i.e. 22:00 vs 23:00 UTC.
        (datetime(2026, 3, 9, 21, 59, tzinfo=UTC), date(2026, 3, 9)),  # Mon 16:59 CDT
        (datetime(2026, 3, 9, 22, 0, tzinfo=UTC), date(2026, 3, 10)),  # Mon 17:00 CDT
        (datetime(2026, 3, 5, 22, 30, tzinfo=UTC), date(2026, 3, 5)),  # Thu 16:30 CST
        (datetime(2026, 3, 5, 23, 0, tzinfo=UTC), date(2026, 3, 6)),  # Thu 17:00 CST
        (datetime(2026, 11, 2, 22, 30, tzinfo=UTC), date(2026, 11, 2)),  # Mon 16:30 CST
        (datetime(2026, 11, 2, 23, 0, tzinfo=UTC), date(2026, 11, 3)),
        (datetime(2026, 10, 30, 22, 0, tzinfo=UTC), date(2026, 11, 2)),  # Fri 17:00 CDT → Mon
    ],
)
def test_trading_day(now: datetime, expected: date) -> None:
    assert trading_day(now) == expected


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        trading_day(datetime(2026, 1, 5, 12, 0))
    with pytest.raises(ValueError, match="naive"):
        in_window(datetime(2026, 1, 5, 12, 0), Window(time(9), time(10)), NY)


def test_session_start_examples() -> None:
    # Wednesday's day began Tuesday 17:00 CST = 23:00 UTC.
    assert session_start(chi(2026, 11, 25, 10, 0)) == datetime(2026, 11, 24, 23, 0, tzinfo=UTC)
    # Monday's day began Friday 17:00 (the weekend belongs to it).
    assert session_start(chi(2026, 11, 30, 10, 0)) == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    assert session_start(chi(2026, 11, 29, 18, 0)) == datetime(2026, 11, 27, 23, 0, tzinfo=UTC)
    # Across the spring change: Tuesday 10 March began Monday 17:00 CDT = 22:00 UTC.
    assert session_start(chi(2026, 3, 10, 9, 0)) == datetime(2026, 3, 9, 22, 0, tzinfo=UTC)
    # Monday 9 March began Friday 6 March 17:00 CST = 23:00 UTC.
    assert session_start(chi(2026, 3, 9, 9, 0)) == datetime(2026, 3, 6, 23, 0, tzinfo=UTC)
    assert session_start(chi(2026, 3, 9, 9, 0)).tzinfo is UTC


def test_session_open_is_the_evening_before() -> None:
    assert session_open(date(2026, 11, 30)) == datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
    assert session_open(date(2026, 3, 9)) == datetime(2026, 3, 8, 22, 0, tzinfo=UTC)  # CDT


instants = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)
)


@given(instants)
def test_session_start_bounds_the_trading_day(now: datetime) -> None:
    start = session_start(now)
    assert start <= now
    assert trading_day(start) == trading_day(now)
    assert trading_day(start - timedelta(microseconds=1)) < trading_day(now)
    assert start.astimezone(CHICAGO).time() == time(17, 0)
    assert trading_day(now).weekday() < 5


@given(instants)
def test_trading_day_turns_exactly_at_17_chicago(now: datetime) -> None:
    boundary = datetime.combine(now.astimezone(CHICAGO).date(), time(17), tzinfo=CHICAGO)
    before = trading_day(boundary - timedelta(microseconds=1))
    after = trading_day(boundary)
    wd, d = boundary.weekday(), boundary.date()
    if wd < 4:  # Monday-Thursday: the next day starts
        assert (before, after) == (d, d + timedelta(days=1))
    elif wd == 4:  # Friday: Monday's day starts
        assert (before, after) == (d, d + timedelta(days=3))
    else:  # the weekend already belongs to Monday
        monday = d + timedelta(days=7 - wd)
        assert (before, after) == (monday, monday)


# --- windows --------------------------------------------------------------------------------

NY_RTH = Window(time(9, 30), time(16, 0))
OVERNIGHT = Window(time(22, 0), time(2, 0))


@pytest.mark.parametrize(
    ("now", "window", "tz", "inside"),
    [
        # New York cash session before and after the spring change (EST then EDT).
        (datetime(2026, 3, 6, 14, 30, tzinfo=UTC), NY_RTH, NY, True),  # 09:30 EST
        (datetime(2026, 3, 6, 14, 29, tzinfo=UTC), NY_RTH, NY, False),
        (datetime(2026, 3, 9, 13, 30, tzinfo=UTC), NY_RTH, NY, True),  # 09:30 EDT
        (datetime(2026, 3, 9, 13, 29, tzinfo=UTC), NY_RTH, NY, False),
        (datetime(2026, 3, 9, 20, 0, tzinfo=UTC), NY_RTH, NY, False),  # 16:00 EDT: end excluded
        (datetime(2026, 3, 6, 20, 30, tzinfo=UTC), NY_RTH, NY, True),  # 15:30 EST
        # London: BST from 29 March 2026.
        (datetime(2026, 3, 27, 8, 0, tzinfo=UTC), Window(time(8), time(16, 30)), LONDON, True),
        (datetime(2026, 3, 30, 7, 0, tzinfo=UTC), Window(time(8), time(16, 30)), LONDON, True),
        (datetime(2026, 3, 30, 6, 59, tzinfo=UTC), Window(time(8), time(16, 30)), LONDON, False),
        (datetime(2026, 3, 30, 15, 30, tzinfo=UTC), Window(time(8), time(16, 30)), LONDON, False),
        # Overnight windows.
        (datetime(2026, 6, 2, 2, 0, tzinfo=UTC), OVERNIGHT, NY, True),  # 22:00 EDT
        (datetime(2026, 6, 2, 1, 59, tzinfo=UTC), OVERNIGHT, NY, False),
        (datetime(2026, 6, 2, 4, 0, tzinfo=UTC), OVERNIGHT, NY, True),  # 00:00 EDT
        (datetime(2026, 6, 2, 5, 59, tzinfo=UTC), OVERNIGHT, NY, True),  # 01:59 EDT
        (datetime(2026, 6, 2, 6, 0, tzinfo=UTC), OVERNIGHT, NY, False),  # 02:00 EDT
        # The fall-back night in New York: 01:30 happens twice, both inside; 02:00 EST is out.
        (datetime(2026, 11, 1, 5, 30, tzinfo=UTC), OVERNIGHT, NY, True),  # 01:30 EDT
        (datetime(2026, 11, 1, 6, 30, tzinfo=UTC), OVERNIGHT, NY, True),  # 01:30 EST
        (datetime(2026, 11, 1, 7, 0, tzinfo=UTC), OVERNIGHT, NY, False),  # 02:00 EST
        # The spring-forward night: 02:00-03:00 does not exist; 01:59 EST in, 03:00 EDT out.
        (datetime(2026, 3, 8, 6, 59, tzinfo=UTC), OVERNIGHT, NY, True),
        (datetime(2026, 3, 8, 7, 0, tzinfo=UTC), OVERNIGHT, NY, False),
        # London overnight across its fall-back (25 October 2026, 02:00 BST → 01:00 GMT).
        (datetime(2026, 10, 25, 0, 30, tzinfo=UTC), OVERNIGHT, LONDON, True),  # 01:30 BST
        (datetime(2026, 10, 25, 1, 30, tzinfo=UTC), OVERNIGHT, LONDON, True),  # 01:30 GMT
        (datetime(2026, 10, 25, 2, 0, tzinfo=UTC), OVERNIGHT, LONDON, False),  # 02:00 GMT
    ],
)
def test_in_window(now: datetime, window: Window, tz: ZoneInfo, inside: bool) -> None:
    assert in_window(now, window, tz) is inside


zones = st.sampled_from([NY, LONDON, CHICAGO, ZoneInfo("Asia/Tokyo")])
times = st.times().map(lambda t: t.replace(second=0, microsecond=0))


@given(instants, times, times, zones)
def test_overnight_window_is_the_complement_of_the_day_window(
    now: datetime, a: time, b: time, tz: ZoneInfo
) -> None:
    if a == b:
        return
    assert in_window(now, Window(a, b), tz) is not in_window(now, Window(b, a), tz)


@given(instants, zones)
def test_a_one_minute_window_around_the_wall_clock_contains_now(
    now: datetime, tz: ZoneInfo
) -> None:
    wall = datetime.combine(date(2000, 1, 1), now.astimezone(tz).time().replace(tzinfo=None))
    start = wall.replace(second=0, microsecond=0)
    assert in_window(now, Window(start.time(), (start + timedelta(minutes=1)).time()), tz)
    later = start + timedelta(minutes=1)
    assert not in_window(now, Window(later.time(), (later + timedelta(minutes=1)).time()), tz)


@given(instants, times, zones)
def test_next_wall_time(after: datetime, at: time, tz: ZoneInfo) -> None:
    nxt = next_wall_time(after, at, tz)
    assert nxt >= after
    assert nxt - after < timedelta(days=1, hours=2)
    local = nxt.astimezone(tz)
    in_gap = (
        datetime.combine(local.date(), at, tzinfo=tz).astimezone(UTC).astimezone(tz).time() != at
    )
    assert local.time() == at or in_gap


def test_a_cutoff_skipped_by_a_spring_forward_gap_is_when_the_clocks_jump() -> None:
    """Israel goes from 02:00 to 03:00 on a Friday (inside a CME day): 02:30 that night is the
    moment the clocks jump (03:00, 00:00 UTC), not 03:30 (zoneinfo's reading of a time that
    does not exist, with the offset before the gap), which let entries through for half an
    hour after the wall clock had passed the cutoff."""
    jerusalem = ZoneInfo("Asia/Jerusalem")
    after = datetime(2026, 3, 26, 12, 0, tzinfo=UTC)
    assert next_wall_time(after, time(2, 30), jerusalem) == datetime(2026, 3, 27, 0, 0, tzinfo=UTC)
    assert next_wall_time(after, time(2, 0), jerusalem) == datetime(2026, 3, 27, 0, 0, tzinfo=UTC)
    # times that exist are untouched, on either side of the gap
    assert next_wall_time(after, time(3, 0), jerusalem) == datetime(2026, 3, 27, 0, 0, tzinfo=UTC)
    assert next_wall_time(after, time(1, 59), jerusalem) == datetime(
        2026, 3, 26, 23, 59, tzinfo=UTC
    )
    # New York's gap (02:00-03:00 on 2026-03-08, 07:00 UTC)
    ny = datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    assert next_wall_time(ny, time(2, 15), NY) == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
