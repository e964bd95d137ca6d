"""Quantities and prices: tick rounding, multipliers, caps, TP ladders and exit distances."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.broker.base import Contract
from jtrades.engine.pnl import OpenPosition, close_trade
from jtrades.engine.risk import RiskSettings, SlUnits, TpLeg, TpUnits, parse_tp
from jtrades.engine.signal import Units
from jtrades.engine.sizing import (
    cap_qty,
    entry_qty,
    exit_offset_points,
    exit_price,
    ladder,
    ladder_quantities,
    open_pnl,
    round_distance,
    round_to_tick,
    scale_qty,
)

D = Decimal
GC = Contract("GCZ6", "GC", D("0.1"), D("100"))  # $10 a tick
MGC = Contract("MGCZ6", "MGC", D("0.1"), D("10"))  # $1 a tick
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"))
ES = Contract("ESZ6", "ES", D("0.25"), D("50"))
ZB = Contract("ZBZ6", "ZB", D("0.03125"), D("1000"))  # 1/32
E6 = Contract("6EZ6", "6E", D("0.00005"), D("125000"))
CONTRACTS = [GC, MGC, MNQ, ES, ZB, E6]


@pytest.mark.parametrize(
    ("price", "tick", "mode", "expected"),
    [
        ("21500.13", "0.25", "nearest", "21500.25"),
        ("21500.12", "0.25", "nearest", "21500.00"),
        ("21500.125", "0.25", "nearest", "21500.25"),  # halves go away from zero
        ("21500.01", "0.25", "up", "21500.25"),
        ("21500.24", "0.25", "down", "21500.00"),
        ("21500.25", "0.25", "up", "21500.25"),  # on tick stays
        ("2650.05", "0.1", "nearest", "2650.1"),
        ("117.10", "0.03125", "down", "117.09375"),
        ("117.10", "0.03125", "up", "117.12500"),
        ("1.08512", "0.00005", "nearest", "1.08510"),
        ("-3.1", "0.25", "down", "-3.25"),
    ],
)
def test_round_to_tick(price: str, tick: str, mode: str, expected: str) -> None:
    got = round_to_tick(D(price), D(tick), mode)  # type: ignore[arg-type]
    assert got == D(expected)
    assert str(got) == expected or got == D(expected)


def test_round_to_tick_keeps_the_tick_exponent() -> None:
    assert str(round_to_tick(D("21500"), D("0.25"), "nearest")) == "21500.00"


def test_round_to_tick_refuses_a_bad_tick() -> None:
    with pytest.raises(ValueError, match="tick"):
        round_to_tick(D(1), D(0), "up")


prices = st.decimals(min_value=D("0.00001"), max_value=D("200000"), places=6)
ticks = st.sampled_from([c.tick_size for c in CONTRACTS])


@given(prices, ticks)
def test_rounded_prices_are_on_the_tick_and_close(price: Decimal, tick: Decimal) -> None:
    up = round_to_tick(price, tick, "up")
    down = round_to_tick(price, tick, "down")
    near = round_to_tick(price, tick, "nearest")
    for p in (up, down, near):
        assert p % tick == 0
        assert abs(p - price) < tick
    assert down <= price <= up
    assert abs(near - price) <= tick / 2


@pytest.mark.parametrize(
    ("base", "mult", "expected"),
    [(1, "1", 1), (2, "3", 6), (3, "0.5", 1), (1, "0.5", 1), (5, "1.5", 7), (1, "0.1", 1)],
)
def test_scale_qty_floors_with_a_minimum_of_one(base: int, mult: str, expected: int) -> None:
    assert scale_qty(base, D(mult)) == expected


def test_scale_qty_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="multiplier"):
        scale_qty(1, D(0))
    with pytest.raises(ValueError, match="base"):
        scale_qty(0, D(1))


@pytest.mark.parametrize(
    ("signal_qty", "size", "mult", "cap", "expected"),
    [
        (None, 2, "1", None, 2),  # configured size
        (0, 2, "1", None, 2),  # zero means "use the configured size"
        (3, 2, "1", None, 3),  # the webhook's quantity wins
        (3, 2, "2", None, 6),  # × multiplier
        (3, 2, "2", 5, 5),  # capped
        (2, 2, "1", 5, 2),  # a cap is not a replacement
        (None, 1, "0.5", None, 1),
        (-1, 2, "1", None, 2),
    ],
)
def test_entry_qty(
    signal_qty: int | None, size: int, mult: str, cap: int | None, expected: int
) -> None:
    s = RiskSettings(size=size, max_contracts=cap)
    assert entry_qty(signal_qty, s, D(mult)) == expected


multipliers = st.decimals(min_value=D("0.1"), max_value=D("20"), places=2)


@given(
    st.one_of(st.none(), st.integers(min_value=0, max_value=500)),
    st.integers(min_value=1, max_value=50),
    multipliers,
    st.one_of(st.none(), st.integers(min_value=1, max_value=100)),
)
def test_entry_qty_is_between_one_and_the_cap(
    signal_qty: int | None, size: int, mult: Decimal, cap: int | None
) -> None:
    q = entry_qty(signal_qty, RiskSettings(size=size, max_contracts=cap), mult)
    assert q >= 1
    if cap is not None:
        assert q <= cap
    base = signal_qty or size
    assert q <= max(1, int(base * mult))


def test_cap_qty() -> None:
    assert cap_qty(3, None, held=100) == 3
    assert cap_qty(3, 5, held=1) == 3
    assert cap_qty(3, 5, held=4) == 1
    assert cap_qty(3, 5, held=5) == 0
    assert cap_qty(3, 5, held=7) == 0


@pytest.mark.parametrize(
    ("tp", "total", "mult", "expected"),
    [
        ("20:1,40:1,60", 3, "1", (1, 1, 1)),
        ("20:1,40:1,60", 9, "3", (3, 3, 3)),  # the multiplier scales trim legs too
        ("20:1,40:1,60", 5, "1", (1, 1, 3)),  # the last leg takes the rest
        ("20:1,40:1,60", 2, "1", (1, 1)),  # a smaller position: the runner gets nothing
        ("20:1,40:1,60", 1, "0.5", (1,)),  # 1 × 0.5 floors to 0: trim legs dropped
        ("20:2,40:2,60", 3, "1", (2, 1)),  # capped by what is left
        ("20:1,40:1", 4, "1", (1, 3)),  # a fixed last leg still takes the rest
        ("20", 4, "2", (4,)),
        ("", 4, "1", ()),
    ],
)
def test_ladder_quantities(tp: str, total: int, mult: str, expected: tuple[int, ...]) -> None:
    assert ladder_quantities(parse_tp(tp), total, D(mult)) == expected


def test_ladder_keeps_each_leg_with_its_target() -> None:
    legs = parse_tp("20:1,40:1,60")
    assert ladder(legs, 1, D("0.5")) == ((legs[2], 1),)
    with pytest.raises(ValueError, match="position"):
        ladder(legs, 0, D(1))


leg_lists = st.lists(st.integers(min_value=1, max_value=10), min_size=0, max_size=5).map(
    lambda qs: (
        (*tuple(TpLeg(D(10 * (i + 1)), q) for i, q in enumerate(qs)), TpLeg(D(10 * (len(qs) + 1))))
    )
)


@given(leg_lists, st.integers(min_value=1, max_value=200), multipliers)
def test_ladder_sums_to_the_position(legs: tuple[TpLeg, ...], total: int, mult: Decimal) -> None:
    qs = ladder_quantities(legs, total, mult)
    assert sum(qs) == total
    assert all(q >= 1 for q in qs)
    assert len(qs) <= len(legs)


@pytest.mark.parametrize(
    ("value", "units", "contract", "expected"),
    [
        ("20", TpUnits.TICKS, MNQ, "5.00"),
        ("20", TpUnits.TICKS, GC, "2.0"),
        ("10.1", TpUnits.POINTS, MNQ, "10.00"),  # toward the entry: never farther than asked
        ("0.01", TpUnits.POINTS, MNQ, "0.25"),  # but at least a tick
        ("1", TpUnits.PERCENT, MNQ, "215.00"),  # of 21500
        ("200", SlUnits.DOLLARS, GC, "2.0"),  # GC: $100 a point
        ("200", SlUnits.DOLLARS, MGC, "20.0"),  # MGC: $10 a point — not the same stop
        ("1000", Units.DOLLARS, ZB, "1.00000"),
    ],
)
def test_exit_offset_points(value: str, units: object, contract: Contract, expected: str) -> None:
    got = exit_offset_points(D(value), units, D("21500"), contract, 1)  # type: ignore[arg-type]
    assert got == D(expected)


def test_dollars_are_for_the_quantity_given() -> None:
    assert exit_offset_points(D(200), SlUnits.DOLLARS, D(2000), GC, 2) == D("1.0")


def test_a_price_level_is_not_a_distance() -> None:
    with pytest.raises(ValueError, match="level"):
        exit_offset_points(D(1), Units.PRICE, D(1), MNQ, 1)
    with pytest.raises(ValueError, match="> 0"):
        round_distance(D(0), D("0.25"))


@given(
    st.decimals(min_value=D("0.01"), max_value=D("500"), places=4),
    st.sampled_from(list(TpUnits)),
    st.sampled_from(CONTRACTS),
)
def test_offsets_are_whole_ticks_not_beyond_the_setting(
    value: Decimal, units: TpUnits, contract: Contract
) -> None:
    off = exit_offset_points(value, units, D("2000"), contract, 1)
    assert off % contract.tick_size == 0
    assert off >= contract.tick_size


@given(
    st.decimals(min_value=D("1"), max_value=D("50000"), places=5),
    st.integers(min_value=1, max_value=400),
    st.sampled_from([1, -1]),
    st.sampled_from(CONTRACTS),
)
def test_exit_prices_of_a_fractional_average(
    avg: Decimal, ticks: int, direction: int, contract: Contract
) -> None:
    distance = ticks * contract.tick_size
    p = exit_price(avg, distance, direction, contract.tick_size)
    assert p % contract.tick_size == 0
    assert (p - avg) * direction > 0  # strictly beyond the average
    assert abs(p - avg) <= distance  # never farther than configured


def test_open_pnl() -> None:
    assert open_pnl(2, D("2000"), D("1990"), GC) == D("-2000")
    assert open_pnl(2, D("2000"), D("1990"), MGC) == D("-200")
    assert open_pnl(-1, D("21500"), D("21490"), MNQ) == D("20")
    assert open_pnl(0, None, D("1"), MNQ) == 0


@given(
    fills=st.lists(
        st.tuples(st.integers(-3, 3).filter(bool), st.integers(80, 120).map(lambda t: D(t) / 4)),
        min_size=1,
        max_size=12,
    ),
    mark=st.integers(80, 120).map(lambda t: D(t) / 4),
)
def test_realized_first_in_first_out_plus_open_on_the_lots_is_the_cash_flow(
    fills: list[tuple[int, Decimal]], mark: Decimal
) -> None:
    """The daily loss adds the two halves: the open one marked from the lots the realized one
    left open, they come to what the fills paid and received, the position marked at
    ``mark``. Marked from the broker's average instead (which a partial exit leaves where it
    was), long 100 + 110 then sold 1 at 100 came to 5 points short."""
    pos = OpenPosition()
    realized = D(0)
    for qty, price in fills:
        closed = close_trade(
            pos, qty, price, MNQ.value_per_point, datetime(2026, 12, 1, tzinfo=UTC)
        )
        realized += closed.pnl if closed is not None else 0
    cash = -sum((q * p for q, p in fills), D(0)) + pos.net * mark
    total = realized + open_pnl(pos.net, pos.avg, mark, MNQ, pos.lots)
    assert total == cash * MNQ.value_per_point


def test_open_pnl_falls_back_to_the_average_when_the_lots_do_not_come_to_the_position() -> None:
    assert open_pnl(1, D(105), D(90), MNQ, ((1, D(110)),)) == D(-40)
    assert open_pnl(2, D(105), D(90), MNQ, ((1, D(110)),)) == D(-60)  # a lot missing
