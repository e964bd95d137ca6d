"""The realized P&L the daily-loss filter reads: each round trip's exact to the cent (an averaged
position too), and today's trading day (from 17:00 Chicago) only, whatever order the trades
arrive in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.pnl import DailyPnl, OpenPosition, close_trade, open_lots
from jtrades.engine.tradingday import session_start

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)  # Wednesday 14:00 Chicago
TODAY = session_start(NOW)  # Tuesday 17:00 Chicago
MNQ = Decimal(2)  # $ per point


def test_an_averaged_position_closed_at_26_dollars_lost_records_26() -> None:
    """Long 2 @ 21500, add 1 @ 21501, sell 3 @ 21496: −13 points, −$26. The average kept as a
    28-digit Decimal (21500.333…) made it −25.99999999999999999999998: the daily-loss filter at
    26 let the next entry through, and ``trades list`` showed the 28 digits."""
    pos = OpenPosition()
    assert close_trade(pos, 2, Decimal(21500), MNQ, NOW) is None
    assert close_trade(pos, 1, Decimal(21501), MNQ, NOW) is None
    trade = close_trade(pos, -3, Decimal(21496), MNQ, NOW)
    assert trade is not None
    assert (trade.side, trade.qty, trade.pnl) == ("long", 3, Decimal(-26))
    assert str(trade.entry_price) == "21500.3333"  # an average, shown to a ten-thousandth
    assert (pos.net, pos.avg) == (0, None)


def test_an_averaged_position_closed_in_parts_is_exact_part_by_part() -> None:
    """First in, first out: the first contract sold closes a 21500 lot (−4 points), the next
    two the other 21500 and the 21501 (−9): −$8 and −$18, the −$26 of the whole."""
    pos = OpenPosition()
    close_trade(pos, 2, Decimal(21500), MNQ, NOW)
    close_trade(pos, 1, Decimal(21501), MNQ, NOW)
    first = close_trade(pos, -1, Decimal(21496), MNQ, NOW)
    second = close_trade(pos, -2, Decimal(21496), MNQ, NOW)
    assert first is not None
    assert second is not None
    assert (first.pnl, first.entry_price) == (Decimal(-8), Decimal(21500))
    assert (second.pnl, second.entry_price) == (Decimal(-18), Decimal("21500.5"))


@given(
    st.lists(
        st.tuples(
            st.sampled_from([-1, 1]),
            st.integers(1, 5),
            st.integers(4 * 21400, 4 * 21600),  # the price in ticks of 0.25
        ),
        max_size=30,
    ),
    st.integers(4 * 21400, 4 * 21600),
    st.sampled_from([Decimal("0.5"), Decimal(2), Decimal("12.5"), Decimal(50)]),
)
def test_realized_pnl_is_the_exact_cash_flow(
    fills: list[tuple[int, int, int]], last: int, value_per_point: Decimal
) -> None:
    """Whenever the position is flat, the round trips' P&L add up to the cash the fills moved,
    counted in Fractions, to the last digit; each is a whole number of ticks' worth."""
    tick = Decimal("0.25")
    pos = OpenPosition()
    cash = Fraction(0)
    realized = Decimal(0)
    for sign, qty, ticks in [*fills, (0, 0, last)]:
        if not sign:  # flatten at the end
            sign, qty = (-1 if pos.net > 0 else 1), abs(pos.net)
            if not qty:
                break
        price = ticks * tick
        cash -= sign * qty * Fraction(price)
        trade = close_trade(pos, sign * qty, price, value_per_point, NOW)
        if trade is not None:
            realized += trade.pnl
            assert (Fraction(trade.pnl) / Fraction(tick * value_per_point)).denominator == 1
        if pos.net == 0:
            assert Fraction(realized) == cash * Fraction(value_per_point)
    assert pos.net == 0


@given(
    st.lists(
        st.tuples(st.sampled_from([-1, 1]), st.integers(1, 5), st.integers(21400, 21600)),
        min_size=1,
        max_size=30,
    )
)
def test_the_lots_read_back_from_the_fills_are_the_lots_the_fills_left(
    fills: list[tuple[int, int, int]],
) -> None:
    """A position seeded at start from its stored fills holds the lots the mirror had: one lot
    at the stored average lost first in first out across a restart."""
    pos = OpenPosition()
    for sign, qty, price in fills:
        close_trade(pos, sign * qty, Decimal(price), Decimal(2), NOW)
    stored = [(sign * qty, Decimal(price)) for sign, qty, price in fills]
    assert open_lots(pos.net, stored) == (pos.lots if pos.net else ())


def test_fills_that_do_not_add_up_give_no_lots() -> None:
    assert open_lots(3, [(1, Decimal(100)), (1, Decimal(101))]) == ()  # one fill is missing


def test_an_older_closed_positions_fills_are_not_taken_for_the_lots() -> None:
    """The position now held was adopted from the broker (its own fills are not stored): the
    fills of an older, closed position added up to its size when read newest first, and the
    next close was measured from their price (a -$100 trade booked +$100)."""
    older = [(1, Decimal(21400)), (-1, Decimal(21410))]  # closed: flat
    assert open_lots(1, older) == ()
    assert open_lots(-1, older) == ()


def test_a_position_seeded_at_a_28_digit_average_closes() -> None:
    """The paper broker's average, stored exactly and seeded as one lot when its fills are not
    known: quantize asked for more digits than the default context holds, and the mirror's
    batch failed (InvalidOperation) with the close's fill in it."""
    pos = OpenPosition(3, Decimal("21500.33333333333333333333333"), NOW)
    trade = close_trade(pos, -3, Decimal(21496), Decimal(2), NOW)
    assert trade is not None
    assert abs(trade.pnl + 26) < Decimal("1e-20")


def test_a_position_with_a_net_but_no_price_closes_without_a_round_trip() -> None:
    """Stored with a net and no price (the broker's position without a netPrice), with no
    fills to rebuild its lots: nothing to measure the close from. ``assert pos.lots`` failed the
    mirror's whole batch, every login's fills in it, on every retry."""
    pos = OpenPosition(2, None, NOW)
    assert not pos.measurable
    assert close_trade(pos, -1, Decimal(90), MNQ, NOW) is None  # partly closed, still unknown
    assert (pos.net, pos.lots, pos.measurable) == (1, (), False)
    assert close_trade(pos, -3, Decimal(95), MNQ, NOW) is None  # closes it, opens short 2
    assert (pos.net, pos.avg, pos.lots) == (-2, Decimal(95), ((-2, Decimal(95)),))
    assert pos.measurable
    trade = close_trade(pos, 2, Decimal(90), MNQ, NOW)  # measured again from the reversal
    assert trade is not None
    assert (trade.side, trade.qty, trade.pnl) == ("short", 2, Decimal(20))


def test_a_position_with_a_net_but_no_price_adds_without_a_price() -> None:
    """An add to a position that cannot be measured leaves it so: an average of the known part
    only would measure the next close from a price the position never had."""
    pos = OpenPosition(1, None, NOW)
    assert close_trade(pos, 1, Decimal(100), MNQ, NOW) is None
    assert (pos.net, pos.avg, pos.measurable) == (2, None, False)
    assert close_trade(pos, -2, Decimal(110), MNQ, NOW) is None
    assert (pos.net, pos.avg, pos.lots) == (0, None, ())


def test_a_past_days_trade_arriving_late_does_not_wipe_today() -> None:
    """A fill from before 17:00 Chicago replayed after a restart reset the day and the next read
    reset it again: today's loss read 0 and the daily-loss filter let entries through."""
    pnl = DailyPnl()
    pnl.seed({(1, "MNQZ6"): Decimal(-500)}, TODAY)
    pnl.add(1, "MNQZ6", Decimal(-40), TODAY - timedelta(minutes=5))
    assert pnl.realized([1], NOW) == Decimal(-500)
    pnl.add(1, "MNQZ6", Decimal(-40), TODAY + timedelta(hours=1))
    assert pnl.realized([1], NOW) == Decimal(-540)


def test_a_clock_a_moment_behind_the_broker_keeps_the_new_day() -> None:
    pnl = DailyPnl()
    tomorrow = session_start(NOW + timedelta(days=1))
    pnl.add(
        1, "MNQZ6", Decimal(-25), tomorrow + timedelta(seconds=1)
    )  # the broker's clock: a new day
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
        pnl.add(sub, "MNQZ6", Decimal(amount), NOW + timedelta(minutes=minutes))
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


@given(
    st.one_of(st.none(), st.integers(-5, 5)),
    st.lists(
        st.tuples(st.sampled_from([-1, 1]), st.integers(1, 5), st.integers(21400, 21600)),
        max_size=40,
    ),
    st.integers(0, 40),
)
def test_measurable_always_says_whether_the_lots_add_up_to_the_net(
    start_without_price: int | None, fills: list[tuple[int, int, int]], copy_at: int
) -> None:
    """``measurable`` keeps a running total of the lots instead of summing them per fill; it
    must still answer as the sum would, through adds, closes, reversals, copies and positions
    that start with a net but no price (unmeasurable until flat or reversed)."""
    pos = OpenPosition(start_without_price or 0)
    for i, (sign, qty, price) in enumerate(fills):
        if i == copy_at:
            pos = pos.copy()
        close_trade(pos, sign * qty, Decimal(price), Decimal(2), NOW)
        assert pos.measurable == (sum(q for q, _ in pos.lots) == pos.net)


def test_the_days_realized_pnl_is_kept_per_instrument_across_its_months() -> None:
    """A trader's daily loss reads its own instrument: MNQ's months together (a roll does not
    forget the day), MES apart; with no instrument named, the whole sub-account."""
    day = datetime(2026, 11, 30, 15, tzinfo=UTC)
    pnl = DailyPnl()
    pnl.seed({(1, "MNQZ6"): Decimal(-100), (1, "MESZ6"): Decimal(1000)}, session_start(day))
    pnl.add(1, "MNQH7", Decimal(-50), day)
    pnl.add(2, "MNQZ6", Decimal(-7), day)
    assert pnl.realized([1], day, {"MNQ"}) == Decimal(-150)
    assert pnl.realized([1], day, {"MES"}) == Decimal(1000)
    assert pnl.realized([1, 2], day, {"MNQ"}) == Decimal(-157)
    assert pnl.realized([1], day) == Decimal(850)
