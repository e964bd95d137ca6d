"""The per-session counts the filters read (cooldown, max signals, every-Nth), per recorder and
per trader, and putting them back when a signal turns out not to count.

In memory, so no filter costs a round trip; seeded at start from the stored verdicts
(``store.trading``), which is why a signal's row records what it moved. A count belongs to one
CME trading day and starts again at zero when the day turns (17:00 Chicago).

The engine filters a delivery before the one statement that stores it and decides whether it
is a duplicate, so the counts move first: each signal carries an ``Undo`` of what they were,
and a duplicate (or a delivery that could not be stored) puts them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from jtrades.engine.tradingday import session_start

Kind = Literal["recorder", "trader"]


@dataclass(slots=True)
class Counters:
    """One recorder's or trader's counts in the trading day that began at ``session``."""

    session: datetime
    signals: int = 0
    entries: int = 0
    last_entry_at: datetime | None = None
    seen: int = 0

    def copy(self) -> Counters:
        return Counters(self.session, self.signals, self.entries, self.last_entry_at, self.seen)


# What the counts of (kind, id) were before a signal moved them; None = there were none.
Undo = dict[tuple[Kind, int], Counters | None]


class SessionCounters:
    def __init__(self) -> None:
        self._tables: dict[Kind, dict[int, Counters]] = {"recorder": {}, "trader": {}}

    def seed(self, kind: Kind, key: int, counts: Counters) -> None:
        self._tables[kind][key] = counts

    def get(self, kind: Kind, key: int, now: datetime, undo: Undo | None = None) -> Counters:
        """The live counts of ``key`` for ``now``'s trading day (fresh ones once it has turned),
        to be moved in place; their state before this signal's first move is kept in ``undo``."""
        table = self._tables[kind]
        current = table.get(key)
        if undo is not None and (kind, key) not in undo:
            undo[(kind, key)] = current.copy() if current is not None else None
        start = session_start(now)
        if current is None or current.session != start:
            current = table[key] = Counters(start)
        return current

    def undo(self, undo: Undo) -> None:
        """Put back every count the signal moved."""
        for (kind, key), before in undo.items():
            if before is None:
                self._tables[kind].pop(key, None)
            else:
                self._tables[kind][key] = before
