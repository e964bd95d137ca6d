"""Under the shipped unit, ``jtrades serve`` and the CLI must use one data_dir.

The unit gives the daemon $STATE_DIRECTORY (/var/lib/jtrades), which data_dir defaulted to; the
operator's CLI (``sudo -u jtrades jtrades --config /etc/jtrades/jtrades.toml status``) has no
such variable and took ~/.local/share/jtrades: another embedded database and another
secret.key, silently (a ``halt --flatten`` that "succeeded" against a database the daemon
never reads). The config file both read must say where: the documented install sets it, and
the daemon refuses to start under systemd when data_dir came from $STATE_DIRECTORY alone.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_serve_lifecycle import run_daemon

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "jtrades.service"
EXAMPLE = ROOT / "jtrades.toml.example"
README = ROOT / "README.md"
SETTING = 'data_dir = "/var/lib/jtrades"'


async def test_serve_under_systemd_without_data_dir_refuses_with_what_to_add(
    tmp_path: Path, db_url: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    env = {"JTRADES_DATA_DIR": None, "STATE_DIRECTORY": str(state), "HOME": str(tmp_path)}
    with run_daemon(tmp_path, env, db_url=db_url) as d:
        code = await asyncio.to_thread(d.proc.wait, 60)
        out = d.output()
    assert code == 1, out
    errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, out
    config = tmp_path / "data" / "jtrades.toml"  # the file it was given (JTRADES_CONFIG)
    assert f'data_dir = "{state}"' in errors[0], errors[0]
    assert str(config) in errors[0], errors[0]
    assert "Traceback" not in out
    assert not (state / "secret.key").exists()
    assert not (state / "pg").exists()


async def test_serve_under_systemd_with_data_dir_in_its_config_starts(
    tmp_path: Path, db_url: str
) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "jtrades.toml").write_text(f'data_dir = "{state}"\n', encoding="utf-8")
    env = {"JTRADES_DATA_DIR": None, "STATE_DIRECTORY": str(state), "HOME": str(tmp_path)}
    with run_daemon(tmp_path, env, db_url=db_url) as d:
        await asyncio.to_thread(d.wait_ready)
        code = await asyncio.to_thread(d.stop, signal.SIGTERM)
        out = d.output()
    assert code == 0, out


def _install_lines() -> list[str]:
    return [
        ln.removeprefix("#").strip()
        for ln in UNIT.read_text(encoding="utf-8").splitlines()
        if ln.startswith("#")
    ]


def test_the_units_install_steps_create_the_config_dir_and_set_data_dir() -> None:
    lines = _install_lines()
    text = "\n".join(lines)
    mkdir = next(i for i, ln in enumerate(lines) if re.search(r"install -d .*/etc/jtrades$", ln))
    copy = next(i for i, ln in enumerate(lines) if "/etc/jtrades/jtrades.toml" in ln)
    assert mkdir < copy, text
    assert SETTING in text, text


def test_the_example_and_readme_say_to_set_data_dir_under_systemd() -> None:
    example = EXAMPLE.read_text(encoding="utf-8")
    head = example.split("[database]", 1)[0]
    assert SETTING in head, head
    assert "systemd" in head, head
    section = README.read_text(encoding="utf-8").split("Running under systemd", 1)[1]
    section = section.split("\n## ", 1)[0]
    assert SETTING in section, section
    assert "install -d" in section, section


def _data_dir(config: Path, env: dict[str, str]) -> str:
    code = (
        f"from jtrades.config import load_settings; print(load_settings({str(config)!r}).data_dir)"
    )
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout.strip()


def test_the_documented_config_gives_the_daemon_and_the_cli_one_data_dir(tmp_path: Path) -> None:
    """The unit's documented line on top of the example, read as the unit runs the daemon and
    as ``sudo -u jtrades`` runs the CLI (no $STATE_DIRECTORY, maybe another $HOME)."""
    documented = [ln for ln in _install_lines() if re.fullmatch(r'data_dir = ".+"', ln)]
    assert documented, "\n".join(_install_lines())
    config = tmp_path / "jtrades.toml"
    config.write_text(f"{documented[0]}\n\n{EXAMPLE.read_text(encoding='utf-8')}", encoding="utf-8")
    state = "/var/lib/" + _unit_value("StateDirectory")
    daemon = _data_dir(config, {"STATE_DIRECTORY": state, "HOME": "/var/lib/jtrades"})
    cli = _data_dir(config, {"HOME": "/root"})
    assert daemon == cli == state


def _unit_value(key: str) -> str:
    """A [Service] setting of the unit."""
    for ln in UNIT.read_text(encoding="utf-8").splitlines():
        if ln.startswith(f"{key}="):
            return ln.split("=", 1)[1].strip()
    raise AssertionError(f"{key} not in {UNIT}")
