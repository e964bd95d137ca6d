"""Feeding a session's view from one connection's stream, apart from the connection itself.

A connection's ``props`` events may overtake its sync answer: they wait for the snapshot, then
apply on top of it. What the view learns is published, and a contract it met unnamed is handed to
the namer. The connection loop only says when a connection starts, what the snapshot is, and
which events came; it learns of an event the view could not read through ``StreamBroken``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

import structlog

from jtrades.broker.base import BrokerEvent
from jtrades.broker.tradovate.frames import PartlyApplied
from jtrades.broker.tradovate.hub import EventHub
from jtrades.broker.tradovate.naming import ContractNamer
from jtrades.broker.tradovate.view import AccountView

log = structlog.get_logger(__name__)


class StreamBroken(Exception):
    """An event the view could not apply: the connection has been cut (already logged)."""


class ViewFeed:
    """The snapshot and events of the current connection, into the view and out to the hub."""

    def __init__(
        self,
        view: AccountView,
        hub: EventHub,
        namer: ContractNamer,
        cut: Callable[[str], None],
        label: str = "",
    ) -> None:
        self.view = view
        self.hub = hub
        self.label = label
        self._namer = namer
        self._cut = cut
        self._snapshot_loaded = False
        self._early: list[Any] = []

    def restart(self) -> None:
        """A new connection: its events wait for its own snapshot."""
        self._snapshot_loaded = False
        self._early = []

    def snapshot(self, data: dict[str, Any]) -> None:
        try:
            events = self.view.load_snapshot(data)
        except PartlyApplied as broken:  # an entity it cannot read: the rest is published
            self.hub.publish(broken.events)
            self._broken(broken)
        for order_id, why in self.view.unreadable_done:
            log.warning(
                "tradovate.session.unreadable_order",
                session=self.label,
                order_id=order_id,
                reason=why,
                effect="a finished order left out of the view",
            )
        self._snapshot_loaded = True
        early, self._early = self._early, []
        try:
            events.extend(self.view.apply_all(early))
        except PartlyApplied as broken:
            # The view holds the snapshot now, so the next one diffs against it: what this one
            # changed (an order that filled during the outage) is published here or never.
            # Not the accounts' "synced": the stream is cut.
            self.hub.publish([e for e in [*events, *broken.events] if e.kind != "session"])
            self._broken(broken)
        self.hub.publish(events)
        if self.view.unknown_contract_ids():
            self._namer.soon()

    def props_all(self, items: list[dict[str, Any]]) -> None:
        """The ``props`` events of one frame (those in a row), applied at once
        (``AccountView.apply_all``)."""
        if not self._snapshot_loaded:
            self._early.extend(items)  # events may overtake the sync answer
            return
        try:
            events = self.view.apply_all(items)
        except PartlyApplied as broken:
            self.publish(broken.events)
            self._broken(broken)
        self.publish(events)

    def publish(self, events: list[BrokerEvent]) -> None:
        """Out to the hub, and any contract met unnamed to the namer."""
        self.hub.publish(events)
        self._namer.notice(events)

    def _broken(self, broken: PartlyApplied) -> NoReturn:
        """An event the view cannot apply leaves it behind the broker (a fill or a position
        change missed): skipping it would report a stale position as synced, so the stream
        is broken — cut it, and sync from a fresh snapshot."""
        props, exc = broken.props, broken.cause
        entity = props.get("entity")
        entity = entity if isinstance(entity, dict) else {}
        reason = f"unreadable {props.get('entityType')} event ({type(exc).__name__}: {exc})"
        log.error(
            "tradovate.session.bad_event",
            session=self.label,
            entity_type=props.get("entityType"),
            event_type=props.get("eventType"),
            entity_id=entity.get("id"),
            account_id=entity.get("accountId"),
            error=type(exc).__name__,
            reason=str(exc),
        )
        self._cut(reason)
        raise StreamBroken(reason) from exc
