"""A delivery's turn at its recorder's session counts (cooldown, max signals, every-Nth).

The filters move the counts before the one statement that stores the delivery and decides
whether it is a duplicate; a duplicate puts them back (``Undo``). The recorder's lock keeps
every other signal of the recorder from moving them meanwhile. It used to be held until the
last order of the signal was answered: one follower's silent broker then held the recorder's
next alert, for every follower, and its answer, until the request timed out. Now a turn
holds it from the filters to the claim, gives it up while the orders go, and takes it again
to give back what the orders did not make (an entry never made); every change to the counts
is made under it, so a duplicate's snapshot and the give-back's difference
(``SessionCounters.give_back``) never erase another signal's move.

A signal of the recorder first waits, at most ``EARLIER_WAIT_S`` in all, for those that came
before it to be done, so that it is filtered on what they made, as before: an entry the
broker refused is given back before the next one is judged by its cooldown. Past that it is
judged on the counts as they stand, an earlier entry still in flight counted as made.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from jtrades.engine.counters import Moved, SessionCounters, Undo

# A healthy broker answers in well under a second; a silent one is waited out for 10 s
# (the request timeout), which TradingView's 3 s and the recorder's followers cannot wait.
EARLIER_WAIT_S = 1.0


class RecorderTurns:
    def __init__(self, counters: SessionCounters) -> None:
        self._counters = counters
        self._locks: dict[int, asyncio.Lock] = {}
        # per recorder: the deliveries not done yet (their futures are set once they are,
        # orders answered and counts settled)
        self._pending: dict[int, dict[int, asyncio.Future[None]]] = {}
        self._arrivals = itertools.count()

    def lock(self, recorder_id: int) -> asyncio.Lock:
        lock = self._locks.get(recorder_id)
        if lock is None:
            lock = self._locks[recorder_id] = asyncio.Lock()
        return lock

    @asynccontextmanager
    async def turn(self, recorder_id: int, undo: Undo) -> AsyncIterator[RecorderTurn]:
        pending = self._pending.setdefault(recorder_id, {})
        earlier = list(pending.values())  # those that came before it, not done yet
        me, done = next(self._arrivals), asyncio.get_running_loop().create_future()
        pending[me] = done
        lock = self.lock(recorder_id)
        turn: RecorderTurn | None = None
        try:
            if earlier:  # never waiting holding the lock: they take it again to settle
                await asyncio.wait(earlier, timeout=EARLIER_WAIT_S)
            await lock.acquire()
            turn = RecorderTurn(lock, self._counters, undo)
            yield turn
        finally:
            if turn is not None:
                turn.end()
            del pending[me]
            if not pending:
                del self._pending[recorder_id]
            done.set_result(None)


class RecorderTurn:
    def __init__(self, lock: asyncio.Lock, counters: SessionCounters, undo: Undo) -> None:
        self._lock = lock
        self._counters = counters
        self._undo = undo
        self.held = True
        self.claimed = False  # stored with its orders (``stored``)
        self.moved: Moved = {}  # the counts as the signal left them when it was stored

    def stored(self) -> None:
        """The signal is stored, its orders about to go: the counts it moved stand (but for
        what the orders give back), and the recorder's next signal may move them too."""
        self.moved.update(self._counters.moved(self._undo))
        self.claimed = True
        self.held = False
        self._lock.release()

    @asynccontextmanager
    async def again(self) -> AsyncIterator[None]:
        """The lock, taken again if given up, to change the counts after the orders."""
        if not self.held:
            await self._lock.acquire()
            self.held = True
        yield

    def end(self) -> None:
        if self.held:
            self.held = False
            self._lock.release()
