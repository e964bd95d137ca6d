"""The lock that keeps one ``jtrades serve`` per database: a session advisory lock, held by a
connection of the daemon's own for as long as it runs (``jtrades.daemon``).

A session lock is the session's: Postgres frees it the moment the session ends (a crash, a
restart, a terminated backend), and keeps it for as long as the session lives, even when its
client has lost the connection and the server has not noticed yet. ``Holder`` names the session
so the daemon can end that leftover of its own and take the lock again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


@dataclass(frozen=True, slots=True)
class Holder:
    """The server session that took the lock."""

    pid: int
    since: datetime | None  # its backend_start: a pid alone may be reused


async def try_lock(ex: Executor, key: int) -> Holder | None:
    """Take the lock on this connection's session without waiting; None while another holds it."""
    with translate_errors():
        row = await ex.fetchrow(q("instance.try_lock"), key)
    assert row is not None
    return Holder(int(row["pid"]), row["since"]) if row["held"] else None


async def end_session(ex: Executor, holder: Holder) -> bool:
    """End ``holder``'s session if it still exists (its lock goes with it); False when it is
    gone already. Another daemon's session is never named here: only one this process took."""
    if holder.since is None:
        return False
    with translate_errors():
        row = await ex.fetchrow(q("instance.end_session"), holder.pid, holder.since)
    return row is not None


async def ping(ex: Executor) -> None:
    with translate_errors():
        await ex.fetchval(q("instance.ping"))
