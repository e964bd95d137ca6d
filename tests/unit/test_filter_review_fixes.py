"""Filter reasons a review found wrong: a cooldown refusing with "0s left", and a daily-loss
refusal that could not say its open P&L was unknown because a sub-account's positions could
not be read (it blamed a missing price, or, before that, counted the account as flat)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from jtrades.engine.filters import RecorderState, TraderState, check_recorder, check_trader
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Action, Signal

D = Decimal
CHI = ZoneInfo("America/Chicago")
NOW = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)  # Tuesday 09:00 Chicago
BUY = Signal(Action.BUY, price=D("21500"))
FLAGS = {"enabled": True, "owner_active": True, "halted": False}


def _cooldown_reason(elapsed_s: float, cooldown_s: int = 60) -> str:
    state = RecorderState(1, 1, NOW - timedelta(seconds=elapsed_s), 1)
    rej = check_recorder(BUY, RiskSettings(cooldown_s=cooldown_s), state, NOW, CHI, **FLAGS)
    assert rej is not None
    assert rej.filter == "cooldown"
    return rej.reason


def test_a_cooldown_refusing_never_says_0s_left() -> None:
    """59.6 s into a 60 s cooldown the entry was refused with "0s left" (rounded down)."""
    assert "0s left" not in _cooldown_reason(59.6)
    assert "1s left" in _cooldown_reason(59.6)
    assert "1s left" in _cooldown_reason(59.999)


def test_a_cooldown_counts_a_started_second_as_left() -> None:
    assert "60s left" in _cooldown_reason(0.2)
    assert "30s left" in _cooldown_reason(30)
    assert "31s left" in _cooldown_reason(29.5)


def _trd(state: TraderState) -> str:
    s = RiskSettings(max_daily_loss=D(500))
    rej = check_trader(BUY, s, state, NOW, CHI, **FLAGS)
    assert rej is not None
    assert rej.filter == "max_daily_loss"
    return rej.reason


def test_an_open_pnl_unknown_for_an_unreadable_account_says_so() -> None:
    """A sub-account whose positions cannot be read makes the open P&L unknown: the refusal
    names that, not a missing price (the fix for the alert would be another one)."""
    why = "the positions of sub-account APEX-2 cannot be read (not synced)"
    reason = _trd(TraderState(D(-100), None, None, 0, open_pnl_unknown=why))
    assert reason.startswith("open P&L unknown: the positions of sub-account APEX-2")
    assert "no price" not in reason
    # money as the tables show it: the reasons said 66.500 (a sum of fills) and 500
    assert "(realized today -100.00 USD, max daily loss 500.00 USD)" in reason
    reason = _trd(TraderState(D("-66.500"), None, None, 0, open_pnl_unknown=why))
    assert "realized today -66.50 USD" in reason


def test_an_open_pnl_unknown_with_no_reason_given_blames_the_missing_price() -> None:
    assert "open P&L unknown: no price in the alert" in _trd(TraderState(D(0), None, None, 0))
