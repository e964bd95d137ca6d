"""contrib/jtrades.service says what the daemon relies on; jtrades.systemd speaks sd_notify."""

from __future__ import annotations

import configparser
import os
import socket
from pathlib import Path

import pytest
import structlog.testing

from jtrades import systemd

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "jtrades.service"


def unit() -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return parser


def test_unit_runs_serve_as_a_notify_service_with_a_watchdog() -> None:
    svc = unit()["Service"]
    assert svc["Type"] == "notify"
    assert " serve " in svc["ExecStart"] + " "
    assert int(svc["WatchdogSec"]) >= 10
    assert svc["StateDirectory"] == "jtrades"  # data_dir defaults to $STATE_DIRECTORY
    assert "JTRADES_LOG__FORMAT=json" in svc["Environment"]
    assert svc["KillSignal"] == "SIGTERM"
    # the stop timeout leaves room for the daemon's drain deadline
    assert int(svc["TimeoutStopSec"]) > 10
    for hardening in ("NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp"):
        assert hardening in svc
    assert "StartLimitBurst" in unit()["Unit"]


def test_notify_without_systemd_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert systemd.notify("READY=1") is False
    assert systemd.watchdog_interval_s() is None


def test_an_unreachable_notify_socket_is_logged_not_raised(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A stale $NOTIFY_SOCKET raised at READY=1 (the daemon crashed) and again at STOPPING=1,
    which skipped the whole shutdown."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone" / "notify"))
    with structlog.testing.capture_logs() as logs:
        assert systemd.notify("READY=1\nSTATUS=listening") is False
    assert [(e["event"], e["state"]) for e in logs] == [("systemd.notify_failed", "READY=1")]


def test_notify_and_watchdog_interval(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert systemd.notify("READY=1") is True
        assert sock.recv(100) == b"READY=1"
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert systemd.watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert systemd.watchdog_interval_s() is None
