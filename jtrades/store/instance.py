"""The lock that keeps one ``jtrades serve`` per database: a session advisory lock, held by a
connection of the daemon's own for as long as it runs (``jtrades.instance_lock``).

A session lock is the session's: Postgres frees it the moment the session ends (a crash, a
restart, a terminated backend), and keeps it for as long as the session lives, even when its
client has lost the connection and the server has not noticed yet. ``Holder`` names a session
so the daemon can end such a leftover of its own and take the lock again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


@dataclass(frozen=True, slots=True)
class Holder:
    """A server session that asked for the lock (and may hold it)."""

    pid: int
    since: datetime | None  # its backend_start: a pid alone may be reused
    name: str  # its application_name


async def ask_keepalives(ex: Executor) -> None:
    """TCP keepalives of minutes for this connection's session (see the query)."""
    with translate_errors():
        await ex.execute(q("instance.ask_keepalives"))


async def whoami(ex: Executor) -> Holder:
    """This connection's session."""
    with translate_errors():
        row = await ex.fetchrow(q("instance.whoami"))
    assert row is not None
    return Holder(int(row["pid"]), row["since"], str(row["name"] or ""))


async def try_lock(ex: Executor, key: int) -> bool:
    """Take the lock on this connection's session without waiting; False while another has it."""
    with translate_errors():
        return bool(await ex.fetchval(q("instance.try_lock"), key))


async def end_session(ex: Executor, holder: Holder) -> bool:
    """End ``holder``'s session (its lock goes with it); False when it is gone already, or
    Postgres did not end it. Only the session of that pid, start and name is ever signalled:
    the caller names sessions of its own process only."""
    if holder.since is None or not holder.name:
        return False
    with translate_errors():
        row = await ex.fetchrow(q("instance.end_session"), holder.pid, holder.since, holder.name)
    return row is not None and row["ended"] is True


async def ping(ex: Executor) -> None:
    with translate_errors():
        await ex.fetchval(q("instance.ping"))
