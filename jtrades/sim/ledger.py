"""The simulated exchange's position accounting: what one fill does to a position (its net
quantity and average price, and the P&L it realizes) and which earlier fills it closes.

Apart from the exchange (``exchange.Exchange``) because this is arithmetic with no orders in it,
checked on its own: ``netPrice`` is the average price of the open quantity, and the fill pairs
(``fillPair``) match fills first in first out, from which realized P&L is booked exactly on tick
prices (an average-cost figure of a partial close can carry a repeating decimal).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.sim.entities import Position


def apply_fill(pos: Position, sign: int, qty: int, price: Decimal) -> Decimal:
    """Update a position for one fill; the realized P&L in points × contracts (not dollars)."""
    pos.prev_pos = pos.net_pos
    pos.prev_price = pos.net_price if pos.net_pos else None
    if sign > 0:
        pos.bought += qty
        pos.bought_value += price * qty
    else:
        pos.sold += qty
        pos.sold_value += price * qty
    n = pos.net_pos
    if n == 0 or (n > 0) == (sign > 0):
        size = abs(n) + qty
        pos.net_price = (pos.net_price * abs(n) + price * qty) / size
        pos.net_pos = n + sign * qty
        return Decimal(0)
    closing = min(qty, abs(n))
    realized = (price - pos.net_price) * closing * (1 if n > 0 else -1)
    pos.net_pos = n + sign * qty
    if pos.net_pos == 0:
        pos.net_price = Decimal(0)
    elif qty > closing:  # reversed through flat: the rest opens at this price
        pos.net_price = price
    return realized


def pair_fill(
    lots: list[list[Any]], fill_id: int, sign: int, qty: int, price: Decimal
) -> list[tuple[int, int, int, Decimal, Decimal]]:
    """Match a fill against the open lots, first in first out; what it closes comes back as
    (buyFillId, sellFillId, qty, buyPrice, sellPrice), what it opens is added as a lot.
    ``lots`` hold signed quantities (all of one sign: the position's)."""
    pairs: list[tuple[int, int, int, Decimal, Decimal]] = []
    left = qty
    while left and lots and (lots[0][1] > 0) != (sign > 0):
        lot_id, lot_qty, lot_px = lots[0]
        n = min(left, abs(lot_qty))
        if sign > 0:  # buying closes a short lot
            pairs.append((fill_id, lot_id, n, price, lot_px))
        else:
            pairs.append((lot_id, fill_id, n, lot_px, price))
        left -= n
        remaining = abs(lot_qty) - n
        if remaining:
            lots[0][1] = remaining if lot_qty > 0 else -remaining
        else:
            lots.pop(0)
    if left:
        lots.append([fill_id, sign * left, price])
    return pairs
