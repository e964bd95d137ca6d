"""The event loop the daemon and the simulator run on.

uvloop where it exists (Linux and macOS; a declared dependency there): a busy daemon spends most
of its CPU in the loop itself — callbacks, socket reads and writes for the webhook, Postgres and
every broker WebSocket — and uvloop does that work in C. Windows has no uvloop and gets
asyncio's own loop; which one runs is logged at start (``daemon.started``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    if sys.platform == "win32":
        return None
    import uvloop

    return uvloop.new_event_loop


def loop_name() -> str:
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the loop chosen above."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
