"""Realized P&L from fills: the round trips they close and the day's total per sub-account.

Pure: the mirror feeds each new fill through ``close_trade`` and adds what it closes to
``DailyPnl``, which the daily-loss filter reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from jtrades.engine.tradingday import session_start


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    side: str
    qty: int
    entry_price: Decimal
    exit_price: Decimal
    pnl: Decimal


@dataclass(slots=True)
class OpenPosition:
    net: int = 0
    avg: Decimal | None = None
    opened_at: datetime | None = None


def close_trade(
    pos: OpenPosition, signed_qty: int, price: Decimal, value_per_point: Decimal, at: datetime
) -> ClosedTrade | None:
    """Apply a fill to ``pos`` (mutated); the round trip it closes, if it reduces the position."""
    if pos.net == 0 or (pos.net > 0) == (signed_qty > 0):
        total = pos.net + signed_qty
        prev = (pos.avg or Decimal(0)) * abs(pos.net)
        pos.avg = (prev + price * abs(signed_qty)) / abs(total)
        if pos.net == 0:
            pos.opened_at = at
        pos.net = total
        return None
    assert pos.avg is not None
    direction = 1 if pos.net > 0 else -1
    closed = min(abs(signed_qty), abs(pos.net))
    trade = ClosedTrade(
        "long" if direction > 0 else "short",
        closed,
        pos.avg,
        price,
        (price - pos.avg) * closed * direction * value_per_point,
    )
    rest = signed_qty + direction * closed
    pos.net -= direction * closed
    if pos.net == 0:
        pos.avg = None
    if rest:
        pos.net, pos.avg, pos.opened_at = rest, price, at
    return trade


class DailyPnl:
    """Realized P&L per sub-account for the current CME trading day (reset at 17:00 Chicago)."""

    def __init__(self) -> None:
        self._since: datetime | None = None
        self._by_sub: dict[int, Decimal] = {}

    def seed(self, rows: dict[tuple[int, str], Decimal], since: datetime) -> None:
        self._since, self._by_sub = since, {}
        for (sub, _), pnl in rows.items():
            self._by_sub[sub] = self._by_sub.get(sub, Decimal(0)) + pnl

    def _roll(self, now: datetime) -> bool:
        """Move to ``now``'s trading day if it is a later one; whether ``now`` is in the day
        counted. Never backwards: a trade of a past day (a fill replayed after a restart across
        17:00 Chicago) or a clock a moment behind the broker's must not wipe today's figure."""
        start = session_start(now)
        if self._since is None or start > self._since:
            self._since, self._by_sub = start, {}
        return start == self._since

    def add(self, sub_account_id: int, pnl: Decimal, at: datetime) -> None:
        if self._roll(at):  # a past day's trade is that day's, not today's
            self._by_sub[sub_account_id] = self._by_sub.get(sub_account_id, Decimal(0)) + pnl

    def realized(self, sub_account_ids: list[int], now: datetime) -> Decimal:
        self._roll(now)
        return sum((self._by_sub.get(s, Decimal(0)) for s in sub_account_ids), Decimal(0))
