"""How far the mirror has counted each sub-account's fills into the day's realized P&L.

Why: the daily-loss filter adds the realized P&L (counted by the mirror once its batch
commits: 2–20 ms of batching, then a round trip) to the open P&L of the live view, which moves
at once. In between, a losing close shows flat (no open loss) while its loss is not counted
yet, and an entry judged then passed a limit the day had already reached: a paper stop filled
by the alert's own price always, a close and a re-entry on one bar sometimes. So a trader with
a daily-loss limit waits, before its filters, until the mirror has finished with every fill
the view holds for its sub-accounts (bounded).

Fill ids are the broker's, increasing (Tradovate's are global; a paper login numbers its own
from one counter): the highest one finished is the mark, compared with the view's highest.
Marks are per account at the broker as the mirror follows it — (login, broker account id) —
not per sub-account row: a fill of an account no trader followed yet is finished when the
mirror skips it, or linking that account later left the mark behind the view for the day and
every entry refused. A fill in a batch the database refused until it was given up is finished
too: its P&L is lost either way (logged), and waiting for it refused every entry until a
restart.

A fill the mirror holds (its contract's value per point not known yet: a lookup refused for a
while) is not finished, and keeps its account behind while it is held: the mark alone, raised
past it by a later fill of another contract priced at once, said the losing close it held was
counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping

from jtrades.aio import within
from jtrades.broker.base import BrokerEvent, Fill

# (login: the jtrades account id, the broker's account id)
AccountKey = tuple[int, int]


def note(marks: dict[AccountKey, int], key: AccountKey, fill_id: int) -> None:
    """Raise ``key``'s mark in ``marks`` to ``fill_id``."""
    if fill_id > marks.get(key, 0):
        marks[key] = fill_id


def fill_marks(events: Iterable[tuple[int, object, BrokerEvent]]) -> dict[AccountKey, int]:
    """The highest fill id per account among tagged events (login, broker, event)."""
    return _marks(events, max)


def held_marks(events: Iterable[tuple[int, object, BrokerEvent]]) -> dict[AccountKey, int]:
    """The lowest fill id per account among tagged events (the fills the mirror holds)."""
    return _marks(events, min)


def _marks(
    events: Iterable[tuple[int, object, BrokerEvent]], pick: Callable[[int, int], int]
) -> dict[AccountKey, int]:
    marks: dict[AccountKey, int] = {}
    for login, _broker, ev in events:
        if isinstance(ev.entity, Fill) and ev.account_id:
            key = (login, ev.account_id)
            fill_id = ev.entity.fill_id
            marks[key] = pick(marks[key], fill_id) if key in marks else fill_id
    return marks


class BookedFills:
    def __init__(self) -> None:
        self._mark: dict[AccountKey, int] = {}  # the highest fill id finished with
        self._held: dict[AccountKey, int] = {}  # the lowest fill id the mirror holds
        self._moved = asyncio.Event()

    def mark(self, key: AccountKey) -> int:
        return self._mark.get(key, 0)

    def book(
        self, fills: Mapping[AccountKey, int], held: Mapping[AccountKey, int] | None = None
    ) -> None:
        """The mirror has finished with these fills (account -> highest fill id): counted,
        found already stored, skipped (no sub-account follows it) or given up. ``held``: the
        fills it holds now (account -> lowest fill id), all of them; None: as they were."""
        for key, fill_id in fills.items():
            note(self._mark, key, fill_id)
        changed = held is not None and held != self._held
        if held is not None:
            self._held = dict(held)
        if fills or changed:
            moved, self._moved = self._moved, asyncio.Event()
            moved.set()

    def behind(self, last_fills: Mapping[AccountKey, int]) -> list[AccountKey]:
        """The accounts whose view holds a fill (account -> the view's highest id) the mirror
        has not finished with, or one it holds."""
        return [
            key
            for key, last in last_fills.items()
            if last > self._mark.get(key, 0) or self._held.get(key, last + 1) <= last
        ]

    async def caught_up(self, last_fills: Mapping[AccountKey, int], within_s: float) -> bool:
        """Whether the mirror finishes with every fill of ``last_fills`` within ``within_s``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while self.behind(last_fills):
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await within(self._moved.wait(), left)
            except TimeoutError:
                return False
        return True
