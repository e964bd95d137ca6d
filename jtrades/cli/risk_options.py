"""The risk options every recorder and trader command shares, and their conversion to settings.

Options arrive as text and are parsed here with ``jtrades.engine.risk``'s parsers, so a bad
value is one ``InvalidInput`` line and exit 1 (not a usage error), and the same spelling works on
``recorder create``, ``recorder edit``, ``trader create`` and ``trader edit``. On a recorder the
options are its settings (``settings_for_recorder``); on a trader they are overrides, absent =
inherit, ``--clear OPTION`` = inherit again (``overrides_for_trader``). Either way the *merged*
result is validated as a whole, so an edit can never leave an invalid combination behind.

``@risk_options`` adds the options to a Typer command and hands the function one ``RiskInput``.
``to_args``/``describe`` spell settings back as options (for ``show`` and round-trip tests).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import time
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import typer

from jtrades.cli.common import err
from jtrades.engine.parse_values import MAX_QUANTITY
from jtrades.engine.risk import (
    Direction,
    RiskOverrides,
    RiskSettings,
    SameDirection,
    SlType,
    SlUnits,
    TpUnits,
    Window,
    format_tp,
    parse_breakeven,
    parse_decimal,
    parse_enum,
    parse_hhmm,
    parse_tp,
    parse_window,
    unused_exit_options,
)
from jtrades.errors import InvalidInput

PANEL = "Risk options"
_NONE_WORDS = frozenset({"none", "off"})
_INT = re.compile(r"^[+-]?\d+$")
_SECONDS = re.compile(r"^([+-]?\d+)\s*([smh]?)$")
_INT_LIMIT = 2_147_483_647  # Postgres integer columns
_DECIMAL_DIGITS = 12  # |amount| < 10**12
_DECIMAL_PLACES = 10  # as many as an alert's numbers may have (engine.parse_values)

# CLI option name -> the RiskSettings fields it sets (and --clear resets).
OPTION_FIELDS: dict[str, tuple[str, ...]] = {
    "size": ("size",),
    "add-size": ("add_size",),
    "tp": ("tp",),
    "tp-units": ("tp_units",),
    "sl": ("sl",),
    "sl-units": ("sl_units",),
    "sl-type": ("sl_type",),
    "trail-trigger": ("trail_trigger",),
    "trail-freq": ("trail_freq",),
    "breakeven": ("breakeven_trigger", "breakeven_offset"),
    "dca": ("dca",),
    "direction": ("direction",),
    "window": ("windows",),
    "cooldown": ("cooldown_s",),
    "max-signals": ("max_signals",),
    "every-nth": ("every_nth",),
    "max-daily-loss": ("max_daily_loss",),
    "max-contracts": ("max_contracts",),
    "auto-flat-after": ("auto_flat_after",),
    "same-direction": ("same_direction",),
    "inverse": ("inverse",),
}
_FIELD_OPTION = {f: opt for opt, fs in OPTION_FIELDS.items() for f in fs}


@dataclass(frozen=True, slots=True)
class RiskInput:
    """The risk options as typed; None = the option was not given."""

    size: str | None = None
    add_size: str | None = None
    tp: str | None = None
    tp_units: str | None = None
    sl: str | None = None
    sl_units: str | None = None
    sl_type: str | None = None
    trail_trigger: str | None = None
    trail_freq: str | None = None
    breakeven: str | None = None
    dca: bool | None = None
    direction: str | None = None
    window: tuple[str, ...] | None = None
    cooldown: str | None = None
    max_signals: str | None = None
    every_nth: str | None = None
    max_daily_loss: str | None = None
    max_contracts: str | None = None
    auto_flat_after: str | None = None
    same_direction: str | None = None
    inverse: bool | None = None

    def given(self) -> bool:
        return any(getattr(self, f.name) is not None for f in dataclasses.fields(self))


# --- parsing ----------------------------------------------------------------------------------


def parse_int(text: str, option: str) -> int:
    s = text.strip()
    if not _INT.match(s):
        raise InvalidInput(f"{option}: {text!r} is not a whole number")
    value = int(s)
    if abs(value) > _INT_LIMIT:
        raise InvalidInput(f"{option}: {text!r} is out of range")
    return value


def parse_contracts(text: str, option: str) -> int:
    """A configured quantity (``--size``, ``--add-size``): at most what an alert may ask.

    Bounded only by the integer column, ``--size 2147483647`` was taken, and every entry of
    its followers then failed as a database error instead of being refused here."""
    value = parse_int(text, option)
    if value > MAX_QUANTITY:
        raise InvalidInput(
            f"{option}: {text!r} is more than the {MAX_QUANTITY} contracts an order may hold"
        )
    return value


def parse_seconds(text: str, option: str = "--cooldown") -> int:
    """``90``, ``90s``, ``5m`` or ``1h`` → seconds."""
    m = _SECONDS.match(text.strip().lower())
    if not m:
        raise InvalidInput(f"{option}: {text!r} is not a duration (SECONDS, or e.g. 90s, 5m, 1h)")
    value = int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]
    if abs(value) > _INT_LIMIT:
        raise InvalidInput(f"{option}: {text!r} is out of range")
    return value


def parse_amount(text: str, option: str) -> Decimal:
    return check_amount(parse_decimal(text, option), f"{option}: {text!r}")


def check_amount(value: Decimal, what: str) -> Decimal:
    """``value``, if a Postgres numeric holds it as typed; ``what`` names it in the error.

    Tiny is not harmless: 1e-20000 passed every bound and then failed to encode (a numeric
    keeps at most 16383 places), a DataError traceback. Places are counted as written, as
    that is what is stored."""
    if _too_big(value):
        raise InvalidInput(f"{what} is out of range")
    if value.is_finite() and -int(value.as_tuple().exponent) > _DECIMAL_PLACES:
        raise InvalidInput(f"{what} has more than {_DECIMAL_PLACES} decimal places")
    return value


def _too_big(value: Decimal) -> bool:
    """|value| ≥ 10**12, read off the exponent: abs() of 1e999999999 raises decimal.Overflow."""
    return value.is_finite() and value.adjusted() >= _DECIMAL_DIGITS


def _is_none(text: str) -> bool:
    return text.strip().lower() in _NONE_WORDS


def _optional(parse: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """A value that may be switched off with ``none``/``off``."""
    return lambda text, option: None if _is_none(text) else parse(text, option)


def _enum(enum: type[Any]) -> Callable[[str, str], Any]:
    return lambda text, option: parse_enum(enum, text, option)


def _hhmm(text: str, option: str) -> time:
    return parse_hhmm(text, option)


def _tp(text: str, option: str) -> Any:
    legs = parse_tp(text)
    for leg in legs:
        check_amount(leg.target, f"{option}: target {leg.target}")
        if leg.qty is not None and leg.qty > _INT_LIMIT:
            raise InvalidInput(f"{option}: quantity {leg.qty} is out of range")
    return legs


# RiskInput attribute -> (settings field, parser). breakeven, window and the flags are special.
_SIMPLE: dict[str, tuple[str, Callable[[str, str], Any]]] = {
    "size": ("size", parse_contracts),
    "add_size": ("add_size", parse_contracts),
    "tp": ("tp", _tp),
    "tp_units": ("tp_units", _enum(TpUnits)),
    "sl": ("sl", parse_amount),
    "sl_units": ("sl_units", _enum(SlUnits)),
    "sl_type": ("sl_type", _enum(SlType)),
    "trail_trigger": ("trail_trigger", _optional(parse_amount)),
    "trail_freq": ("trail_freq", _optional(parse_amount)),
    "direction": ("direction", _enum(Direction)),
    "cooldown": ("cooldown_s", parse_seconds),
    "max_signals": ("max_signals", _optional(parse_int)),
    "every_nth": ("every_nth", parse_int),
    "max_daily_loss": ("max_daily_loss", _optional(parse_amount)),
    "max_contracts": ("max_contracts", _optional(parse_int)),
    "auto_flat_after": ("auto_flat_after", _optional(_hhmm)),
    "same_direction": ("same_direction", _enum(SameDirection)),
}


def parse_windows(texts: Iterable[str]) -> tuple[Window, ...]:
    items = list(texts)
    # DESIGN §4: an empty window list means "always"; `--window ""` and `--window none` say so.
    if any(_is_none(t) or not t.strip() for t in items):
        if len(items) > 1:
            raise InvalidInput("--window none (trade at any time) cannot be combined with windows")
        return ()
    if len(items) > 2:
        raise InvalidInput(f"at most two --window values, got {len(items)}")
    return tuple(parse_window(t) for t in items)


def parse_risk_input(raw: RiskInput) -> dict[str, Any]:
    """The settings fields the options set, parsed (None where the option said ``none``)."""
    values: dict[str, Any] = {}
    for attr, (name, parse) in _SIMPLE.items():
        text = getattr(raw, attr)
        if text is not None:
            values[name] = parse(text, "--" + attr.replace("_", "-"))
    if raw.breakeven is not None:
        if _is_none(raw.breakeven):
            values["breakeven_trigger"], values["breakeven_offset"] = None, Decimal(0)
        else:
            trigger, offset = parse_breakeven(raw.breakeven)
            for value in (trigger, offset):
                check_amount(value, f"--breakeven: {raw.breakeven!r}")
            values["breakeven_trigger"], values["breakeven_offset"] = trigger, offset
    if raw.window is not None:
        values["windows"] = parse_windows(raw.window)
    if raw.dca is not None:
        values["dca"] = raw.dca
    if raw.inverse is not None:
        values["inverse"] = raw.inverse
    return values


def settings_for_recorder(raw: RiskInput, base: RiskSettings | None = None) -> RiskSettings:
    """``base`` (defaults for a new recorder) with the options applied, validated as a whole."""
    merged = dataclasses.replace(base or RiskSettings(), **parse_risk_input(raw)).validate()
    _warn_unused(merged)
    return merged


def clear_fields(options: Iterable[str]) -> set[str]:
    """The fields named by ``--clear`` values (option names, with or without ``--``; ``all``)."""
    found: set[str] = set()
    for opt in options:
        key = opt.strip().lower().removeprefix("--")
        if key == "all":
            found.update(_FIELD_OPTION)
        elif key in OPTION_FIELDS:
            found.update(OPTION_FIELDS[key])
        elif key == "windows":
            found.add("windows")
        else:
            raise InvalidInput(
                f"--clear: {opt!r} is not a risk option (one of {', '.join(OPTION_FIELDS)}, all)"
            )
    return found


def overrides_for_trader(
    raw: RiskInput,
    base: RiskSettings,
    current: RiskOverrides | None = None,
    clear: Iterable[str] = (),
) -> RiskOverrides:
    """A trader's overrides after ``--clear`` then the options; the effective settings validated."""
    values = dict(current.values) if current else {}
    for name in clear_fields(clear):
        values.pop(name, None)
    parsed = parse_risk_input(raw)
    for name, value in parsed.items():
        if value is None:
            # NULL is "inherit" in the traders table: "no limit" cannot be told apart from it.
            opt = _FIELD_OPTION[name]
            raise InvalidInput(
                f"--{opt} none: a trader cannot switch off the recorder's --{opt}; "
                f"use --clear {opt} to inherit it, or set a value"
            )
    values.update(parsed)
    overrides = RiskOverrides(values)
    _warn_unused(overrides.apply(base))
    return overrides


def _warn_unused(s: RiskSettings) -> None:
    for why in unused_exit_options(s):
        err.print(f"warning: {why}")


# --- spelling settings back as options ---------------------------------------------------------


def _text(name: str, value: Any) -> str:
    if value is None:
        return "none"
    if name == "tp":
        return format_tp(value) if value else "none"
    if name == "windows":
        return " ".join(str(w) for w in value) if value else "none"
    if name == "auto_flat_after":
        return f"{value:%H:%M}"
    if isinstance(value, bool):
        return "on" if value else "off"
    if hasattr(value, "value"):
        return str(value.value)
    return str(value)


def describe(values: Mapping[str, Any]) -> dict[str, str]:
    """Option name → value as one would type it, for the options whose fields are in ``values``."""
    out: dict[str, str] = {}
    for opt, names in OPTION_FIELDS.items():
        if not any(n in values for n in names):
            continue
        if opt == "breakeven":
            trigger = values.get("breakeven_trigger")
            offset = values.get("breakeven_offset") or Decimal(0)
            out[opt] = "none" if trigger is None else f"{trigger}:{offset}"
        else:
            out[opt] = _text(names[0], values[names[0]])
    return out


def settings_values(settings: RiskSettings) -> dict[str, Any]:
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}


def to_args(values: Mapping[str, Any]) -> list[str]:
    """Command-line arguments that set exactly ``values`` (for round trips and copy-paste)."""
    args: list[str] = []
    for opt, text in describe(values).items():
        if opt in ("dca", "inverse"):
            args.append(f"--{opt}" if values[opt] else f"--no-{opt}")
        elif opt == "window":
            for part in text.split(" "):
                args += ["--window", part]
        else:
            args += [f"--{opt}", text]
    return args


# --- Typer plumbing ---------------------------------------------------------------------------


# The recorder's filters run first, once per signal (DESIGN §2): a trader's own value of one of
# them is checked after it, on the trader's side, so it can narrow what the recorder lets through
# but never let through what the recorder refused.
_TIGHTEN = " On a trader: checked after the recorder's, so it can only tighten it."
# The settings fields those options set (``filters.check_trader`` runs a trader's own value of
# one of them after the recorder's chain): a looser value on a trader has no effect.
TIGHTEN_ONLY = ("windows", "auto_flat_after", "cooldown_s", "max_signals", "every_nth")
# The recorder has no money or position of its own: these apply per trader only.
_REPLACE = " On a trader: replaces the recorder's (up or down)."


def _opt(flag: str, metavar: str, help: str) -> Any:
    return Annotated[
        str | None, typer.Option(flag, metavar=metavar, help=help, rich_help_panel=PANEL)
    ]


_PARAMS: dict[str, Any] = {
    "size": _opt("--size", "N", "Contracts on the first entry."),
    "add_size": _opt("--add-size", "N", "Contracts each DCA add buys."),
    "tp": _opt(
        "--tp",
        "T[:Q],…",
        "Take-profit ladder: target T (in --tp-units) and Q contracts per leg; "
        "the last leg may omit Q and takes the rest. none = no take-profit.",
    ),
    "tp_units": _opt("--tp-units", "ticks|points|percent", "Units of the --tp targets."),
    "sl": _opt("--sl", "X", "Stop-loss distance (0 = no stop order)."),
    "sl_units": _opt("--sl-units", "ticks|points|percent|dollars", "Units of --sl."),
    "sl_type": _opt("--sl-type", "fixed|trailing", "A fixed or a trailing stop."),
    "trail_trigger": _opt(
        "--trail-trigger", "T", "Profit at which trailing starts (none = at once)."
    ),
    "trail_freq": _opt("--trail-freq", "T", "Step by which the trailing stop follows."),
    "breakeven": _opt(
        "--breakeven", "T[:OFFSET]", "Move the stop to entry (+OFFSET) at T profit; none = off."
    ),
    "dca": Annotated[
        bool | None,
        typer.Option("--dca/--no-dca", help="Allow adding to a position.", rich_help_panel=PANEL),
    ],
    "direction": _opt(
        "--direction",
        "both|long|short",
        "Which entries are taken. On a trader: its own direction (with --inverse, its own "
        "reading) decides the side it opens; the recorder's other entry filters (window, "
        "cutoff, cooldown, max signals, every-Nth) still apply to that entry.",
    ),
    "window": Annotated[
        list[str] | None,
        typer.Option(
            "--window",
            metavar="HH:MM-HH:MM",
            help="Trading window in the owner's time zone (users set-timezone); repeat once "
            "for a second window; none = any time." + _TIGHTEN,
            rich_help_panel=PANEL,
        ),
    ],
    "cooldown": _opt(
        "--cooldown", "SECONDS", "Minimum time between entries (90, 90s, 5m, 1h)." + _TIGHTEN
    ),
    "max_signals": _opt(
        "--max-signals", "N", "Entries per trading session (none = no limit)." + _TIGHTEN
    ),
    "every_nth": _opt("--every-nth", "N", "Take only every Nth entry signal." + _TIGHTEN),
    "max_daily_loss": _opt(
        "--max-daily-loss",
        "USD",
        "Stop entries for the day once the trader's instrument has lost this much on its"
        " sub-accounts, realized and open, before commissions and fees (none = no limit)."
        + _REPLACE,
    ),
    "max_contracts": _opt(
        "--max-contracts",
        "N",
        "Cap on the position, entries still working included (none = no cap)." + _REPLACE,
    ),
    "auto_flat_after": _opt(
        "--auto-flat-after",
        "HH:MM",
        "No new entries from this time (owner's time zone) until the next trading day opens "
        "(17:00 Chicago); closes still pass, and open positions are not flattened "
        "(none = never)." + _TIGHTEN,
    ),
    "same_direction": _opt(
        "--same-direction", "ignore|add|reenter", "What a signal in the held direction does."
    ),
    "inverse": Annotated[
        bool | None,
        typer.Option(
            "--inverse/--no-inverse",
            help="Trade the opposite of each signal.",
            rich_help_panel=PANEL,
        ),
    ],
}

F = TypeVar("F", bound=Callable[..., Any])


def risk_options(fn: F) -> F:
    """Give a Typer command every risk option; ``fn`` receives them as ``risk: RiskInput``."""
    sig = inspect.signature(fn, eval_str=True)
    own = [p for p in sig.parameters.values() if p.name != "risk"]
    extra = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=ann)
        for name, ann in _PARAMS.items()
    ]

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        given = {name: kwargs.pop(name, None) for name in _PARAMS}
        window = given["window"]
        given["window"] = tuple(window) if window else None
        return fn(*args, risk=RiskInput(**given), **kwargs)

    params = own + extra
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]
