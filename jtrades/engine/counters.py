"""The per-session counts the filters read (cooldown, max signals, every-Nth), per recorder and
per trader, and putting them back when a signal turns out not to count.

In memory, so no filter costs a round trip; seeded at start from the stored verdicts
(``store.trading``), which is why a signal's row records what it moved. The counts belong to one
CME trading day and start again at zero when the day turns (17:00 Chicago); the last entry's
time does not: ``--cooldown`` is the least time between two entries, and one made at 16:55 is
still five minutes old at 17:00.

The engine filters a delivery before the one statement that stores it and decides whether it
is a duplicate, so the counts move first: each signal carries an ``Undo`` of what they were,
and a duplicate (or a delivery that could not be stored) puts them back.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from jtrades.engine.filters import Rejection
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


def count_entry(c: Counters, refused: str | None, at: datetime) -> tuple[bool, bool]:
    """Move ``c`` for an entry signal its chain judged (``refused``: the filter that said no,
    None: accepted) and return (entry, seen), what the signal's row keeps for a restart:
    accepted, it is an entry (the every-Nth saw it too); refused by every-Nth, last in the
    chain, it was seen; refused before, the every-Nth never saw it."""
    if refused is None:
        c.entries += 1
        c.seen += 1
        c.last_entry_at = at
        return True, True
    if refused == "every_nth":
        c.seen += 1
        return False, True
    return False, False


@dataclass(slots=True)
class ForeignEntry:
    """A buy/sell the recorder's reading cannot open (a side its ``--direction`` forbids) that a
    trader reading it its own way may take as an entry (``filters.forbidden_side``). The
    recorder's entry filters' verdict on it (``filters.check_entry``, judged once, at arrival)
    applies to every such trader, and the recorder counts it once, when the first one takes it:
    a trader's entry used no count of the recorder's, and its cooldown, max signals and
    every-Nth did not hold."""

    refusal: Rejection | None
    counters: Counters  # the recorder's
    at: datetime  # the signal's arrival
    taken: bool = False

    def take(self, detail: dict[str, Any]) -> Rejection | None:
        """The recorder's verdict for a trader whose reading is an entry; counted the first
        time, and written on the signal's ``detail`` as the recorder's own entries are."""
        if not self.taken:
            self.taken = True
            refused = self.refusal.filter if self.refusal is not None else None
            detail["entry"], detail["nth_seen"] = count_entry(self.counters, refused, self.at)
        return self.refusal


class SessionCounters:
    def __init__(self) -> None:
        self._tables: dict[Kind, dict[int, Counters]] = {"recorder": {}, "trader": {}}

    def seed(self, kind: Kind, key: int, counts: Counters) -> None:
        self._tables[kind][key] = counts

    def get(self, kind: Kind, key: int, now: datetime, undo: Undo | None = None) -> Counters:
        """The live counts of ``key`` for ``now``'s trading day (fresh ones once it has turned,
        keeping the last entry's time), to be moved in place; their state before this signal's
        first move is kept in ``undo``."""
        table = self._tables[kind]
        current = table.get(key)
        if undo is not None and (kind, key) not in undo:
            undo[(kind, key)] = current.copy() if current is not None else None
        start = session_start(now)
        if current is None or current.session != start:
            last = current.last_entry_at if current is not None else None
            current = table[key] = Counters(start, last_entry_at=last)
        return current

    def undo(self, undo: Undo) -> None:
        """Put back every count the signal moved."""
        for (kind, key), before in undo.items():
            if before is None:
                self._tables[kind].pop(key, None)
            else:
                self._tables[kind][key] = before
