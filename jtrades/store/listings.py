"""Read-only views for ``jtrades orders|positions|trades list``: rows as plain dicts, newest first.

Each listing can be narrowed to one owner (``--user``) and one Tradovate login (``--account``);
a name that does not exist is ``NotFound`` (DESIGN §4: a user error), not an empty listing.
Each row carries its owner's ``timezone``: its times are shown there (DESIGN §4), not in the
machine's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jtrades.errors import NotFound
from jtrades.queries import q
from jtrades.store import Executor, translate_errors


async def _rows(ex: Executor, name: str, *args: Any) -> list[dict[str, Any]]:
    with translate_errors():
        rows = await ex.fetch(q(name), *args)
    return [dict(r) for r in rows]


async def require_names(
    ex: Executor,
    *,
    user: str | None = None,
    account: str | None = None,
    recorder: str | None = None,
) -> None:
    """``NotFound`` for the first of the given filter names that does not exist (any case)."""
    if user is None and account is None and recorder is None:
        return
    with translate_errors():
        found = await ex.fetchrow(q("listings.names_exist"), user, account, recorder)
    assert found is not None
    if not found["user"]:
        raise NotFound(f"no user named {user!r}")
    if not found["account"]:
        raise NotFound(f"no account labelled {account!r}")
    if not found["recorder"]:
        raise NotFound(f"no recorder named {recorder!r}")


async def intents(
    ex: Executor, *, user: str | None, account: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Orders the daemon decided to send, with their state and the broker's answer."""
    await require_names(ex, user=user, account=account)
    return await _rows(ex, "listings.intents", user, account, since, limit)


async def broker_orders(
    ex: Executor, *, user: str | None, account: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Orders as the broker reports them (TP/SL legs included), mirrored from its events."""
    await require_names(ex, user=user, account=account)
    return await _rows(ex, "listings.broker_orders", user, account, since, limit)


async def positions(
    ex: Executor, *, user: str | None, account: str | None, include_flat: bool = False
) -> list[dict[str, Any]]:
    await require_names(ex, user=user, account=account)
    return await _rows(ex, "listings.positions", user, account, include_flat)


async def trades(
    ex: Executor, *, user: str | None, account: str | None, since: datetime | None, limit: int
) -> list[dict[str, Any]]:
    """Closed round trips with P&L."""
    await require_names(ex, user=user, account=account)
    return await _rows(ex, "listings.trades", user, account, since, limit)


async def signal_zones(ex: Executor, signal_ids: list[int]) -> dict[int, str]:
    """Signal id -> its owner's time zone (``signals list`` reads its rows from the signal
    store); a signal with no recorder is left out."""
    with translate_errors():
        rows = await ex.fetch(q("listings.signal_zones"), signal_ids)
    return {int(r["id"]): str(r["timezone"]) for r in rows}
