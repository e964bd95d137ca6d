"""``counters.ForeignEntry`` for an entry of the recorder's own reading (``forbidden=False``):
a trader reading the recorder its own way is judged again on its own counters for the
recorder's cooldown and max signals, where all its entries count; not for the every-Nth,
whose turn the recorder's chain already took on the recorder's counters (taken twice it is
every N-th of every N-th)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from jtrades.engine.counters import Counters, ForeignEntry
from jtrades.engine.filters import Rejection
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Action, Signal
from jtrades.engine.tradingday import session_start

AT = datetime(2026, 11, 24, 16, 0, tzinfo=UTC)
CHICAGO = ZoneInfo("America/Chicago")


def _entry(forbidden: bool, **s: Any) -> ForeignEntry:
    return ForeignEntry(Signal(Action.BUY), RiskSettings(**s), CHICAGO, AT, forbidden)


def _said(refused: Rejection | None) -> tuple[str, bool] | None:
    return (refused.filter, refused.entry_only) if refused is not None else None


def test_the_cooldown_and_max_signals_judge_the_traders_counts() -> None:
    started = Counters(session_start(AT), entries=1, last_entry_at=AT - timedelta(minutes=1))
    assert _said(_entry(False, cooldown_s=3600).judge(started)) == ("cooldown", True)
    assert _said(_entry(False, max_signals=1).judge(started)) == ("max_signals", True)
    assert _entry(False, cooldown_s=3600, max_signals=2).judge(Counters(session_start(AT))) is None


def test_the_every_nth_turn_is_the_recorders_alone_on_its_reading() -> None:
    fresh = Counters(session_start(AT))  # its every-Nth would say: signal 1, not taken
    assert _entry(False, every_nth=2).judge(fresh) is None
    # a side only the trader's reading opens: its turn, on its counters
    assert _said(_entry(True, every_nth=2).judge(fresh)) == ("every_nth", True)
