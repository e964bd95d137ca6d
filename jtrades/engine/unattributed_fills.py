"""Fills a login's stream published before their orders, which stand in the way of taking its
positions of their contract as the truth (``mirror_positions.adopt``).

Tradovate may send a fill before its order, and a fill carries no account: the view publishes
it with none, the position event it made, then, once the order arrives, the fill again with
its account. The mirror files fills by account, so it skips the first; a batch may end after
the position, which was then adopted as the truth with the fill in it, and the fill, written in
a later batch, was applied on top of it: a phantom contract, and the next reversal booked twice
the round trip (on the trades and the daily-loss figure). So while such a fill is pending, the
login's positions of its contract are written but not adopted; the mirror measures them from
the fill once it comes with its account.

Kept from the stream's events as the mirror writes them, not asked of the view: the view is
already ahead of the batch being written (the order that attributes the fill may have arrived
while the batch with the position is written), and would answer "none pending" too early.
Its own module: the mirror's writer is long enough, and this is one rule with its own state.
"""

from __future__ import annotations

from collections import Counter

import structlog

from jtrades.broker.base import BrokerEvent, Fill

log = structlog.get_logger(__name__)

# The order follows its fill within milliseconds on the stream (a reconnect's snapshot lists
# both); a fill still without one after this long is let go: kept for good, it would stop every
# later correction of its contract's positions on the login.
WAIT_S = 60.0


class UnattributedFills:
    def __init__(self) -> None:
        self.wait_s = WAIT_S
        # (login, fill id) -> (its contract, 0 when the fill names none; when first seen)
        self._pending: dict[tuple[int, int], tuple[int, float]] = {}
        self._by_contract: Counter[tuple[int, int]] = Counter()  # (login, contract) -> pending

    def note(self, login: int, ev: BrokerEvent, *, now: float) -> None:
        """A fill event of ``login``'s stream: pending while it has no account, done once it
        comes with one. Idempotent: a batch written again notes its events again."""
        f = ev.entity
        if not isinstance(f, Fill):
            return
        key = (login, f.fill_id)
        if ev.account_id is None:
            if key not in self._pending:
                self._pending[key] = (f.contract_id, now)
                self._by_contract[(login, f.contract_id)] += 1
        elif self._pending:
            self._drop(key)

    def blocks(self, login: int, contract_id: int) -> bool:
        """Whether a fill of ``login`` not yet attributed may be in its positions of the
        contract (one naming no contract may be in any)."""
        if not self._by_contract:
            return False
        return (login, contract_id) in self._by_contract or (login, 0) in self._by_contract

    def expire(self, *, now: float) -> None:
        """Let go of the fills pending longer than ``wait_s``, with a warning each."""
        if not self._pending:
            return
        for (login, fill_id), (contract_id, since) in list(self._pending.items()):
            if now - since > self.wait_s:
                self._drop((login, fill_id))
                log.warning(
                    "mirror.fill_unattributed",
                    account_id=login,
                    fill_id=fill_id,
                    contract_id=contract_id,
                    waited_s=round(now - since, 1),
                    effect="its order never came: not recorded, and the login's positions of"
                    " its contract are taken as the truth again",
                )

    def _drop(self, key: tuple[int, int]) -> None:
        found = self._pending.pop(key, None)
        if found is None:
            return
        ck = (key[0], found[0])
        self._by_contract[ck] -= 1
        if self._by_contract[ck] <= 0:
            del self._by_contract[ck]
