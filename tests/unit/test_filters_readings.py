"""The recorder's entry filters for a reading of the signal that is not the recorder's own (a
trader's own ``--direction`` or ``--inverse``), the daily loss without a price, and the
auto-flat cutoff's day."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from jtrades.engine.filters import (
    RecorderState,
    Rejection,
    TraderState,
    _check_auto_flat,
    check_entry,
    check_recorder,
    check_trader,
    forbidden_side,
    reads_own_way,
)
from jtrades.engine.risk import Direction, RiskSettings, Window
from jtrades.engine.signal import Action, MarketPosition, Signal
from jtrades.engine.tradingday import trading_day

D = Decimal
CHI = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 09:00 Chicago
FRESH = RecorderState(0, 0, None, 0)
LONG_ONLY = RiskSettings(direction=Direction.LONG)
SELL = Signal(Action.SELL, price=D("21500"))
SELL_FROM_FLAT = dataclasses.replace(SELL, prev_market_position=MarketPosition.FLAT)


def _rec(sig: Signal, s: RiskSettings, state: RecorderState = FRESH) -> str | None:
    r = check_recorder(sig, s, state, NOW, CHI, enabled=True, owner_active=True, halted=False)
    return r.filter if r is not None else None


def test_a_forbidden_side_is_one_the_reading_cannot_open() -> None:
    assert forbidden_side(SELL, LONG_ONLY)
    assert forbidden_side(SELL_FROM_FLAT, LONG_ONLY)
    assert not forbidden_side(SELL, dataclasses.replace(LONG_ONLY, inverse=True))
    assert not forbidden_side(Signal(Action.BUY), LONG_ONLY)
    for exit_or_cancel in (
        Signal(Action.CLOSE),
        Signal(Action.SELL, market_position=MarketPosition.LONG),
        Signal(Action.CANCEL),
    ):
        assert not forbidden_side(exit_or_cancel, LONG_ONLY)
    assert not forbidden_side(Signal(Action.ADD), LONG_ONLY)  # follows the held side


def test_a_trader_reads_its_own_way_with_its_own_direction_or_inverse() -> None:
    assert reads_own_way(frozenset({"direction"}))
    assert reads_own_way(frozenset({"inverse", "size"}))
    assert not reads_own_way(frozenset({"windows", "cooldown_s", "max_signals"}))
    assert not reads_own_way(frozenset())


def test_the_entry_filters_of_a_side_the_recorder_forbids() -> None:
    """What the recorder's window, cutoff, cooldown, max signals and every-Nth say of an entry
    a trader reads from a sell the long-only recorder cannot open: the recorder's own chain
    never ran them (it stops at the direction), so they are asked on their own."""
    closed = dataclasses.replace(LONG_ONLY, windows=(Window(time(3), time(4)),))
    assert _rec(SELL, closed) is None  # no entry for the recorder: no window either
    r = check_entry(SELL, closed, FRESH, NOW, CHI)
    assert r is not None
    assert (r.filter, r.entry_only) == ("window", True)
    busy = RecorderState(3, 1, NOW - timedelta(seconds=10), 1)
    chain = dataclasses.replace(LONG_ONLY, cooldown_s=60, max_signals=1, every_nth=3)
    assert [
        getattr(check_entry(SELL, s, busy, NOW, CHI), "filter", None)
        for s in (
            chain,
            dataclasses.replace(chain, cooldown_s=0),
            dataclasses.replace(chain, cooldown_s=0, max_signals=None),
            dataclasses.replace(chain, cooldown_s=0, max_signals=None, every_nth=2),
        )
    ] == ["cooldown", "max_signals", "every_nth", None]


_settings = st.builds(
    RiskSettings,
    direction=st.sampled_from(list(Direction)),
    windows=st.lists(
        st.tuples(st.integers(0, 23), st.integers(0, 23))
        .filter(lambda ab: ab[0] != ab[1])
        .map(lambda ab: Window(time(ab[0]), time(ab[1]))),
        max_size=2,
    ).map(tuple),
    cooldown_s=st.integers(0, 10_000),
    max_signals=st.one_of(st.none(), st.integers(1, 5)),
    every_nth=st.integers(1, 5),
    auto_flat_after=st.one_of(st.none(), st.times()),
    inverse=st.booleans(),
)
_now = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
)
_signals = st.sampled_from(
    [
        Signal(Action.BUY),
        SELL,
        SELL_FROM_FLAT,
        Signal(Action.BUY, prev_market_position=MarketPosition.SHORT),
        Signal(Action.ADD),
    ]
)


@given(_settings, _now, _signals, st.integers(0, 20))
def test_the_recorders_chain_is_its_direction_then_the_entry_filters(
    s: RiskSettings, now: datetime, sig: Signal, n: int
) -> None:
    state = RecorderState(n, n, now - timedelta(seconds=n * 100), n)
    r = check_recorder(sig, s, state, now, CHI, enabled=True, owner_active=True, halted=False)
    if forbidden_side(sig, s):
        assert r is None or r.filter == "direction"
    else:
        assert r == check_entry(sig, s, state, now, CHI)


def _trd(s: RiskSettings, state: TraderState) -> Rejection | None:
    flags = {"enabled": True, "owner_active": True, "halted": False}
    return check_trader(Signal(Action.BUY), s, state, NOW, CHI, **flags)


def test_max_daily_loss_without_a_known_open_pnl_fails_closed() -> None:
    """An open position and no price to mark it at (no price in the alert, none known for the
    contract): the open P&L is unknown and the entry is refused, saying so."""
    s = RiskSettings(max_daily_loss=D(500))
    unknown = TraderState(D(0), None, None, 0)
    r = _trd(s, unknown)
    assert r is not None
    assert (r.filter, r.entry_only) == ("max_daily_loss", True)
    assert "open P&L unknown: no price" in r.reason
    # the realized part alone past the limit says so first
    r = _trd(s, dataclasses.replace(unknown, realized_pnl_today=D(-600)))
    assert r is not None
    assert "reached the max daily loss" in r.reason
    assert _trd(RiskSettings(), unknown) is None  # no limit: nothing to judge


_ZONES = [
    ZoneInfo(z)
    for z in (
        "America/Chicago",
        "America/New_York",
        "Europe/London",
        "Asia/Tokyo",
        "Australia/Sydney",
        "America/Los_Angeles",
        "Australia/Lord_Howe",
        "Asia/Kolkata",
        "Pacific/Auckland",
    )
]
_minutes = st.times().map(lambda t: t.replace(second=0, microsecond=0))


@settings(max_examples=500, deadline=None)
@given(_now, st.sampled_from(_ZONES), _minutes)
def test_an_auto_flat_cutoff_once_reached_holds_until_the_day_ends(
    now: datetime, tz: ZoneInfo, at: time
) -> None:
    s = RiskSettings(auto_flat_after=at)
    if _check_auto_flat(s, now, tz) is not None:
        later = now + timedelta(minutes=30)
        if trading_day(later) == trading_day(now):
            assert _check_auto_flat(s, later, tz) is not None, (now, tz, at)
