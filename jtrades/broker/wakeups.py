"""Wake the tasks waiting on one account when its live view changes.

The dispatcher holds a sub-account's lock until the broker's view shows the position its orders
make. Polling for that wakes every waiting task every few milliseconds, hundreds of them on a
signal for a large fan-out, and notices the change a poll late; a change wakes exactly the
tasks waiting on its account, at once.
"""

from __future__ import annotations

import asyncio

from jtrades.broker.base import BrokerEvent


class Wakeups:
    """Futures per account id, resolved (and forgotten) when that account changes."""

    def __init__(self) -> None:
        self._waiting: dict[int, asyncio.Future[None]] = {}

    def fire(self, account_id: int) -> None:
        fut = self._waiting.pop(account_id, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def fire_all(self) -> None:
        for account_id in list(self._waiting):
            self.fire(account_id)

    def on_event(self, event: BrokerEvent) -> None:
        """Wake whoever a published view change concerns: a position's account, or everyone
        when a view is synced or lost (what they wait for may now read differently)."""
        if event.kind == "position" and event.account_id is not None:
            self.fire(event.account_id)
        elif event.kind == "session":
            self.fire_all()

    async def wait(self, account_id: int, within_s: float) -> None:
        """Return at the account's next change, or after ``within_s`` (whichever comes first)."""
        fut = self._waiting.get(account_id)
        if fut is None or fut.done():
            fut = self._waiting[account_id] = asyncio.get_running_loop().create_future()
        await asyncio.wait((fut,), timeout=within_s)
