"""Read-only views for ``jtrades orders|positions|trades list``: rows as plain dicts, newest first.

Each listing can be narrowed to one owner (``--user``) and one Tradovate login (``--account``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


async def _rows(ex: Executor, name: str, *args: Any) -> list[dict[str, Any]]:
    with translate_errors():
        rows = await ex.fetch(q(name), *args)
    return [dict(r) for r in rows]


async def intents(
    ex: Executor, *, user: str | None, account: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Orders the daemon decided to send, with their state and the broker's answer."""
    return await _rows(ex, "listings.intents", user, account, since, limit)


async def broker_orders(
    ex: Executor, *, user: str | None, account: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Orders as the broker reports them (TP/SL legs included), mirrored from its events."""
    return await _rows(ex, "listings.broker_orders", user, account, since, limit)


async def positions(
    ex: Executor, *, user: str | None, account: str | None, include_flat: bool = False
) -> list[dict[str, Any]]:
    return await _rows(ex, "listings.positions", user, account, include_flat)


async def trades(
    ex: Executor, *, user: str | None, account: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Closed round trips with P&L."""
    return await _rows(ex, "listings.trades", user, account, since, limit)
