"""Drive the real ``jtrades`` Typer app from tests, against a test database and data dir.

``invoke`` runs the app in-process with typer's ``CliRunner`` (fast: no interpreter start-up).
CLI commands call ``asyncio.run`` themselves, so ``invoke`` must run where no event loop is
running: call it from a plain ``def`` test, or from an ``async def`` test through ``ainvoke``
(which runs it in a worker thread). ``invoke_process`` runs ``python -m jtrades.cli`` as a real
subprocess, for the few tests that must see everything a process writes.

The environment is hermetic: every ambient ``JTRADES_*`` variable is removed, then the database
URL, the data dir and an empty config file are set; ``env`` adds or overrides on top
(a value of ``None`` unsets a variable).

Example::

    def test_list(db_url, data_dir):
        r = invoke(["users", "list", "--json"], db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 0, r.stderr
        assert r.json() == []
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from typer.testing import CliRunner

from tests.log_threads import own_configuration

__all__ = ["Result", "ainvoke", "cli_env", "invoke", "invoke_process"]


@dataclass(frozen=True)
class Result:
    """What a command did: its exit code and what it wrote to stdout and stderr."""

    exit_code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as JSON (for commands run with ``--json``)."""
        return orjson.loads(self.stdout)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def error_line(self) -> str:
        """The one-line error of a failed command (asserts it really is one line)."""
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one error line, got: {self.stderr!r}"
        return lines[0]


def cli_env(
    *, db_url: str, data_dir: Path, env: Mapping[str, str | None] | None = None
) -> dict[str, str | None]:
    """The environment overrides a test command runs with (see the module docstring)."""
    config = data_dir / "jtrades.toml"
    if not config.exists():
        config.write_text("", encoding="utf-8")
    merged: dict[str, str | None] = {k: None for k in os.environ if k.startswith("JTRADES_")}
    merged.update(
        {
            "JTRADES_DATABASE__URL": db_url,
            "JTRADES_DATA_DIR": str(data_dir),
            "JTRADES_CONFIG": str(config),
            "COLUMNS": "200",  # rich tables wide enough that names are not wrapped
            # a dispatch on a loaded test machine may take seconds: answers carry the verdict
            # the tests read (the bound has tests of its own: test_webhook_answer_bound)
            "JTRADES_SERVER__ANSWER_WITHIN_S": "30",
        }
    )
    merged.update(env or {})
    return merged


def invoke(
    args: Sequence[str],
    *,
    db_url: str,
    data_dir: Path,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
) -> Result:
    """Run ``jtrades <args>`` in-process; an unexpected exception (a crash) is re-raised."""
    from jtrades.cli.main import app

    saved_handlers = logging.getLogger().handlers[:]
    saved_level = logging.getLogger().level
    try:
        # The CLI configures logging onto the runner's captured streams, which close afterwards;
        # its thread alone (``log_threads``): the test's engine logs on as before meanwhile.
        with own_configuration():
            r = CliRunner().invoke(
                app,
                list(args),
                input=input,
                env=cli_env(db_url=db_url, data_dir=data_dir, env=env),
                catch_exceptions=False,
            )
    finally:
        root = logging.getLogger()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    return Result(r.exit_code, r.stdout, r.stderr)


async def ainvoke(
    args: Sequence[str],
    *,
    db_url: str,
    data_dir: Path,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
) -> Result:
    """``invoke`` from an ``async def`` test (runs in a worker thread, outside the test's loop)."""
    return await asyncio.to_thread(
        invoke, args, db_url=db_url, data_dir=data_dir, input=input, env=env
    )


def invoke_process(
    args: Sequence[str],
    *,
    db_url: str,
    data_dir: Path,
    input: str | None = None,
    env: Mapping[str, str | None] | None = None,
    timeout: float = 60,
) -> Result:
    """Run ``python -m jtrades.cli <args>`` as a subprocess (slower; sees every byte written)."""
    full = dict(os.environ)
    for key, value in cli_env(db_url=db_url, data_dir=data_dir, env=env).items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    p = subprocess.run(
        [sys.executable, "-m", "jtrades.cli", *args],
        input=input or "",
        capture_output=True,
        text=True,
        env=full,
        timeout=timeout,
        check=False,
    )
    return Result(p.returncode, p.stdout, p.stderr)
