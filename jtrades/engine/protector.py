"""Protecting open positions: the I/O half of job 3 of ``engine.reconcile``.

Why its own module: ``engine.protection`` and ``engine.exit_orders`` hold the pure decisions
(what covers a position, what to cancel, shrink and place); this module and
``engine.protect_position`` carry them out against a broker — reading the live view, taking
the sub-account's dispatcher lock, writing each step's intent before sending it (rule 1) — so
the reconciliation loop stays about intents and the mirror, and delegates each pass's
protection here.

A naked position — open, its live stops not adding up to its size, and its trader has a stop
loss configured or the daemon owes it a stop it planned and never placed (``owed_stop``: a
resize cut short after its cancels) — gets protection: a stop for the uncovered rest, or its
exits re-placed as one OCO per take-profit plus a stop for the rest, so the stops never close
more than is held whatever fills. Only on a synced view: "missing is not flat" (rule 6), an
unreadable account is left alone. A re-placement that fails after the exits were cancelled
leaves the position naked, so it is tried again within the pass after short waits
(``RETRY_WAITS_S``); a position left waiting (``WAIT_ALERT_AFTER_S``) becomes an error a person
is told of. Event names keep their ``reconcile.`` prefix: alerts and notices key on them.

The unit is the account at the broker (``broker_account``), not the sub-account row: two users
who add the same Tradovate login each have a row for one account, and protecting per row
stopped one position once per row (the second row re-read a view whose events had not shown
the first row's stop yet). Each (account at the broker, contract) is protected once per pass,
on behalf of the row whose trader's intents last touched the contract; what it places and the
view has not shown yet is remembered for the account, and nothing more is placed for that
position until the view shows it.

This module runs the pass — which positions to protect, on whose behalf, the retries and the
waits; one position's protection under its lock, and what it remembers between attempts, is
``engine.protect_position``'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence

import asyncpg
import structlog

from jtrades.broker.base import Broker, Position, WorkingOrder
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.engine.account_plans import broker_account, by_broker_account, key_order
from jtrades.engine.booked_fills import BookedFills
from jtrades.engine.config_cache import AccountKey, ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.protect_position import Key, PositionProtector
from jtrades.engine.protection import ExitBook, exit_book
from jtrades.errors import TransientBrokerError
from jtrades.store import intents as intent_store

log = structlog.get_logger(__name__)

# Waits before trying again, within the pass, a position a protection left short of cover
# after cancelling its exits: it is naked until a re-placement lands, and the next pass is an
# interval (30 s) away. A broker that keeps refusing gets the next pass.
RETRY_WAITS_S = (0.5, 1.0, 2.0)
# A position short of cover that waits (exits on their way out, or an entry's brackets that
# may still activate) is waited for without bound, naked meanwhile: past this it is an error,
# which a person is notified of, each pass until it is covered.
WAIT_ALERT_AFTER_S = 300.0
# How long a protection waits for the mirror to store the fills its view holds before asking
# whose position it is (``owner`` reads the stored fills): a batch is 2-20 ms and a commit, so
# this is only reached with a stalled database, and then the position is protected anyway, on
# behalf of the row the stored fills name (a naked position is worse than the other stop).
OWNER_WAIT_S = 2.0


async def owner(
    pool: asyncpg.Pool, links: Sequence[LinkConfig], symbol: str
) -> tuple[LinkConfig, int | None]:
    """Of the rows naming one account at the broker, the one whose intents last touched
    ``symbol`` (what is placed for the position is written for it), with that intent's trader,
    whose stop loss protects it; the first row and no trader when none did. From the intents,
    not the broker's view: a position held over the session change has no order of the day
    to tell, and the first row's trader (its stop loss off) left it naked."""
    found = await intent_store.last_toucher(pool, [lk.sub_account_id for lk in links], symbol)
    if found is None:
        return links[0], None
    sub, trader_id = found
    return next(lk for lk in links if lk.sub_account_id == sub), trader_id


def needs_stop(
    position: Position,
    working: Sequence[WorkingOrder],
    filled: Mapping[int, int] | None = None,
) -> bool:
    """An open position whose live stops (Working, PendingNew, PendingReplace; what they have
    left to fill) on its exit side in the same contract do not add up to exactly its size:
    part of it is naked, or the stops alone would close more than is held."""
    return exit_book(position, working, filled or {}).needs_protection


class Protector:
    """Each pass's protection of the sub-accounts' positions, for the ``Reconciler``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        brokers: BrokerRegistry,
        config: ConfigCache,
        dispatcher: Dispatcher,
        settings: Settings,
        booked: BookedFills | None = None,
    ) -> None:
        self._pool = pool
        self._brokers = brokers
        self._config = config
        self._booked = booked if booked is not None else BookedFills()
        self._suspect: set[Key] = set()
        self._asked: set[Key] = set()  # suspects a dispatch named (``suspect``)
        self._pass_lock = asyncio.Lock()
        self._seeded: set[Key] = set()  # valid for the first pass only
        self.wait_alert_after_s = WAIT_ALERT_AFTER_S
        self._waiting_since: dict[Key, float] = {}  # loop time first seen waiting
        self._waited: set[Key] = set()  # seen waiting this pass
        # suspects the last pass could not read (their view not synced, a session reconnecting)
        # or whose orders it could not send (a session held by a 429): tried again soon
        self.unread: set[Key] = set()
        # one position's protection, and what it carries and placed unshown between attempts
        self._positions = PositionProtector(
            pool, config, dispatcher, settings, on_wait=self._log_wait
        )

    def seed(self, suspects: Iterable[tuple[int, str]]) -> None:
        """Positions counted as sighted once already (those held before a start), as
        (sub-account row, symbol): protected on the first pass if it sees them naked. Only the
        first: a login still unsynced then may meanwhile open a position whose brackets are
        still activating, which needs the usual two sightings."""
        links = self._config.snapshot.links_by_sub
        self._seeded = {(broker_account(links[s]), sym) for s, sym in suspects if s in links}
        self._suspect = set(self._seeded)

    def suspect(self, link: LinkConfig, symbol: str) -> None:
        """The position counts as sighted once: the next pass that sees it naked protects it
        (a dispatch failed after cancelling its exits, ``Reconciler.protect_soon``). Asked
        during a pass, it is kept past that pass's own sightings."""
        key = (broker_account(link), symbol)
        self._suspect.add(key)
        self._asked.add(key)

    def _accounts(self) -> dict[AccountKey, list[LinkConfig]]:
        """The rows of each account at the broker, in sub-account order."""
        return by_broker_account(self._config.snapshot.links_by_sub.values())

    async def protect_positions(self) -> int:
        """Protect each position seen naked on two passes in a row (an entry's brackets may
        still be activating on the first); returns how many positions got orders. One pass at
        a time: the reconcile loop's and one a dispatch asked for share the sightings."""
        async with self._pass_lock:
            return await self._pass()

    async def _pass(self) -> int:
        placed = 0
        suspects: set[Key] = set()
        self._positions.incomplete.clear()
        self._positions.drop_stale_carries()
        self._waited.clear()
        self.unread = set()
        self._positions.not_sent.clear()
        read: set[AccountKey] = set()
        # one account at the broker once, whichever of its rows (two users' logins) name it
        for account, links in self._accounts().items():
            bid = links[0].broker_account_id
            try:
                broker = self._brokers.synced_for(links)
                positions = broker.positions(bid)
                working = broker.working_orders(bid)
                filled = broker.filled_qty(bid, [o.order_id for o in working])
            except Exception as exc:  # unreadable: missing is not flat, do nothing
                log.debug(
                    "reconcile.protect_skip",
                    sub_account_id=links[0].sub_account_id,
                    broker_account_id=bid,
                    error=str(exc),
                )
                # its suspects stay suspects: a position whose exits a pass cancelled is
                # retried on the next pass that can see it, not two passes later
                kept = {k for k in self._suspect if k[0] == account and k not in self._seeded}
                suspects |= kept
                self.unread |= kept
                continue
            read.add(account)
            for p in positions:
                if not needs_stop(p, working, filled):
                    continue
                key = (account, p.symbol)
                suspects.add(key)
                if key in self._suspect and await self._try_protect(links, broker, p, key):
                    placed += 1
        self._positions.drop_settled(read, suspects)
        self._suspect = suspects | self._asked
        self._asked = set()
        self._seeded.clear()
        placed += await self._retry_incomplete()
        # a wait ends when a pass no longer meets it (covered, flat, or unseen: missing is not
        # flat, but the clock starts again once it is seen waiting)
        self._waiting_since = {k: t for k, t in self._waiting_since.items() if k in self._waited}
        return placed

    async def _try_protect(
        self, links: Sequence[LinkConfig], broker: Broker, p: Position, key: Key
    ) -> bool:
        """Protect ``p`` (``PositionProtector.protect``) on behalf of the row that last touched
        the contract (``owner``), failing for this position only: the other accounts still get
        their stops, and it stays a suspect, so the next pass tries again (soon, when its view
        was lost meanwhile: ``unread``)."""
        link = links[0]
        try:
            await self._wait_booked(links, broker)
            link, trader_id = await owner(self._pool, links, p.symbol)
            return await self._positions.protect(link, trader_id, broker, p)
        except Exception as exc:
            if isinstance(exc, TransientBrokerError):
                self.unread.add(key)
            log.error(
                "reconcile.protect_failed",
                sub_account_id=link.sub_account_id,
                symbol=p.symbol,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False

    async def _wait_booked(self, links: Sequence[LinkConfig], broker: Broker) -> None:
        """Wait (``OWNER_WAIT_S``) until the mirror has stored every fill the view holds for
        these rows: the owner is read from the stored fills, and under load the latest fill (the
        other user's add) was still in a batch, so the first user's stop protected both."""
        bid = links[0].broker_account_id
        last = {(lk.account_id, bid): broker.last_fill_id(bid) for lk in links}
        if self._booked.behind(last) and not await self._booked.caught_up(last, OWNER_WAIT_S):
            log.warning(
                "reconcile.protect_fills_unstored",
                sub_account_id=links[0].sub_account_id,
                broker_account_id=bid,
                wait_s=OWNER_WAIT_S,
            )

    def _log_wait(self, key: Key, sub_account_id: int, book: ExitBook) -> None:
        """A position left waiting this pass: a notice, an error past ``wait_alert_after_s``."""
        symbol = key[1]
        now = asyncio.get_running_loop().time()
        waited = now - self._waiting_since.setdefault(key, now)
        self._waited.add(key)
        fields = {
            "sub_account_id": sub_account_id,
            "symbol": symbol,
            "leaving": [o.order_id for o in book.leaving],
            "activating": [o.order_id for o in book.activating],
        }
        if waited < self.wait_alert_after_s:
            log.info("reconcile.protect_waiting", **fields)
            return
        log.error(
            "reconcile.protect_stalled",
            net_pos=book.net_pos,
            uncovered=abs(book.net_pos) - book.coverage,
            waited_s=round(waited),
            effect="naked until the orders it waits for are gone or the entry fills",
            **fields,
        )

    async def _retry_incomplete(self) -> int:
        """Try the positions left short of cover again (``RETRY_WAITS_S``); ``protect``
        re-reads each under its lock and does nothing for one covered meanwhile."""
        placed = 0
        for wait in RETRY_WAITS_S:
            if not self._positions.incomplete:
                break
            keys = sorted(self._positions.incomplete, key=lambda k: (key_order(k[0]), k[1]))
            self._positions.incomplete.clear()
            await asyncio.sleep(wait)
            accounts = self._accounts()
            for account, symbol in keys:
                links = accounts.get(account)
                if not links:
                    continue
                try:  # missing is not flat: an unsynced view waits for the next pass
                    broker = self._brokers.synced_for(links)
                    held = broker.positions(links[0].broker_account_id)
                except Exception as exc:
                    log.debug(
                        "reconcile.protect_skip",
                        sub_account_id=links[0].sub_account_id,
                        error=str(exc),
                    )
                    continue
                p = next((x for x in held if x.symbol == symbol), None)
                if p is not None and await self._try_protect(links, broker, p, (account, symbol)):
                    placed += 1
        # a broker still refusing: the next pass, with what it carried; one whose orders never
        # left (a held session) sooner (``unread``, as a view not read)
        self.unread |= self._positions.not_sent & self._positions.incomplete
        self._positions.incomplete.clear()
        return placed
