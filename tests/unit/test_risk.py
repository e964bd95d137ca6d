"""Risk settings: the option parsers and the validation rules, exhaustively and by property."""

from __future__ import annotations

import dataclasses
from datetime import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.risk import (
    RiskOverrides,
    RiskSettings,
    SlType,
    TpLeg,
    TpUnits,
    Window,
    format_tp,
    parse_breakeven,
    parse_hhmm,
    parse_tp,
    parse_window,
)
from jtrades.errors import InvalidInput

hours = st.integers(0, 23)
minutes = st.integers(0, 59)


@given(hours, minutes)
def test_every_valid_time_parses(h: int, m: int) -> None:
    assert parse_hhmm(f"{h:02d}:{m:02d}") == time(h, m)


@given(st.integers(24, 99), minutes)
def test_hours_past_23_are_refused(h: int, m: int) -> None:
    with pytest.raises(InvalidInput, match="HH:MM"):
        parse_hhmm(f"{h}:{m:02d}")


@pytest.mark.parametrize("bad", ["25:00", "9", "09:60", "ab:cd", "", "09:30-", "-09:30", "1:2:3"])
def test_bad_windows_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_window(bad)


def test_overnight_window_and_empty_window() -> None:
    assert parse_window("22:00-02:00") == Window(time(22), time(2))
    with pytest.raises(InvalidInput, match="empty"):
        parse_window("10:00-10:00")


ladders = st.lists(
    st.tuples(st.integers(1, 500), st.integers(1, 5)),
    min_size=1,
    max_size=5,
    unique_by=lambda t: t[0],
).map(lambda legs: sorted(legs))


@given(ladders, st.booleans())
def test_tp_round_trips(legs: list[tuple[int, int]], open_last: bool) -> None:
    parts = [f"{t}:{q}" for t, q in legs]
    if open_last:
        parts[-1] = str(legs[-1][0])
    parsed = parse_tp(",".join(parts))
    assert parse_tp(format_tp(parsed)) == parsed
    assert [leg.target for leg in parsed] == [Decimal(t) for t, _ in legs]


@given(ladders)
def test_ladder_validation_matches_the_size_rule(legs: list[tuple[int, int]]) -> None:
    parsed = tuple(TpLeg(Decimal(t), q) for t, q in legs)
    fixed = sum(q for _, q in legs)
    for size in (fixed - 1, fixed, fixed + 1):
        if size < 1:
            continue
        s = RiskSettings(size=size, tp=parsed)
        if fixed > size:
            with pytest.raises(InvalidInput, match="more than --size"):
                s.validate()
        else:
            assert s.validate() is s


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"size": 0}, "--size"),
        ({"size": -3}, "--size"),
        ({"add_size": 0}, "--add-size"),
        ({"sl": Decimal(-1)}, "--sl"),
        ({"sl_type": SlType.TRAILING}, "trailing needs a stop"),
        ({"every_nth": 0}, "--every-nth"),
        ({"max_contracts": 0}, "--max-contracts"),
        ({"max_daily_loss": Decimal(0)}, "--max-daily-loss"),
        ({"cooldown_s": -1}, "--cooldown"),
        ({"tp": (TpLeg(Decimal(20), None), TpLeg(Decimal(40), 1))}, "only the last leg"),
        ({"tp": (TpLeg(Decimal(40), 1), TpLeg(Decimal(20), None))}, "increasing"),
        ({"tp": (TpLeg(Decimal(150), None),), "tp_units": TpUnits.PERCENT}, "percent"),
        (
            {
                "windows": (
                    Window(time(1), time(2)),
                    Window(time(3), time(4)),
                    Window(time(5), time(6)),
                )
            },
            "two --window",
        ),
    ],
)
def test_invalid_combinations_give_one_line(changes: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidInput) as info:
        dataclasses.replace(RiskSettings(), **changes).validate()  # type: ignore[arg-type]
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_overrides_apply_and_revalidate() -> None:
    base = RiskSettings(size=3, tp=(TpLeg(Decimal(10), 1), TpLeg(Decimal(20), None)))
    assert RiskOverrides({"size": 5}).apply(base).size == 5
    with pytest.raises(InvalidInput, match="more than --size"):
        RiskOverrides(
            {"size": 0 + 1, "tp": (TpLeg(Decimal(10), 2), TpLeg(Decimal(20), None))}
        ).apply(base)
    with pytest.raises(InvalidInput, match="unknown risk setting"):
        RiskOverrides({"colour": "red"})


@pytest.mark.parametrize("qty", ["\u00b2", "\u2460", "\u0663", "+1", "1.0", ""])
def test_a_tp_quantity_is_ascii_digits_or_refused(qty: str) -> None:
    """'²' and '①' passed str.isdigit and then failed int(): a ValueError traceback."""
    with pytest.raises(InvalidInput, match=r"--tp leg 1: quantity .* is not a whole number"):
        parse_tp(f"20:{qty},40")


def test_breakeven_parser() -> None:
    assert parse_breakeven("20") == (Decimal(20), Decimal(0))
    assert parse_breakeven("20:2") == (Decimal(20), Decimal(2))
    with pytest.raises(InvalidInput):
        parse_breakeven("x")
