"""The orders one frame's ``props`` events change, each built and published once.

Tradovate sends what one command caused in one frame: a market order is Created, versioned,
Working and Filled in the events around its fill. The view applied them one at a time and built
and published the order four times, and the mirror wrote it four times: a fifth of the daemon's
CPU under load. Nobody reads the view between the events of one frame (the session applies a
frame before any other task runs), so nobody could see the states between: an order is now
published once, where it first changed, as the frame left it (``AccountView.apply_all``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jtrades.broker.base import BrokerEvent


class PartlyApplied(Exception):
    """An event of a frame could not be applied, or an order it changed cannot be built
    (``cause``; ``props`` is that event): the view holds the frame, and ``events`` are the
    changes that can be published."""

    def __init__(
        self, events: list[BrokerEvent], props: Mapping[str, Any], cause: Exception
    ) -> None:
        super().__init__(str(cause))
        self.events, self.props, self.cause = events, props, cause


class FrameOrders:
    """While one frame is applied: a stand-in event per order it changes, in the place of its
    first change, replaced at the end (``resolved``) by the order as it stands then."""

    def __init__(self, build: Callable[[int], BrokerEvent]) -> None:
        self._build = build
        self._stand_ins: dict[int, BrokerEvent] = {}  # order id -> its stand-in
        self._made: dict[int, BrokerEvent] = {}  # id(stand-in) -> the event it stands for
        # order id -> the first event changing it, and the kinds of all that did
        self._touched: dict[int, tuple[Mapping[str, Any], set[str]]] = {}
        self.applying: Mapping[str, Any] = {}  # the event being applied

    def changed(self, order_id: int) -> list[BrokerEvent]:
        """The order's event for the one being applied: its stand-in the first time."""
        if order_id in self._stand_ins:
            self._touched[order_id][1].add(str(self.applying.get("entityType")))
            return []
        self._touched[order_id] = (self.applying, {str(self.applying.get("entityType"))})
        stand_in = self._stand_ins[order_id] = BrokerEvent("order", None, None)
        return [stand_in]

    def deleting(self, order_id: int) -> None:
        """Before the order's entity goes: its stand-in is the order as it was (the deletion
        makes an event of its own)."""
        stand_in = self._stand_ins.get(order_id)
        if stand_in is not None:
            self._made[id(stand_in)] = self._build(order_id)
            del self._stand_ins[order_id]

    def resolved(self, out: list[BrokerEvent]) -> list[BrokerEvent]:
        """``out`` with each stand-in replaced by its order. An order that cannot be built
        raises ``PartlyApplied`` with every other event: the view holds them all."""
        dropped: set[int] = set()
        failed: tuple[Mapping[str, Any], Exception] | None = None
        for order_id, stand_in in self._stand_ins.items():
            try:
                self._made[id(stand_in)] = self._build(order_id)
            except Exception as exc:
                dropped.add(id(stand_in))
                failed = failed or (self._culprit(order_id), exc)
        self._stand_ins = {}
        events = [self._made.get(id(e), e) for e in out if id(e) not in dropped]
        if failed is not None:
            raise PartlyApplied(events, *failed)
        return events

    def _culprit(self, order_id: int) -> Mapping[str, Any]:
        """What to name for an order that cannot be built: the events of the frame that
        changed it, any of which may hold what cannot be read."""
        first, kinds = self._touched.get(order_id, ({}, set()))
        return {**first, "entityType": "/".join(sorted(kinds)) or first.get("entityType")}
