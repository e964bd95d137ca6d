"""The event loop the daemon and the simulator run on, and waiting on it safely.

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
from collections.abc import Awaitable, Callable, Coroutine, Iterable
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


async def within(aw: Awaitable[T], seconds: float | None) -> T:
    """``aw``'s result, or ``TimeoutError`` after ``seconds`` (None: no limit).

    ``asyncio.wait_for`` without its Python 3.11 fault: a cancellation that lands in the step its
    awaitable completes is dropped, and the caller goes on as if never cancelled (a Tradovate
    session's connection loop synced and went READY on a closed session, and the close waited
    for it forever). ``asyncio.timeout`` runs the awaitable in the caller's own task instead."""
    async with asyncio.timeout(seconds):
        return await aw


async def set_within(event: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds``, or less once ``event`` is set; whether it is set (a loop's sleep that
    a stop cuts short)."""
    with contextlib.suppress(TimeoutError):
        await within(event.wait(), seconds)
    return event.is_set()


RECANCEL_EVERY_S = 2.0  # a task still running this long after its cancel is cancelled again


async def end_tasks(
    tasks: Iterable[asyncio.Task[Any] | None], within_s: float
) -> list[asyncio.Task[Any]]:
    """Cancel ``tasks`` until they have ended, for at most ``within_s``; those still running.

    One cancel is not always enough: on Python 3.11 ``asyncio.wait_for`` returns the result and
    drops a cancellation that lands in the step its inner awaitable completes, and the task goes
    on as if never cancelled (a connection loop then connected, synced and went READY on a closed
    session, and its close waited for it forever). Cancelled again after ``RECANCEL_EVERY_S``
    (longer than the socket's closing handshake, so an honest cleanup is not cut short), such a
    task ends at its next await. Waiting with ``asyncio.wait`` never cancels, nor swallows a
    cancellation of, the caller."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    step = min(RECANCEL_EVERY_S, within_s / 2)  # the last cancel still has a step to land
    live = {t for t in tasks if t is not None and not t.done()}
    while live:
        for task in live:
            task.cancel()
        left = deadline - loop.time()
        if left <= 0:
            break
        _, live = await asyncio.wait(live, timeout=min(left, step))
    return sorted(live, key=lambda t: t.get_name())
