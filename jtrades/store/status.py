"""The daemon's heartbeat row and the kill switch (global and per Tradovate login).

``jtrades status`` reads the heartbeat to tell a live daemon from a dead one: the daemon rewrites
the row every few seconds with its readiness and counters, so an old ``heartbeat_at`` means it
stopped or hangs. The row also says where its pid is the daemon's process (``host_id``, and the
process's start in ``pid_start_ticks``): on that host, a pid that is gone (``kill -9``) or now
another process's means the daemon is dead at once, where the heartbeat would still look fresh
for a few intervals (``process_gone``). The kill switch lives in ``system_flags`` (global) and
``accounts.halted``; the engine picks both up through its configuration fingerprint.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

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
    host_id: str | None = None  # where ``pid`` is the daemon's process (``host_id()``)
    pid_start_ticks: int | None = None  # that process's start (``start_ticks``)

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
    ex: Executor,
    *,
    pid: int,
    started_at: datetime,
    detail: dict[str, Any],
    host_id: str | None = None,
    pid_start_ticks: int | None = None,
) -> None:
    """Write the status row. ``host_id`` and ``pid_start_ticks`` (the daemon gives its own:
    ``host_id()``, ``start_ticks(pid)``) let ``process_gone`` see there that ``pid`` died; a
    row without them is judged by its heartbeat's age alone."""
    with translate_errors():
        await ex.execute(q("status.heartbeat"), pid, started_at, detail, host_id, pid_start_ticks)


@cache
def host_id() -> str:
    """This host, its boot and its pid namespace: where a pid names one process. The host name
    alone is not enough: after a reboot, or in a container with its own pid namespace (and
    the host's name), the same pid is another process or none at all."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
    with contextlib.suppress(OSError):
        parts.append(os.readlink("/proc/self/ns/pid"))
    return " ".join(parts)


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started, in clock ticks since boot (``/proc/PID/stat``, field 22):
    with the boot in ``host_id``, a pid and this name one process, and unlike a wall-clock start
    time it does not move when the clock is set. None without ``/proc`` or such a process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "PID (COMM) STATE PPID …": COMM may hold spaces and parentheses; the last ")" ends it
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_gone(beat: DaemonStatus) -> str | None:
    """Why the daemon that wrote ``beat`` is known dead, seen from this host: its process is
    gone (``kill -9``, a crash), has exited unreaped, or its pid is another process's now. None
    when it may still run: the row is from another host (or boot, or pid namespace), from a
    daemon that did not say where it runs, or its process exists (another user's included)."""
    pid = beat.pid
    if beat.host_id is None or beat.host_id != host_id() or pid <= 0:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return f"process {pid} no longer exists on this host"
    except PermissionError:
        pass  # it exists: another user's
    except OSError:
        return None
    try:
        zombie = psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return f"process {pid} no longer exists on this host"
    except psutil.Error:  # AccessDenied: it exists
        zombie = False
    if zombie:
        return f"process {pid} has exited on this host"
    ticks = start_ticks(pid) if beat.pid_start_ticks is not None else None
    if ticks is not None and ticks != beat.pid_start_ticks:
        return f"process {pid} no longer exists on this host (the pid is another process's now)"
    return None


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
