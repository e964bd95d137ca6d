"""Cancelling exits left working on a flat contract: the I/O half of ``engine.orphans``.

Job 4 of ``engine.reconcile``. An exit is cancelled only when two passes in a row (an interval
apart) saw it working on a contract the sub-account holds nothing in, and the view under the
sub-account's dispatcher lock still says so: a position's fills and its exits' events reach the
view in an order Tradovate does not promise, and an alert holding the lock may be about to open
the position those exits belong to. Only on a synced view ("missing is not flat", rule 6). Each
cancel is written as an intent before it is sent (rule 1), through ``ProtectionSender``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.broker.base import Broker, WorkingOrder
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.engine.config_cache import ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.orphans import orphan_exits
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protect_sender import ProtectionSender
from jtrades.engine.protector import cancels_gone

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
        self._seen: set[tuple[int, int]] = set()  # (sub-account, order id) seen last pass

    async def sweep(self) -> int:
        """One pass; returns how many orders were cancelled."""
        seen: set[tuple[int, int]] = set()
        cancelled = 0
        for link in self._config.snapshot.links_by_sub.values():
            try:
                broker = self._brokers.broker_for(link)
                orphans = _orphans(broker, link.broker_account_id)
            except Exception as exc:  # unreadable: decide nothing, sight it again later
                log.debug("reconcile.orphans_skip", sub_account_id=link.sub_account_id,
                          error=str(exc))  # fmt: skip
                continue
            if orphans is None:
                continue
            ids = {o.order_id for o in orphans}
            seen |= {(link.sub_account_id, oid) for oid in ids}
            due = {oid for oid in ids if (link.sub_account_id, oid) in self._seen}
            if due:
                try:
                    cancelled += await self._cancel(link, broker, due)
                except Exception as exc:
                    log.error("reconcile.orphans_failed", sub_account_id=link.sub_account_id,
                              error=f"{type(exc).__name__}: {exc}")  # fmt: skip
        self._seen = seen
        return cancelled

    async def _cancel(self, link: LinkConfig, broker: Broker, due: set[int]) -> int:
        bid = link.broker_account_id
        async with self._dispatcher.lock_for(link):
            orphans = _orphans(broker, bid)  # re-read under the lock: an alert may have acted
            if orphans is None:
                return 0
            by_symbol: dict[str, list[int]] = {}
            for o in orphans:
                if o.order_id in due:
                    by_symbol.setdefault(o.symbol, []).append(o.order_id)
            done: list[int] = []
            now = datetime.now(UTC)
            for symbol, order_ids in sorted(by_symbol.items()):
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
                    await cancels_gone(broker, bid, done)
                except Exception as exc:
                    log.info("reconcile.orphans_view_lost", account_id=bid, error=str(exc))
            return len(done)


def _orphans(broker: Broker, account_id: int) -> tuple[WorkingOrder, ...] | None:
    """The account's orphaned exits from the live view; None when it is not synced."""
    if not broker.is_synced(account_id):
        return None
    return orphan_exits(broker.positions(account_id), broker.working_orders(account_id))
