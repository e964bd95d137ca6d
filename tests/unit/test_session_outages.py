"""A broker session down past ``SESSION_DOWN_ALERT_S`` is an outage: an error once (notified),
its end said; a reconnect of a moment says nothing. Only a silent socket's loss was notified:
a login refused at every reconnect (Tradovate unreachable) was down with nobody told."""

from __future__ import annotations

from structlog.testing import capture_logs

from jtrades.notify import wanted
from jtrades.session_health import SESSION_DOWN_ALERT_S, SessionOutages


def _pass(outages: SessionOutages, up: bool, at: float) -> dict[str, object]:
    sessions: list[dict[str, object]] = [{"account_id": 7, "env": "demo", "up": up}]
    outages.mark(sessions, at)  # type: ignore[arg-type]
    return sessions[0]


def test_an_outage_is_told_once_and_its_end_too() -> None:
    outages = SessionOutages()
    with capture_logs() as logs:
        assert _pass(outages, False, 100.0)["down_s"] == 0
        assert _pass(outages, False, 130.0)["down_s"] == 30
        assert not logs  # a reconnect, so far
        assert _pass(outages, False, 100.0 + SESSION_DOWN_ALERT_S)["down_s"] == 60
        _pass(outages, False, 200.0)
        _pass(outages, True, 210.0)
        _pass(outages, True, 220.0)
    events = [(e["event"], e["log_level"]) for e in logs]
    assert events == [("daemon.session_down", "error"), ("daemon.session_restored", "info")]
    assert all(wanted(e, level) for e, level in events)  # both reach the notifications


def test_a_reconnect_of_a_moment_says_nothing() -> None:
    outages = SessionOutages()
    with capture_logs() as logs:
        _pass(outages, False, 0.0)
        _pass(outages, False, SESSION_DOWN_ALERT_S - 1)
        assert _pass(outages, True, SESSION_DOWN_ALERT_S)["down_s"] == 0
        assert _pass(outages, False, 100.0)["down_s"] == 0  # a new outage counts from here
    assert logs == []
