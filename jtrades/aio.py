"""The event loop the daemon and the simulator run on.

uvloop where it exists (Linux and macOS; a declared dependency there): a busy daemon spends most
of its CPU in the loop itself — callbacks, socket reads and writes for the webhook, Postgres and
every broker WebSocket — and uvloop does that work in C. Windows has no uvloop and gets
asyncio's own loop; which one runs is logged at start (``daemon.started``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
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


# The cyclic collector's first generation runs after this many net allocations (Python's default
# is 700). A busy daemon allocates a few dicts per broker event and per order, nearly all freed by
# reference counting; collecting every 700 of them cost it about 8 % of its CPU under load.
GC_GEN0_THRESHOLD = 20_000


def settle_heap() -> None:
    """Once started: collect, then move everything alive (modules, configuration, sessions) out
    of the collector's sight with ``gc.freeze`` so no later collection walks it again, and
    collect the young generation less often."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


async def set_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less once ``event`` is set; whether it is set (a loop's sleep that
    a stop cuts short)."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)
    return event.is_set()
