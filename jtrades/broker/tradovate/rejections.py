"""Rejections after acceptance (RiskRejected, ExecutionRejected), matched to their orders.

Apart from the view (``view.AccountView``) because the matching is a job of its own: Tradovate
reports such a rejection as a ``commandReport`` naming its command, not its order, and only the
``command`` entity names the order — which may arrive before the report or after it. Only a
rejection's text is kept, for its order's row (``WorkingOrder.reason``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Entity = Mapping[str, Any]


class Rejections:
    """The rejection texts of one login's orders, by order id."""

    def __init__(self) -> None:
        self._command_order: dict[int, int] = {}  # command id -> order id
        self._by_order: dict[int, str] = {}  # order id -> rejection text
        # command id -> rejection text, for a report that came before its command
        self._unmatched: dict[int, str] = {}

    def command(self, command_id: int, order_id: int) -> bool:
        """A command of the order arrived; whether a report that came before it (and is now
        the order's rejection) was waiting for it."""
        self._command_order[command_id] = order_id
        text = self._unmatched.pop(command_id, None)
        if text is None:
            return False
        self._by_order[order_id] = text
        return True

    def report(self, e: Entity) -> int | None:
        """A command's outcome: the order whose rejection it is, when it is one and its command
        (so its order) is known; else kept for the command, or ignored if not a rejection."""
        text = e.get("text") or e.get("rejectReason")
        rejected = str(e.get("commandStatus") or "").endswith("Rejected")
        if not text or not rejected or not e.get("commandId"):
            return None
        reason = f"{e.get('rejectReason')}: {text}" if e.get("rejectReason") else str(text)
        cmd = int(e["commandId"])
        oid = self._command_order.get(cmd)
        if oid is None:
            self._unmatched[cmd] = reason
            return None
        self._by_order[oid] = reason
        return oid

    def reason(self, order_id: int) -> str | None:
        """The order's rejection text (None: not rejected after acceptance)."""
        return self._by_order.get(order_id)
