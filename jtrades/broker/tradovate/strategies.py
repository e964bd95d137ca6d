"""Order strategies in the live view: which order is a strategy's entry, and the id it carries.

An order strategy's orders carry no ``clOrdId``: our intent's id travels as the strategy's
``uuid`` (StartOrderStrategy.uuid, kept on the OrderStrategy entity), and ``orderStrategyLink``
entities (``id, orderStrategyId, orderId, label``) tie the strategy to its orders. Both come in
the sync snapshot (``orderStrategies``, ``orderStrategyLinks``) and as ``props`` events, in an
order Tradovate does not document. From them the view gives a strategy's entry order the
strategy's uuid as its clOrdId: its events then move the intent as any order's do, across
reconnects, without a request. Pure state: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

Entity = Mapping[str, Any]


def entry_order_id(links: Any, strategy_id: int) -> int | None:
    """The entry order among a strategy's ``orderStrategyLink`` rows: the one labelled so, else
    the first order the strategy made (its brackets are created only once the entry fills, and
    Tradovate's ids grow). Rows of another strategy are ignored."""
    rows = [
        link
        for link in (links if isinstance(links, Iterable) else ())
        if isinstance(link, Mapping)
        and link.get("orderId") is not None
        and int(link.get("orderStrategyId") or strategy_id) == strategy_id
    ]
    labelled = [link for link in rows if str(link.get("label") or "").lower() == "entry"]
    chosen = labelled or rows
    return min(int(link["orderId"]) for link in chosen) if chosen else None


def _order_of(link: Entity | None) -> int | None:
    oid = link.get("orderId") if link is not None else None
    return int(oid) if oid is not None else None


class StrategyIndex:
    """The strategies and links of one snapshot (and the events since), indexed by ``uuid``."""

    def __init__(self) -> None:
        self._strategies: dict[int, Entity] = {}
        self._by_uuid: dict[str, int] = {}
        self._links: dict[int, dict[int, Entity]] = {}  # strategy id -> link id -> link
        self._entry: dict[int, int] = {}  # strategy id -> its entry order id
        # entry order id -> the strategy's uuid: what the view reads as that order's clOrdId
        self.cl_ord: dict[int, str] = {}
        self._strategy_of: dict[int, int] = {}  # linked order id -> its strategy id

    def store(self, kind: str, e: Entity, *, deleted: bool) -> set[int]:
        """Merge an ``orderStrategy`` or ``orderStrategyLink``; returns the ids of the orders
        whose clOrdId this changed (their view is to be rebuilt and published)."""
        if kind == "orderStrategy":
            sid = int(e["id"])
            old = self._strategies.pop(sid, None)
            old_uuid = old.get("uuid") if old is not None else None
            if old_uuid and self._by_uuid.get(str(old_uuid)) == sid:
                del self._by_uuid[str(old_uuid)]
            if not deleted:
                uuid = e.get("uuid") or old_uuid
                # the uuid never changes: an update that leaves it out does not drop it
                self._strategies[sid] = {**e, "uuid": uuid} if uuid != e.get("uuid") else e
                if uuid:
                    self._by_uuid[str(uuid)] = sid
        else:
            if e.get("orderStrategyId") is None:
                return set()
            sid = int(e["orderStrategyId"])
            links = self._links.setdefault(sid, {})
            old_link = links.pop(int(e["id"]), None) if deleted else links.get(int(e["id"]))
            linked = {_order_of(x) for x in (old_link, e, *links.values())} - {None}
            parents = {o: self.parent_of(o) for o in linked if o is not None}
            if not deleted:
                links[int(e["id"])] = e
            for o in parents:
                self._strategy_of.pop(o, None)
            for x in links.values():
                if (member := _order_of(x)) is not None:
                    self._strategy_of[member] = sid
            changed = self._rebind(sid)
            # and the orders whose parent (``parent_of``) this changed
            return changed | {oid for oid, was in parents.items() if self.parent_of(oid) != was}
        return self._rebind(sid)

    def _rebind(self, sid: int) -> set[int]:
        was = self._entry.pop(sid, None)
        was_cl = self.cl_ord.pop(was, None) if was is not None else None
        entry = entry_order_id(self._links.get(sid, {}).values(), sid)
        uuid = self._strategies.get(sid, {}).get("uuid")
        if entry is not None:
            self._entry[sid] = entry
            if uuid:
                self.cl_ord[entry] = str(uuid)
        before = {was: was_cl} if was is not None else {}
        return {
            oid
            for oid in (was, entry)
            if oid is not None and before.get(oid) != self.cl_ord.get(oid)
        }

    def parent_of(self, order_id: int) -> int | None:
        """The entry order of the strategy that made ``order_id`` when it is one of that
        strategy's brackets, as the paper broker links them (``parentId`` stays empty for
        them): once the entry has filled they exit the position it opened."""
        sid = self._strategy_of.get(order_id)
        entry = self._entry.get(sid) if sid is not None else None
        return entry if entry is not None and entry != order_id else None

    def entry(self, strategy_id: int) -> int | None:
        """The strategy's entry order id, once a link of it has been seen."""
        return self._entry.get(strategy_id)

    def strategy(self, strategy_id: int) -> Entity | None:
        return self._strategies.get(strategy_id)

    def by_uuid(self, uuid: str) -> Entity | None:
        """The strategy started with ``uuid`` (our intent's id), if the view has seen it."""
        sid = self._by_uuid.get(uuid)
        return self._strategies.get(sid) if sid is not None else None

    def entry_by_uuid(self, uuid: str) -> int | None:
        sid = self._by_uuid.get(uuid)
        return self._entry.get(sid) if sid is not None else None
