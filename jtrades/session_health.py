"""The broker sessions as the daemon's heartbeat reports them (``session_detail``), and how long
each has been down (``SessionOutages``): what `status --check` and the notifications judge.

Apart from ``jtrades.daemon`` because the daemon composes parts, and this is one judgement of its
own: a session reconnecting for a moment is normal (Tradovate drops sockets; a p-ticket holds a
login a minute), one down for long is an outage. Reported only as "up: false", a login could be
down for good with no notification (only a silent socket's was notified) while `status --check`
said healthy: its sub-accounts' alerts answered "not traded" all the while.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import structlog

log = structlog.get_logger("jtrades.daemon")  # its events are the daemon's (README)

# A session down this long is an outage: logged as an error (notified) once, and
# `status --check` fails for it; shorter, a reconnect.
SESSION_DOWN_ALERT_S = 60.0


def session_detail(brokers: Any) -> dict[str, list[dict[str, Any]]]:
    """The heartbeat's broker sessions: those that opened (``sessions``: up, or down while
    they reconnect) and the configured logins that have none (``failed_sessions``, each with
    its error): listing only the first, a login refused at the start was shown nowhere and
    `status --check` said healthy while its sub-accounts went untraded. A session held by a
    penalty ticket or a 429 is listed down, with what holds it and until when."""
    sessions: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    if brokers is not None and hasattr(brokers, "failures"):
        failed = [asdict(f) for f in brokers.failures()]
    gone = {f["account_id"] for f in failed}  # a session that failed for good: not "down"
    if brokers is not None and hasattr(brokers, "sessions"):
        for a, env, b in brokers.sessions():
            if a in gone:
                continue
            entry: dict[str, Any] = {"account_id": a, "env": env, "up": brokers.session_up(b)}
            # a session held by a penalty or a 429 is down though connected: say why, and
            # until when (``BrokerRegistry.session_hold``: held, held_reason, held_until)
            held = brokers.session_hold(b) if hasattr(brokers, "session_hold") else None
            if held:
                entry.update(held)
            sessions.append(entry)
    return {"sessions": sessions, "failed_sessions": failed}


class SessionOutages:
    """When each session (by accounts.id) was first seen down, from one heartbeat to the next."""

    def __init__(self) -> None:
        self._since: dict[int, float] = {}
        self._told: set[int] = set()

    def mark(self, sessions: list[dict[str, Any]], now: float) -> None:
        """Give each session entry ``down_s`` (0 while up); an outage past
        ``SESSION_DOWN_ALERT_S`` is logged as an error once, and its end said."""
        seen: set[int] = set()
        for s in sessions:
            account = int(s["account_id"])
            seen.add(account)
            if s.get("up"):
                self._since.pop(account, None)
                s["down_s"] = 0
                if account in self._told:
                    self._told.discard(account)
                    log.info("daemon.session_restored", account_id=account, env=s.get("env"))
                continue
            down = round(now - self._since.setdefault(account, now))
            s["down_s"] = down
            if down >= SESSION_DOWN_ALERT_S and account not in self._told:
                self._told.add(account)
                log.error(
                    "daemon.session_down",
                    account_id=account,
                    env=s.get("env"),
                    down_s=down,
                    effect="the login's sub-accounts are not traded and their positions not"
                    " watched until it reconnects",
                )
        for account in set(self._since) - seen:  # detached: no longer a session of ours
            self._since.pop(account, None)
            self._told.discard(account)
