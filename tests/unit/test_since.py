"""``--since``: a time without an offset is read in the listing's zone, never guessed."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
import typer

from jtrades.cli.listings import Since, check_since_zone, needs_zone, parse_since
from jtrades.errors import InvalidInput

NOW = datetime(2026, 11, 27, 20, 0, tzinfo=UTC)
NY = ZoneInfo("America/New_York")


def test_a_bare_time_is_read_in_the_zone() -> None:
    since = parse_since("2026-11-27 09:00:00", NOW, NY)
    assert since == Since(datetime(2026, 11, 27, 14, 0, tzinfo=UTC), NY)
    assert since.at is not None
    assert since.at.tzinfo == UTC


def test_an_offset_or_a_span_needs_no_zone() -> None:
    assert parse_since("2026-11-27T09:00:00-05:00", NOW) == Since(
        datetime(2026, 11, 27, 14, 0, tzinfo=UTC)
    )
    assert parse_since("2h", NOW) == Since(datetime(2026, 11, 27, 18, 0, tzinfo=UTC))
    assert parse_since(None, NOW) == Since(None)
    assert not needs_zone("2h")
    assert not needs_zone("2026-11-27T09:00Z")
    assert not needs_zone(None)
    assert needs_zone("2026-11-27 09:00")
    assert needs_zone("2026-11-27")
    assert not needs_zone("yesterday")  # parse_since says what is wrong


def test_a_bare_time_without_a_zone_asks_for_an_offset() -> None:
    with pytest.raises(InvalidInput, match="needs a UTC offset"):
        parse_since("2026-11-27 09:00", NOW)


def test_a_time_the_clocks_skipped_is_refused() -> None:
    with pytest.raises(InvalidInput, match="does not exist in America/New_York"):
        parse_since("2026-03-08 02:30", NOW, NY)


def test_a_time_the_clocks_passed_twice_is_refused_with_both_offsets() -> None:
    with pytest.raises(InvalidInput, match="happens twice") as caught:
        parse_since("2026-11-01 01:30", NOW, NY)
    assert "2026-11-01T01:30:00-04:00" in str(caught.value)
    assert "2026-11-01T01:30:00-05:00" in str(caught.value)
    # just before and after the change are plain times
    assert parse_since("2026-11-01 00:59", NOW, NY).at is not None
    assert parse_since("2026-11-01 02:00", NOW, NY).at is not None


@pytest.mark.parametrize("text", ["9999-12-31 23:59", "0001-01-01 00:00"])
def test_a_bare_time_a_zone_takes_out_of_range_is_one_error(text: str) -> None:
    with pytest.raises(InvalidInput, match="out of range"):
        parse_since(text, NOW, ZoneInfo("Asia/Tokyo") if text.startswith("0001") else NY)


def test_rows_shown_in_another_zone_than_the_time_was_read_in_are_refused() -> None:
    """An ownerless signal is shown in the operator's zone: a bare time read in the users'
    would select rows by another clock than the one they are shown by."""
    since = Since(datetime(2026, 11, 27, 14, tzinfo=UTC), NY)
    check_since_zone(since, [{"timezone": "America/New_York"}], "2026-11-27 09:00")
    check_since_zone(Since(since.at), [{"timezone": "Europe/London"}], "2026-11-27T09:00Z")
    with pytest.raises(typer.Exit):
        check_since_zone(
            since,
            [{"timezone": "America/New_York"}, {"timezone": "Europe/London"}],
            "2026-11-27 09:00",
        )
