"""What the webhook needs of the engine (``jtrades.engine.engine.Engine``), as a protocol: the
HTTP layer's tests stand in engines that fail before and after storing a delivery."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from jtrades.engine.signal import Signal
from jtrades.store import signals as signal_store


class OutcomeLike(Protocol):
    verdict: str
    filter: str | None
    reason: str | None
    orders: int
    detail: dict[str, Any]
    duplicate_of: int | None


class SignalEngine(Protocol):
    """What the server needs from ``jtrades.engine.engine.Engine``."""

    async def on_signal(
        self,
        *,
        signal_id: int,
        recorder_id: int,
        signal: Signal,
        received_at: datetime,
        delivery: signal_store.Delivery,
    ) -> OutcomeLike:
        """Store ``delivery`` (``signal_store.claim_delivery``) and act on it; a raise means it
        was not stored, or is looked up to tell. A duplicate's verdict is ``duplicate``."""
        ...

    def ready(self) -> bool: ...

    def config_version(self) -> str | None:
        """The fingerprint of the configuration it trades with (None before it is loaded)."""
        ...
