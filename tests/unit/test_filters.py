"""Signal filters: each one allowing and blocking, their order, and what closes skip."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.engine.filters import (
    RecorderState,
    Rejection,
    TraderState,
    apply_inverse,
    check_recorder,
    check_trader,
    is_entry,
    is_exit,
    ordinal,
    other_instrument,
)
from jtrades.engine.risk import Direction, RiskSettings, Window
from jtrades.engine.signal import Action, MarketPosition, Signal

D = Decimal
CHI = ZoneInfo("America/Chicago")
NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 09:00 Chicago
FRESH = RecorderState(0, 0, None, 0)
CLEAN = TraderState(D(0), D(0), None, 0)

BUY = Signal(Action.BUY, price=D("21500"))
SELL = Signal(Action.SELL, price=D("21500"))
CLOSE = Signal(Action.CLOSE)
FLAT_TARGET = Signal(Action.SELL, market_position=MarketPosition.FLAT)
REDUCE = Signal(Action.SELL, quantity=1, market_position=MarketPosition.LONG)
CANCEL = Signal(Action.CANCEL)


def rec(
    signal: Signal,
    s: RiskSettings | None = None,
    st_: RecorderState = FRESH,
    now: datetime = NOW,
    tz: ZoneInfo = CHI,
    **kw: bool,
) -> Rejection | None:
    flags = {"enabled": True, "owner_active": True, "halted": False} | kw
    return check_recorder(signal, s or RiskSettings(), st_, now, tz, **flags)


def trd(
    signal: Signal,
    s: RiskSettings | None = None,
    st_: TraderState = CLEAN,
    now: datetime = NOW,
    tz: ZoneInfo = CHI,
    overridden: frozenset[str] | None = None,
    **kw: bool,
) -> Rejection | None:
    flags = {"enabled": True, "owner_active": True, "halted": False} | kw
    return check_trader(signal, s or RiskSettings(), st_, now, tz, overridden=overridden, **flags)


def name(r: Rejection | None) -> str | None:
    return r.filter if r is not None else None


def test_defaults_accept_everything() -> None:
    for sig in (BUY, SELL, CLOSE, FLAT_TARGET, REDUCE, CANCEL):
        assert rec(sig) is None
        assert trd(sig) is None


@pytest.mark.parametrize("sig", [BUY, CLOSE, FLAT_TARGET, REDUCE, CANCEL])
def test_disabled_and_unapproved_reject_even_closes(sig: Signal) -> None:
    assert name(rec(sig, enabled=False)) == "recording_disabled"
    assert name(trd(sig, enabled=False)) == "trader_disabled"
    assert name(rec(sig, owner_active=False)) == "owner_not_approved"
    assert name(trd(sig, owner_active=False)) == "owner_not_approved"


def test_halt_blocks_everything_but_exits() -> None:
    assert name(rec(BUY, halted=True)) == "halted"
    assert name(trd(SELL, halted=True)) == "halted"
    assert name(rec(CANCEL, halted=True)) == "halted"  # cancelling a stop adds risk
    for sig in (CLOSE, FLAT_TARGET, REDUCE):
        assert rec(sig, halted=True) is None
        assert trd(sig, halted=True) is None


def test_a_side_the_direction_forbids_meets_no_entry_filter_and_is_no_entry() -> None:
    """Short-only: a buy out of a short can only close it (the planner opens nothing on the
    long side), so the cooldown, max signals and every-Nth neither refuse nor count it; a buy
    from flat is refused by the direction alone; a sell is an entry like any other."""
    strict = RiskSettings(direction=Direction.SHORT, cooldown_s=3600, max_signals=1, every_nth=5)
    busy = RecorderState(10, 10, NOW - timedelta(seconds=1), 3)
    broke = TraderState(D(0), D(0), NOW - timedelta(seconds=1), 10, 3)
    out_of_short = dataclasses.replace(BUY, prev_market_position=MarketPosition.SHORT)
    from_flat = dataclasses.replace(BUY, prev_market_position=MarketPosition.FLAT)
    for sig in (out_of_short, BUY):
        assert rec(sig, strict, busy) is None
        assert trd(sig, strict, broke) is None
        assert not is_entry(sig, strict)
    assert name(rec(from_flat, strict, busy)) == "direction"
    assert name(trd(from_flat, strict, broke)) == "direction"
    assert name(rec(SELL, strict, busy)) == "cooldown"
    assert is_entry(SELL, strict)
    # inverse reads the buy as a sell: an entry on the allowed side
    assert is_entry(out_of_short, dataclasses.replace(strict, inverse=True))


def test_gate_order_disabled_before_owner_before_halt() -> None:
    assert name(rec(BUY, enabled=False, owner_active=False, halted=True)) == "recording_disabled"
    assert name(rec(BUY, owner_active=False, halted=True)) == "owner_not_approved"


def test_exits_skip_every_entry_filter() -> None:
    strict = RiskSettings(
        direction=Direction.SHORT,
        windows=(Window(time(3), time(4)),),
        cooldown_s=3600,
        max_signals=1,
        every_nth=5,
        max_daily_loss=D(100),
        auto_flat_after=time(8),
    )
    busy = RecorderState(10, 10, NOW - timedelta(seconds=1), 3)
    broke = TraderState(D(-1000), D(0), NOW - timedelta(seconds=1), 10, 3)
    assert name(rec(SELL, strict, busy)) is not None
    for sig in (CLOSE, FLAT_TARGET, REDUCE, CANCEL):
        assert rec(sig, strict, busy) is None
        assert trd(sig, strict, broke) is None


def test_is_exit() -> None:
    assert is_exit(CLOSE)
    assert is_exit(FLAT_TARGET)
    assert is_exit(REDUCE)
    assert is_exit(Signal(Action.BUY, market_position=MarketPosition.SHORT))
    assert not is_exit(Signal(Action.BUY, market_position=MarketPosition.LONG))
    assert not is_exit(BUY)
    assert not is_exit(CANCEL)


# --- direction and inverse ------------------------------------------------------------------

LONG_ONLY = RiskSettings(direction=Direction.LONG)
SHORT_ENTRY = Signal(
    Action.SELL, market_position=MarketPosition.SHORT, prev_market_position=MarketPosition.FLAT
)
REVERSAL_TO_SHORT = Signal(
    Action.SELL, market_position=MarketPosition.SHORT, prev_market_position=MarketPosition.LONG
)


def test_direction_rejects_a_pure_entry_on_the_forbidden_side() -> None:
    r = rec(SHORT_ENTRY, LONG_ONLY)
    assert name(r) == "direction"
    assert r is not None
    assert "short" in r.reason
    assert name(trd(SHORT_ENTRY, LONG_ONLY)) == "direction"
    pyramid = dataclasses.replace(SHORT_ENTRY, prev_market_position=MarketPosition.SHORT)
    assert name(rec(pyramid, LONG_ONLY)) == "direction"


def test_direction_passes_a_reversal_and_an_unknown_so_the_planner_can_close() -> None:
    assert rec(REVERSAL_TO_SHORT, LONG_ONLY) is None
    assert rec(SELL, LONG_ONLY) is None  # no position information: planned per account


def test_direction_allows_the_allowed_side() -> None:
    buy_entry = Signal(Action.BUY, prev_market_position=MarketPosition.FLAT)
    assert rec(buy_entry, LONG_ONLY) is None
    assert rec(SHORT_ENTRY, RiskSettings(direction=Direction.SHORT)) is None
    assert name(rec(buy_entry, RiskSettings(direction=Direction.SHORT))) == "direction"


def test_inverse_applies_before_direction() -> None:
    inv = RiskSettings(direction=Direction.LONG, inverse=True)
    assert rec(SHORT_ENTRY, inv) is None  # a sell read inversely is a long entry
    buy_entry = Signal(
        Action.BUY, market_position=MarketPosition.LONG, prev_market_position=MarketPosition.FLAT
    )
    assert name(rec(buy_entry, inv)) == "direction"
    assert name(trd(buy_entry, inv)) == "direction"


def test_apply_inverse() -> None:
    sig = Signal(
        Action.BUY, market_position=MarketPosition.LONG, prev_market_position=MarketPosition.FLAT
    )
    inv = apply_inverse(sig, True)
    assert (inv.action, inv.market_position, inv.prev_market_position) == (
        Action.SELL,
        MarketPosition.SHORT,
        MarketPosition.FLAT,
    )
    assert apply_inverse(sig, False) is sig
    assert apply_inverse(CLOSE, True).action is Action.CLOSE
    assert apply_inverse(FLAT_TARGET, True).is_close


# --- windows and auto-flat ------------------------------------------------------------------


def test_windows_in_the_users_zone() -> None:
    rth = RiskSettings(windows=(Window(time(9, 30), time(16)),))
    assert rec(BUY, rth, now=datetime(2026, 11, 24, 14, 30, tzinfo=UTC), tz=NY) is None
    r = rec(BUY, rth, now=datetime(2026, 11, 24, 14, 29, tzinfo=UTC), tz=NY)
    assert name(r) == "window"
    assert r is not None
    assert "09:29 America/New_York" in r.reason
    # The same instant is 08:30 in Chicago: outside a Chicago 09:30 window.
    assert name(rec(BUY, rth, now=datetime(2026, 11, 24, 14, 30, tzinfo=UTC), tz=CHI)) == "window"


def test_either_of_two_windows_admits() -> None:
    two = RiskSettings(windows=(Window(time(8), time(10)), Window(time(22), time(2))))
    at = [(time(9), True), (time(12), False), (time(23), True), (time(1), True), (time(3), False)]
    for t, ok in at:
        now = datetime(2026, 11, 24, t.hour, tzinfo=CHI)
        assert (rec(BUY, two, now=now) is None) is ok, t
        assert (trd(BUY, two, now=now) is None) is ok, t


@pytest.mark.parametrize(
    ("local", "blocked"),
    [
        (datetime(2026, 11, 24, 14, 59, tzinfo=CHI), False),
        (datetime(2026, 11, 24, 15, 0, tzinfo=CHI), True),
        (datetime(2026, 11, 24, 16, 59, tzinfo=CHI), True),
        (datetime(2026, 11, 24, 17, 0, tzinfo=CHI), False),  # the next trading day opened
        (datetime(2026, 11, 25, 2, 0, tzinfo=CHI), False),
        (datetime(2026, 11, 29, 18, 0, tzinfo=CHI), False),  # Sunday's open
        (datetime(2026, 11, 28, 12, 0, tzinfo=CHI), False),  # Saturday: before any cutoff
        (datetime(2026, 11, 27, 15, 30, tzinfo=CHI), True),  # Friday afternoon
    ],
)
def test_auto_flat_blocks_entries_until_the_next_day(local: datetime, blocked: bool) -> None:
    s = RiskSettings(auto_flat_after=time(15))
    assert (name(rec(BUY, s, now=local)) == "auto_flat") is blocked
    assert (name(trd(BUY, s, now=local)) == "auto_flat") is blocked
    assert rec(CLOSE, s, now=local) is None


def test_auto_flat_in_new_york_time() -> None:
    s = RiskSettings(auto_flat_after=time(15, 55))
    assert rec(BUY, s, now=datetime(2026, 11, 24, 15, 54, tzinfo=NY), tz=NY) is None
    assert name(rec(BUY, s, now=datetime(2026, 11, 24, 15, 55, tzinfo=NY), tz=NY)) == "auto_flat"


def test_an_evening_auto_flat_fires_the_evening_the_day_opens() -> None:
    s = RiskSettings(auto_flat_after=time(20))
    assert rec(BUY, s, now=datetime(2026, 11, 24, 19, 0, tzinfo=CHI)) is None
    assert name(rec(BUY, s, now=datetime(2026, 11, 24, 21, 0, tzinfo=CHI))) == "auto_flat"
    assert name(rec(BUY, s, now=datetime(2026, 11, 25, 10, 0, tzinfo=CHI))) == "auto_flat"


@pytest.mark.parametrize(
    ("cutoff", "now", "tz"),
    [
        # 18:00 New York is 17:00 Chicago: the open itself
        (time(18), datetime(2026, 11, 25, 10, 0, tzinfo=NY), NY),
        (time(18), datetime(2026, 11, 24, 18, 0, tzinfo=NY), NY),
        # the US on summer time, the UK not yet: 22:00 London is the open on 2026-03-17
        (time(22), datetime(2026, 3, 17, 14, 0, tzinfo=LONDON), LONDON),
    ],
)
def test_a_cutoff_at_the_open_blocks_nothing(cutoff: time, now: datetime, tz: ZoneInfo) -> None:
    """ "From the cutoff until the next day opens" is empty when the cutoff is the open: taken
    as the open itself ("at or after" it), it blocked the whole trading day. A minute earlier
    it is the end of the previous day's session, which is over by ``now``."""
    assert rec(BUY, RiskSettings(auto_flat_after=cutoff), now=now, tz=tz) is None
    before = time(cutoff.hour - 1, 59)
    assert rec(BUY, RiskSettings(auto_flat_after=before), now=now, tz=tz) is None


# --- counters -------------------------------------------------------------------------------


def test_cooldown() -> None:
    s = RiskSettings(cooldown_s=60)
    assert rec(BUY, s, RecorderState(1, 1, NOW - timedelta(seconds=60), 1)) is None
    r = rec(BUY, s, RecorderState(1, 1, NOW - timedelta(seconds=45), 1))
    assert name(r) == "cooldown"
    assert r is not None
    assert "15s left" in r.reason
    assert name(trd(BUY, s, TraderState(D(0), D(0), NOW - timedelta(seconds=1), 1))) == "cooldown"
    assert rec(BUY, RiskSettings(), RecorderState(1, 1, NOW, 1)) is None


def test_max_signals_counts_accepted_entries() -> None:
    s = RiskSettings(max_signals=3)
    assert rec(BUY, s, RecorderState(50, 2, None, 2)) is None  # all signals don't count
    assert name(rec(BUY, s, RecorderState(3, 3, None, 3))) == "max_signals"
    assert name(trd(BUY, s, TraderState(D(0), D(0), None, 3))) == "max_signals"


def test_every_nth_takes_the_nth_2nth() -> None:
    s = RiskSettings(every_nth=3)
    taken = [seen + 1 for seen in range(9) if rec(BUY, s, RecorderState(0, 0, None, seen)) is None]
    assert taken == [3, 6, 9]
    t = TraderState(D(0), D(0), None, 0, seen_this_session=5)
    assert trd(BUY, s, t) is None
    assert name(trd(BUY, s, dataclasses.replace(t, seen_this_session=4))) == "every_nth"


def test_max_daily_loss_counts_realized_and_open() -> None:
    s = RiskSettings(max_daily_loss=D(500))
    assert trd(BUY, s, TraderState(D(-300), D("-199.99"), None, 0)) is None
    r = trd(BUY, s, TraderState(D(-300), D(-200), None, 0))  # exactly -500: stop
    assert name(r) == "max_daily_loss"
    assert r is not None
    assert "-500" in r.reason
    assert name(trd(BUY, s, TraderState(D(-600), D(200), None, 0))) is None
    assert trd(CLOSE, s, TraderState(D(-9000), D(0), None, 0)) is None
    assert rec(BUY, s) is None  # the recorder has no money of its own


# every filter set, and a trader state and a long entry that each of them refuses
EVERY_FILTER = RiskSettings(
    windows=(Window(time(3), time(4)),),
    auto_flat_after=time(8),
    cooldown_s=60,
    max_signals=1,
    every_nth=2,
    max_daily_loss=D(1),
    direction=Direction.SHORT,
)
REFUSED_STATE = TraderState(D(-5), D(0), NOW, 1, 0)
LONG_ENTRY = Signal(Action.BUY, prev_market_position=MarketPosition.FLAT)


def test_order_of_the_chain() -> None:
    entry, state = LONG_ENTRY, REFUSED_STATE
    expected = ["direction", "window", "auto_flat", "cooldown", "max_signals", "max_daily_loss"]
    s = EVERY_FILTER
    for filt in expected:
        assert name(trd(entry, s, state)) == filt
        s = dataclasses.replace(
            s,
            **{
                "direction": {"direction": Direction.BOTH},
                "window": {"windows": ()},
                "auto_flat": {"auto_flat_after": None},
                "cooldown": {"cooldown_s": 0},
                "max_signals": {"max_signals": None},
                "max_daily_loss": {"max_daily_loss": None},
            }[filt],
        )
    assert name(trd(entry, s, state)) == "every_nth"


def test_trader_counting_filters_only_run_when_overridden() -> None:
    s = RiskSettings(every_nth=2, cooldown_s=60, max_signals=1)
    st_ = TraderState(D(0), D(0), NOW, 5, 0)
    assert trd(BUY, s, st_, overridden=frozenset()) is None  # the recorder applied them
    assert name(trd(BUY, s, st_, overridden=frozenset({"every_nth"}))) == "every_nth"
    assert name(trd(BUY, s, st_, overridden=frozenset({"max_signals"}))) == "max_signals"
    assert name(trd(BUY, s, st_, overridden=None)) == "cooldown"
    loss = dataclasses.replace(s, max_daily_loss=D(1))
    broke = dataclasses.replace(st_, realized_pnl_today=D(-1))
    assert name(trd(BUY, loss, broke, overridden=frozenset())) == "max_daily_loss"


@given(
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=1, max_value=60),
)
def test_every_nth_accepts_one_in_n(n: int, runs: int) -> None:
    s = RiskSettings(every_nth=n)
    accepted = sum(rec(BUY, s, RecorderState(0, 0, None, k)) is None for k in range(n * runs))
    assert accepted == runs


settings_st = st.builds(
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
    max_daily_loss=st.one_of(st.none(), st.integers(1, 1000).map(D)),
    auto_flat_after=st.one_of(st.none(), st.times()),
    inverse=st.booleans(),
)
any_now = st.datetimes(
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 1, 1), timezones=st.just(UTC)
)


@given(
    settings_st,
    any_now,
    st.sampled_from([CLOSE, FLAT_TARGET, REDUCE]),
    st.integers(0, 20),
    st.integers(-5000, 0).map(D),
    st.booleans(),
)
def test_exits_pass_whatever_the_entry_settings_and_counters(
    s: RiskSettings, now: datetime, sig: Signal, n: int, pnl: Decimal, halted: bool
) -> None:
    recent = now - timedelta(seconds=1)
    assert rec(sig, s, RecorderState(n, n, recent, n), now=now, tz=NY, halted=halted) is None
    t = TraderState(pnl, pnl, recent, n, n)
    assert trd(sig, s, t, now=now, tz=NY, halted=halted) is None


@given(settings_st, any_now, st.sampled_from([BUY, SELL, SHORT_ENTRY]), st.integers(0, 20))
def test_entries_are_rejected_by_a_named_filter_or_accepted(
    s: RiskSettings, now: datetime, sig: Signal, n: int
) -> None:
    r = rec(sig, s, RecorderState(n, n, now - timedelta(seconds=n), n), now=now, tz=LONDON)
    known = {"direction", "window", "auto_flat", "cooldown", "max_signals", "every_nth"}
    assert r is None or (r.filter in known and r.reason)
    # every one of them refuses only the entry: the planner still closes an opposite position
    assert r is None or r.entry_only
    halt = rec(sig, s, FRESH, now=now, tz=LONDON, halted=True)
    assert name(halt) == "halted"
    assert halt is not None
    assert halt.entry_only


def test_what_a_refusal_leaves_the_planner_to_close() -> None:
    """A refused buy/sell may still be a reversal's close half (DESIGN: closes are never blocked
    by entry filters; the kill switch blocks everything but closes). A disabled recorder or an
    unapproved owner trades nothing at all, and a refused cancel or add has no close in it."""
    every = EVERY_FILTER
    trader_refusal = trd(LONG_ENTRY, every, REFUSED_STATE)
    assert trader_refusal is not None
    assert trader_refusal.entry_only
    assert trader_refusal.filter == "direction"
    for r in (rec(BUY, halted=True), trd(SELL, halted=True)):
        assert r is not None
        assert r.entry_only
    for r in (
        rec(BUY, enabled=False),
        trd(SELL, enabled=False),
        rec(BUY, owner_active=False),
        trd(BUY, owner_active=False),
        rec(CANCEL, halted=True),
        rec(Signal(Action.ADD), halted=True),
        rec(Signal(Action.ADD), every),
    ):
        assert r is not None
        assert not r.entry_only, r


# --- inherited settings vs a trader's own, across time zones -------------------------------------
# DESIGN §2: recorder-level filters run once per signal (in the recorder owner's zone); a
# trader's own overrides run per trader (in the trader owner's zone). An inherited setting must
# not be applied again in the follower's zone: that trades only the overlap of two wall clocks.

LA = ZoneInfo("America/Los_Angeles")
RTH = RiskSettings(windows=(Window(time(9, 30), time(16)),))
TEN_NY = datetime(2026, 11, 24, 10, 0, tzinfo=NY)  # 07:00 in Los Angeles
NONE_OWN: frozenset[str] = frozenset()


def test_an_inherited_window_is_decided_once_in_the_recorder_owners_zone() -> None:
    assert rec(BUY, RTH, now=TEN_NY, tz=NY) is None
    # A follower in Los Angeles inherits the window: the recorder's check already applied it.
    assert trd(BUY, RTH, now=TEN_NY, tz=LA, overridden=NONE_OWN) is None
    # ... and it does not trade outside it either: the recorder's check says no, once.
    assert name(rec(BUY, RTH, now=datetime(2026, 11, 24, 16, 30, tzinfo=NY), tz=NY)) == "window"


def test_a_traders_own_window_is_read_in_the_trader_owners_zone() -> None:
    r = trd(BUY, RTH, now=TEN_NY, tz=LA, overridden=frozenset({"windows"}))
    assert name(r) == "window"
    assert r is not None
    assert "07:00 America/Los_Angeles" in r.reason
    nine_45_la = datetime(2026, 11, 24, 9, 45, tzinfo=LA)
    assert trd(BUY, RTH, now=nine_45_la, tz=LA, overridden=frozenset({"windows"})) is None


def test_an_inherited_auto_flat_cutoff_is_the_recorders_in_its_owners_zone() -> None:
    # Set by an owner in Los Angeles: 13:00 there is 16:00 in New York.
    s = RiskSettings(auto_flat_after=time(13))
    two_pm_ny = datetime(2026, 11, 24, 14, 0, tzinfo=NY)
    assert rec(BUY, s, now=two_pm_ny, tz=LA) is None
    assert trd(BUY, s, now=two_pm_ny, tz=NY, overridden=NONE_OWN) is None
    assert name(rec(BUY, s, now=datetime(2026, 11, 24, 16, 0, tzinfo=NY), tz=LA)) == "auto_flat"
    # A trader's own cutoff is its owner's wall clock.
    r = trd(BUY, s, now=two_pm_ny, tz=NY, overridden=frozenset({"auto_flat_after"}))
    assert name(r) == "auto_flat"
    assert r is not None
    assert "13:00 America/New_York" in r.reason


def test_an_inherited_direction_is_not_checked_again_but_an_own_reading_is() -> None:
    buy_entry = Signal(Action.BUY, prev_market_position=MarketPosition.FLAT)
    # Inherited direction, same reading of the signal: the recorder's answer stands.
    assert trd(SHORT_ENTRY, LONG_ONLY, overridden=NONE_OWN) is None
    assert name(trd(SHORT_ENTRY, LONG_ONLY, overridden=frozenset({"direction"}))) == "direction"
    # An own --inverse reads the signal the other way; the effective direction applies to that
    # reading (as the planner's does), so a long-only recorder's inverse follower opens no short.
    inv = dataclasses.replace(LONG_ONLY, inverse=True)
    assert name(trd(buy_entry, inv, overridden=frozenset({"inverse"}))) == "direction"


def test_max_daily_loss_is_the_traders_even_inherited() -> None:
    s = RiskSettings(max_daily_loss=D(100))
    broke = TraderState(D(-100), D(0), None, 0)
    assert rec(BUY, s) is None  # the recorder has no money: nothing was applied yet
    assert name(trd(BUY, s, broke, tz=LA, overridden=NONE_OWN)) == "max_daily_loss"


_FILTER_FIELDS = (
    "direction",
    "windows",
    "auto_flat_after",
    "cooldown_s",
    "max_signals",
    "every_nth",
)
# the rejection names a trader may give, by the fields that let it give them
_OWNED_BY = {
    "direction": {"direction", "inverse"},
    "window": {"windows"},
    "auto_flat": {"auto_flat_after"},
    "cooldown": {"cooldown_s"},
    "max_signals": {"max_signals"},
    "every_nth": {"every_nth"},
}
minute_window = (
    st.tuples(st.integers(0, 1439), st.integers(0, 1439))
    .filter(lambda ab: ab[0] != ab[1])
    .map(lambda ab: Window(time(*divmod(ab[0], 60)), time(*divmod(ab[1], 60))))
)
zones = st.sampled_from(
    [
        "UTC",
        "America/Chicago",
        "America/New_York",
        "America/Los_Angeles",
        "America/St_Johns",
        "America/Sao_Paulo",
        "Europe/London",
        "Europe/Berlin",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Asia/Tokyo",
        "Australia/Adelaide",
        "Pacific/Auckland",
        "Pacific/Kiritimati",
        "Pacific/Pago_Pago",
    ]
).map(ZoneInfo)
filter_settings = st.builds(
    RiskSettings,
    direction=st.sampled_from(list(Direction)),
    windows=st.lists(minute_window, max_size=2).map(tuple),
    cooldown_s=st.integers(0, 10_000),
    max_signals=st.one_of(st.none(), st.integers(1, 5)),
    every_nth=st.integers(1, 5),
    auto_flat_after=st.one_of(
        st.none(), st.times().map(lambda t: t.replace(second=0, microsecond=0))
    ),
    inverse=st.booleans(),
)
entry_signals = st.sampled_from(
    [
        BUY,
        SELL,
        SHORT_ENTRY,
        REVERSAL_TO_SHORT,
        Signal(Action.BUY, prev_market_position=MarketPosition.FLAT),
        Signal(Action.BUY, market_position=MarketPosition.LONG),
    ]
)
trader_states = st.builds(
    TraderState,
    realized_pnl_today=st.just(D(0)),
    open_pnl=st.just(D(0)),
    last_entry_at=st.none(),  # set relative to ``now`` in the tests
    entries_this_session=st.integers(0, 20),
    seen_this_session=st.integers(0, 20),
)


@given(filter_settings, any_now, zones, zones, entry_signals, trader_states, st.integers(0, 9999))
def test_an_inherited_setting_never_makes_the_trader_stricter_than_the_recorder(
    s: RiskSettings,
    now: datetime,
    rec_tz: ZoneInfo,
    trader_tz: ZoneInfo,
    sig: Signal,
    t: TraderState,
    ago: int,
) -> None:
    """Whatever the zones, a trader that overrides nothing takes every signal its recorder took."""
    t = dataclasses.replace(t, last_entry_at=now - timedelta(seconds=ago))
    n = t.entries_this_session
    if rec(sig, s, RecorderState(n, n, None, 0), now=now, tz=rec_tz) is None:
        assert trd(sig, s, t, now=now, tz=trader_tz, overridden=NONE_OWN) is None


@given(
    filter_settings,
    filter_settings,
    st.sets(st.sampled_from((*_FILTER_FIELDS, "inverse"))),
    any_now,
    zones,
    entry_signals,
    trader_states,
    st.integers(0, 9999),
)
def test_a_trader_is_only_ever_rejected_by_a_filter_it_sets_itself(
    base: RiskSettings,
    mine: RiskSettings,
    own: set[str],
    now: datetime,
    trader_tz: ZoneInfo,
    sig: Signal,
    t: TraderState,
    ago: int,
) -> None:
    eff = dataclasses.replace(base, **{f: getattr(mine, f) for f in own})
    t = dataclasses.replace(t, last_entry_at=now - timedelta(seconds=ago))
    r = trd(sig, eff, t, now=now, tz=trader_tz, overridden=frozenset(own))
    assert r is None or _OWNED_BY[r.filter] & own, (r, own)


@given(st.lists(minute_window, min_size=1, max_size=2).map(tuple), any_now, zones, zones)
def test_a_traders_own_window_means_its_owners_wall_clock(
    windows: tuple[Window, ...], now: datetime, rec_tz: ZoneInfo, trader_tz: ZoneInfo
) -> None:
    s = RiskSettings(windows=windows)
    own = trd(BUY, s, now=now, tz=trader_tz, overridden=frozenset({"windows"}))
    # the same rule set by a recorder owner living in the trader owner's zone
    assert name(own) == name(rec(BUY, s, now=now, tz=trader_tz))
    assert trd(BUY, s, now=now, tz=trader_tz, overridden=NONE_OWN) is None


@given(st.times().map(lambda t: t.replace(second=0, microsecond=0)), any_now, zones)
def test_a_traders_own_cutoff_means_its_owners_wall_clock(
    cutoff: time, now: datetime, trader_tz: ZoneInfo
) -> None:
    s = RiskSettings(auto_flat_after=cutoff)
    own = trd(BUY, s, now=now, tz=trader_tz, overridden=frozenset({"auto_flat_after"}))
    assert name(own) == name(rec(BUY, s, now=now, tz=trader_tz))
    assert trd(BUY, s, now=now, tz=trader_tz, overridden=NONE_OWN) is None


@pytest.mark.parametrize(
    ("ticker", "symbol"),
    [(None, "MNQ1!"), ("", "MNQ1!"), ("MNQ1!", "MNQ1!"), ("CME_MINI:MNQ1!", "MNQ1!"),
     ("MNQZ6", "MNQ1!"), ("mnq1!", "MNQ1!"), ("GC1!", "GCZ6"),
     ("MBT", "MBT"), ("MBT1!", "MBT"), ("mbt", "MBT"), ("MBTZ6", "MBT1!"), ("M6E", "M6E")],
)  # fmt: skip
def test_an_alert_for_the_recorders_own_root_is_its_own(ticker: str | None, symbol: str) -> None:
    assert other_instrument(ticker, symbol) is None


@pytest.mark.parametrize(
    ("ticker", "symbol"),
    [
        ("NQ1!", "MNQ1!"),
        ("MNQ1!", "NQ1!"),
        ("MGC1!", "GC1!"),
        ("GCZ6", "MGCZ6"),
        ("ES1!", "MNQ1!"),
        ("NQ1!", "MBT"),
        ("MBT1!", "BTC1!"),
    ],
)
def test_an_alert_for_another_root_is_refused(ticker: str, symbol: str) -> None:
    rej = other_instrument(ticker, symbol)
    assert rej is not None
    assert rej.filter == "symbol"
    assert ticker in rej.reason
    assert symbol in rej.reason


@pytest.mark.parametrize(
    ("n", "said"),
    [
        *[(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"), (11, "11th"), (12, "12th")],
        *[(13, "13th"), (21, "21st"), (22, "22nd"), (23, "23rd"), (101, "101st")],
        *[(111, "111th"), (112, "112th")],
    ],
)
def test_every_nth_refusal_reads_as_english(n: int, said: str) -> None:
    assert ordinal(n) == said
