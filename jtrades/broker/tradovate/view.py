"""The live view of one login's accounts, fed by the ``user/syncrequest`` snapshot and ``props``
events. Pure state: no I/O, no clock. Its changes reach subscribers through ``hub.EventHub``.

Tradovate splits an order across entities (TRADOVATE.md "Order vs OrderVersion"): ``order`` holds
status and links, ``orderVersion`` the quantity and prices, ``command`` the ``clOrdId``. The view
merges them into one ``WorkingOrder``; a strategy's entry order, which has no clOrdId, takes its
strategy's ``uuid`` (``strategies``). Fills carry no account id: it comes from their order. Fills
are de-duplicated by id (Tradovate may replay them around the session change).

"Missing is not flat" (DESIGN.md §5 rule 6): until a snapshot has been loaded — and from the moment
the connection drops until the next one — an account is *unsynced* and ``positions()`` raises
``TransientBrokerError`` instead of answering "no positions".
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from jtrades.broker.base import (
    BrokerEvent,
    Fill,
    Position,
    WorkingOrder,
)
from jtrades.broker.tradovate.entity_fields import parse_status
from jtrades.broker.tradovate.entity_values import (
    cash_balance_of,
    fill_order,
    position_of,
    position_rank,
)
from jtrades.broker.tradovate.frames import FrameOrders, PartlyApplied
from jtrades.broker.tradovate.hub import EventHub, Subscription
from jtrades.broker.tradovate.view_state import Entity, ViewState

__all__ = ["AccountView", "Entity", "EventHub", "PartlyApplied", "Subscription"]


class AccountView(ViewState):
    """Positions, orders, fills and cash of the accounts of one login: fed here, read through
    ``ViewState``."""

    # --- feeding ---------------------------------------------------------------------------

    def load_snapshot(
        self, data: Mapping[str, Any], account_ids: Iterable[int] = ()
    ) -> list[BrokerEvent]:
        """Replace the view with a sync snapshot; its accounts (and ``account_ids``) become synced.

        Returns the changes to publish: what happened while the stream was down (a stop filled
        during an outage) is known only from here. Every position (one that left the snapshot
        becomes flat, unless an entity could not be read: the missing one may be it), every
        order that is new or differs from the view's before, every fill —
        the day's, in the order they happened (time, then id), so that the round trips they
        make are measured in that order — and every cash balance; then the accounts' ``synced``.
        Fills are all replayed, not only the unseen ones: their subscriber (the mirror) keeps
        each fill once by its id, and a replay restores one it lost. Orders are not: a busy
        login's day of orders would be a burst of thousands for nothing."""
        was_orders = {oid: self._was(oid) for oid in self._orders}
        was_positions = self._with_unconfirmed(self._positions)
        self._reset()  # a snapshot is the whole truth
        for acct in data.get("accounts") or ():
            self._accounts[int(acct["id"])] = str(acct.get("name") or "")
        for c in data.get("contracts") or ():
            self._contracts[int(c["id"])] = str(c.get("name") or "")  # the snapshot's name wins
        unreadable = self._store_snapshot(data)
        self._synced = set(self._accounts) | {int(a) for a in account_ids}
        orders, unbuilt = self._changed_orders(was_orders)
        unreadable = unreadable or unbuilt
        events = [
            *orders,
            *self._fill_events(),
            # with an entity unread, one missing from the snapshot may be that one: not flat
            # now, and asked again of the next snapshot (``_unconfirmed``)
            *self._position_events(was_positions if unreadable is None else {}),
            *(BrokerEvent("cash", acct, cash_balance_of(e)) for acct, e in self._cash.items()),
        ]
        self._unconfirmed = {} if unreadable is None else self._missing(was_positions)
        if unreadable is not None:  # what happened meanwhile is published, then the cut
            self._synced = set()
            raise PartlyApplied(events, *unreadable)
        return [
            *events,
            *(
                BrokerEvent("session", acct, None, detail={"state": "synced"})
                for acct in sorted(self._synced)
            ),
        ]

    def _with_unconfirmed(
        self, positions: Mapping[int, Mapping[int, Position]]
    ) -> dict[int, dict[int, Position]]:
        """``positions``, and those a partly unreadable snapshot left out that it could not
        call gone: taken as the next snapshot's before, it publishes them flat if still gone.
        Dropped, a position closed during that outage was never published flat: its row
        stayed open for good."""
        merged = {acct: dict(held) for acct, held in positions.items()}
        for acct, held in self._unconfirmed.items():
            for cid, pos in held.items():
                merged.setdefault(acct, {}).setdefault(cid, pos)
        return merged

    def _missing(self, was: Mapping[int, Mapping[int, Position]]) -> dict[int, dict[int, Position]]:
        """The open positions of ``was`` the snapshot just stored does not hold."""
        out: dict[int, dict[int, Position]] = {}
        for acct, held in was.items():
            now = self._positions.get(acct, {})
            gone = {cid: p for cid, p in held.items() if p.net_pos and cid not in now}
            if gone:
                out[acct] = gone
        return out

    def _store_snapshot(
        self, data: Mapping[str, Any]
    ) -> tuple[Mapping[str, Any], Exception] | None:
        """Keep a snapshot's entities, without building each order they touch on the way
        (``_changed_orders`` builds each once); the first that cannot be read (what names it,
        the error), the rest kept all the same: they are published before the cut."""
        self._frame = FrameOrders(self._order_event_now)
        unreadable: tuple[Mapping[str, Any], Exception] | None = None
        try:
            for kind, items in (
                ("order", data.get("orders")),
                ("orderVersion", data.get("orderVersions")),
                ("command", data.get("commands")),
                ("commandReport", data.get("commandReports")),
                ("orderStrategy", data.get("orderStrategies")),
                ("orderStrategyLink", data.get("orderStrategyLinks")),
                ("position", data.get("positions")),
                ("fill", data.get("fills")),
                ("cashBalance", data.get("cashBalances")),
            ):
                for entity in items or ():
                    try:
                        self._store(kind, entity, deleted=False)
                    except Exception as exc:
                        unreadable = unreadable or ({"entityType": kind, "entity": entity}, exc)
        finally:
            self._frame = None
        return unreadable

    def _was(self, order_id: int) -> WorkingOrder | None:
        """An order as the view held it before a snapshot; None for one it could not read,
        which the snapshot replaces (raising, it kept the login from ever syncing again)."""
        try:
            return self._working(order_id)
        except Exception:
            return None

    def _changed_orders(
        self, was: Mapping[int, WorkingOrder | None]
    ) -> tuple[list[BrokerEvent], tuple[Mapping[str, Any], Exception] | None]:
        """The orders that differ from ``was``; and the first open one that cannot be built
        (what names it, the error), left out. A finished one that cannot be built is left out
        and listed in ``unreadable_done``: it holds no position and works no exit, and cutting
        for it kept every account of the login unsynced on each reconnect, all day."""
        out: list[BrokerEvent] = []
        unreadable: tuple[Mapping[str, Any], Exception] | None = None
        self.unreadable_done = []
        for oid in sorted(self._orders):
            try:
                order = self._working(oid)
            except Exception as exc:
                raw = self._orders[oid]
                if not parse_status(raw.get("ordStatus")).is_open:
                    self.unreadable_done.append((oid, f"{type(exc).__name__}: {exc}"))
                elif unreadable is None:
                    kind = "order/orderVersion" if oid in self._versions else "order"
                    unreadable = ({"entityType": kind, "entity": raw}, exc)
                continue
            if order is not None and order != was.get(oid):
                out.append(BrokerEvent("order", order.account_id, order))
        return out, unreadable

    def _fill_events(self) -> list[BrokerEvent]:
        fills = sorted((self._fill(e) for e in self._fills.values()), key=fill_order)
        return [BrokerEvent("fill", f.account_id or None, f) for f in fills]

    def _position_events(self, was: Mapping[int, Mapping[int, Position]]) -> list[BrokerEvent]:
        out: list[BrokerEvent] = []
        for acct in sorted(self._positions):
            held = self._positions[acct]
            out.extend(BrokerEvent("position", acct, held[cid]) for cid in sorted(held))
        for acct, gone in sorted(self._missing(was).items()):
            if acct not in self._synced:
                continue
            for _cid, pos in sorted(gone.items()):
                flat = dataclasses.replace(pos, net_pos=0, net_price=None, timestamp=None)
                out.append(BrokerEvent("position", acct, flat, deleted=True))
        return out

    def mark_unsynced(self, reason: str) -> list[BrokerEvent]:
        """The stream stopped: nothing read from here can be trusted until the next snapshot."""
        was = sorted(self._synced)
        self._synced.clear()
        return [
            BrokerEvent("session", acct, None, detail={"state": "unsynced", "reason": reason})
            for acct in was
        ]

    def apply(self, props: Mapping[str, Any]) -> list[BrokerEvent]:
        """Apply one ``props`` event; returns the changes to publish (possibly none)."""
        kind = str(props.get("entityType") or "")
        entity = props.get("entity")
        # a dict (as parsed) skips the ABC check, which costs more than the rest of this test
        if not (type(entity) is dict or isinstance(entity, Mapping)) or "id" not in entity:
            return []
        deleted = props.get("eventType") == "Deleted"
        return self._store(kind, entity, deleted=deleted)

    def apply_all(self, items: Iterable[Mapping[str, Any]]) -> list[BrokerEvent]:
        """``apply`` for the ``props`` events of one frame: an order several of them change is
        published once, where it first changed, as the frame left it (``frames``). One that
        cannot be applied raises ``PartlyApplied``."""
        frame = self._frame = FrameOrders(self._order_event_now)
        out: list[BrokerEvent] = []
        try:
            for props in items:
                frame.applying = props
                try:
                    out += self.apply(props)
                except Exception as exc:
                    raise PartlyApplied(frame.resolved(out), props, exc) from exc
            return frame.resolved(out)
        finally:
            self._frame = None

    def absorb(self, kind: str, entity: Entity) -> list[BrokerEvent]:
        """Merge an entity read by a request (not the stream) under the same rules, except
        that an answer never brings back an order the stream has seen end: it may have been
        read before the fill the stream delivered during its round trip, and a phantom
        working order misleads protection and planning until the next snapshot."""
        if kind == "order" and "id" in entity:
            known = self._orders.get(int(entity["id"]))
            if (
                known is not None
                and not parse_status(known.get("ordStatus")).is_open
                and parse_status(entity.get("ordStatus")).is_open
            ):
                return []
        return self._store(kind, entity, deleted=False)

    def set_contract(self, contract_id: int, name: str) -> None:
        self._name_contract(contract_id, name)

    def _name_contract(self, contract_id: int, name: str) -> None:
        """A contract's name arrived (or changed): what was built with the old one is rebuilt."""
        if self._contracts.get(contract_id) == name:
            return
        self._contracts[contract_id] = name
        for held in self._positions.values():
            pos = held.get(contract_id)
            if pos is not None:
                held[contract_id] = dataclasses.replace(pos, symbol=name)
        self._built.clear()  # rare (a contract is named once): rebuilt on the next read

    def _store(self, kind: str, e: Entity, *, deleted: bool) -> list[BrokerEvent]:
        eid = int(e["id"])
        if kind == "order":
            if deleted and self._frame is not None:
                self._frame.deleting(eid)
            self._built.pop(eid, None)
            if deleted:
                self._orders.pop(eid, None)
            else:
                self._orders[eid] = e
            open_ids = self._open_by_account.setdefault(int(e.get("accountId") or 0), set())
            if not deleted and parse_status(e.get("ordStatus")).is_open:
                open_ids.add(eid)
            else:
                open_ids.discard(eid)
            out = self._order_event(eid, deleted)
            for fid in self._orphan_fills.pop(eid, []) if not deleted else []:
                fill = self._fill(self._fills[fid])
                self._note_fill(fill)
                out.append(BrokerEvent("fill", fill.account_id or None, fill))
            return out
        if kind == "orderVersion":
            oid = int(e["orderId"])
            current = self._versions.get(oid)
            if current is None or int(current["id"]) <= eid:
                self._versions[oid] = e
                self._built.pop(oid, None)
            return self._order_event(oid, False) if oid in self._orders else []
        if kind == "command":
            cl = e.get("clOrdId")
            if e.get("orderId") is not None and eid:  # id 0: a clOrdId read by a request
                oid = int(e["orderId"])
                if self._rejections.command(eid, oid):  # its report came first: now it is known
                    self._built.pop(oid, None)
            if cl and e.get("commandType", "New") == "New":
                oid = int(e["orderId"])
                self._cl_ord[oid] = str(cl)
                self._built.pop(oid, None)
            return []
        if kind == "commandReport":  # only a rejection's text is kept, for its order's row
            rejected = self._rejections.report(e)
            if rejected is None:
                return []
            self._built.pop(rejected, None)
            return self._order_event(rejected, False) if rejected in self._orders else []
        if kind == "position":
            held = self._positions.setdefault(int(e["accountId"]), {})
            pos = position_of(e, self._contracts)
            key = (pos.account_id, pos.contract_id)
            if deleted:
                if self._position_ids.get(key, eid) != eid:
                    # another entity of the contract (a past trading day's, say): the position
                    # held is still the one the view has; dropping it read "flat" from inside
                    return []
                held.pop(pos.contract_id, None)
                self._position_ids.pop(key, None)
                self._position_ranks.pop(key, None)
            else:
                rank = position_rank(e)
                if self._position_ids.get(key, eid) != eid and rank < self._position_ranks[key]:
                    # an older trading day's entity of the contract, listed (or updated) after
                    # the current one: the most recent is the position, whatever the order
                    return []
                held[pos.contract_id] = pos
                self._position_ids[key] = eid
                self._position_ranks[key] = rank
            return [BrokerEvent("position", pos.account_id, pos, deleted=deleted)]
        if kind == "fill":
            if eid in self._fills or deleted:
                return []  # a replayed fill
            fill = self._fill(e)  # read before it is kept: one that cannot be is not
            self._fills[eid] = e
            self._filled_qty[fill.order_id] = self._filled_qty.get(fill.order_id, 0) + fill.qty
            if not fill.account_id:
                self._orphan_fills.setdefault(fill.order_id, []).append(eid)
            else:
                self._note_fill(fill)
            return [BrokerEvent("fill", fill.account_id or None, fill)]
        if kind == "cashBalance":
            acct, cash = int(e["accountId"]), cash_balance_of(e)  # read before it is kept
            self._cash[acct] = e
            return [BrokerEvent("cash", acct, cash)]
        if kind in ("orderStrategy", "orderStrategyLink"):
            out = []  # the orders whose clOrdId this changed (a strategy's entry)
            for oid in sorted(self.strategies.store(kind, e, deleted=deleted)):
                self._built.pop(oid, None)
                out += self._order_event(oid, False) if oid in self._orders else []
            return out
        if kind == "contract":
            self._name_contract(eid, str(e.get("name") or ""))
            return []
        if kind == "account":
            self._accounts[eid] = str(e.get("name") or "")
            return []
        return []

    def _note_fill(self, fill: Fill) -> None:
        if fill.fill_id > self._last_fill.get(fill.account_id, 0):
            self._last_fill[fill.account_id] = fill.fill_id

    def _order_event(self, order_id: int, deleted: bool) -> list[BrokerEvent]:
        if self._frame is not None:
            return self._frame.changed(order_id)
        return [self._order_event_now(order_id, deleted)]

    def _order_event_now(self, order_id: int, deleted: bool = False) -> BrokerEvent:
        order = self._working(order_id)
        if order is None:
            return BrokerEvent("order", None, None, deleted=True, detail={"order_id": order_id})
        return BrokerEvent("order", order.account_id, order, deleted=deleted)

    def name_contracts(self, names: Mapping[int, str]) -> list[BrokerEvent]:
        """Names looked up for contracts the view met unnamed; the positions in them, renamed,
        to publish (a fill is read again by id where it waits: the mirror's held fills)."""
        for cid, name in names.items():
            self._name_contract(cid, name)
        return [
            BrokerEvent("position", acct, pos)
            for acct, held in sorted(self._positions.items())
            for cid, pos in sorted(held.items())
            if cid in names
        ]

    def replay(self) -> list[BrokerEvent]:
        """The whole view as events, for a subscriber that missed some (one that came after
        the snapshot, or whose queue overflowed): what ``load_snapshot`` publishes, but every
        order rather than the changed ones, the fills in the order they happened, and every
        position (flat ones too)."""
        orders, _unreadable = self._changed_orders({})  # cut already, when there is one
        return [*orders, *self._fill_events(), *self._position_events({})]
