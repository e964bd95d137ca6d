"""``jtrades halt --flatten``: liquidate every open position of the linked sub-accounts.

Each liquidation goes through an intent and the sub-account's lock like any order (rule 1), so a
flatten never races a signal on the same sub-account. Requests arrive through the configuration
cache (the CLI writes them to the database) and are carried out once per request per run.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from jtrades.broker.base import Contract, OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.engine.config_cache import ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher, WorkItem
from jtrades.engine.planning import AccountPlan, AccountState, PlannedOrder, PositionAction
from jtrades.store import trading as trading_store

log = structlog.get_logger(__name__)


def liquidate_plan(link: LinkConfig, contract: Contract) -> Any:
    """A plan that flattens whatever position the account holds in ``contract``."""
    account = SubAccount(link.broker_account_id, link.sub_name)

    def plan(state: AccountState) -> AccountPlan:
        if state.net_pos == 0:
            return AccountPlan(PositionAction.NOTHING, (), "already flat")
        side = Side.SELL if state.net_pos > 0 else Side.BUY
        req = OrderRequest(account, contract.symbol, side, abs(state.net_pos))
        step = PlannedOrder(1, "liquidate", req, note="halt --flatten")
        return AccountPlan(PositionAction.CLOSE, (step,), "halt --flatten")

    return plan


class Flattener:
    """Carries out flatten requests; remembers which it did in this run."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        brokers: BrokerRegistry,
        config: ConfigCache,
        dispatcher: Dispatcher,
    ) -> None:
        self._pool, self._brokers, self._config = pool, brokers, config
        self._dispatcher = dispatcher
        self._done: set[str] = set()

    async def run(self, request: dict[str, Any]) -> int:
        """Liquidate the open positions of the linked sub-accounts (of one login when the
        request names it). Runs once per request; returns liquidations sent."""
        requested_at = str(request.get("requested_at"))
        if requested_at in self._done:
            return 0
        self._done.add(requested_at)
        label = request.get("account")
        snap = self._config.snapshot
        sent = 0
        now = datetime.now(UTC)
        # One tag per request and per run: two requests (even in the same second) never share a
        # clOrdId, and a request carried out again after a crash sends its liquidations again
        # (harmless when already flat) instead of colliding with the intents of the lost run.
        run = f"{requested_at}|{now.isoformat()}"
        tag = "f" + hashlib.sha256(run.encode()).hexdigest()[:12]
        for link in snap.links_by_sub.values():
            if label and link.label.lower() != str(label).lower():
                continue
            try:
                broker = self._brokers.broker_for(link)
                if not broker.is_synced(link.broker_account_id):
                    log.error("engine.flatten_unsynced", sub_account_id=link.sub_account_id)
                    continue
                symbols = {p.symbol for p in broker.positions(link.broker_account_id) if p.net_pos}
            except Exception as exc:
                log.error(
                    "engine.flatten_unreadable", sub_account_id=link.sub_account_id, error=str(exc)
                )
                continue
            for symbol in sorted(symbols):
                contract = await broker.find_contract(symbol)
                item = WorkItem(None, link, broker, contract, liquidate_plan(link, contract))
                result = await self._dispatcher.dispatch(None, now, [item], tag=tag)
                sent += result.orders
        await trading_store.flatten_done(self._pool, requested_at, datetime.now(UTC))
        log.warning("engine.flattened", account=label, liquidations=sent)
        return sent
