"""The live view's state, how it builds value objects from Tradovate's entities, and how it
is read; ``view.AccountView`` feeds it (snapshots, events, request answers). Apart because
reading and feeding are two jobs, each with its own callers: the planner, the dispatcher and
protection read; the session feeds.

"Missing is not flat" (DESIGN.md §5 rule 6): an unsynced account's ``positions`` and working
orders raise ``TransientBrokerError`` instead of answering "none".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from jtrades.broker.base import CashBalance, Fill, Position, WorkingOrder
from jtrades.broker.tradovate.entity_values import (
    cash_balance_of,
    fill_of,
    fill_order,
    working_order_of,
)
from jtrades.broker.tradovate.frames import FrameOrders
from jtrades.broker.tradovate.rejections import Rejections
from jtrades.broker.tradovate.strategies import StrategyIndex
from jtrades.errors import TransientBrokerError

Entity = Mapping[str, Any]


class ViewState:
    """What the view holds of one login's accounts, and its reads."""

    def __init__(self) -> None:
        # contract id -> name: facts about contracts, not about a connection, so they outlive
        # the snapshots. A snapshot names only the contracts its orders and positions use, and
        # the client names a contract once, when it first resolves it (it caches the answer
        # across reconnects): forgetting it here left that contract's fills and positions
        # nameless after a reconnect, and the mirror could neither price nor file them.
        self._contracts: dict[int, str] = {}
        # positions a partly unreadable snapshot left out and could not call gone (``view``)
        self._unconfirmed: dict[int, dict[int, Position]] = {}
        self._reset()

    def _reset(self) -> None:
        self._synced: set[int] = set()
        self._accounts: dict[int, str] = {}
        # account -> contract -> position, kept as built when its event came: every signal
        # reads each of its sub-accounts' positions (one login may hold hundreds), the settling
        # dispatcher on every position event, the protective pass all of them
        self._positions: dict[int, dict[int, Position]] = {}
        self._position_ids: dict[tuple[int, int], int] = {}  # (account, contract) -> entity id
        # ... and that entity's (trading day, id): which of two entities is the position
        self._position_ranks: dict[tuple[int, int], tuple[tuple[int, int, int], int]] = {}
        self._orders: dict[int, Entity] = {}
        # orderId -> the WorkingOrder its entities make, built once per change of any of them
        # (order, orderVersion, command, the contract's name) rather than on every read
        self._built: dict[int, WorkingOrder] = {}
        # account -> ids of its orders whose status is open: working_orders runs for every
        # sub-account of every signal, and _orders keeps every order of the day
        self._open_by_account: dict[int, set[int]] = {}
        self._versions: dict[int, Entity] = {}  # orderId -> latest orderVersion
        self._cl_ord: dict[int, str] = {}  # orderId -> clOrdId (from its New command)
        # rejections after acceptance: commandReports name their command, not their order
        self._rejections = Rejections()
        # order strategies and their links, by uuid (read it through the view: a snapshot
        # replaces it); a strategy's entry order takes the strategy's uuid as its clOrdId
        self.strategies = StrategyIndex()
        self._fills: dict[int, Entity] = {}
        # orderId -> fills that came before their order (no account yet): published again,
        # with the account, once the order arrives (the mirror files fills by account)
        self._orphan_fills: dict[int, list[int]] = {}
        self._filled_qty: dict[int, int] = {}  # orderId -> contracts filled (see filled_qty)
        self._last_fill: dict[int, int] = {}  # account -> its highest fill id (last_fill_id)
        self._cash: dict[int, Entity] = {}
        self._frame: FrameOrders | None = None  # while ``apply_all`` applies one frame
        # finished orders the last snapshot held that cannot be read: (id, why), for the log
        self.unreadable_done: list[tuple[int, str]] = []

    # --- building value objects (see entity_values) -----------------------------------------

    def _working(self, order_id: int) -> WorkingOrder | None:
        built = self._built.get(order_id)
        if built is not None:
            return built
        o = self._orders.get(order_id)
        if o is None:
            return None
        built = working_order_of(
            order_id,
            o,
            self._versions.get(order_id, {}),
            self._contracts,
            cl_ord_id=self._cl_ord.get(order_id) or self.strategies.cl_ord.get(order_id),
            parent_id=o.get("parentId") or self.strategies.parent_of(order_id),
            reason=self._rejections.reason(order_id),
            bracketed=order_id in self.strategies.cl_ord,
        )
        if built.status.is_open:  # what working_orders reads; a done order is read rarely
            self._built[order_id] = built
        return built

    def _fill(self, e: Entity) -> Fill:
        return fill_of(e, self._orders.get(int(e["orderId"]), {}), self._contracts)

    # --- reading -----------------------------------------------------------------------------

    def is_synced(self, account_id: int) -> bool:
        return account_id in self._synced

    @property
    def account_ids(self) -> list[int]:
        return sorted(self._accounts)

    def account_name(self, account_id: int) -> str | None:
        return self._accounts.get(account_id)

    def _require_synced(self, account_id: int) -> None:
        if account_id not in self._synced:
            raise TransientBrokerError(
                f"the broker view of account {account_id} is not synced: its state is unknown"
            )

    def positions(self, account_id: int) -> list[Position]:
        """Open positions (net ≠ 0); raises while unsynced — an empty list means flat."""
        self._require_synced(account_id)
        held = self._positions.get(account_id, {})
        return [held[cid] for cid in sorted(held) if held[cid].net_pos != 0]

    def working_orders(self, account_id: int) -> list[WorkingOrder]:
        """Orders still open (PendingNew, Working, …), oldest first; raises while unsynced."""
        self._require_synced(account_id)
        out = []
        for oid in sorted(self._open_by_account.get(account_id, ())):
            order = self._working(oid)
            if order is not None and order.account_id == account_id and order.status.is_open:
                out.append(order)
        return out

    def contract_id(self, name: str) -> int:
        """The id of the contract named ``name`` (0: not known)."""
        return next((cid for cid, n in self._contracts.items() if n == name), 0)

    def order_ids(self, account_id: int) -> list[int]:
        """Every order of the account the view holds, open or not."""
        return [
            oid for oid, o in self._orders.items() if int(o.get("accountId") or 0) == account_id
        ]

    def order(self, order_id: int) -> WorkingOrder | None:
        """Any order the view knows, open or not."""
        return self._working(order_id)

    def order_by_cl_ord_id(self, account_id: int, cl_ord_id: str) -> WorkingOrder | None:
        """The order with this clOrdId — or the entry of the strategy with this uuid."""
        entry = self.strategies.entry_by_uuid(cl_ord_id)
        if entry is not None:
            order = self._working(entry)
            if order is not None and order.account_id == account_id:
                return order
        for oid, cl in self._cl_ord.items():
            if cl == cl_ord_id:
                order = self._working(oid)
                if order is not None and order.account_id == account_id:
                    return order
        return None

    def fills(self, account_id: int) -> list[Fill]:
        self._require_synced(account_id)
        fills = [self._fill(e) for e in self._fills.values()]
        return sorted((f for f in fills if f.account_id == account_id), key=fill_order)

    def fill(self, fill_id: int) -> Fill | None:
        """One fill as the view names it now, by id: the mirror asks for the held ones on
        every batch, and ``fills`` builds and sorts every fill of the login (35 ms at 10k)."""
        e = self._fills.get(fill_id)
        return self._fill(e) if e is not None else None

    def last_fill_id(self, account_id: int) -> int:
        """The account's highest fill id in the view (0: none)."""
        return self._last_fill.get(account_id, 0)

    def filled_qty(self, account_id: int, order_ids: Iterable[int]) -> dict[int, int]:
        """Contracts filled so far per order, kept as fills arrive (``fills`` builds every
        fill of the login, which a pass over hundreds of sub-accounts cannot afford)."""
        self._require_synced(account_id)
        return {oid: q for oid in order_ids if (q := self._filled_qty.get(oid))}

    def cash(self, account_id: int) -> CashBalance | None:
        self._require_synced(account_id)
        e = self._cash.get(account_id)
        return cash_balance_of(e) if e is not None else None

    def unknown_contract_ids(self) -> set[int]:
        ids = {cid for held in self._positions.values() for cid in held}
        ids |= {int(o["contractId"]) for o in self._orders.values() if o.get("contractId")}
        ids |= {int(f["contractId"]) for f in self._fills.values() if f.get("contractId")}
        return ids - set(self._contracts)
