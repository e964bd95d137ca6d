"""A signal's fan-out: each trader following the recorder, its filters and counters, and one
planner per sub-account it may trade (``dispatch.WorkItem``).

Split from ``engine`` so the engine keeps the signal's lifecycle (dedup, storing, verdicts)
and this the per-trader work, which runs per alert and per trader on the hot path: it reads
only memory (the brokers' live views, the session counters, the day's realized P&L), and the
only awaits are the contract lookups, which the resolver caches, for an entry a daily-loss
limit judges while the mirror is behind, one bounded wait for it per signal, and, once for a
paper sub-account linked while the daemon runs, the wait for its stored state to be restored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from jtrades.broker.base import Broker, Contract, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.engine.booked_fills import AccountKey, BookedFills
from jtrades.engine.config_cache import LinkConfig, RecorderConfig, Snapshot, TraderConfig
from jtrades.engine.counters import Counters, ForeignEntry, SessionCounters, Undo, count_entry
from jtrades.engine.dispatch import WorkItem
from jtrades.engine.filters import (
    OPEN_UNMARKED,
    Rejection,
    TraderState,
    check_gate,
    check_trader,
    is_entry,
    reads_own_way,
)
from jtrades.engine.link_contracts import LinkContract, look_up_misses, resolve
from jtrades.engine.plan_time import halted_since, no_longer_traded
from jtrades.engine.planning import (
    AccountPlan,
    AccountState,
    PositionAction,
    plan_account,
    refused_whole,
)
from jtrades.engine.pnl import DailyPnl, instrument
from jtrades.engine.signal import Signal
from jtrades.engine.sizing import open_pnl
from jtrades.engine.steps import cl_ord_prefix

log = structlog.get_logger(__name__)

# How long a trader with a daily-loss limit waits for the mirror to count its sub-accounts'
# latest fills (a batch: 2-20 ms, then its commit); past it the entry is refused, not judged
# on a P&L that lacks them.
PNL_WAIT_S = 1.0


@dataclass(slots=True)
class _Trader:
    """One trader on its way through a signal's fan-out, between its two passes."""

    t: TraderConfig
    tc: Counters
    brokers: dict[int, Broker]
    contracts: dict[int, Contract]
    gate: Rejection | None
    # the recorder's refusal that holds for this trader: the signal's own (``refused``), or
    # the recorder's entry filters' verdict on the trader's own reading (``ForeignEntry``)
    by_recorder: Rejection | None
    entry: bool  # its reading is an entry, and nothing before its own filters refused it
    # the view's highest fill per account, which the day's P&L must count before its
    # daily-loss filter judges the entry (None: no such filter to judge, or no entry)
    last_fills: dict[AccountKey, int] | None
    # sub-accounts the signal acts on in the month they hold, not the one it names (``_contract``)
    moved: frozenset[int] = frozenset()


class Fanout:
    """Built once by the engine, with what every signal's fan-out reads."""

    def __init__(
        self,
        brokers: BrokerRegistry,
        counters: SessionCounters,
        pnl: DailyPnl,
        current: Callable[[], Snapshot],
        booked: BookedFills | None = None,
        lots: Callable[[int, str], tuple[tuple[int, Decimal], ...]] = lambda _s, _c: (),
    ) -> None:
        self._brokers = brokers
        self._lots = lots  # the mirror's FIFO lots of a (sub-account, contract): ``Mirror.lots``
        self._counters = counters
        self._pnl = pnl
        self._booked = booked if booked is not None else BookedFills()
        self._current = current  # the configuration as it is now, kill switches included
        # The last price an alert gave for each contract, by the user whose trader it reached:
        # what an alert without one (plain text, TradersPost without signalPrice) marks that
        # user's open positions at for the daily loss. One mark for every user let any user's
        # alert price (anyone can post any) decide another's daily-loss verdict (rule 5).
        self._marks: dict[tuple[int, str], Decimal] = {}

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
        foreign: ForeignEntry | None = None,
    ) -> tuple[list[WorkItem], list[tuple[str, str]]]:
        """Each trader's filters, then a planner per sub-account it may trade; with the
        rejections, one per trader refused (by its own filters or by the recorder's).

        ``refused``: the recorder refused the entry (``Rejection.entry_only``), so for a trader
        reading the signal as the recorder does only its gate runs and every plan is
        close-only; a trader's own entry refusal makes its plans close-only too. ``foreign``:
        some trader reads the recorder its own way (``filters.reads_own_way``), and the
        recorder did not refuse the entry, or refused it only for its direction. An entry of
        such a trader's reading is judged by the recorder's entry filters first, on the
        trader's own counts, where all its entries count (``counters.ForeignEntry``); on a side
        the recorder's reading cannot open (``ForeignEntry.forbidden``) the recorder's
        direction refusal does not bind it. A trader that is switched off or whose owner may
        not trade (``inert``) is only named on the row, with its reason (its own recorder's
        alerts are still its paper market: ``_own_market``).

        Two passes: what each trader is, then its filters. Between them, one wait for the
        mirror to count the fills of every trader whose daily-loss limit judges an entry: a
        close waits for nothing, and traders do not wait one after another."""
        ticker = signal.ticker or rec.symbol
        gates = {
            t.id: check_gate(
                signal,
                t.settings,
                enabled=t.enabled,
                owner_active=t.owner_active,
                halted=snap.halted,
            )
            for t in rec.traders
        }
        # the contract look-ups the cache misses, all at once (``link_contracts``)
        active = (lk for t in rec.traders if not inert(gates[t.id]) for lk in t.links)
        looked_up = await look_up_misses(self._brokers, active, ticker)
        traders: list[_Trader] = []
        for t in rec.traders:
            tc = self._counters.get("trader", t.id, now, undo)
            gate = gates[t.id]
            if inert(gate):  # its refusal is on the row all the same (second pass)
                await self._own_market(t, rec, ticker, signal.price)
                traders.append(_Trader(t, tc, {}, {}, gate, None, False, None))
                continue
            brokers, contracts, moved = await self._links(
                t, ticker, signal.price, detail, looked_up
            )
            own_way = foreign is not None and reads_own_way(t.overridden)
            # a refusal of a side the recorder's reading cannot open is none of its reading's
            apart = own_way and foreign is not None and foreign.forbidden
            by_recorder = None if apart else refused
            entry = gate is None and by_recorder is None and is_entry(signal, t.settings)
            if entry and own_way and foreign is not None:
                by_recorder = foreign.judge(tc)  # on the trader's counts: all its entries'
                entry = by_recorder is None
            waits = entry and t.settings.max_daily_loss is not None
            last = _last_fills(t.links, brokers) if waits else None
            traders.append(
                _Trader(t, tc, brokers, contracts, gate, by_recorder, entry, last, moved)
            )
        await self._count_fills([j.last_fills for j in traders if j.last_fills])

        items: list[WorkItem] = []
        rejections: list[tuple[str, str]] = []
        for j in traders:
            t, tc = j.t, j.tc
            trej = j.gate
            if trej is None and j.by_recorder is None:
                # Only the trader's own overrides of the recorder's filters run here, on its
                # owner's clock (t.tz); the inherited ones ran once, on the recorder owner's.
                trej = check_trader(  # at its arrival, as the recorder's chain (engine)
                    signal,
                    t.settings,
                    self._state(j, signal.price, now),
                    received_at,
                    t.tz,
                    enabled=t.enabled,
                    owner_active=t.owner_active,
                    halted=snap.halted,
                    overridden=t.overridden,
                )
            if trej is not None:
                if trej.filter == "every_nth":
                    tc.seen += 1
                    detail["trader_seen"].append(t.id)
                rejections.append((trej.filter, f"trader {t.id}: {trej.reason}"))
                detail["traders"][str(t.id)] = {"filter": trej.filter, "reason": trej.reason}
                if not trej.entry_only:
                    continue
            elif j.by_recorder is not None:
                why = j.by_recorder
                if why is refused:
                    rejections.append((why.filter, why.reason))
                else:  # said of this trader's own reading, on its counts (``ForeignEntry``)
                    rejections.append((why.filter, f"trader {t.id}: {why.reason}"))
                    detail["traders"][str(t.id)] = {"filter": why.filter, "reason": why.reason}
                    if why.filter == "every_nth":  # its turn, as for its own every-Nth
                        tc.seen += 1
                        detail["trader_seen"].append(t.id)
            elif j.entry:
                count_entry(tc, None, received_at)
                detail["trader_entries"].append(t.id)
            refusal = j.by_recorder or trej
            items.extend(self._items(signal, j, refusal, signal_id, detail, snap))
        return items, rejections

    def _items(
        self,
        signal: Signal,
        j: _Trader,
        refusal: Rejection | None,
        signal_id: int,
        detail: dict[str, Any],
        snap: Snapshot,
    ) -> list[WorkItem]:
        """A planner for each sub-account of the trader that may trade (``refusal``: its
        entry was refused, so each plan is close-only), judged on ``snap``."""
        t, items = j.t, []
        for link in t.links:
            if link.sub_account_id not in j.brokers:
                continue
            why = refusal
            if why is None and link.halted:
                why = check_gate(signal, t.settings, enabled=True, owner_active=True, halted=True)
                if why is not None and not why.entry_only:
                    # an add or a cancel: refused whole, nothing to send; its result names the
                    # halt, so the verdict judges the account as halted (``refused_whole``)
                    sub = link.sub_account_id
                    whole = refused_whole(f"{why.filter}: {why.reason}")
                    items.append(WorkItem(t.id, link, j.brokers[sub], j.contracts[sub], whole))
                    continue
            contract = j.contracts[link.sub_account_id]
            refused = f"{why.filter}: {why.reason}" if why is not None else None
            # the alert's price is its chart's, the month it names: not the held month's
            price = None if link.sub_account_id in j.moved else signal.price
            plan = _planner(
                signal, t.settings, link, contract, price, signal_id, refused, self._current, snap
            )
            items.append(WorkItem(t.id, link, j.brokers[link.sub_account_id], contract, plan))
        return items

    async def _links(
        self,
        t: TraderConfig,
        ticker: str,
        price: Decimal | None,
        detail: dict[str, Any],
        looked_up: dict[int, LinkContract | Exception],
    ) -> tuple[dict[int, Broker], dict[int, Contract], frozenset[int]]:
        """The broker and contract of each sub-account of ``t`` (one whose contract is not
        found, or whose paper state could not be restored, is left out, saying why in
        ``detail``), noting the alert's price as the market of the month it names; and the
        sub-accounts acting on another month they hold, whose market the alert's price is not
        (after the roll, the new month's chart is a calendar spread away from the held one's:
        noted, it averaged a DCA add 100 points off). For those the price is only what their
        market orders fill at on paper (``registry.note_fill_price``): the paper broker fills at
        the signal price, and the held month had no other after the roll."""
        contracts: dict[int, Contract] = {}
        brokers: dict[int, Broker] = {}
        moved: set[int] = set()
        for link in t.links:
            try:
                got = looked_up.get(link.sub_account_id)
                if got is None:
                    got = await resolve(self._brokers, link, ticker)
                elif isinstance(got, Exception):
                    raise got
                broker, contract, elsewhere = got.broker, got.contract, got.elsewhere
            except Exception as exc:
                detail["traders"].setdefault(str(t.id), {})[str(link.sub_account_id)] = (
                    f"not traded: {exc}"
                )
                continue
            if elsewhere:
                moved.add(link.sub_account_id)
            if price is not None:
                self._note(link, contract, elsewhere, price)
                if not elsewhere:
                    self._marks[(t.user_id, contract.symbol)] = price
            brokers[link.sub_account_id] = broker
            contracts[link.sub_account_id] = contract
        return brokers, contracts, frozenset(moved)

    def _note(self, link: LinkConfig, contract: Contract, elsewhere: bool, price: Decimal) -> None:
        """The alert's price as the paper market of the month it names; for a month held
        across the roll only what market orders fill at (``_links``)."""
        if elsewhere:
            self._brokers.note_fill_price(link, contract, price)
        else:
            self._brokers.note_price(link, contract, price)

    async def market_only(self, signal: Signal, rec: RecorderConfig, snap: Snapshot) -> None:
        """A recorder with recording off refuses every alert before any trader is walked, yet
        its strategy's prices are still the only market its followers' paper accounts have:
        skipped, a stop of a position it opened never triggered however far the price ran
        through it (at Tradovate it does). Noted for each follower that would trade, and, as
        ever, for the owner's switched-off traders (``_own_market``). Not when the owner may not
        trade: a disabled user's recorder reaches nobody, its prices included."""
        if signal.price is None or not rec.owner_active:
            return
        ticker = signal.ticker or rec.symbol
        for t in rec.traders:
            gate = check_gate(
                signal, t.settings, enabled=t.enabled, owner_active=t.owner_active,
                halted=snap.halted,
            )  # fmt: skip
            await self._own_market(t, rec, ticker, signal.price, anyone=not inert(gate))

    async def _own_market(
        self,
        t: TraderConfig,
        rec: RecorderConfig,
        ticker: str,
        price: Decimal | None,
        *,
        anyone: bool = False,
    ) -> None:
        """An ``inert`` trader of the recorder's owner: the alert's price is still the market of
        its paper sub-accounts. A trader of her own recorder switched off leaves its positions'
        stops working at the paper broker, whose only market is her strategy's alerts: skipped,
        a stop never triggered however far the price ran through it. Another user's alerts stay
        out (``inert``). Nothing else of ``_links``: the paper broker's own contract table (no
        broker round trip), no restore awaited (one pending is left alone), no daily-loss mark
        (the traders that trade note their alerts' prices themselves). ``anyone``: a trader
        that would trade, of any user (``market_only``)."""
        if price is None or (t.user_id != rec.user_id and not anyone):
            return
        for link in t.links:
            if link.env != "paper" or not self._brokers.restored(link):
                continue
            try:  # restored already: ``resolve`` reaches nothing
                got = await resolve(self._brokers, link, ticker)
            except Exception as exc:  # it trades nothing: the next alert's price will do
                log.info("engine.price_unnoted", sub_account_id=link.sub_account_id, error=str(exc))
                continue
            self._note(link, got.contract, got.elsewhere, price)

    def _state(self, j: _Trader, price: Decimal | None, now: datetime) -> TraderState:
        """The trader's counts, and its P&L when its daily-loss limit judges an entry (read
        only then: a trader without one, or a close, costs no P&L reading)."""
        t, tc = j.t, j.tc
        realized: Decimal = Decimal(0)
        open_: Decimal | str = Decimal(0)
        counted = True
        if j.entry and t.settings.max_daily_loss is not None:
            counted = j.last_fills is None or not self._booked.behind(j.last_fills)
            # the trader's own instrument, as the open P&L (another trader's contract on the
            # same sub-account is that trader's limit's business); none resolved: all of them
            roots = {instrument(c.symbol) for c in j.contracts.values()} or None
            realized = self._pnl.realized([lk.sub_account_id for lk in t.links], now, roots)
            open_ = self._open_pnl(t.user_id, t.links, j.brokers, j.contracts, price)
        unknown = open_ if isinstance(open_, str) else None
        return TraderState(
            realized_pnl_today=realized,
            open_pnl=open_ if isinstance(open_, Decimal) else None,
            last_entry_at=tc.last_entry_at,
            entries_this_session=tc.entries,
            seen_this_session=tc.seen,
            pnl_counted=counted,
            open_pnl_unknown=unknown,
        )

    async def _count_fills(self, wanted: list[dict[AccountKey, int]]) -> None:
        """Wait, up to ``PNL_WAIT_S`` for all of them together, until the day's realized P&L
        counts every fill in ``wanted`` (the views' highest per account, read before the
        wait: ``booked_fills``). Whoever is still behind after it is judged "not known"."""
        last: dict[AccountKey, int] = {}
        for fills in wanted:
            last.update(fills)
        if last and self._booked.behind(last):
            await self._booked.caught_up(last, PNL_WAIT_S)

    def _open_pnl(
        self,
        owner: int,
        links: tuple[LinkConfig, ...],
        brokers: dict[int, Broker],
        contracts: dict[int, Contract],
        price: Decimal | None,
    ) -> Decimal | str:
        """Open P&L of the trader's positions in this contract's instrument (any month), marked
        at the signal's price, else at the last price an alert reaching a trader of its
        ``owner`` gave for the month (never another user's: any user can post any price); when
        it is unknown, why (the
        daily loss then fails closed): a position is open and there is no price at all, or a
        sub-account's positions cannot be read. Missing is not flat (rule 6): an unsynced view
        counted as 0 let the trader's other sub-accounts open entries while its open loss
        there was past the limit. A month held across the roll is marked at the alert's price
        too: its chart's month is a calendar spread away, near enough for a loss limit, where
        the last price an alert gave the held month itself dates from before the roll (it saw
        a 1,500-point loss as none)."""
        total = Decimal(0)
        for link in links:
            broker = brokers.get(link.sub_account_id)
            contract = contracts.get(link.sub_account_id)
            if broker is None:
                try:  # left out of the fan-out: for its contract, or for want of a session?
                    self._brokers.broker_for(link)
                except Exception as exc:
                    return f"the positions of sub-account {link.sub_name} cannot be read ({exc})"
            if broker is None or contract is None:
                continue
            try:
                held = [p for p in broker.positions(link.broker_account_id) if p.net_pos]
            except Exception as exc:
                log.info(
                    "engine.open_pnl_unknown", sub_account_id=link.sub_account_id, error=str(exc)
                )
                return f"the positions of sub-account {link.sub_name} cannot be read ({exc})"
            for p in held:
                # every month of the instrument, as the realized side counts (``DailyPnl``): an
                # alert naming the new month after the roll saw a 1,000-dollar open loss in the
                # month held as none, and opened beside it
                if instrument(p.symbol) != instrument(contract.symbol):
                    continue
                mark = price if price is not None else self._marks.get((owner, p.symbol))
                if mark is None:
                    return OPEN_UNMARKED
                lots = self._lots(link.sub_account_id, p.symbol)
                total += open_pnl(p.net_pos, p.net_price, mark, contract, lots)
        return total


# The gates after which a trader does nothing at all, closes included (``filters._gate``).
INERT_GATES = frozenset({"trader_disabled", "owner_not_approved"})


def inert(gate: Rejection | None) -> bool:
    """A trader switched off, or whose owner is not an approved, active user: it trades
    nothing, closes included (its positions are its user's to manage), so another user's alert
    is nothing to that user's broker state either. Its links are not walked: the alert's price
    is noted neither as the paper market of its logins (another user's alert, at any price that
    user posts, filled a stop on the paper account of a follower who had switched the trader
    off) nor as its user's daily-loss mark; no contract is resolved at its broker, no paper
    state restored. Its user's own recorder's alerts are its own market all the same, on paper
    (``Fanout._own_market``). It is still on the signal's row with its reason.

    The kill switch (``halted``, global or per login) is not such a gate: a halt stops entries,
    closes still go out, and the positions it leaves open are still held and protected; the
    trader's user still follows the recorder, so its alerts' prices are still the market of
    those positions, on paper as for the daily loss."""
    return gate is not None and gate.filter in INERT_GATES


def _planner(
    signal: Signal,
    s: Any,
    link: LinkConfig,
    contract: Contract,
    signal_price: Decimal | None,
    signal_id: int,
    entry_refused: str | None,
    current: Callable[[], Snapshot],
    judged_on: Snapshot,
) -> Any:
    account = SubAccount(link.broker_account_id, link.sub_name)
    prefix = cl_ord_prefix(signal_id, link.sub_account_id)

    def plan(state: AccountState) -> AccountPlan:
        now = current()
        gone = no_longer_traded(link, now) if now is not judged_on else None
        if gone is not None:
            return AccountPlan(PositionAction.IGNORE, (), gone.why, short=gone)
        return plan_account(
            signal,
            s,
            link.multiplier,
            account,
            contract,
            state,
            signal_price=signal_price,
            cl_ord_prefix=prefix,
            entry_refused=entry_refused or halted_since(signal, s, link, now),
        )

    return plan


def _last_fills(links: tuple[LinkConfig, ...], brokers: dict[int, Broker]) -> dict[AccountKey, int]:
    """The live views' highest fill id of each account the trader trades."""
    last: dict[AccountKey, int] = {}
    for link in links:
        broker = brokers.get(link.sub_account_id)
        if broker is not None:
            last[(link.account_id, link.broker_account_id)] = broker.last_fill_id(
                link.broker_account_id
            )
    return last
