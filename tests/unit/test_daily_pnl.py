"""The realized P&L the daily-loss filter reads: today's trading day (from 17:00 Chicago) only,
whatever order the trades arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.pnl import DailyPnl
from jtrades.engine.tradingday import session_start

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # Wednesday 14:00 Chicago
TODAY = session_start(NOW)  # Tuesday 17:00 Chicago


def test_a_past_days_trade_arriving_late_does_not_wipe_today() -> None:
    """A fill from before 17:00 Chicago replayed after a restart reset the day and the next read
    reset it again: today's loss read 0 and the daily-loss filter let entries through."""
    pnl = DailyPnl()
    pnl.seed({(1, "MNQZ6"): Decimal(-500)}, TODAY)
    pnl.add(1, Decimal(-40), TODAY - timedelta(minutes=5))
    assert pnl.realized([1], NOW) == Decimal(-500)
    pnl.add(1, Decimal(-40), TODAY + timedelta(hours=1))
    assert pnl.realized([1], NOW) == Decimal(-540)


def test_a_clock_a_moment_behind_the_broker_keeps_the_new_day() -> None:
    pnl = DailyPnl()
    tomorrow = session_start(NOW + timedelta(days=1))
    pnl.add(1, Decimal(-25), tomorrow + timedelta(seconds=1))  # the broker's clock: a new day
    assert pnl.realized([1], tomorrow - timedelta(seconds=1)) == Decimal(-25)
    assert pnl.realized([1], tomorrow + timedelta(hours=1)) == Decimal(-25)


@given(
    st.lists(
        st.tuples(
            st.integers(1, 3),
            st.integers(-(3 * 24 * 60), 0),  # minutes before NOW: three days of trades
            st.integers(-1000, 1000),
        ),
        max_size=30,
    )
)
def test_today_is_the_sum_of_todays_trades_in_any_arrival_order(
    trades: list[tuple[int, int, int]],
) -> None:
    pnl = DailyPnl()
    for sub, minutes, amount in trades:
        pnl.add(sub, Decimal(amount), NOW + timedelta(minutes=minutes))
    for sub in (1, 2, 3):
        expected = sum(
            (
                Decimal(amount)
                for s, minutes, amount in trades
                if s == sub and session_start(NOW + timedelta(minutes=minutes)) == TODAY
            ),
            Decimal(0),
        )
        assert pnl.realized([sub], NOW) == expected
