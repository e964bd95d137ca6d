"""The shared risk options: parsing, validation as a whole, and round trips through Typer.

Options are driven through a real (tiny) Typer command decorated with ``@risk_options``, so the
option declarations, the decorator and the parsers are tested together, with no database.
"""

from __future__ import annotations

import dataclasses
from datetime import time
from decimal import Decimal
from typing import Any

import pytest
import typer
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from jtrades.cli.risk_options import (
    OPTION_FIELDS,
    RiskInput,
    clear_fields,
    overrides_for_trader,
    parse_risk_input,
    parse_seconds,
    risk_options,
    settings_for_recorder,
    settings_values,
    to_args,
)
from jtrades.cli.trader import parse_account_spec
from jtrades.engine.risk import (
    OVERRIDABLE,
    Direction,
    RiskOverrides,
    RiskSettings,
    SameDirection,
    SlType,
    SlUnits,
    TpLeg,
    TpUnits,
    Window,
)
from jtrades.errors import InvalidInput
from jtrades.store.traders import AccountSpec

# --- a real Typer command carrying the options ---------------------------------------------------

_app = typer.Typer()
_seen: dict[str, RiskInput] = {}


@_app.command()
@risk_options
def _cmd(*, risk: RiskInput) -> None:
    _seen["risk"] = risk


def typed(args: list[str]) -> RiskInput:
    """What the command receives for these arguments."""
    _seen.clear()
    r = CliRunner().invoke(_app, args, catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return _seen["risk"]


def test_every_option_of_the_design_exists() -> None:
    helptext = CliRunner().invoke(_app, ["--help"], env={"COLUMNS": "200"}).output
    for opt in OPTION_FIELDS:
        assert f"--{opt}" in helptext
    assert "--no-dca" in helptext
    assert "--no-inverse" in helptext
    # every settings field is reachable from some option
    assert {f for fs in OPTION_FIELDS.values() for f in fs} == set(OVERRIDABLE)


def test_absent_options_are_none() -> None:
    assert typed([]) == RiskInput()
    assert not typed([]).given()
    assert typed(["--window", "09:30-16:00", "--window", "18:00-20:00"]).window == (
        "09:30-16:00",
        "18:00-20:00",
    )
    assert typed(["--no-dca"]).dca is False


# --- generated valid settings round-trip -----------------------------------------------------------

amounts = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(5000), places=2)
hhmm = st.builds(time, st.integers(0, 23), st.integers(0, 59))
windows = st.lists(
    st.tuples(hhmm, hhmm).filter(lambda w: w[0] != w[1]).map(lambda w: Window(*w)), max_size=2
).map(tuple)


@st.composite
def valid_settings(draw: st.DrawFn) -> RiskSettings:
    size = draw(st.integers(1, 50))
    tp_units = draw(st.sampled_from(list(TpUnits)))
    top = Decimal(99) if tp_units is TpUnits.PERCENT else Decimal(5000)
    targets = sorted(
        draw(
            st.lists(
                st.decimals(min_value=Decimal("0.25"), max_value=top, places=2),
                max_size=4,
                unique=True,
            )
        )
    )
    legs: list[TpLeg] = []
    room = size
    for i, target in enumerate(targets):
        last = i == len(targets) - 1
        if last and draw(st.booleans()):
            legs.append(TpLeg(target))
        else:
            if room < 1:
                break
            qty = draw(st.integers(1, room))
            room -= qty
            legs.append(TpLeg(target, qty))
    sl_units = draw(st.sampled_from(list(SlUnits)))
    sl = draw(
        st.decimals(
            min_value=Decimal(0),
            max_value=Decimal(99) if sl_units is SlUnits.PERCENT else Decimal(5000),
            places=2,
        )
    )
    sl_type = SlType.TRAILING if sl > 0 and draw(st.booleans()) else SlType.FIXED
    be_trigger = draw(st.none() | amounts)
    return RiskSettings(
        size=size,
        add_size=draw(st.integers(1, 50)),
        tp=tuple(legs),
        tp_units=tp_units,
        sl=sl,
        sl_units=sl_units,
        sl_type=sl_type,
        trail_trigger=draw(st.none() | amounts),
        trail_freq=draw(st.none() | amounts),
        breakeven_trigger=be_trigger,
        breakeven_offset=Decimal(0) if be_trigger is None else draw(amounts | st.just(Decimal(0))),
        dca=draw(st.booleans()),
        direction=draw(st.sampled_from(list(Direction))),
        windows=draw(windows),
        cooldown_s=draw(st.integers(0, 86_400)),
        max_signals=draw(st.none() | st.integers(1, 500)),
        every_nth=draw(st.integers(1, 20)),
        max_daily_loss=draw(st.none() | amounts),
        max_contracts=draw(st.none() | st.integers(1, 500)),
        auto_flat_after=draw(st.none() | hhmm),
        same_direction=draw(st.sampled_from(list(SameDirection))),
        inverse=draw(st.booleans()),
    ).validate()


@settings(max_examples=150, deadline=None)
@given(valid_settings())
def test_valid_settings_round_trip_through_the_options(s: RiskSettings) -> None:
    args = to_args(settings_values(s))
    assert settings_for_recorder(typed(args)) == s


@settings(max_examples=100, deadline=None)
@given(valid_settings(), st.data())
def test_trader_overrides_round_trip(base: RiskSettings, data: st.DataObject) -> None:
    """Any subset of another valid settings' non-empty fields, as overrides, parses back exactly
    (when the merged result is valid; otherwise the error is one line)."""
    other = data.draw(valid_settings())
    values = {k: v for k, v in settings_values(other).items() if v is not None}
    opts = data.draw(st.sets(st.sampled_from(sorted(OPTION_FIELDS))))
    chosen = {f: values[f] for o in opts for f in OPTION_FIELDS[o] if f in values}
    if "breakeven_trigger" not in chosen:
        chosen.pop("breakeven_offset", None)
    raw = typed(to_args(chosen))
    try:
        dataclasses.replace(base, **chosen).validate()
    except InvalidInput:
        with pytest.raises(InvalidInput, match=r"^[^\n]+$"):
            overrides_for_trader(raw, base)
        return
    overrides = overrides_for_trader(raw, base)
    assert overrides.values == chosen
    assert overrides.apply(base) == dataclasses.replace(base, **chosen)


# --- arbitrary text: parsed and valid, or one line of InvalidInput --------------------------------

_TEXT_OPTIONS = [f.name for f in dataclasses.fields(RiskInput) if f.name not in ("dca", "inverse")]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(_TEXT_OPTIONS), st.text(max_size=20))
def test_any_text_either_parses_valid_or_is_a_one_line_error(option: str, text: str) -> None:
    value: Any = (text,) if option == "window" else text
    try:
        s = settings_for_recorder(RiskInput(**{option: value}))
    except InvalidInput as exc:
        message = str(exc)
        assert message
        assert "\n" not in message
        assert "\r" not in message
        return
    assert s == s.validate()


@settings(max_examples=100, deadline=None)
@given(st.integers(-(10**6), 0))
def test_non_positive_sizes_are_refused(n: int) -> None:
    with pytest.raises(InvalidInput, match="--size"):
        settings_for_recorder(RiskInput(size=str(n)))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 5), min_size=1, max_size=4), st.integers(1, 20))
def test_ladder_fixed_legs_may_not_exceed_the_size(qtys: list[int], size: int) -> None:
    tp = ",".join(f"{10 * (i + 1)}:{q}" for i, q in enumerate(qtys))
    raw = RiskInput(size=str(size), tp=tp)
    if sum(qtys) > size:
        with pytest.raises(InvalidInput, match="more than --size"):
            settings_for_recorder(raw)
    else:
        assert sum(leg.qty or 0 for leg in settings_for_recorder(raw).tp) == sum(qtys)


# --- specific cases ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (RiskInput(window=("25:00-01:00",)), "HH:MM"),
        (RiskInput(window=("01:00-02:00", "03:00-04:00", "05:00-06:00")), "at most two"),
        (RiskInput(window=("none", "01:00-02:00")), "cannot be combined"),
        (RiskInput(tp_units="furlongs"), "ticks|points|percent"),
        (RiskInput(sl_units="ticks "), None),
        (RiskInput(sl_units="yards"), "ticks|points|percent|dollars"),
        (RiskInput(sl_type="trailing"), "needs a stop distance"),
        (RiskInput(size="1.5"), "whole number"),
        (RiskInput(every_nth="0"), "--every-nth"),
        (RiskInput(max_contracts="-2"), "--max-contracts"),
        (RiskInput(max_daily_loss="0"), "--max-daily-loss"),
        (RiskInput(trail_freq="-1"), "--trail-freq"),
        (RiskInput(breakeven="5:-1"), "offset"),
        (RiskInput(sl="NaN"), "finite"),
        (RiskInput(sl="1e20"), "out of range"),
        (RiskInput(cooldown="5x"), "duration"),
        (RiskInput(tp="10:0"), "≥ 1"),
        (RiskInput(tp="20,10:1"), "only the last leg"),
        # more places than Postgres' numeric holds (1e-20000) was a DataError traceback
        (RiskInput(sl="1e-20000"), "--sl: '1e-20000' has more than 10 decimal places"),
        (RiskInput(sl="0.00000000001"), "more than 10 decimal places"),
        (RiskInput(sl="0.0000000001"), None),
        (RiskInput(max_daily_loss="1e-20000"), "--max-daily-loss: .* decimal places"),
        (RiskInput(trail_freq="1e-20000"), "--trail-freq: .* decimal places"),
        (RiskInput(tp="1e-20000:1,40"), "--tp: target .* decimal places"),
        (RiskInput(breakeven="1e-20000"), "--breakeven: .* decimal places"),
        (RiskInput(breakeven="5:1e-20000"), "--breakeven: .* decimal places"),
    ],
)
def test_specific_refusals(raw: RiskInput, message: str | None) -> None:
    if message is None:
        settings_for_recorder(raw)
        return
    with pytest.raises(InvalidInput, match=message.replace("|", r"\|")):
        settings_for_recorder(raw)


def test_none_words_switch_optional_settings_off_on_a_recorder() -> None:
    base = settings_for_recorder(
        RiskInput(max_daily_loss="300", breakeven="10:2", auto_flat_after="15:50", tp="20")
    )
    assert base.breakeven_offset == Decimal(2)
    off = settings_for_recorder(
        RiskInput(max_daily_loss="none", breakeven="off", auto_flat_after="none", tp="none"), base
    )
    assert off.max_daily_loss is None
    assert off.breakeven_trigger is None
    assert off.breakeven_offset == 0
    assert off.auto_flat_after is None
    assert off.tp == ()
    windowed = settings_for_recorder(RiskInput(window=("09:30-16:00",)))
    assert settings_for_recorder(RiskInput(window=("",)), windowed).windows == ()


def test_cooldown_units() -> None:
    assert [parse_seconds(t) for t in ("90", "90s", "5m", "1h", " 2M ")] == [90, 90, 300, 3600, 120]


def test_parse_only_touches_given_fields() -> None:
    assert parse_risk_input(RiskInput()) == {}
    assert parse_risk_input(RiskInput(breakeven="4")) == {
        "breakeven_trigger": Decimal(4),
        "breakeven_offset": Decimal(0),
    }


def test_trader_overrides_clear_and_refuse_none() -> None:
    base = RiskSettings(size=2, max_daily_loss=Decimal(500))
    current = RiskOverrides({"size": 3, "direction": Direction.LONG, "windows": ()})
    cleared = overrides_for_trader(RiskInput(), base, current, ["--size", "window"])
    assert cleared.values == {"direction": Direction.LONG}
    assert overrides_for_trader(RiskInput(), base, current, ["all"]).values == {}
    with pytest.raises(InvalidInput, match="--clear max-daily-loss"):
        overrides_for_trader(RiskInput(max_daily_loss="none"), base)
    with pytest.raises(InvalidInput, match="not a risk option"):
        clear_fields(["colour"])
    assert clear_fields(["breakeven"]) == {"breakeven_trigger", "breakeven_offset"}
    # an override that makes the merged ladder invalid is refused
    with pytest.raises(InvalidInput, match="more than --size 1"):
        overrides_for_trader(RiskInput(size="1", tp="10:1,20:1"), base)


# --- account specs ----------------------------------------------------------------------------------

labels = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,20}\Z")
subs = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,15}\Z")
mults = st.decimals(min_value=Decimal("0.001"), max_value=Decimal(1000), places=3)


@settings(max_examples=200, deadline=None)
@given(labels, st.none() | subs, st.none() | mults)
def test_account_specs_round_trip(label: str, sub: str | None, mult: Decimal | None) -> None:
    text = label + (f":{sub}" if sub else "") + (f"*{mult}" if mult is not None else "")
    assert parse_account_spec(text) == AccountSpec(label, sub, mult if mult is not None else 1)


@settings(max_examples=100, deadline=None)
@given(
    labels,
    st.decimals(allow_nan=False, allow_infinity=False).filter(lambda d: d <= 0 or d > 1000),
)
def test_multipliers_out_of_bounds_are_refused(label: str, mult: Decimal) -> None:
    with pytest.raises(InvalidInput, match=r"multiplier|LABEL"):
        parse_account_spec(f"{label}*{mult}")


def test_a_multiplier_with_more_places_than_postgres_holds_is_refused() -> None:
    with pytest.raises(InvalidInput, match="decimal places"):
        parse_account_spec("acc*1e-20000")
    assert parse_account_spec("acc*0.0000000001").multiplier == Decimal("1E-10")


@pytest.mark.parametrize("bad", ["", "*2", ":A1", "acc:", "acc*", "acc:A1:B2", "a b", "acc**2"])
def test_malformed_account_specs(bad: str) -> None:
    with pytest.raises(InvalidInput):
        parse_account_spec(bad)


def _help_of(param: str) -> str:
    """The --help text of one risk option, unwrapped."""
    from jtrades.cli.risk_options import _PARAMS

    return " ".join(str(_PARAMS[param].__metadata__[0].help).split())


def test_auto_flat_after_says_what_it_does_entries_stop_closes_pass_nothing_is_flattened() -> None:
    text = _help_of("auto_flat_after").lower()
    assert not text.startswith("flatten")  # nothing liquidates at the cutoff
    assert "no new entries" in text
    assert "closes still pass" in text
    assert "not flattened" in text


@pytest.mark.parametrize(
    "param", ["window", "cooldown", "max_signals", "every_nth", "auto_flat_after"]
)
def test_recorder_filters_say_a_trader_can_only_tighten_them(param: str) -> None:
    # The recorder's filters run first (DESIGN §2): a trader's value cannot loosen them.
    assert "only tighten" in _help_of(param)


def test_direction_says_what_a_trader_can_and_cannot_change() -> None:
    # Not "only tighten": a trader with its own direction (or --inverse) reads the signal its
    # own way, and the recorder's other entry filters still judge that entry.
    text = _help_of("direction")
    assert "only tighten" not in text
    assert "its own direction" in text
    assert "other entry filters" in text


@pytest.mark.parametrize("param", ["max_daily_loss", "max_contracts"])
def test_trader_limits_say_a_traders_value_replaces_the_recorders(param: str) -> None:
    assert "replaces the recorder's" in _help_of(param)


def test_window_and_cutoff_say_whose_clock() -> None:
    for param in ("window", "auto_flat_after"):
        assert "owner's time zone" in _help_of(param)
