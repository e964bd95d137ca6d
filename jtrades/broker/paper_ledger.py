"""A paper login's accounts: the fills each sub-account got, the positions they add up to, and
the P&L realized closing them.

The paper broker (``paper``) decides when and at what price an order fills; what that fill then
leaves held and earned is arithmetic on the account, the same whichever order filled, and it is
kept here. A fill adds to a position (at the average price, weighted by quantity) or closes it (part or
all, realizing ``(price - average) * qty * value per point``); a fill past flat opens the
other way at the fill's price. Positions are by sub-account and contract symbol, as Tradovate
keeps them; a restart puts the positions back from the mirrored rows (``restore``), not the
fills.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction

from jtrades.broker.base import CashBalance, Fill

# How far a repeating average is carried (21492.6388…): well past any tick, never the 28
# digits of Decimal's default context, whose last one drifted from fill to fill
AVG_PLACES = 12


@dataclass(slots=True)
class Holding:
    """One sub-account's position in one contract: signed quantity, and its average price kept
    exactly (a fraction). Rebuilt from the last rounded average at each add, it drifted: four
    buys whose average is 21490.75 left 21490.75000000000000000000001, and the DCA stop priced
    from it went out a tick tighter than configured."""

    net: int = 0
    exact: Fraction | None = None  # None flat

    @property
    def avg(self) -> Decimal | None:
        """The average price: exact when it ends within ``AVG_PLACES`` decimals, else rounded
        there."""
        return None if self.exact is None else _decimal(self.exact)


def _decimal(value: Fraction) -> Decimal:
    with localcontext() as ctx:
        ctx.prec = 80
        d = Decimal(value.numerator) / Decimal(value.denominator)
        rounded = d.quantize(Decimal(1).scaleb(-AVG_PLACES))
        return d if rounded == d else rounded


def apply_fill(
    pos: Holding, signed: int, price: Decimal, value_per_point: Decimal
) -> Decimal | None:
    """Add a fill of ``signed`` contracts at ``price`` to ``pos``; the P&L it realized, or None
    when it closed nothing."""
    if pos.net == 0 or (pos.net > 0) == (signed > 0):
        total = pos.net + signed
        prev = (pos.exact or Fraction(0)) * abs(pos.net)
        pos.exact = (prev + Fraction(price) * abs(signed)) / abs(total)
        pos.net = total
        return None
    closed = min(abs(signed), abs(pos.net))
    assert pos.exact is not None
    direction = 1 if pos.net > 0 else -1
    pnl = _decimal((Fraction(price) - pos.exact) * closed * direction * Fraction(value_per_point))
    rest = signed + direction * closed  # what is left of the fill after closing
    pos.net += direction * -closed
    if pos.net == 0:
        pos.exact = None
    if rest != 0:
        pos.net, pos.exact = rest, Fraction(price)
    return pnl


class PaperLedger:
    """Fills (in the order they happened), positions and realized P&L, by sub-account."""

    def __init__(self) -> None:
        self._fills: dict[int, list[Fill]] = {}
        self._held: dict[tuple[int, str], Holding] = {}
        self._realized: dict[int, Decimal] = {}

    def record(self, fill: Fill, value_per_point: Decimal) -> Holding:
        """Book ``fill``; the position it leaves."""
        aid = fill.account_id
        self._fills.setdefault(aid, []).append(fill)
        pos = self._held.setdefault((aid, fill.symbol), Holding())
        pnl = apply_fill(pos, fill.side.sign * fill.qty, fill.price, value_per_point)
        if pnl is not None:
            self._realized[aid] = self._realized.get(aid, Decimal(0)) + pnl
        return pos

    def restore(self, account_id: int, symbol: str, net: int, avg: Decimal | None) -> None:
        self._held[(account_id, symbol)] = Holding(net, None if avg is None else Fraction(avg))

    def holding(self, account_id: int, symbol: str) -> Holding | None:
        return self._held.get((account_id, symbol))

    def held(self, account_id: int) -> list[tuple[str, Holding]]:
        """The account's positions by symbol, flat ones too (a position once held stays)."""
        return [(sym, p) for (aid, sym), p in self._held.items() if aid == account_id]

    def accounts_held(self) -> list[int]:
        """The accounts that have held a position, in the order they first did."""
        return list(dict.fromkeys(aid for aid, _ in self._held))

    def all_fills(self) -> Iterator[tuple[int, Fill]]:
        return ((aid, f) for aid, fills in self._fills.items() for f in fills)

    def fills(self, account_id: int) -> list[Fill]:
        return list(self._fills.get(account_id, []))

    def filled_qty(self, account_id: int, order_ids: Iterable[int]) -> dict[int, int]:
        wanted, out = set(order_ids), dict[int, int]()
        for f in self._fills.get(account_id, ()):  # one sub-account's fills
            if f.order_id in wanted:
                out[f.order_id] = out.get(f.order_id, 0) + f.qty
        return out

    def last_fill_id(self, account_id: int) -> int:
        fills = self._fills.get(account_id)
        return fills[-1].fill_id if fills else 0  # numbered from one counter, in order

    def cash(self, account_id: int) -> CashBalance:
        return CashBalance(account_id, self._realized.get(account_id, Decimal(0)))
