"""Risk settings of a recorder, a trader's overrides, and the parsing of their CLI spellings.

One model serves the CLI (parse and validate what a person typed), the store (columns <-> model)
and the engine (filters and planning read it). Validation lives here so a bad ladder is refused
the same way whether it came from ``recorder create``, ``trader edit`` or the database.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields
from datetime import time
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from jtrades.errors import InvalidInput


class TpUnits(StrEnum):
    TICKS = "ticks"
    POINTS = "points"
    PERCENT = "percent"


class SlUnits(StrEnum):
    TICKS = "ticks"
    POINTS = "points"
    PERCENT = "percent"
    DOLLARS = "dollars"


class SlType(StrEnum):
    FIXED = "fixed"
    TRAILING = "trailing"


class Direction(StrEnum):
    BOTH = "both"
    LONG = "long"
    SHORT = "short"


class SameDirection(StrEnum):
    IGNORE = "ignore"
    ADD = "add"
    REENTER = "reenter"


@dataclass(frozen=True, slots=True)
class TpLeg:
    """One take-profit leg: ``target`` in the ladder's units; ``qty`` None = the rest of the position."""

    target: Decimal
    qty: int | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """A daily time window in the user's zone; ``end < start`` means it runs overnight."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True, slots=True)
class RiskSettings:
    """A recorder's complete risk settings (every field has a value)."""

    size: int = 1
    add_size: int = 1
    tp: tuple[TpLeg, ...] = ()
    tp_units: TpUnits = TpUnits.TICKS
    sl: Decimal = Decimal(0)
    sl_units: SlUnits = SlUnits.TICKS
    sl_type: SlType = SlType.FIXED
    trail_trigger: Decimal | None = None
    trail_freq: Decimal | None = None
    breakeven_trigger: Decimal | None = None
    breakeven_offset: Decimal = Decimal(0)
    dca: bool = False
    direction: Direction = Direction.BOTH
    windows: tuple[Window, ...] = ()
    cooldown_s: int = 0
    max_signals: int | None = None
    every_nth: int = 1
    max_daily_loss: Decimal | None = None
    max_contracts: int | None = None
    auto_flat_after: time | None = None
    same_direction: SameDirection = SameDirection.IGNORE
    inverse: bool = False

    def validate(self) -> RiskSettings:
        """Raise ``InvalidInput`` with a one-line reason if the combination makes no sense."""
        _positive("size", self.size)
        _positive("add-size", self.add_size)
        if self.sl < 0:
            raise InvalidInput(f"--sl must be ≥ 0, got {self.sl}")
        for name in ("trail_trigger", "trail_freq", "breakeven_trigger"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise InvalidInput(f"--{name.replace('_', '-')} must be > 0, got {v}")
        if self.breakeven_offset < 0:
            raise InvalidInput(f"breakeven offset must be ≥ 0, got {self.breakeven_offset}")
        if self.sl_type is SlType.TRAILING and self.sl == 0:
            raise InvalidInput("--sl-type trailing needs a stop distance: set --sl")
        if self.sl_units is SlUnits.PERCENT and self.sl >= 100:
            raise InvalidInput(f"--sl {self.sl} percent would put the stop at or past zero")
        if len(self.windows) > 2:
            raise InvalidInput("at most two --window values")
        if self.cooldown_s < 0:
            raise InvalidInput(f"--cooldown must be ≥ 0 seconds, got {self.cooldown_s}")
        if self.max_signals is not None:
            _positive("max-signals", self.max_signals)
        _positive("every-nth", self.every_nth)
        if self.max_daily_loss is not None and self.max_daily_loss <= 0:
            raise InvalidInput(f"--max-daily-loss must be > 0 USD, got {self.max_daily_loss}")
        if self.max_contracts is not None:
            _positive("max-contracts", self.max_contracts)
        validate_ladder(self.tp, self.size, self.tp_units)
        return self


def unused_exit_options(s: RiskSettings) -> list[str]:
    """The exit options ``s`` sets that its own stop never uses, each with why: accepted
    silently, `--breakeven` with no stop read as protection that was never placed. Not refused:
    an alert carrying its own stop loss (a trailing one) uses them."""
    out = []
    if s.breakeven_trigger is not None and s.sl == 0:
        out.append(
            "--breakeven moves a stop, and --sl is 0: only alerts that carry their own stop"
            " loss get it"
        )
    if (s.trail_trigger is not None or s.trail_freq is not None) and s.sl_type is SlType.FIXED:
        out.append(
            "--trail-trigger/--trail-freq move a trailing stop, and --sl-type is fixed: only"
            " alerts that carry their own trailing stop use them"
        )
    if s.same_direction is SameDirection.ADD and not s.dca and (s.tp or s.sl > 0):
        out.append(
            "--same-direction add with a TP or SL needs --dca: without it every add is"
            " ignored (the added contracts would have no exits)"
        )
    return out


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InvalidInput(f"--{name} must be a whole number ≥ 1, got {value}")


def validate_ladder(legs: tuple[TpLeg, ...], size: int, units: TpUnits) -> None:
    """A ladder's fixed legs must leave room: they may not exceed the entry size."""
    if not legs:
        return
    for i, leg in enumerate(legs, 1):
        if leg.target <= 0:
            raise InvalidInput(f"--tp leg {i}: target must be > 0 {units}, got {leg.target}")
        if leg.qty is not None and leg.qty < 1:
            raise InvalidInput(f"--tp leg {i}: quantity must be ≥ 1, got {leg.qty}")
        if units is TpUnits.PERCENT and leg.target >= 100:
            raise InvalidInput(f"--tp leg {i}: {leg.target} percent is not a sane target")
    for leg in legs[:-1]:
        if leg.qty is None:
            raise InvalidInput("--tp: only the last leg may omit its quantity (it takes the rest)")
    fixed = sum(leg.qty for leg in legs if leg.qty is not None)
    if fixed > size:
        raise InvalidInput(f"--tp: the legs' quantities add up to {fixed}, more than --size {size}")
    targets = [leg.target for leg in legs]
    if targets != sorted(targets) or len(set(targets)) != len(targets):
        raise InvalidInput("--tp: targets must be distinct and increasing")


# A trader's overrides: the same fields, each None = inherit from the recorder.
OVERRIDABLE: tuple[str, ...] = tuple(f.name for f in fields(RiskSettings))


@dataclass(frozen=True, slots=True)
class RiskOverrides:
    values: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.values) - set(OVERRIDABLE)
        if unknown:
            raise InvalidInput(f"unknown risk setting(s): {', '.join(sorted(unknown))}")

    def apply(self, base: RiskSettings) -> RiskSettings:
        """The trader's effective settings: validated, so an override can't make a bad ladder."""
        if not self.values:
            return base
        return dataclasses.replace(base, **self.values).validate()


# --- parsing what people type ----------------------------------------------------------------

_HHMM = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")
# ASCII digits only: str.isdigit() also passes "²" and "①", which int() refuses
_COUNT = re.compile(r"^[0-9]+$")


def parse_decimal(text: str, what: str) -> Decimal:
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise InvalidInput(f"{what}: {text!r} is not a number") from None
    if not value.is_finite():
        raise InvalidInput(f"{what}: {text!r} is not a finite number")
    return value


def parse_hhmm(text: str, what: str = "time") -> time:
    m = _HHMM.match(text.strip())
    if not m:
        raise InvalidInput(f"{what}: {text!r} is not a time of day HH:MM (00:00–23:59)")
    return time(int(m.group(1)), int(m.group(2)))


def parse_window(text: str) -> Window:
    """``09:30-16:00``; an end before the start is an overnight window; equal ends are refused."""
    parts = text.strip().split("-")
    if len(parts) != 2:
        raise InvalidInput(f"--window: {text!r} is not HH:MM-HH:MM")
    w = Window(parse_hhmm(parts[0], "--window"), parse_hhmm(parts[1], "--window"))
    if w.start == w.end:
        raise InvalidInput(f"--window: {text!r} is empty (start equals end)")
    return w


def parse_tp(text: str) -> tuple[TpLeg, ...]:
    """``20:1,40:1,60`` → three legs; an empty string or ``0`` means no take-profit."""
    text = text.strip()
    if text in ("", "0", "none"):
        return ()
    legs = []
    for i, part in enumerate(text.split(","), 1):
        target_s, sep, qty_s = part.partition(":")
        target = parse_decimal(target_s, f"--tp leg {i}")
        qty: int | None = None
        if sep:
            if not _COUNT.match(qty_s.strip()):
                raise InvalidInput(f"--tp leg {i}: quantity {qty_s!r} is not a whole number")
            qty = int(qty_s)
        legs.append(TpLeg(target, qty))
    return tuple(legs)


def format_tp(legs: tuple[TpLeg, ...]) -> str:
    return ",".join(
        f"{leg.target}" + (f":{leg.qty}" if leg.qty is not None else "") for leg in legs
    )


def parse_breakeven(text: str) -> tuple[Decimal, Decimal]:
    trigger_s, _, offset_s = text.partition(":")
    trigger = parse_decimal(trigger_s, "--breakeven")
    offset = parse_decimal(offset_s, "--breakeven offset") if offset_s else Decimal(0)
    return trigger, offset


def parse_enum(enum: type[StrEnum], text: str, option: str) -> Any:
    try:
        return enum(text.strip().lower())
    except ValueError:
        choices = "|".join(m.value for m in enum)
        raise InvalidInput(f"{option}: {text!r} is not one of {choices}") from None
