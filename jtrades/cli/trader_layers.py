"""What a trader trades with, layer by layer: the recorder's window, cutoff, cooldown, max
signals and every-Nth apply to every signal first (``engine.filters.check_recorder``), and a
trader's own value of one of them applies after it, on the trader's own counters and clock. So
an override can only tighten: this module judges which overrides add nothing or are looser, and
words both layers for ``trader show`` (pure; the commands are in ``cli.trader``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jtrades.cli.risk_options import OPTION_FIELDS, TIGHTEN_ONLY, describe, settings_values
from jtrades.engine.risk import RiskOverrides, RiskSettings, Window
from jtrades.engine.tradingday import next_wall_time, session_open, trading_day

OPTION = {fields[0]: opt for opt, fields in OPTION_FIELDS.items()}
_CHICAGO = "America/Chicago"
_DAY_MINUTES = 24 * 60


@dataclass(frozen=True, slots=True)
class Layers:
    """A trader's settings as the engine applies them.

    ``effective``: per field, what the trader trades with; for a tighten-only field the trader
    sets, the recorder's value where it makes the trader's redundant, else the trader's own.
    ``recorder_filters``: the recorder's tighten-only values, which apply first either way.
    ``looser``: option → why, for the trader's own values the recorder's make (partly) moot.
    ``shown``: option → both layers in words, for the tighten-only options the trader sets."""

    effective: dict[str, Any]
    recorder_filters: dict[str, Any]
    looser: dict[str, str]
    shown: dict[str, str]


def _minutes(windows: tuple[Window, ...]) -> frozenset[int]:
    """The minutes of the day the windows let through ([start, end), overnight wrapping)."""
    out: set[int] = set()
    for w in windows:
        start, end = w.start.hour * 60 + w.start.minute, w.end.hour * 60 + w.end.minute
        out.update(range(start, end) if start < end else (*range(start, _DAY_MINUTES), *range(end)))
    return frozenset(out)


def _cutoff(at: time, tz_name: str, now: datetime) -> datetime:
    """When ``--auto-flat-after at`` stops entries in the trading day of ``now``, computed as
    ``filters._check_auto_flat`` does."""
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # as the daemon's snapshot reads it
        tz = ZoneInfo(_CHICAGO)
    return next_wall_time(session_open(trading_day(now)) + timedelta(microseconds=1), at, tz)


def _judge(
    name: str, settings: RiskSettings, own: Any, trader_tz: str, recorder_tz: str, now: datetime
) -> tuple[bool, bool]:
    """(the recorder's value makes the trader's ``own`` redundant, ``own`` is looser than it).

    Windows and cutoffs are read on each owner's wall clock, so they are compared only in the
    same zone; "any time" is looser than a window in every zone. The cooldown, max signals and
    every-Nth of a trader count only the entries the recorder's let through."""
    rec = getattr(settings, name)
    same_zone = trader_tz == recorder_tz
    if name == "cooldown_s":
        return own <= rec, own < rec
    if name == "max_signals":
        if rec is None:
            return own is None, False
        return own is None or own >= rec, own is None or own > rec
    if name == "every_nth":  # every Nth of what the recorder's passes: only 1 adds nothing
        return own <= 1, own <= 1 < rec
    if name == "windows":
        if not rec:
            return not own, False
        if not own:
            return True, True
        if not same_zone:
            return False, False
        return _minutes(rec) <= _minutes(own), bool(_minutes(own) - _minutes(rec))
    if name == "auto_flat_after":
        if rec is None:
            return own is None, False
        if own is None:
            return True, True
        if not same_zone:
            return False, False
        own_at, rec_at = _cutoff(own, trader_tz, now), _cutoff(rec, trader_tz, now)
        return own_at >= rec_at, own_at > rec_at
    raise ValueError(f"{name} is not a tighten-only setting")


def _text(name: str, value: Any) -> str:
    return describe({name: value})[OPTION[name]]


def looser_overrides(
    rec: RiskSettings, own: Mapping[str, Any], *, trader_tz: str, recorder_tz: str, now: datetime
) -> dict[str, str]:
    """Option → why, for each tighten-only value in ``own`` (a trader's overrides) that lets
    through something the recorder's refuses: the recorder's applies first, so (that part of)
    the trader's has no effect. The zones are the owners' (windows and cutoffs are read there)."""
    out: dict[str, str] = {}
    for name in TIGHTEN_ONLY:
        if name in own and _judge(name, rec, own[name], trader_tz, recorder_tz, now)[1]:
            opt = OPTION[name]
            out[opt] = (
                f"--{opt} {_text(name, own[name])} is looser than the recorder's "
                f"--{opt} {_text(name, getattr(rec, name))}, which applies first"
            )
    return out


def _restricts(name: str, value: Any) -> bool:
    """Whether the recorder's value of a tighten-only field refuses anything at all."""
    if name in ("cooldown_s", "windows"):
        return bool(value)
    if name == "every_nth":
        return bool(value > 1)
    return value is not None


def layers(
    rec: RiskSettings, overrides: RiskOverrides, *, trader_tz: str, recorder_tz: str, now: datetime
) -> Layers:
    """What the engine applies for a trader with ``overrides`` following settings ``rec``."""
    own = overrides.values
    effective = settings_values(overrides.apply(rec))
    looser = looser_overrides(rec, own, trader_tz=trader_tz, recorder_tz=recorder_tz, now=now)
    shown: dict[str, str] = {}
    for name in TIGHTEN_ONLY:
        rec_value, opt = getattr(rec, name), OPTION[name]
        clock = trader_tz != recorder_tz and name in ("windows", "auto_flat_after")
        rec_text = _text(name, rec_value) + (f" {recorder_tz}" if clock else "")
        if name not in own:
            if clock and _restricts(name, rec_value):  # inherited: on the recorder owner's clock
                shown[opt] = f"{rec_text} (the recorder's)"
            continue
        own_text = _text(name, own[name]) + (f" {trader_tz}" if clock else "")
        redundant = _judge(name, rec, own[name], trader_tz, recorder_tz, now)[0]
        if redundant:
            effective[name] = rec_value
        if opt in looser and redundant:
            shown[opt] = (
                f"{rec_text} (the recorder's; the override {own_text} is looser: no effect)"
            )
        elif opt in looser:
            shown[opt] = (
                f"{own_text} (override; the recorder's {rec_text} applies first: outside it, "
                "the override has no effect)"
            )
        elif _restricts(name, rec_value):
            shown[opt] = f"{own_text} (override; the recorder's {rec_text} applies first)"
        else:
            shown[opt] = f"{own_text} (override)"
    return Layers(
        effective=effective,
        recorder_filters={name: getattr(rec, name) for name in TIGHTEN_ONLY},
        looser=looser,
        shown=shown,
    )
