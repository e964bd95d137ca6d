"""A signal's fan-out: each trader following the recorder, its filters and counters, and one
planner per sub-account it may trade (``dispatch.WorkItem``).

Split from ``engine`` so the engine keeps the signal's lifecycle (dedup, storing, verdicts)
and this the per-trader work, which runs per alert and per trader on the hot path: it reads
only memory (the brokers' live views, the session counters, the day's realized P&L), and the
only awaits are the contract lookups, which the resolver caches.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from jtrades.broker.base import Broker, Contract, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.engine.booked_fills import BookedFills
from jtrades.engine.config_cache import LinkConfig, RecorderConfig, Snapshot
from jtrades.engine.counters import SessionCounters, Undo
from jtrades.engine.dispatch import WorkItem
from jtrades.engine.filters import (
    Rejection,
    TraderState,
    check_gate,
    check_trader,
    is_entry,
)
from jtrades.engine.instruments import split_symbol
from jtrades.engine.planning import (
    AccountPlan,
    AccountState,
    plan_account,
)
from jtrades.engine.pnl import DailyPnl
from jtrades.engine.signal import Signal
from jtrades.engine.sizing import open_pnl
from jtrades.engine.steps import cl_ord_prefix
from jtrades.errors import InvalidSignal, TransientBrokerError

log = structlog.get_logger(__name__)

# How long a trader with a daily-loss limit waits for the mirror to count its sub-accounts'
# latest fills (a batch: 2-20 ms, then its commit); past it the entry is refused, not judged
# on a P&L that lacks them.
PNL_WAIT_S = 1.0


class Fanout:
    """Built once by the engine, with what every signal's fan-out reads."""

    def __init__(
        self,
        brokers: BrokerRegistry,
        counters: SessionCounters,
        pnl: DailyPnl,
        current: Callable[[], Snapshot],
        booked: BookedFills | None = None,
    ) -> None:
        self._brokers = brokers
        self._counters = counters
        self._pnl = pnl
        self._booked = booked if booked is not None else BookedFills()
        self._current = current  # the configuration as it is now, kill switches included

    async def work_items(
        self,
        signal: Signal,
        rec: RecorderConfig,
        snap: Snapshot,
        now: datetime,
        received_at: datetime,
        signal_id: int,
        detail: dict[str, Any],
        undo: Undo | None,
        refused: Rejection | None,
    ) -> tuple[list[WorkItem], list[tuple[str, str]]]:
        """Each trader's filters, then a planner per sub-account it may trade. ``refused``: the
        recorder refused the entry (``Rejection.entry_only``), so only the traders' gates run and
        every plan is close-only; a trader's own entry refusal makes its plans close-only too."""
        ticker = signal.ticker or rec.symbol
        items: list[WorkItem] = []
        rejections: list[tuple[str, str]] = []
        for t in rec.traders:
            tc = self._counters.get("trader", t.id, now, undo)
            contracts: dict[int, Contract] = {}
            brokers: dict[int, Broker] = {}
            for link in t.links:
                try:
                    broker = self._brokers.broker_for(link)
                    contract = await self._contract(link, broker, ticker)
                except Exception as exc:
                    detail["traders"].setdefault(str(t.id), {})[str(link.sub_account_id)] = (
                        f"not traded: {exc}"
                    )
                    continue
                if signal.price is not None:
                    self._brokers.note_price(link, contract, signal.price)
                brokers[link.sub_account_id] = broker
                contracts[link.sub_account_id] = contract
            gate = {"enabled": t.enabled, "owner_active": t.owner_active, "halted": snap.halted}
            if refused is not None:
                trej = check_gate(signal, t.settings, **gate)
            else:
                counted = True
                if t.settings.max_daily_loss is not None:
                    counted = await self._fills_counted(t.links, brokers)
                state = TraderState(
                    pnl_counted=counted,
                    realized_pnl_today=self._pnl.realized(
                        [lk.sub_account_id for lk in t.links], now
                    ),
                    open_pnl=_open_pnl(t.links, brokers, contracts, signal.price),
                    last_entry_at=tc.last_entry_at,
                    entries_this_session=tc.entries,
                    seen_this_session=tc.seen,
                )
                # Only the trader's own overrides of the recorder's filters run here, on its
                # owner's clock (t.tz); the inherited ones ran once above, on the recorder owner's.
                trej = check_trader(  # at its arrival, as the recorder's chain (engine)
                    signal, t.settings, state, received_at, t.tz, overridden=t.overridden, **gate
                )
            if trej is not None:
                if trej.filter == "every_nth":
                    tc.seen += 1
                    detail["trader_seen"].append(t.id)
                rejections.append((trej.filter, f"trader {t.id}: {trej.reason}"))
                detail["traders"][str(t.id)] = {"filter": trej.filter, "reason": trej.reason}
                if not trej.entry_only:
                    continue
            elif refused is None and is_entry(signal, t.settings):
                tc.seen += 1
                tc.entries += 1
                tc.last_entry_at = received_at
                detail["trader_entries"].append(t.id)
            trader_refusal = refused or trej
            for link in t.links:
                if link.sub_account_id not in brokers:
                    continue
                why = trader_refusal
                if why is None and link.halted:
                    why = check_gate(
                        signal, t.settings, enabled=True, owner_active=True, halted=True
                    )
                    if why is not None and not why.entry_only:
                        detail["traders"].setdefault(str(t.id), {})[str(link.sub_account_id)] = (
                            "halted: only closes pass"
                        )
                        continue
                contract = contracts[link.sub_account_id]
                refusal = f"{why.filter}: {why.reason}" if why is not None else None
                items.append(
                    WorkItem(
                        t.id,
                        link,
                        brokers[link.sub_account_id],
                        contract,
                        _planner(
                            signal, t.settings, link, contract, signal_id, refusal, self._current
                        ),
                    )
                )
        return items, rejections

    async def _fills_counted(
        self, links: tuple[LinkConfig, ...], brokers: dict[int, Broker]
    ) -> bool:
        """Whether the day's realized P&L has every fill the live views hold for these
        sub-accounts, waiting for the mirror up to ``PNL_WAIT_S`` (``booked_fills``)."""
        last = {}
        for link in links:
            broker = brokers.get(link.sub_account_id)
            if broker is not None:
                key = (link.account_id, link.broker_account_id)
                last[key] = broker.last_fill_id(link.broker_account_id)
        if not self._booked.behind(last):
            return True
        return await self._booked.caught_up(last, PNL_WAIT_S)

    async def _contract(self, link: LinkConfig, broker: Broker, ticker: str) -> Contract:
        """The contract this sub-account trades for ``ticker``. The resolver caches per broker
        with a TTL, so ``MNQ1!`` follows the roll; a position does not. Held in another month
        of the root and nothing held in the one named now, the position's month is the one the
        signal acts on: after a roll, or in roll week when the broker's front month and the
        calendar fallback differ, a ``close`` planned on the new month found "already flat"
        and left the old one open. New positions then open in the new month."""
        contract = await self._brokers.resolve_contract(link, broker, ticker)
        held = held_elsewhere(broker, link.broker_account_id, ticker, contract)
        if held is None:
            return contract
        log.info(
            "engine.position_month",
            sub_account=link.sub_account_id,
            ticker=ticker,
            named=contract.symbol,
            held=held,
        )
        return await self._brokers.resolve_contract(link, broker, held)


def held_elsewhere(broker: Broker, account_id: int, ticker: str, contract: Contract) -> str | None:
    """The one other month of ``contract``'s root this account holds a position in, when
    ``ticker`` is continuous and nothing is held in ``contract``; None otherwise (an explicit
    month is the user's choice; two months held is a spread, not the signal's to pick from)."""
    if split_symbol(ticker).nth is None:
        return None
    try:
        positions = broker.positions(account_id)
    except TransientBrokerError:
        return None  # unsynced: nothing is planned on it anyway (rule 6)
    held = {p.symbol for p in positions if p.net_pos != 0}
    if contract.symbol in held:
        return None
    same_root = [sym for sym in held if _root(sym) == contract.root.upper()]
    return same_root[0] if len(same_root) == 1 else None


def _root(symbol: str) -> str | None:
    try:
        return split_symbol(symbol).root
    except InvalidSignal:
        return None


def _planner(
    signal: Signal,
    s: Any,
    link: LinkConfig,
    contract: Contract,
    signal_id: int,
    entry_refused: str | None,
    current: Callable[[], Snapshot],
) -> Any:
    account = SubAccount(link.broker_account_id, link.sub_name)
    prefix = cl_ord_prefix(signal_id, link.sub_account_id)

    def plan(state: AccountState) -> AccountPlan:
        return plan_account(
            signal,
            s,
            link.multiplier,
            account,
            contract,
            state,
            signal_price=signal.price,
            cl_ord_prefix=prefix,
            entry_refused=entry_refused or halted_since(signal, s, link, current()),
        )

    return plan


def halted_since(signal: Signal, s: Any, link: LinkConfig, snap: Snapshot) -> str | None:
    """The kill switch read again when the plan runs, under the account's lock: an alert
    that passed the gate, then waited for another sub-account's lock, opened a position on a
    login halted and flattened meanwhile (the flatten had already been marked done)."""
    live = snap.links_by_sub.get(link.sub_account_id)
    if not snap.halted and (live is None or not live.halted):
        return None
    why = check_gate(signal, s, enabled=True, owner_active=True, halted=True)
    return f"{why.filter}: {why.reason}" if why is not None else None


def _open_pnl(
    links: tuple[LinkConfig, ...],
    brokers: dict[int, Broker],
    contracts: dict[int, Contract],
    price: Decimal | None,
) -> Decimal:
    """Open P&L of the trader's positions in this contract, marked at the signal price."""
    total = Decimal(0)
    if price is None:
        return total
    for link in links:
        broker = brokers.get(link.sub_account_id)
        contract = contracts.get(link.sub_account_id)
        if broker is None or contract is None:
            continue
        try:
            for p in broker.positions(link.broker_account_id):
                if p.symbol == contract.symbol:
                    total += open_pnl(p.net_pos, p.net_price, price, contract)
        except Exception as exc:  # an unsynced view adds nothing; dispatch won't plan on it
            log.debug("engine.open_pnl_unavailable", error=str(exc))
    return total
