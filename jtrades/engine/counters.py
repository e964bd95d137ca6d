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

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Literal
from zoneinfo import ZoneInfo

from jtrades.engine.filters import RecorderState, Rejection, check_entry
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Signal
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
# What they were once the signal was stored, when other signals of the recorder may move them
# too: what it moved is the difference (``SessionCounters.give_back``).
Moved = dict[tuple[Kind, int], Counters]


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


@dataclass(frozen=True, slots=True)
class ForeignEntry:
    """An entry of a trader that reads the recorder its own way (``filters.reads_own_way``):
    all its entries count on its own counters, whichever reading made them, as the row's
    ``trader_entries``/``trader_seen`` list them (what a restart seeds them from, and what
    ``verdicts`` gives back for an entry none of its accounts made). The recorder's entry
    filters (``filters.check_entry``: the recorder's values, in its owner's zone) judge each on
    them, besides what the recorder's own chain said:

    - ``forbidden``: a side the recorder's ``--direction`` forbids (``filters.forbidden_side``),
      no entry of the recorder's at all. Its chain judged none of its entry filters and counts
      nothing: all of them judge it here, on the trader's counters alone. Counted on the
      recorder's, one follower's ``--inverse`` (another user's, on a public recorder) spent
      the owner's ``--max-signals``, started her cooldown and moved her every-Nth turn.
    - else an entry of the recorder's reading too: its chain passed it on the recorder's
      counters, which every trader is held to, and its cooldown and max signals judge it
      again on the trader's. Judged on the recorder's alone, a ``--direction both`` follower of
      a long-only recorder with a one-hour cooldown went short (its own reading, on its
      counters), then long a minute later on a buy the recorder's clean counters passed: two
      entries inside its cooldown, twice its max signals. Not its every-Nth: that turn was
      the recorder's, and taken twice it is every N-th of every N-th."""

    signal: Signal
    settings: RiskSettings  # the recorder's
    tz: ZoneInfo  # the recorder owner's
    at: datetime  # the signal's arrival
    forbidden: bool = True

    def judge(self, own: Counters) -> Rejection | None:
        """The recorder's verdict on this entry of a trader whose counts are ``own``; they
        move with the trader's verdict (``fanout``), not here."""
        state = RecorderState(own.signals, own.entries, own.last_entry_at, own.seen)
        s = self.settings if self.forbidden else dataclasses.replace(self.settings, every_nth=1)
        return check_entry(self.signal, s, state, self.at, self.tz)


# how many given-back entry times ``SessionCounters`` remembers per recorder or trader: only
# those of entries still in flight together matter
WITHDRAWN_KEPT = 64


class SessionCounters:
    def __init__(self) -> None:
        self._tables: dict[Kind, dict[int, Counters]] = {"recorder": {}, "trader": {}}
        # per (kind, id): the time of each entry given back -> the last entry before it
        self._withdrawn: dict[tuple[Kind, int], dict[datetime, datetime | None]] = {}

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

    def moved(self, undo: Undo) -> Moved:
        """The counts ``undo`` knows, as they are now."""
        out: Moved = {}
        for kind, key in undo:
            current = self._tables[kind].get(key)
            if current is not None:
                out[(kind, key)] = current.copy()
        return out

    def give_back(
        self, kind: Kind, key: int, before: Counters | None, after: Counters | None
    ) -> None:
        """Take back what a signal moved (``before`` → ``after``) from the counts as they are
        now, leaving what other signals moved since: the recorder's next signal may be
        filtered while this one's orders are still going out. Its last entry time goes back
        only while still its own; a trading day turned since has counts that are not its.
        ``after`` None: nobody moved them since (they are as the signal left them)."""
        current = self._tables[kind].get(key)
        if current is None:
            return
        if after is None:
            after = current.copy()
        last = before.last_entry_at if before is not None else None
        if before is None or before.session != after.session:
            before = Counters(after.session, last_entry_at=last)
        if current.session == after.session:
            current.signals = max(0, current.signals - (after.signals - before.signals))
            current.entries = max(0, current.entries - (after.entries - before.entries))
            current.seen = max(0, current.seen - (after.seen - before.seen))
        if after.last_entry_at is not None and after.last_entry_at != last:
            withdrawn = self._withdrawn.setdefault((kind, key), {})
            if len(withdrawn) >= WITHDRAWN_KEPT:
                del withdrawn[min(withdrawn)]
            withdrawn[after.last_entry_at] = last
            if current.last_entry_at == after.last_entry_at:
                # the entry before it may have been given back too (two entries in flight,
                # both refused by the broker, in arrival order): the last one still counting,
                # as a restart reads it from the rows
                for _ in range(len(withdrawn)):  # bounded: a clock set back cannot loop it
                    if last is None or last not in withdrawn:
                        break
                    last = withdrawn[last]
                current.last_entry_at = last

    def undo(self, undo: Undo) -> None:
        """Put back every count the signal moved."""
        for (kind, key), before in undo.items():
            if before is None:
                self._tables[kind].pop(key, None)
            else:
                self._tables[kind][key] = before
