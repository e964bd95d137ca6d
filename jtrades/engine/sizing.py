"""Quantities and prices: multipliers, caps, TP ladders, exit offsets and tick rounding.

Money rule 4 (DESIGN.md §5) lives here: prices are rounded to the contract's tick with exact
``Decimal`` arithmetic, quantities are whole contracts ≥ 1 after multipliers, and a ladder's
legs add up to the position. Every exit distance is rounded *toward the entry*: a take-profit is
never farther than configured (it fills no later than asked) and a stop-loss never risks more
than configured (the configured loss is a cap the trader relies on). A non-zero distance never
rounds to nothing: it is at least one tick.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Literal

from jtrades.broker.base import Contract
from jtrades.engine.parse_values import MAX_QUANTITY
from jtrades.engine.risk import RiskSettings, SlUnits, TpLeg, TpUnits
from jtrades.engine.signal import Units

RoundMode = Literal["nearest", "up", "down"]

_MODES = {"nearest": ROUND_HALF_UP, "up": ROUND_CEILING, "down": ROUND_FLOOR}
_PRECISION = 60  # far beyond any price × tick ratio, so the division below is exact


def round_to_tick(price: Decimal, tick: Decimal, mode: RoundMode) -> Decimal:
    """``price`` moved onto a multiple of ``tick``: ``nearest`` (halves away from zero), ``up``
    (toward +∞) or ``down`` (toward -∞). Exact for any finite Decimal tick (1/32 = 0.03125 too)."""
    if tick <= 0:
        raise ValueError(f"tick size must be > 0, got {tick}")
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        steps = (price / tick).to_integral_value(rounding=_MODES[mode])
        # Present the result with the tick's exponent (21500.25, not 21500.2500).
        return (steps * tick).quantize(tick)


def scale_qty(base: int, multiplier: Decimal) -> int:
    """``base × multiplier`` in whole contracts: rounded down (a multiplier never buys more than
    it says), but at least 1 (a follower with ×0.5 on a 1-lot still trades one contract)."""
    if multiplier <= 0:
        raise ValueError(f"multiplier must be > 0, got {multiplier}")
    if base < 1:
        raise ValueError(f"base quantity must be ≥ 1, got {base}")
    return max(1, floor_scaled(base, multiplier))


def floor_scaled(qty: int, multiplier: Decimal) -> int:
    """``qty × multiplier`` rounded down, 0 included (``scale_qty`` keeps at least 1)."""
    return int((Decimal(qty) * multiplier).to_integral_value(rounding=ROUND_FLOOR))


def base_qty(signal_qty: int | None, configured: int) -> int:
    """The contracts an alert asks for before any multiplier: its own quantity, or (None or 0)
    the configured one."""
    return signal_qty if signal_qty is not None and signal_qty > 0 else configured


def entry_qty(signal_qty: int | None, s: RiskSettings, multiplier: Decimal) -> int:
    """Contracts for a first entry: the webhook's quantity if it gave one (None or 0 = the
    configured ``size``), × multiplier (``scale_qty``), then capped by ``max_contracts``.

    The cap limits, it never replaces: a 2-lot under ``--max-contracts 5`` stays 2. Always ≥ 1.
    """
    return max(1, cap_qty(scale_qty(base_qty(signal_qty, s.size), multiplier), s.max_contracts))


def cap_qty(qty: int, max_contracts: int | None, held: int = 0) -> int:
    """``qty`` capped so the position (``held`` + qty, in contracts) stays ≤ ``max_contracts``.

    Returns 0 when the position is already at (or over) the cap: the caller must not trade.
    """
    if max_contracts is None:
        return qty
    return max(0, min(qty, max_contracts - held))


def over_order_limit(qty: int) -> str | None:
    """Why ``qty`` contracts cannot go out as one order (None when they can).

    An alert may ask at most ``MAX_QUANTITY``; a size or quantity × multiplier past it came
    out of no real alert, and one past the order tables' integer failed the whole claim as
    "the database could not record the orders", which named the wrong cause."""
    if qty > MAX_QUANTITY:
        return f"size {qty} exceeds the {MAX_QUANTITY} contracts an order may hold"
    return None


def ladder(
    legs: tuple[TpLeg, ...], total: int, multiplier: Decimal
) -> tuple[tuple[TpLeg, int], ...]:
    """Each TP leg paired with its contracts for a position of ``total``.

    Fixed legs are scaled by the multiplier (rounded down) and capped by what is left; the last
    leg takes the rest whatever its own quantity, so the legs sum to ``total`` exactly. A leg
    left with 0 contracts is dropped (a ×0.5 follower of ``20:1,40:1,60`` on a 2-lot: 1 × 0.5
    rounds down to 0, so both contracts go to the 3rd leg). No legs → no ladder.
    """
    if total < 1:
        raise ValueError(f"a ladder needs a position ≥ 1, got {total}")
    if not legs:
        return ()
    out: list[tuple[TpLeg, int]] = []
    remaining = total
    for leg in legs[:-1]:
        q = min(floor_scaled(leg.qty or 0, multiplier), remaining)
        if q > 0:
            out.append((leg, q))
            remaining -= q
    if remaining > 0:
        out.append((legs[-1], remaining))
    return tuple(out)


def ladder_tail(
    legs: tuple[TpLeg, ...], total: int, multiplier: Decimal, laid_for: int
) -> tuple[tuple[TpLeg, int], ...]:
    """The far end of the ladder laid for ``laid_for`` contracts: its last ``total`` contracts.

    For exits re-placed after a position shrank (a reduce): its near legs are the ones that
    fill first, so the contracts still held are those of the far legs. Laying the ladder out
    again from the first leg moved them back onto a level that had already filled (TP1 filled,
    the strategy trims 1: the last contract's target went from TP3 back to TP1, often past the
    market). Sums to ``total`` like ``ladder``; ``laid_for`` below it counts as ``total``.
    """
    full = ladder(legs, max(total, laid_for), multiplier)
    out: list[tuple[TpLeg, int]] = []
    need = total
    for leg, q in reversed(full):
        if need == 0:
            break
        take = min(q, need)
        out.append((leg, take))
        need -= take
    return tuple(reversed(out))


def ladder_quantities(legs: tuple[TpLeg, ...], total: int, multiplier: Decimal) -> tuple[int, ...]:
    """The contracts of each kept leg of ``ladder`` (sum = ``total``, each ≥ 1)."""
    return tuple(q for _, q in ladder(legs, total, multiplier))


def to_points(
    value: Decimal,
    units: TpUnits | SlUnits | Units,
    entry_price: Decimal | None,
    contract: Contract,
    qty: int = 1,
) -> Decimal:
    """A distance in ``units`` converted to price points, unrounded.

    ``percent`` is of ``entry_price``; ``dollars`` is the money at risk on ``qty`` contracts
    (the planner passes 1: dollars per contract, so every follower's stop sits at the same
    price whatever its multiplier; an alert's dollars for the whole position are made per
    contract first, ``exits.distance``). ``price`` units are absolute levels, not distances.
    """
    u = str(units)
    if u == "ticks":
        return value * contract.tick_size
    if u == "points":
        return value
    if u == "percent":
        if entry_price is None:
            raise ValueError("a percent distance needs a reference price")
        return entry_price * value / 100
    if u == "dollars":
        if qty < 1:
            raise ValueError(f"dollars need a quantity ≥ 1, got {qty}")
        return value / (contract.value_per_point * qty)
    raise ValueError(f"{u!r} is a price level, not a distance")


def round_distance(points: Decimal, tick: Decimal) -> Decimal:
    """A distance rounded toward zero (toward the entry) onto the tick, at least one tick."""
    if points <= 0:
        raise ValueError(f"an exit distance must be > 0, got {points}")
    return max(tick, round_to_tick(points, tick, "down"))


def exit_offset_points(
    value: Decimal,
    units: TpUnits | SlUnits | Units,
    entry_price: Decimal,
    contract: Contract,
    qty: int,
) -> Decimal:
    """A TP/SL distance (ticks, points, percent of ``entry_price``, dollars on ``qty``) as a
    positive number of points on the contract's tick, rounded toward the entry, ≥ 1 tick."""
    return round_distance(to_points(value, units, entry_price, contract, qty), contract.tick_size)


def exit_price(reference: Decimal, distance: Decimal, direction: int, tick: Decimal) -> Decimal:
    """The price ``distance`` points from ``reference`` in ``direction`` (+1 above, -1 below),
    rounded onto the tick toward ``reference``.

    Used for exits of an averaged position: the average (e.g. 21500.0833…) is off-tick, so the
    exit is rounded back toward it; with a distance ≥ 1 tick it stays strictly beyond it.
    """
    raw = reference + direction * distance
    return round_to_tick(raw, tick, "down" if direction > 0 else "up")


def open_pnl(
    net_pos: int,
    avg_price: Decimal | None,
    price: Decimal,
    contract: Contract,
    lots: tuple[tuple[int, Decimal], ...] = (),
) -> Decimal:
    """Unrealized P&L in USD of ``net_pos`` contracts marked at ``price``: measured from the
    ``lots`` still open (signed quantity, price: ``pnl.OpenPosition``) when they come to
    ``net_pos``, else from ``avg_price``.

    Why the lots: realized P&L books closes first in first out, and the broker's average is
    that of every lot, which a partial exit leaves where it was. Long 100 + 110, sold 1 at 100:
    $0 realized, the 110 lot left; marked from the average 105 the open half missed 5 points,
    and the daily-loss limit let an entry add to a day already at it."""
    if net_pos == 0:
        return Decimal(0)
    if lots and sum(q for q, _ in lots) == net_pos:
        return sum(((price - p) * q for q, p in lots), Decimal(0)) * contract.value_per_point
    if avg_price is None:
        return Decimal(0)
    return (price - avg_price) * net_pos * contract.value_per_point
