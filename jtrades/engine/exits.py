"""Exit levels for a plan: take-profit legs, the stop, trailing and breakeven, in points from
the entry or as absolute prices on the tick.

Split from ``planning`` so the position table there reads on its own; everything here is a pure
function of the signal, the settings, the multiplier and the contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Literal, Protocol

from jtrades.broker.base import Contract
from jtrades.engine.risk import RiskSettings, SlType
from jtrades.engine.signal import ExitSpec, Signal, Units
from jtrades.engine.sizing import (
    exit_offset_points,
    ladder,
    ladder_tail,
    round_distance,
    round_to_tick,
)


class CannotPlan(Exception):
    """A plan that would be unsafe or impossible; becomes IGNORE with this reason."""


class ExitInputs(Protocol):
    """What exits depend on (``plan_context.Ctx`` provides it)."""

    @property
    def sig(self) -> Signal: ...
    @property
    def s(self) -> RiskSettings: ...
    @property
    def multiplier(self) -> Decimal: ...
    @property
    def contract(self) -> Contract: ...


@dataclass(frozen=True, slots=True)
class Level:
    """An exit as a positive distance in points (on tick) or an absolute price (per-alert)."""

    distance: Decimal | None = None
    price: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Exits:
    tp: tuple[tuple[Level, int], ...]  # each leg and its contracts; sums to the position
    sl: Level | None
    trailing: bool = False
    trail_trigger: Decimal | None = None
    trail_freq: Decimal | None = None
    breakeven: Decimal | None = None
    breakeven_offset: Decimal = Decimal(0)

    @property
    def empty(self) -> bool:
        return not self.tp and self.sl is None


def distance(
    value: Decimal,
    units: str,
    ref: Decimal | None,
    c: ExitInputs,
    what: str,
    alert_qty: Decimal | None = None,
) -> Decimal:
    """``value`` in ``units`` as points on the tick; ``alert_qty`` spreads position dollars."""
    if units == "percent" and ref is None:
        raise CannotPlan(f"{what} in percent needs the signal price")
    if units == Units.POSITION_DOLLARS:
        if alert_qty is None or alert_qty <= 0:
            raise CannotPlan(f"{what} in dollars for the position needs its quantity")
        with localcontext() as ctx:
            ctx.prec = 60  # 100 / 3 rounds onto the tick toward the entry, never past the cap
            value, units = value / alert_qty, Units.DOLLARS
    return exit_offset_points(value, Units(units), ref or Decimal(0), c.contract, 1)


def spec_level(
    spec: ExitSpec, ref: Decimal | None, c: ExitInputs, what: str, alert_qty: Decimal | None
) -> Level:
    if spec.units is Units.PRICE:
        return Level(price=spec.value)
    return Level(distance=distance(spec.value, str(spec.units), ref, c, what, alert_qty))


def resolve_exits(
    c: ExitInputs,
    total: int,
    ref: Decimal | None,
    alert_qty: Decimal,
    laid_for: int | None = None,
) -> Exits:
    """TP legs with quantities for a position of ``total``, the stop, and trailing/breakeven.

    ``laid_for``: the position shrank (a reduce) from one whose ladder was laid for that many
    contracts; the configured ladder's far legs hold the ``total`` left (``ladder_tail``).

    A per-alert take-profit/stop-loss replaces the configured one for this signal. Several
    per-alert TPs (they carry no quantities) split the position evenly, the last taking the rest.
    A per-alert trail trigger/frequency replaces the configured one and is read in the alert
    stop's units; the configured ones (and breakeven) are read in ``--sl-units``.

    Dollars are per contract (``--sl-units dollars``, PickMyTrade ``dollar_sl``), except the
    alert's amounts for the whole position (TradersPost ``pnlAmount``: a cap on what the
    position loses or a target for what it makes). Those are spread over ``alert_qty``: the
    position as the alert counts its contracts, before this follower's multiplier. For an entry
    that is the alert's quantity (none or 0: the configured size), so every follower's stop
    lands at the same price and a ×2 follower risks twice the cap, as it trades twice the
    contracts; a per-contract reading let a 3-lot lose three times the cap.
    """
    s, sig = c.s, c.sig
    tp: list[tuple[Level, int]] = []
    specs = [sp for sp in sig.take_profit if sp.value > 0]
    if specs:
        share, rest = total // len(specs), total
        for i, sp in enumerate(specs):
            q = rest if i == len(specs) - 1 else min(share, rest)
            if q > 0:
                tp.append((spec_level(sp, ref, c, "the take-profit", alert_qty), q))
                rest -= q
    else:
        legs = (
            ladder(s.tp, total, c.multiplier)
            if laid_for is None
            else ladder_tail(s.tp, total, c.multiplier, laid_for)
        )
        for leg, q in legs:
            tp.append((Level(distance=distance(leg.target, s.tp_units, ref, c, "--tp")), q))

    sl: Level | None = None
    alert = sig.stop_loss
    if alert is not None:
        trailing = alert.trailing
        if alert.value > 0:
            sl = spec_level(alert, ref, c, "the stop-loss", alert_qty)
    else:
        trailing = s.sl_type is SlType.TRAILING and not sig.plain_stop
        if s.sl > 0:
            sl = Level(distance=distance(s.sl, s.sl_units, ref, c, "--sl"))
    if sl is None:
        return Exits(tuple(tp), None)

    def opt(v: Decimal | None, what: str) -> Decimal | None:
        return None if v is None else distance(v, s.sl_units, ref, c, what)

    def trail(given: Decimal | None, configured: Decimal | None, what: str) -> Decimal | None:
        # The alert's own value (PickMyTrade ``trail_trigger``/``trail_freq``, in its stop's
        # units) overrides the recorder's for this signal, like its stop does (DESIGN §4).
        if not trailing:
            return None
        if given is not None and alert is not None:
            return distance(given, str(alert.units), ref, c, f"the stop-loss {what}", alert_qty)
        return opt(configured, f"--{what}")

    given = (alert.trail_trigger, alert.trail_freq) if alert else (None, None)
    trigger = trail(given[0], s.trail_trigger, "trail-trigger")
    freq = trail(given[1], s.trail_freq, "trail-freq")
    # Tradovate's autoTrail takes trigger and freq together, and PickMyTrade templates send 0
    # for the one not set. A trigger alone moves the stop tick by tick, as a trailing stop
    # does anyway; a step alone trails in those steps from the first tick in profit (without
    # a trigger the step was dropped, and the stop followed every tick, tighter than asked).
    if trigger is not None and freq is None:
        freq = c.contract.tick_size
    elif freq is not None and trigger is None:
        trigger = c.contract.tick_size
    return Exits(
        tuple(tp),
        sl,
        trailing=trailing,
        trail_trigger=trigger,
        trail_freq=freq,
        breakeven=opt(s.breakeven_trigger, "--breakeven"),
        breakeven_offset=(
            distance(s.breakeven_offset, s.sl_units, ref, c, "--breakeven offset")
            if s.breakeven_trigger is not None and s.breakeven_offset > 0
            else Decimal(0)
        ),
    )


def as_distance(
    level: Level, ref: Decimal | None, direction: int, c: ExitInputs, what: str
) -> Decimal:
    """Points from the entry for a strategy bracket; ``direction`` +1 = the exit is above."""
    if level.distance is not None:
        _above_zero(ref, direction, level.distance, what)
        return level.distance
    assert level.price is not None
    if ref is None:
        raise CannotPlan(f"{what} given as a price needs the signal price")
    raw = (level.price - ref) * direction
    if raw <= 0:
        where = "above" if direction > 0 else "below"
        raise CannotPlan(f"{what} {level.price} is not {where} the entry price {ref}")
    return round_distance(raw, c.contract.tick_size)


def _above_zero(ref: Decimal | None, direction: int, points: Decimal, what: str) -> None:
    """An exit below the entry by its price or more would be an order at a price of 0 or less:
    a short's take profit of 100 % (an add's side is only known here, so the parser lets it
    through), or a distance in points larger than the price."""
    if ref is not None and direction < 0 and points >= ref:
        raise CannotPlan(
            f"{what} {points.normalize():f} points below {ref.normalize():f} would be at or"
            " past zero"
        )


def as_price(level: Level, ref: Decimal, direction: int, c: ExitInputs, what: str) -> Decimal:
    """An absolute exit price on the tick, rounded toward ``ref`` yet strictly beyond it."""
    tick = c.contract.tick_size
    toward: Literal["up", "down"] = "down" if direction > 0 else "up"
    away: Literal["up", "down"] = "up" if direction > 0 else "down"
    if level.distance is not None:
        _above_zero(ref, direction, level.distance, what)
        return round_to_tick(ref + direction * level.distance, tick, toward)
    assert level.price is not None
    if (level.price - ref) * direction <= 0:
        where = "above" if direction > 0 else "below"
        raise CannotPlan(f"{what} {level.price} is not {where} the average price {ref}")
    p = round_to_tick(level.price, tick, toward)
    if (p - ref) * direction <= 0:
        p = round_to_tick(level.price, tick, away)
    return p
