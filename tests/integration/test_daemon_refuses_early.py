"""What the settings name wrong is refused before ``jtrades serve`` starts anything.

A ``secrets.key_file`` that cannot be read, and a ``server.host`` that is no host, were found
only at the end of the start (the OAuth callback's key, the listening socket): after the
database had been waited for and opened, the schema migrated and the engine's broker sessions
started, with a line that named a path, or blamed the port. The refusals below run on a
``database.url`` that refuses every connection: had the daemon tried it before refusing, it
would be waiting for it (``daemon.waiting_for_database``) instead of having stopped.

The default key location with no key in it is not a refusal: the daemon starts without OAuth
connect (``daemon.no_secret_key``), as before.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from jtrades.config import Settings
from jtrades.daemon import Daemon
from jtrades.errors import ConfigError
from jtrades.security import ENV_KEY, new_secret_key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _unanswered(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    """Settings on a database that refuses connections (a port nothing listens on)."""
    url = f"postgresql://postgres@127.0.0.1:{_free_port()}/jt"
    return Settings(data_dir=tmp_path, database={"url": url}, **sections)  # type: ignore[arg-type]


async def _refused(settings: Settings) -> tuple[str, list[str]]:
    """The daemon's refusal and the events it logged; fails when it started anything."""
    daemon = Daemon(settings)
    with structlog.testing.capture_logs() as logs:
        task = asyncio.create_task(daemon.run())
        done, _ = await asyncio.wait({task}, timeout=10)
        if not done:
            daemon.request_stop("test")
            await asyncio.wait({task}, timeout=60)
            pytest.fail(f"not refused: {[e['event'] for e in logs]}")
    events = [e["event"] for e in logs]
    exc = task.exception()
    assert isinstance(exc, ConfigError), (exc, events)
    assert "daemon.waiting_for_database" not in events, events
    assert "daemon.database" not in events, events
    assert "\n" not in str(exc)
    return str(exc), events


@pytest.mark.parametrize("kind", ["missing", "a folder", "raw bytes", "empty"])
async def test_a_key_file_that_cannot_be_read_is_refused_before_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    key_file = tmp_path / "jtrades.key"
    if kind == "a folder":
        key_file.mkdir()
    elif kind == "raw bytes":
        key_file.write_bytes(bytes(range(200, 232)))
    elif kind == "empty":
        key_file.write_text("# no key yet\n")
    if key_file.exists():
        key_file.chmod(0o600)
    message, events = await _refused(_unanswered(tmp_path, secrets={"key_file": str(key_file)}))
    assert message.startswith("secrets.key_file: "), message
    assert str(key_file) in message
    assert "daemon.failed" in events  # logged, so notified


async def test_a_malformed_environment_key_is_refused_before_the_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_KEY, "not-a-key")
    message, _ = await _refused(_unanswered(tmp_path))
    assert message.startswith(f"{ENV_KEY}: "), message
    assert "not-a-key" not in message


async def test_a_host_that_is_no_host_is_refused_before_the_database(tmp_path: Path) -> None:
    """Settings made in code skip the validators that refuse it at load (``model_copy``)."""
    settings = _unanswered(tmp_path)
    server = settings.server.model_copy(update={"host": "http://0.0.0.0"})
    message, _ = await _refused(settings.model_copy(update={"server": server}))
    assert "server.host" in message, message


async def _start_and_stop(settings: Settings) -> list[str]:
    """Run the daemon until it listens, stop it; the events it logged."""
    server = settings.server.model_copy(update={"host": "127.0.0.1", "port": _free_port()})
    daemon = Daemon(settings.model_copy(update={"server": server}))
    with structlog.testing.capture_logs() as logs:
        running = asyncio.create_task(daemon.run())
        try:
            for _ in range(600):
                if running.done() or "daemon.ready" in [e["event"] for e in logs]:
                    break
                await asyncio.sleep(0.05)
        finally:
            daemon.request_stop("test")
            await asyncio.wait_for(running, 60)
    events = [e["event"] for e in logs]
    assert "daemon.ready" in events, events
    return events


async def test_without_a_configured_key_the_daemon_still_starts(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    assert not settings.secrets.key_file
    events = await _start_and_stop(settings)
    assert "daemon.no_secret_key" in events
    assert not (settings.data_dir / "secret.key").exists()  # not made by the daemon


async def test_a_readable_key_file_is_the_daemons_key(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_KEY, raising=False)
    key_file = tmp_path / "jtrades.key"
    key_file.write_text(new_secret_key() + "\n")
    key_file.chmod(0o600)
    secrets = settings.secrets.model_copy(update={"key_file": str(key_file)})
    events = await _start_and_stop(settings.model_copy(update={"secrets": secrets}))
    assert "daemon.no_secret_key" not in events
