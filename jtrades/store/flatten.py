"""What a ``halt --flatten`` request already did, and its progress on the request's flag.

The request lives in ``system_flags`` (``jtrades halt`` writes it; ``trading.flatten_done`` marks
it done); its liquidations are ordinary ``order_intents`` whose clOrdIds start with the request's
prefix (``engine.steps.flatten_prefix``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


@dataclass(frozen=True, slots=True)
class Liquidation:
    cl_ord_id: str
    symbol: str
    state: str
    reason: str | None


async def liquidations(ex: Executor, sub_account_id: int, prefix: str) -> list[Liquidation]:
    """The liquidation intents of ``sub_account_id`` whose clOrdId starts with ``prefix``."""
    with translate_errors():
        rows = await ex.fetch(q("flatten.liquidations"), sub_account_id, prefix)
    return [Liquidation(**dict(r)) for r in rows]


async def record_progress(ex: Executor, requested_at: str, progress: dict[str, Any]) -> None:
    """Store what the last pass of the request closed and left, on the request's flag."""
    with translate_errors():
        await ex.execute(q("flatten.progress"), requested_at, progress)
