"""The mirror's fills that cannot be priced yet, held with the positions behind them.

A fill is measured with its contract's value per point, which may need the broker
(``fill_pricing``), or name no contract at all yet. Written without its round trip, it would
never count; so it is held, and so are the later fills of its sub-account and contract, which
must be measured after it. A fill held for ``hold_s`` is given up, with the later fills of its
contract (measured without it, they would record a wrong round trip) and, in the mirror, the
positions behind them: the session's next snapshot replays them together.
"""

from __future__ import annotations

import asyncio
import dataclasses

import structlog

from jtrades.broker.base import Broker, BrokerEvent, Fill
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.engine.fill_pricing import Pricing

log = structlog.get_logger(__name__)

# (login account id, its broker, the event)
Tagged = tuple[int, Broker, BrokerEvent]
# (sub-account, the tagged fill event, the fill): a fill of a batch waiting for its price
PendingFill = tuple[int, Tagged, Fill]
# (sub-account, contract id): the position a fill moves
PosKey = tuple[int, int]


class HeldFills:
    """Which of a batch's fills can be written now, which are held (the unpriced ones and the
    later fills of their contract), and which are given up together per contract after
    ``hold_s``; since when each is held, and the fills given up by key."""

    def __init__(self, pricing: Pricing) -> None:
        self._pricing = pricing
        self.hold_s = 900.0  # then a held fill is given up (the next sync replays it)
        # the first and the longest wait before a symbol whose lookup failed is asked again
        self.hold_waits_s = (0.5, 30.0)
        # how long a batch waits for its lookups: a contract cached or answered at once is
        # priced in the batch, a slow lookup (a 429 retried) holds the fill, not the writer
        self.price_wait_s = 0.05
        # since when (loop time) each fill is held, by (login, fill id)
        self._held_since: dict[tuple[int, int], float] = {}
        # fills given up, by (sub-account, contract), until a position of theirs is adopted
        self.given_up: dict[PosKey, set[int]] = {}

    def wait(self, held: list[Tagged]) -> float | None:
        """How long the writer may wait for events before trying its ``held`` fills on their own
        (None: no fill is held); at most the longest backoff, so one is given up in time."""
        if not held:
            return None
        waits = [self.hold_waits_s[1]]
        for aid, _broker, ev in held:
            if not isinstance(ev.entity, Fill):
                continue
            if not ev.entity.symbol:  # named in the view, maybe without an event: look again
                waits.append(self.hold_waits_s[0])
            elif (due := self._pricing.due_in(aid, ev.entity.symbol)) is not None:
                waits.append(due)
        return min(waits)

    def keep(self, held: list[Tagged]) -> None:
        """Forget since when the fills no longer ``held`` were held."""
        kept = {(aid, ev.entity.fill_id) for aid, _b, ev in held if isinstance(ev.entity, Fill)}
        self._held_since = {k: t for k, t in self._held_since.items() if k in kept}

    async def split(
        self, pending: list[PendingFill]
    ) -> tuple[list[PendingFill], list[PendingFill], set[PosKey]]:
        """Split a batch's fills into those whose contract's value per point is known (looked
        up before the transaction, never while it holds rows, and waited for only briefly) and
        those to hold: the unpriced ones and, behind them, the later fills of their sub-account
        and contract. A fill held for ``hold_s`` is given up; the keys of those are returned."""
        loop = asyncio.get_running_loop()
        named: list[PendingFill] = []
        asking: set[asyncio.Task[None]] = set()
        for sub, tagged, f in pending:
            aid, broker, ev = tagged
            if not f.symbol:
                f = self._renamed(broker, f)
                tagged = (aid, broker, dataclasses.replace(ev, entity=f))
            named.append((sub, tagged, f))
            if f.symbol:
                task = self._pricing.ask(broker, aid, f.symbol, self.hold_waits_s)
                if task is not None:
                    asking.add(task)
        if asking:
            await asyncio.wait(asking, timeout=self.price_wait_s)
        ready: list[PendingFill] = []
        held: list[PendingFill] = []
        gone: set[PosKey] = set()
        blocked: set[PosKey] = set()
        for sub, tagged, f in named:
            aid, _broker, _ev = tagged
            key = (sub, f.contract_id)
            if key in gone:
                # Measured without the earlier fill, a later one of its contract would record
                # a wrong round trip (a sell against no buy: no trade, P&L 0 for −50). So the
                # fills of a contract are given up together, and a replay brings them back
                # together; holding the later ones on instead would hold them, and the
                # positions behind them, for as long as the first could not be priced.
                log.error("mirror.fill_given_up", sub_account_id=sub, fill_id=f.fill_id,
                          symbol=f.symbol, reason="given up with an earlier fill of its contract")  # fmt: skip
                self.given_up.setdefault(key, set()).add(f.fill_id)
                continue
            if key in blocked:
                why = "an earlier fill of its contract is held"
            elif not f.symbol:
                why = "its contract has no name yet"
            elif self._pricing.value(f.symbol) is None:
                why = self._pricing.why(aid, f.symbol)
            else:
                ready.append((sub, tagged, f))
                continue
            first = (aid, f.fill_id) not in self._held_since
            since = self._held_since.setdefault((aid, f.fill_id), loop.time())
            if loop.time() - since >= self.hold_s:
                log.error(
                    "mirror.fill_given_up",
                    sub_account_id=sub,
                    fill_id=f.fill_id,
                    symbol=f.symbol,
                    held_s=round(loop.time() - since),
                    reason=why,
                    effect="not recorded, nor its position, until the session's next snapshot"
                    " (a reconnect, an overflow, the next start) replays them",
                )
                gone.add(key)
                self.given_up.setdefault(key, set()).add(f.fill_id)
                continue
            if first:
                log.warning(
                    "mirror.fill_held",
                    sub_account_id=sub,
                    fill_id=f.fill_id,
                    symbol=f.symbol,
                    reason=why,
                )
            blocked.add(key)
            held.append((sub, tagged, f))
        return ready, held, gone

    @staticmethod
    def _renamed(broker: Broker, f: Fill) -> Fill:
        """A fill published before its contract was named, as the live view now names it
        (looked up by id: this runs for every unnamed held fill on every batch)."""
        if not isinstance(broker, TradovateBroker):  # the paper broker names every fill
            return f
        g = broker.session.view.fill(f.fill_id)
        return g if g is not None and g.symbol else f
