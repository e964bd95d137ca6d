"""Realized P&L from fills: the round trips they close and the day's total per sub-account.

Pure: the mirror feeds each new fill through ``close_trade`` and adds what it closes to
``DailyPnl``, which the daily-loss filter reads.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, localcontext

from jtrades.engine.instruments import split_symbol
from jtrades.engine.tradingday import session_start
from jtrades.errors import JtradesError


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    side: str
    qty: int
    entry_price: Decimal  # the average of the lots closed, to ENTRY_PLACES past the prices' own
    exit_price: Decimal
    pnl: Decimal


_EPOCH = datetime(
    1970, 1, 1, tzinfo=UTC
)  # a replay's fills need a time; open_lots reads only the lots

# How far the average replayed from the stored fills may be from the broker's stored one and
# still be the same position: the broker's is a float (21500.333333333332), ours exact
_SAME_AVERAGE = Decimal("0.000001")

# A trade closing lots of different prices shows their average entry to this many more decimal
# places than the prices have (21500.3333 for 21500, 21500, 21501); its P&L stays exact.
ENTRY_PLACES = 4


@dataclass(slots=True)
class OpenPosition:
    """A position as the fills made it. ``lots`` — (signed quantity, price) per opening fill,
    oldest first — are what a closing fill is measured against, first in first out as the broker
    pairs fills, so a round trip's P&L is exact in its prices: an average cost (21500.333… for
    2 @ 21500 and 1 @ 21501) has no exact Decimal, and its 28-digit rounding made a −$26 trade
    −25.99999999999999999999998 (the daily-loss filter at 26 let the next entry through).
    ``avg`` is the broker's ``netPrice``, the average of the open quantity, which a partial exit
    leaves as it was: compared with the broker's position (``mirror_positions``), never measured
    from. Given as (net, avg), as the broker's or the stored position is, it is one lot.

    Given a net with neither (a stored position the broker reported without a netPrice, none
    of its fills stored), it cannot be measured from (``measurable``): its closes book no round
    trip until a fill reverses it or the broker's next position is adopted. These are the
    broker's figures: they are never asserted on (an assertion refused the mirror's whole
    batch, every login's fills in it, on every retry)."""

    net: int = 0
    avg: Decimal | None = None
    opened_at: datetime | None = None
    lots: tuple[tuple[int, Decimal], ...] = ()
    # The lots' total quantity and the tuple it was summed from (lots are replaced, never
    # changed in place, so the identity says whether it still holds): a position scaled into
    # one contract at a time re-summed all its lots twice per fill, a quarter of the daemon's
    # CPU at 600 lots.
    _summed: tuple[tuple[int, Decimal], ...] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _lot_total: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.net and not self.lots and self.avg is not None:
            self.lots = ((self.net, self.avg),)

    @property
    def measurable(self) -> bool:
        """Whether the lots account for the whole net, so a close can be measured."""
        if self._summed is not self.lots:
            self._summed, self._lot_total = self.lots, sum(q for q, _ in self.lots)
        return self._lot_total == self.net

    def _add_lot(self, qty: int, price: Decimal) -> None:
        """A lot opened at the end, the total carried forward instead of summed again."""
        known = self._summed is self.lots
        self.lots = (*self.lots, (qty, price))
        if known:
            self._summed, self._lot_total = self.lots, self._lot_total + qty

    def copy(self) -> OpenPosition:
        """One that moves on its own (the lots are a tuple, replaced, never changed in place),
        its lots' total carried over: the mirror copies each position a batch touches, and a
        copy that summed its lots again cost 5 % of the daemon's CPU at 400 lots."""
        twin = OpenPosition(self.net, self.avg, self.opened_at, self.lots)
        twin._summed, twin._lot_total = self._summed, self._lot_total
        return twin


def _average(cost: Decimal, qty: int, prices: list[Decimal]) -> Decimal:
    """``cost / qty``, exact when it ends within ENTRY_PLACES past the prices' decimals (21500.5),
    else rounded there: never a 28-digit rounding of a repeating decimal. In a wide context: a
    lot at a stored 28-digit average (a position seeded at start) asked quantize for more
    digits than the default context holds, and the mirror's batch failed on InvalidOperation."""
    places = min(min(int(p.as_tuple().exponent) for p in prices), 0) - ENTRY_PLACES
    with localcontext() as ctx:
        ctx.prec = 80
        exact = cost / qty
        rounded = exact.quantize(Decimal(1).scaleb(max(places, -30)))
        return exact if rounded * qty == cost else rounded


def open_lots(
    net: int, fills: Iterable[tuple[int, Decimal]], avg: Decimal | None = None
) -> tuple[tuple[int, Decimal], ...]:
    """The lots a position of ``net`` holds, from every stored fill of its sub-account and
    symbol (signed quantity, price), oldest first, measured as the mirror measured them;
    empty when they do not come to ``net`` (some are missing: the position was adopted from
    the broker, or a fill given up), and the caller falls back to one lot at the average.

    Why: a position seeded at start as one lot at its stored average lost first in first out
    across every restart (a partial exit leaves the broker's average where it was: long
    100 + 110, a sell at 100, then a restart, booked the last close against 105). Replayed
    whole and checked against the net, an older closed position's fills are never taken for
    the lots of one whose own fills are missing.

    And against the stored average (``avg``, the broker's, which replaying the fills as the
    broker averages must give): fills missed while the daemon was down may net to nothing (a
    stop-out and a re-entry at 120), and the long 1 @ 100 they left on record, of the same
    net, was taken for the long 1 @ 120 the broker holds: its close booked 25 points for 5."""
    pos = OpenPosition()
    for qty, price in fills:
        close_trade(pos, qty, price, Decimal(1), _EPOCH)
    if pos.net != net or not net:
        return ()
    if avg is not None and (pos.avg is None or abs(pos.avg - avg) > _SAME_AVERAGE):
        return ()
    return pos.lots


def close_trade(
    pos: OpenPosition, signed_qty: int, price: Decimal, value_per_point: Decimal, at: datetime
) -> ClosedTrade | None:
    """Apply a fill to ``pos`` (mutated); the round trip it closes, if it reduces the position
    and the position is ``measurable``."""
    if not pos.measurable:
        _unmeasured(pos, signed_qty, price, at)
        return None
    if pos.net == 0 or (pos.net > 0) == (signed_qty > 0):
        total = pos.net + signed_qty
        prev = (pos.avg or Decimal(0)) * abs(pos.net)
        pos.avg = (prev + price * abs(signed_qty)) / abs(total)
        if pos.net == 0:
            pos.opened_at = at
        pos.net = total
        pos._add_lot(signed_qty, price)
        return None
    direction = 1 if pos.net > 0 else -1
    closed = min(abs(signed_qty), abs(pos.net))
    lots, left, cost, prices = list(pos.lots), closed, Decimal(0), []
    while left:
        qty, lot_price = lots[0]
        n = min(left, abs(qty))
        cost += lot_price * n
        prices.append(lot_price)
        left -= n
        if n == abs(qty):
            lots.pop(0)
        else:
            lots[0] = (qty - direction * n, lot_price)
    trade = ClosedTrade(
        "long" if direction > 0 else "short",
        closed,
        _average(cost, closed, prices),
        price,
        (price * closed - cost) * direction * value_per_point,
    )
    rest = signed_qty + direction * closed
    pos.net -= direction * closed
    pos.lots = tuple(lots)
    if pos.net == 0:
        pos.avg = None
    if rest:
        pos.net, pos.avg, pos.opened_at, pos.lots = rest, price, at, ((rest, price),)
    return trade


def _unmeasured(pos: OpenPosition, signed_qty: int, price: Decimal, at: datetime) -> None:
    """A fill on a position that cannot be measured: its net moves, and it stays unmeasurable
    (an add averaged with nothing would measure the next close from a price never held) until
    it is flat, or reversed into a position of this fill's price alone."""
    net = pos.net + signed_qty
    if net == 0 or (net > 0) != (pos.net > 0):
        pos.net, pos.avg, pos.lots = 0, None, ()
        if net:
            pos.net, pos.avg, pos.opened_at, pos.lots = net, price, at, ((net, price),)
    else:
        pos.net, pos.avg, pos.lots = net, None, ()


def instrument(symbol: str) -> str:
    """The root a contract is of (``MNQZ6`` → ``MNQ``): a trader's daily loss counts its
    instrument's trades in every month (a roll does not forget the day's losses). A symbol that
    is no futures contract is its own instrument."""
    try:
        return split_symbol(symbol).root
    except JtradesError:
        return symbol


class DailyPnl:
    """Realized P&L per (sub-account, instrument) for the current CME trading day (reset at
    17:00 Chicago).

    Per instrument: a trader's daily-loss limit is judged on its own instrument's P&L, realized
    and open alike (``fanout``). Summed over the whole sub-account, another trader's profit in
    another contract on the same sub-account hid this one's loss, and its loss counted once
    closed but not while open."""

    def __init__(self) -> None:
        self._since: datetime | None = None
        self._by: dict[tuple[int, str], Decimal] = {}

    def seed(self, rows: dict[tuple[int, str], Decimal], since: datetime) -> None:
        self._since, self._by = since, {}
        for (sub, symbol), pnl in rows.items():
            key = (sub, instrument(symbol))
            self._by[key] = self._by.get(key, Decimal(0)) + pnl

    def _roll(self, now: datetime) -> bool:
        """Move to ``now``'s trading day if it is a later one; whether ``now`` is in the day
        counted. Never backwards: a trade of a past day (a fill replayed after a restart across
        17:00 Chicago) or a clock a moment behind the broker's must not wipe today's figure."""
        start = session_start(now)
        if self._since is None or start > self._since:
            self._since, self._by = start, {}
        return start == self._since

    def add(self, sub_account_id: int, symbol: str, pnl: Decimal, at: datetime) -> None:
        if self._roll(at):  # a past day's trade is that day's, not today's
            key = (sub_account_id, instrument(symbol))
            self._by[key] = self._by.get(key, Decimal(0)) + pnl

    def realized(
        self, sub_account_ids: list[int], now: datetime, instruments: Iterable[str] | None = None
    ) -> Decimal:
        """Today's realized P&L of these sub-accounts, in ``instruments`` (roots; None: all)."""
        self._roll(now)
        subs = set(sub_account_ids)
        roots = None if instruments is None else set(instruments)
        return sum(
            (
                pnl
                for (sub, root), pnl in self._by.items()
                if sub in subs and (roots is None or root in roots)
            ),
            Decimal(0),
        )
