"""The daemon's heartbeat row and the kill switch (global and per Tradovate login).

``jtrades status`` reads the heartbeat to tell a live daemon from a dead one: the daemon rewrites
the row every few seconds with its readiness and counters, so an old ``heartbeat_at`` means it
stopped or hangs. The kill switch lives in ``system_flags`` (global) and ``accounts.halted``; the
engine picks both up through its configuration fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from jtrades.errors import NotFound
from jtrades.queries import q
from jtrades.store import Executor, translate_errors


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    detail: dict[str, Any]
    db_now: datetime

    @property
    def age_s(self) -> float:
        """Seconds since the last heartbeat, by the database's clock (no skew with ours)."""
        return (self.db_now - self.heartbeat_at).total_seconds()


@dataclass(frozen=True, slots=True)
class OpenPosition:
    user_name: str
    account: str
    sub_account: str
    symbol: str
    net_pos: int
    net_price: Decimal | None
    updated_at: datetime
    timezone: str  # the owner's (``users set-timezone``): where its times are shown


async def heartbeat(
    ex: Executor, *, pid: int, started_at: datetime, detail: dict[str, Any]
) -> None:
    with translate_errors():
        await ex.execute(q("status.heartbeat"), pid, started_at, detail)


async def get(ex: Executor) -> DaemonStatus | None:
    with translate_errors():
        row = await ex.fetchrow(q("status.get"))
    return None if row is None else DaemonStatus(**dict(row))


def _is_halted(value: Any) -> bool:
    if isinstance(value, dict):
        return bool(value.get("halted") or value.get("on"))
    return bool(value)


async def halted(ex: Executor) -> tuple[bool, dict[str, Any]]:
    """Whether the global kill switch is on, and the flag's stored value."""
    with translate_errors():
        row = await ex.fetchrow(q("status.halted"))
    if row is None:
        return False, {}
    value = row["value"]
    detail = value if isinstance(value, dict) else {"halted": bool(value)}
    return _is_halted(value), {**detail, "updated_at": row["updated_at"].isoformat()}


async def lock_halted(ex: Executor, *, create: bool) -> dict[str, Any] | None:
    """The global flag's stored value, locked until the caller's transaction ends (run it in
    the transaction that writes the flag back); None when there is no flag (and not
    ``create``). Rewriting what a plain read returned could put back an older copy: a flatten
    the daemon marked done meanwhile would be pending again."""
    with translate_errors():
        if create:
            await ex.execute(q("status.create_halted"))
        value = await ex.fetchval(q("status.lock_halted"))
    if value is None:
        return None
    return value if isinstance(value, dict) else {"halted": bool(value)}


async def set_halted(ex: Executor, value: dict[str, Any]) -> None:
    """Set the global flag (``{"halted": true, "by": …, "flattens": …}``); under
    ``lock_halted`` when written from what was read."""
    with translate_errors():
        await ex.execute(q("status.set_halted"), value)


async def set_account_halted(ex: Executor, label: str, halted: bool) -> str:
    """Halt or resume one Tradovate login; returns its label as stored."""
    with translate_errors():
        row = await ex.fetchrow(q("status.set_account_halted"), label, halted)
    if row is None:
        raise NotFound(f"no account labelled {label!r}")
    return str(row["label"])


async def halted_accounts(ex: Executor) -> list[tuple[str, str]]:
    """(label, owner) of each halted login."""
    with translate_errors():
        rows = await ex.fetch(q("status.halted_accounts"))
    return [(r["label"], r["user_name"]) for r in rows]


async def open_positions(ex: Executor) -> list[OpenPosition]:
    with translate_errors():
        rows = await ex.fetch(q("status.open_positions"))
    return [OpenPosition(**dict(r)) for r in rows]


async def ping(ex: Executor) -> bool:
    """True when the database answers a trivial query (for ``/readyz``)."""
    with translate_errors():
        return bool(await ex.fetchval(q("status.ping")))
