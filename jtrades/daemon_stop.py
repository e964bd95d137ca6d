"""The bounds of ``jtrades serve``'s stop, and the helpers that hold each step to its bound.

Apart from ``jtrades.daemon`` because the daemon composes parts, and the stop's one promise is
arithmetic over these constants: it takes at most ``STOP_WITHIN_S`` (45 s, inside the unit's
TimeoutStopSec=60) even when the database has stopped answering. Each step has its own bound,
never a share of one budget (a slow drain cut the engine's close short, its mirror flush and
broker sessions with it, on a healthy database): the loops (``LOOPS_GRACE_S``), the drain, HTTP
(``HTTP_STOP_S``), the engine (``ENGINE_CLOSE_S``), then the final heartbeat
(``FINAL_BEAT_S``), the lock (``LOCK_RELEASE_S``) and the pool (``POOL_CLOSE_S``, for writes
still running on a healthy database), where a database that left one unanswered gets the rest
terminated at once (``close_database``); then ``NOTIFY_CLOSE_S`` for the notifications (posted
all along, a window after each event, so the stop's own reach their targets during the
database steps). An embedded server's stop is not counted: it runs on this
host. The order of the steps, and the daemon's parts each takes apart, are
``Daemon._shutdown``'s (``jtrades.daemon``); ``reason`` words what failed for the log, here
and in the daemon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import structlog

from jtrades.db import Database
from jtrades.instance_lock import InstanceLock

log = structlog.get_logger("jtrades.daemon")  # its events are the daemon's (README)
T = TypeVar("T")

# The stop, bounded even with a database that has stopped answering (module doc): at most
# LOOPS_GRACE_S + DRAIN_DEADLINE_S + 1 + HTTP_STOP_S + ENGINE_CLOSE_S + FINAL_BEAT_S
# + LOCK_RELEASE_S + POOL_CLOSE_S + NOTIFY_CLOSE_S, plus a CANCEL_GRACE_S for each of the five
# steps cut short: 42.5 s <= STOP_WITHIN_S.
STOP_WITHIN_S = 45.0  # signal to exit, at most (contrib/jtrades.service: TimeoutStopSec=60)
LOOPS_GRACE_S = 1.0  # the loops return by themselves on a stop; those still busy are cancelled
HTTP_STOP_S = 3.0  # aiohttp gives handlers still running 5 s of its own (server.make_runner)
ENGINE_CLOSE_S = 10.0
FINAL_BEAT_S = 3.0  # the "stopped" heartbeat
LOCK_RELEASE_S = 2.0  # the one-daemon lock's connection, closed
POOL_CLOSE_S = 5.0  # the pool's connections, closed once their writes end (then terminated)
NOTIFY_CLOSE_S = 5.0  # what is still buffered for Discord / the webhook
CANCEL_GRACE_S = 0.5  # a step that ran out of time, cancelled: how long it may take to end


async def end_loops(loops: list[asyncio.Task[None]]) -> None:
    """After a stop, the loops return by themselves; those still busy after ``LOOPS_GRACE_S``
    (inside a database call) are cancelled, not waited for."""
    _, busy = await asyncio.wait(loops, timeout=LOOPS_GRACE_S)
    if busy:
        log.info("daemon.loops_cancelled", loops=sorted(t.get_name() for t in busy))
        for task in busy:
            task.cancel()


async def within(step: Awaitable[T], limit_s: float) -> T:
    """``step``'s result, or ``TimeoutError`` after ``limit_s``: the step is then cancelled and
    given ``CANCEL_GRACE_S`` to end, and after that left to end by itself (a cancelled
    database call may wait on an answer that never comes; terminating the connections, later
    in the stop, ends it)."""
    task = asyncio.ensure_future(step)
    try:
        done, _ = await asyncio.wait({task}, timeout=limit_s)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(retrieved)
        raise
    if done:
        return task.result()
    task.cancel()
    await asyncio.wait({task}, timeout=CANCEL_GRACE_S)
    task.add_done_callback(retrieved)
    raise TimeoutError


def retrieved(task: asyncio.Future[Any]) -> None:
    """Done callback of a task given up on: its error is of no more use (and asyncio would log
    it as never retrieved)."""
    if not task.cancelled():
        task.exception()


async def close_database(
    instance: InstanceLock, db: Database | None, beat: Callable[[], Awaitable[None]]
) -> None:
    """The "stopped" heartbeat, the one-daemon lock, the pool: each within its bound. Once
    the database left one unanswered, the rest terminate their connections at once (the
    server frees the lock when it sees the session gone): a partitioned database would
    only make each wait out its bound in turn. ``beat`` writes the "stopped" heartbeat."""
    silent = False

    def unanswered(step: str, waited: float) -> None:
        nonlocal silent
        silent = True
        log.error(
            "daemon.database_unanswered",
            step=step,
            error=f"the database did not answer within {waited:g} s",
            effect="given up; its connections are dropped: the one-daemon lock goes with"
            " its session, and the status row keeps the last heartbeat",
        )

    if instance.held:  # only the daemon that ran writes its status
        if db is not None:
            try:
                await within(beat(), FINAL_BEAT_S)
            except TimeoutError:
                unanswered("stopped heartbeat", FINAL_BEAT_S)
            except Exception as exc:
                log.warning("daemon.stopped_beat_failed", error=reason(exc))
        if silent:
            instance.terminate()
        else:
            try:  # asyncpg's own timeout of the close, and ours in case it does not hold
                if not await within(instance.close(LOCK_RELEASE_S), LOCK_RELEASE_S):
                    unanswered("one-daemon lock", LOCK_RELEASE_S)
            except TimeoutError:
                instance.terminate()
                unanswered("one-daemon lock", LOCK_RELEASE_S)
            except Exception as exc:
                instance.terminate()
                log.warning("daemon.lock_release_failed", error=reason(exc))
    else:
        instance.terminate()  # a connection left from a retake cut short, if any
    if db is not None:
        try:
            if not await db.close(0 if silent else POOL_CLOSE_S) and not silent:
                # the database answered the heartbeat and the lock: a write was still running
                log.warning(
                    "daemon.pool_close_cut",
                    error=f"connections still in use after {POOL_CLOSE_S:g} s were terminated",
                    effect="a write cut off is settled by reconciliation at the next start",
                )
        except Exception as exc:
            log.error("daemon.database_close_failed", error=reason(exc))


class LoopFailed(Exception):
    """A background loop's error, with the loop's name (a TaskGroup's error does not say)."""


def reason(exc: BaseException) -> str:
    """What failed, for the log and so the notification: a group's errors one by one (its own
    text, "unhandled errors in a TaskGroup", names neither the loop nor the error)."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(reason(e) for e in exc.exceptions)
    if isinstance(exc, LoopFailed):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
