"""sd_notify without a dependency: READY=1, WATCHDOG=1, STOPPING=1, STATUS=…, EXTEND_TIMEOUT_USEC=…
over $NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


def notify(state: str) -> bool:
    """Send one notification; False when not running under systemd (no socket) or when the
    socket cannot be reached. Never raises: a notification that failed (systemd restarted, a
    stale $NOTIFY_SOCKET) crashed the daemon at READY and, at STOPPING, skipped its whole
    shutdown (drain, engine close, the stopped status). The watchdog notices what is lost."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):  # abstract namespace
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(addr)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("systemd.notify_failed", state=state.split("\n", 1)[0], error=str(exc))
        return False
    return True


def extend_timeout(seconds: float) -> str:
    """The line that keeps systemd's current timeout (TimeoutStartSec while starting) from
    ending the process for ``seconds`` more: send it again before they pass, or READY=1."""
    return f"EXTEND_TIMEOUT_USEC={max(1, round(seconds * 1_000_000))}"


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd gave us, or None when there is no watchdog."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and int(pid) != os.getpid()):
        return None
    return int(usec) / 2_000_000
