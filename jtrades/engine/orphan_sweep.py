"""Cancelling exits left working on a flat contract: the I/O half of ``engine.orphans``.

Job 4 of ``engine.reconcile``. An exit is cancelled only when two passes in a row (an interval
apart) saw it working on a contract the sub-account holds nothing in, and the view under the
sub-account's dispatcher lock still says so: a position's fills and its exits' events reach the
view in an order Tradovate does not promise, and an alert holding the lock may be about to open
the position those exits belong to. Only on a synced view ("missing is not flat", rule 6). Each
cancel is written as an intent before it is sent (rule 1), through ``ProtectionSender``.

The unit is the account at the broker (``broker_account``): two users who add the same Tradovate
login each have a row for one account, and swept per row, the second row re-read a view whose
events had not shown the first row's cancels yet and cancelled the same exits again. Each
account is swept once per pass; a cancel is written for the row whose intents last touched the
contract (``protector.owner``), as protection's orders are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.broker.base import Broker, WorkingOrder
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.engine.account_plans import by_broker_account
from jtrades.engine.config_cache import AccountKey, ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.orphans import orphan_exits
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protect_sender import ProtectionSender
from jtrades.engine.protect_waits import cancels_gone
from jtrades.engine.protector import owner
from jtrades.engine.settle import note_unshown

log = structlog.get_logger(__name__)

NOTE = "exit of a position no longer held"


class OrphanSweeper:
    """Each pass: note the orphaned exits, cancel those noted on the pass before."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        brokers: BrokerRegistry,
        config: ConfigCache,
        dispatcher: Dispatcher,
        settings: Settings,
    ) -> None:
        self._pool = pool
        self._brokers = brokers
        self._config = config
        self._dispatcher = dispatcher
        self._settings = settings
        # (account at the broker, order id) seen last pass
        self._seen: set[tuple[AccountKey, int]] = set()

    async def sweep(self) -> int:
        """One pass; returns how many orders were cancelled."""
        seen: set[tuple[AccountKey, int]] = set()
        cancelled = 0
        groups = by_broker_account(self._config.snapshot.links_by_sub.values())
        # one account at the broker once, whichever of its rows (two users' logins) name it
        for account, rows in groups.items():
            broker, orphans = self._read(rows)
            if broker is None or orphans is None:
                continue  # unreadable: decide nothing, sight it again later
            ids = {o.order_id for o in orphans}
            seen |= {(account, oid) for oid in ids}
            due = {oid for oid in ids if (account, oid) in self._seen}
            if due:
                try:
                    cancelled += await self._cancel(rows, broker, due)
                except Exception as exc:
                    log.error("reconcile.orphans_failed", sub_account_id=rows[0].sub_account_id,
                              error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        self._seen = seen
        return cancelled

    def _read(
        self, rows: Sequence[LinkConfig]
    ) -> tuple[Broker | None, tuple[WorkingOrder, ...] | None]:
        """A session with a synced view of the account ``rows`` name (any of its rows'
        logins), and its orphaned exits; (None, None) when none can read it."""
        try:
            broker = self._brokers.synced_for(rows)
            return broker, _orphans(broker, rows[0].broker_account_id)
        except Exception as exc:
            log.debug("reconcile.orphans_skip", sub_account_id=rows[0].sub_account_id,
                      error=str(exc))  # fmt: skip
            return None, None

    async def _cancel(self, rows: Sequence[LinkConfig], broker: Broker, due: set[int]) -> int:
        bid = rows[0].broker_account_id
        async with self._dispatcher.lock_for(rows[0]):
            orphans = _orphans(broker, bid)  # re-read under the lock: an alert may have acted
            if orphans is None:
                return 0
            by_symbol: dict[str, list[int]] = {}
            for o in orphans:
                if o.order_id in due:
                    by_symbol.setdefault(o.symbol, []).append(o.order_id)
            done: list[int] = []
            cancelled: list[tuple[LinkConfig, str, list[int]]] = []
            now = datetime.now(UTC)
            for symbol, order_ids in sorted(by_symbol.items()):
                link, _trader = await owner(self._pool, rows, symbol)
                send = ProtectionSender(
                    self._pool,
                    broker,
                    None,
                    link.sub_account_id,
                    symbol,
                    prefix=f"jt-o-{link.sub_account_id}-{symbol}-{int(now.timestamp() * 1000)}",
                    expires_at=now + timedelta(seconds=self._settings.trading.signal_ttl_s),
                )
                steps = [
                    PlannedOrder(i, "cancel", None, cancel_order_id=oid, note=NOTE)
                    for i, oid in enumerate(order_ids, start=1)
                ]
                gone = await send(steps)
                done += gone
                cancelled.append((link, symbol, gone))
                log.warning(
                    "reconcile.orphan_exits_cancelled",
                    sub_account_id=link.sub_account_id,
                    symbol=symbol,
                    cancelled=gone,
                    refused=[oid for oid in order_ids if oid not in gone],
                    why="the position they exited is gone: the next to fill would open a new one",
                )
            if done:  # the next holder of the lock must not see them as working
                try:
                    shown = await cancels_gone(broker, bid, done)
                except Exception as exc:
                    log.info("reconcile.orphans_view_lost", account_id=bid, error=str(exc))
                    shown = False
                if not shown:  # nor the next alert's plan, once the lock has gone
                    await self._note_unshown(broker, cancelled)
            return len(done)

    async def _note_unshown(
        self, broker: Broker, cancelled: Sequence[tuple[LinkConfig, str, list[int]]]
    ) -> None:
        for link, symbol, gone in cancelled:
            if not gone:
                continue
            try:
                contract = await broker.find_contract(symbol)
            except Exception as exc:  # its cancels stay unrecorded: the entry may be refused
                log.info("reconcile.orphans_unrecorded", symbol=symbol, error=str(exc))
                continue
            note_unshown(self._dispatcher.views, link, broker, contract, (), gone)


def _orphans(broker: Broker, account_id: int) -> tuple[WorkingOrder, ...] | None:
    """The account's orphaned exits from the live view; None when it is not synced."""
    if not broker.is_synced(account_id):
        return None
    return orphan_exits(broker.positions(account_id), broker.working_orders(account_id))
