"""Tradovate's matching rules for the paper broker: pure functions of one order and one price.

They are the simulator's (``jtrades/sim/exchange.py``, ``_check`` and ``_trail``), so a dry run
fills where the rehearsal against the simulator does:
- a limit marketable when it starts working (placed, modified, a bracket activated, a stop-limit's
  stop traded) fills at the market price, as an exchange fills a buy limit above the market; one
  reached by a later price move fills at its limit;
- a stop fills at the price that reached it;
- a trailing stop keeps ``|peg|`` behind the best price, on the tick;
- autoTrail (strategy brackets) leaves the stop where it is until the trade is ``trigger`` points
  in profit, then moves it toward ``dist`` behind the price in whole steps of ``freq``.
No stop ever loosens.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

from jtrades.broker.base import OrderType, Side


def to_tick(value: Decimal, tick: Decimal | None, rounding: str = ROUND_HALF_UP) -> Decimal:
    """``value`` on the tick (unchanged when the contract's tick is unknown)."""
    if not tick:
        return value
    return (value / tick).to_integral_value(rounding=rounding) * tick


def touched(side: Side, px: Decimal, stop: Decimal) -> bool:
    """Whether ``px`` reaches a ``side`` stop at ``stop``: a buy stop at or above, a sell below."""
    return px >= stop if side is Side.BUY else px <= stop


def fill_price(
    kind: OrderType,
    side: Side,
    px: Decimal,
    price: Decimal | None,
    stop: Decimal | None,
    placing: bool,
) -> Decimal | None:
    """The fill price if the market at ``px`` fills a working order, else None. A stop-limit
    comes here only once its stop has traded (it is then its limit); ``placing``: the order has
    just started working at ``px``."""
    if kind is OrderType.MARKET:
        return px
    if kind in (OrderType.STOP, OrderType.TRAILING_STOP):
        return px if stop is not None and touched(side, px, stop) else None
    if price is None or not (px <= price if side is Side.BUY else px >= price):
        return None
    return px if placing else price


def trailed(
    stop: Decimal | None, px: Decimal, side: Side, peg: Decimal, tick: Decimal | None
) -> Decimal:
    """A trailing stop after the price ``px``: ``|peg|`` behind it (rounded away from the price,
    never closer), unless it already is nearer."""
    dist = abs(peg)
    if side is Side.SELL:
        cand = to_tick(px - dist, tick, ROUND_FLOOR)
        return cand if stop is None else max(stop, cand)
    cand = to_tick(px + dist, tick, ROUND_CEILING)
    return cand if stop is None else min(stop, cand)


def auto_trailed(
    stop: Decimal,
    px: Decimal,
    side: Side,
    anchor: Decimal,
    dist: Decimal,
    trigger: Decimal,
    freq: Decimal | None,
    tick: Decimal | None,
) -> Decimal:
    """An autoTrail stop (exit ``side``) after the price ``px``, for a trade entered at ``anchor``.

    Below ``trigger`` points of profit it stays; from there it moves toward ``dist`` points behind
    the price by whole steps of ``freq`` (one tick when unset), never past that point, never back.
    """
    sell = side is Side.SELL
    profit = px - anchor if sell else anchor - px
    if profit < trigger:
        return stop
    cand = px - dist if sell else px + dist
    gap = cand - stop if sell else stop - cand
    step = freq or tick
    # Decimal's // truncates toward zero, as the simulator's does: a negative gap stays ≤ 0.
    moved = gap // step * step if step else gap
    if moved <= 0:
        return stop
    return to_tick(stop + moved if sell else stop - moved, tick)
