"""The webhook's answers: JSON bodies, refusals, verdict summaries, and a duplicate's answer
with the first delivery's result.

Apart from the pipeline (``jtrades.webhook``) because the shape of what TradingView (and the
user reading its log) gets back is a job of its own, as is finding the first delivery's result
for a duplicate: from this process while it is still working, else from its row.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import structlog
from aiohttp import web

from jtrades.aio import within
from jtrades.errors import StorageUnavailable
from jtrades.store import Executor
from jtrades.store import signals as signal_store

log = structlog.get_logger("jtrades.webhook")

T = TypeVar("T")

# How long a duplicate waits for the first delivery's outcome before answering without it:
# TradingView gives up after 3 s.
DUPLICATE_WAIT_S = 2.0


class Unanswered(enum.Enum):
    """Why ``in_time`` gave no answer of the task's own."""

    SENDING = "sending"  # stored, its orders still going out: 200 "received"
    IN_DOUBT = "in_doubt"  # stored or not, the database cannot say yet; nothing sent: 503


async def in_time(
    task: asyncio.Task[T], claimed: asyncio.Event, within_s: float, in_doubt: asyncio.Event
) -> T | Unanswered:
    """``task``'s answer if it comes within ``within_s``; else ``SENDING`` as soon as its
    delivery is claimed (stored, its orders on their way): a silent follower's broker held
    every answer up to the request timeout, past TradingView's 3 s; else ``IN_DOUBT`` as soon
    as the claim's answer is lost and the database cannot say whether it committed
    (``claim_doubt``: nothing is sent until it can, and TradingView re-sends only a 5xx). A
    delivery not stored yet is waited for: nothing may be answered for it before it is (200
    would lose it, a 5xx is re-sent and, with no alert id, may be a new delivery a minute on).
    The task is never cancelled here: a client hanging up must not stop a dispatch half-way."""
    done, _ = await asyncio.wait({task}, timeout=max(within_s, 0.0))
    if not done and not claimed.is_set() and not in_doubt.is_set():
        told = {asyncio.ensure_future(claimed.wait()), asyncio.ensure_future(in_doubt.wait())}
        try:
            await asyncio.wait({task, *told}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in told:
                waiter.cancel()
    if task.done():
        return task.result()
    return Unanswered.SENDING if claimed.is_set() else Unanswered.IN_DOUBT


def time_left(within_s: float, received_at: datetime) -> float:
    """What is left of ``within_s`` (``server.answer_within_s``) for a delivery that arrived
    at ``received_at``: its answer and, for a duplicate, its wait for the first's result."""
    return within_s - (datetime.now(UTC) - received_at).total_seconds()


# on the row of a signal answered 503 in doubt and found stored after
ANSWERED_IN_DOUBT = (
    "answered 503: the database could not confirm it was stored; it was, and its orders went "
    "out once it could"
)


# on the row of a signal whose claim committed though the database could not say so in time
NEVER_KNOWN = (
    "not traded: answered 503, the database could not confirm in time that it was stored; "
    "nothing was sent"
)


def in_doubt_response(signal_id: int) -> web.Response:
    """The answer for a delivery whose claim's answer was lost while the database cannot say
    whether it committed: nothing has been sent, so a re-send is safe (``claim_doubt``)."""
    log.error(
        "webhook.storage_in_doubt",
        signal_id=signal_id,
        effect="answered 503; whether it was stored is still asked",
    )
    return error_response(
        503,
        "storage_unavailable",
        "the database cannot confirm the alert was stored; nothing has been sent (if it was "
        "stored, its orders go out once the database confirms it, and a re-send is a repeat)",
        None,
    )


async def settle_never_known(pool: Executor, signal_id: int) -> None:
    """A claim in doubt whose fate was not learned in time, or learned not stored: its row, if
    it was stored after all, says that nothing was sent and TradingView got a 503 (it said
    "received" until a restart called it interrupted); none there, nothing is written."""
    try:
        await signal_store.never_known(pool, signal_id, NEVER_KNOWN)
    except Exception as exc:
        log.error("webhook.outcome_not_stored", error=type(exc).__name__)


def still_sending(signal_id: int) -> web.Response:
    """The answer for a stored signal whose orders are still going out."""
    body = summary(signal_id, "received", 0)
    body["reason"] = (
        "stored; its orders are still going out: `jtrades signals list` shows the verdict"
    )
    return json_response(200, body)


def json_response(status: int, payload: Mapping[str, Any]) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps(payload, default=str),
        content_type="application/json",
    )


def error_response(status: int, error: str, detail: str, signal_id: int | None) -> web.Response:
    body: dict[str, Any] = {"error": error, "detail": detail}
    if signal_id is not None:
        body["signal_id"] = signal_id
    return json_response(status, body)


def summary(signal_id: int, verdict: str, orders: int) -> dict[str, Any]:
    return {"signal_id": signal_id, "verdict": verdict, "orders": orders}


def was_claimed(d: signal_store.Delivery) -> bool:
    """Whether the engine stored the delivery with orders to send (``Delivery.claimed``)."""
    return d.claimed is not None and d.claimed.is_set()


def failed_after_claim(signal_id: int, exc: BaseException) -> tuple[dict[str, Any], dict[str, Any]]:
    """The answer and the row's outcome when the engine failed once the signal was stored:
    orders may have left, so it is accepted (a 200), and reconciliation settles the rest."""
    error = f"internal error after the signal was stored ({type(exc).__name__})"
    result = summary(signal_id, "accepted", 0)
    result["error"] = error
    fields: dict[str, Any] = {
        "verdict": "accepted",
        "filter": None,
        "reason": error,
        "orders": 0,
        "detail": {"error": type(exc).__name__},
    }
    return result, fields


def duplicate_response(signal_id: int, first_id: int, first: dict[str, Any]) -> web.Response:
    """A duplicate's answer: 200, with the first delivery's result."""
    return json_response(
        200,
        {
            "signal_id": signal_id,
            "verdict": "duplicate",
            "orders": 0,
            "duplicate_of": first_id,
            "first": first,
        },
    )


async def first_result(
    ex: Executor,
    first_id: int,
    waiter: asyncio.Future[dict[str, Any]] | None,
    wait_s: float = DUPLICATE_WAIT_S,
) -> dict[str, Any]:
    """The first delivery's answer: from ``waiter`` while this process is still working on it,
    else from its row (waiting up to ``wait_s`` for another daemon to decide it); "received"
    when it is not decided by then."""
    wait_s = max(0.0, min(wait_s, DUPLICATE_WAIT_S))
    if waiter is not None:
        try:
            return dict(await within(asyncio.shield(waiter), wait_s))
        except TimeoutError:
            return summary(first_id, "received", 0)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            row = await signal_store.result(ex, first_id)
        except StorageUnavailable:
            return summary(first_id, "received", 0)
        if row is None:
            return summary(first_id, "unknown", 0)
        if row.verdict != "received" or time.monotonic() >= deadline:
            out = summary(first_id, row.verdict, row.orders)
            if row.filter:
                out["filter"] = row.filter
            if row.reason:
                out["reason"] = row.reason
            return out
        await asyncio.sleep(0.05)  # the first is being processed by another daemon
