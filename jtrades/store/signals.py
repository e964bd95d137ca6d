"""Signals: every webhook delivery stored raw with its verdict, and the dedup decision.

``claim_delivery`` is the one place a duplicate is decided (money rule 3): a single statement inserts the
signal row, its idempotency key and, when it is new, its order intents; a racing copy of the
same alert finds the key, is stored as ``duplicate`` pointing at the first, and writes no
intents. Deliveries that never reach dedup (bad token, bad body, too large) are stored by
``insert`` with their 4xx verdict, so every delivery leaves a row. ``SignalIds`` hands out ids
before the row exists: the intents' clOrdIds carry the signal id, and they are planned before
the one statement that stores both.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from jtrades.engine.signal import Signal
from jtrades.errors import StorageUnavailable
from jtrades.queries import q
from jtrades.store import Executor, translate_errors
from jtrades.store.intents import NewIntent, ids_in_order
from jtrades.store.intents import Outcome as IntentOutcome
from jtrades.store.intents import as_rows as intent_rows
from jtrades.store.intents import outcome_params as intent_outcome_params


@dataclass(frozen=True, slots=True)
class Claim:
    """The row a delivery got, and the first delivery's id when it is a duplicate."""

    signal_id: int
    duplicate_of: int | None
    # per intent handed to ``claim_delivery``, in order: its id, or None when its clOrdId already existed
    # (never sent again); empty for a duplicate, whose intents are not written
    intent_ids: tuple[int | None, ...] = ()

    @property
    def is_duplicate(self) -> bool:
        return self.duplicate_of is not None


@dataclass(frozen=True, slots=True)
class SignalResult:
    """What a signal row says happened (the answer a duplicate repeats)."""

    id: int
    recorder_id: int | None
    verdict: str
    filter: str | None
    reason: str | None
    orders: int
    duplicate_of: int | None
    detail: dict[str, Any] | None
    http_status: int


@dataclass(frozen=True, slots=True)
class SignalRow:
    """One line of ``signals list``."""

    id: int
    received_at: datetime
    recorder: str | None
    action: str | None
    symbol: str | None
    quantity: int | None
    price: Decimal | None
    verdict: str
    filter: str | None
    reason: str | None
    orders: int
    http_status: int
    duplicate_of: int | None
    content_type: str | None


_INT_MAX = 2**31 - 1
_SIGNAL_FIELDS = tuple(f.name for f in fields(Signal))


def _text(value: str | None) -> str | None:
    """Postgres text cannot hold NUL: replace it (the raw body keeps every byte; jsonb values
    get the same from their encoder, ``db.encode_json``)."""
    return value.replace("\x00", "\ufffd") if value is not None else None


def _columns(signal: Signal | None) -> list[Any]:
    """action, symbol, quantity, price, parsed: the signal's searchable columns (never its token).

    Out-of-range numbers are left NULL rather than failing the insert: the raw body keeps them.
    """
    if signal is None:
        return [None, None, None, None, None]
    # shallow: the jsonb encoder writes the nested dataclasses (exits) itself; asdict's deep
    # copy cost ~30 µs per alert, this ~3
    parsed = {
        name: value
        for name in _SIGNAL_FIELDS
        if name != "token"
        and (value := getattr(signal, name)) not in (None, (), {})
        and value is not False  # a flag not raised (``partial_exit``): not on every row
    }
    qty = signal.quantity
    if qty is not None and not 1 <= qty <= _INT_MAX:
        qty = None
    price = signal.price
    if price is not None and not (price.is_finite() and price > 0):
        price = None
    return [signal.action.value, _text(signal.ticker), qty, price, parsed]


@dataclass(frozen=True, slots=True)
class Delivery:
    """A parsed, authenticated delivery not yet stored: what ``claim_delivery`` needs, handed from the
    webhook to the engine, which stores it together with the orders it plans for it."""

    signal_id: int
    recorder_id: int
    idem_key: str
    window: timedelta
    received_at: datetime
    remote_addr: str | None
    content_type: str | None
    raw_body: bytes
    signal: Signal
    # what the filters counted (entry, nth_seen, the traders'), stored with the claim so that a
    # daemon dying before the outcome is written rebuilds the same counts
    detail: dict[str, Any] | None = None
    # set once the delivery is on disk as a new signal with orders to send (``Dispatcher``):
    # the webhook may answer before the last broker answer
    claimed: asyncio.Event | None = field(default=None, compare=False, repr=False)
    # set while the claim's answer was lost and the database cannot say whether it committed
    # (``claim_doubt``): nothing is sent meanwhile, and the webhook answers 503 at its bound
    in_doubt: asyncio.Event | None = field(default=None, compare=False, repr=False)


def claim_args(delivery: Delivery, intents: Sequence[NewIntent] = ()) -> list[Any]:
    """The parameters of ``signals.claim``, in its order (also what ``bench claim`` EXPLAINs)."""
    return [
        delivery.recorder_id,
        delivery.idem_key,
        delivery.received_at,
        delivery.remote_addr,
        _text(delivery.content_type),
        delivery.raw_body,
        *_columns(delivery.signal),
        delivery.window.total_seconds(),
        delivery.signal_id,
        intent_rows(intents),
        delivery.detail,
    ]


async def claim_delivery(
    ex: Executor, delivery: Delivery, intents: Sequence[NewIntent] = ()
) -> Claim:
    """Store a parsed delivery and decide, atomically, whether it is a duplicate: it is when
    the same key was claimed less than ``delivery.window`` ago. A new delivery's ``intents``
    are written in the same statement, one commit; ``delivery.signal_id`` (from ``SignalIds``)
    is the id the row gets, and must be the one the intents' clOrdIds were made from."""
    with translate_errors():
        row = await ex.fetchrow(q("signals.claim"), *claim_args(delivery, intents))
    assert row is not None
    if row["duplicate_of"] is not None:
        return Claim(row["id"], row["duplicate_of"])
    written = zip(row["cl_ord_ids"] or (), row["intent_ids"] or (), strict=True)
    return Claim(row["id"], None, tuple(ids_in_order(intents, written)))


async def claim_fate(
    pool: asyncpg.Pool,
    delivery: Delivery,
    intents: Sequence[NewIntent] = (),
) -> Claim | None:
    """Whether a claim whose answer was lost (its connection failed with the statement sent)
    committed: its ``Claim`` read back if so, None if it did not and never will.

    Answering "not stored" when it was would lose the alert: TradingView's re-send of the 503
    meets the key as a duplicate and sends nothing, and the intents expire unsent. The server
    process that ran the claim is ended first (``end_claim_backend``): a claim still running
    there (waiting for a racing delivery's key, say) could otherwise commit after this looked;
    one still inserting its row is waited for here (up to ``lock_timeout``). Raises
    ``StorageUnavailable`` when it cannot tell."""
    with translate_errors():
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                await conn.execute("SET LOCAL lock_timeout = '5s'")
                if await conn.fetchval(q("signals.claim_probe"), delivery.signal_id) is not None:
                    return None
                row = await conn.fetchrow(q("signals.claimed"), delivery.signal_id)
            except asyncpg.LockNotAvailableError:
                raise StorageUnavailable("the claim is still running on the server") from None
            finally:
                await tx.rollback()
    assert row is not None  # the probe conflicted: the row is there
    if row["duplicate_of"] is not None:
        return Claim(delivery.signal_id, row["duplicate_of"])
    written = zip(row["cl_ord_ids"] or (), row["intent_ids"] or (), strict=True)
    return Claim(delivery.signal_id, None, tuple(ids_in_order(intents, written)))


async def end_claim_backend(pool: asyncpg.Pool, pid: int) -> None:
    """End the server process ``pid`` that ran a claim, and wait until it is gone (see
    ``claim_fate``); raises ``StorageUnavailable`` when that cannot be done or told."""
    with translate_errors():
        async with pool.acquire() as conn:
            await _end_backend(conn, pid)


async def _end_backend(conn: Any, pid: int) -> None:
    """End the server process ``pid`` and wait (≤ 5 s) until it is gone, its transaction
    committed or rolled back for good; a process already gone is fine."""
    try:
        ended = await conn.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
    except asyncpg.InsufficientPrivilegeError:
        raise StorageUnavailable(
            "cannot end the claim's server process to learn its fate"
        ) from None
    if not ended and await conn.fetchval("SELECT 1 FROM pg_stat_activity WHERE pid = $1", pid):
        raise StorageUnavailable("the claim's server process did not end within 5 s")


@dataclass
class SignalIds:
    """Signal ids drawn from the sequence in blocks, ahead of the deliveries that use them, so
    planning (whose clOrdIds carry the id) can come before the one statement that stores the
    signal with its intents. A block is refilled in the background before it runs out."""

    pool: Executor
    block: int = 64
    _ids: deque[int] = field(default_factory=deque)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _refill: asyncio.Task[None] | None = None

    async def take(self) -> int:
        while not self._ids:
            await self._draw()
        signal_id = self._ids.popleft()
        if len(self._ids) <= self.block // 4 and self._refill is None:
            self._refill = asyncio.create_task(self._background())
        return signal_id

    async def _draw(self) -> None:
        async with self._lock:
            if len(self._ids) > self.block // 4:
                return  # a concurrent caller refilled while this one waited
            with translate_errors():
                rows = await self.pool.fetch(q("signals.draw_ids"), self.block)
            self._ids.extend(int(r["id"]) for r in rows)

    async def _background(self) -> None:
        try:
            # A failure here is not lost: the next ``take`` on an empty block draws again
            # and raises to its caller.
            with contextlib.suppress(Exception):
                await self._draw()
        finally:
            self._refill = None

    async def close(self) -> None:
        task = self._refill
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def insert(
    ex: Executor,
    *,
    recorder_id: int | None,
    received_at: datetime,
    remote_addr: str | None,
    content_type: str | None,
    raw_body: bytes,
    verdict: str,
    http_status: int,
    reason: str | None = None,
    filter: str | None = None,
    signal: Signal | None = None,
    detail: dict[str, Any] | None = None,
    signal_id: int | None = None,
) -> int:
    """Store a delivery that skips dedup (invalid, unauthorised, too large) with its verdict
    (``signal_id`` from ``SignalIds`` keeps a daemon's rows in arrival order)."""
    with translate_errors():
        new_id: int = await ex.fetchval(
            q("signals.insert"),
            recorder_id,
            received_at,
            remote_addr,
            _text(content_type),
            raw_body,
            *_columns(signal),
            verdict,
            _text(filter),
            _text(reason),
            http_status,
            detail,
            signal_id,
        )
    return new_id


async def never_known(ex: Executor, signal_id: int, reason: str) -> None:
    """Settle the row, if any, of a claim whose fate was never learned in time (see the SQL)."""
    with translate_errors():
        await ex.execute(q("signals.never_known"), signal_id, reason)


async def set_outcome(
    ex: Executor,
    signal_id: int,
    *,
    verdict: str,
    filter: str | None = None,
    reason: str | None = None,
    orders: int = 0,
    detail: dict[str, Any] | None = None,
    http_status: int = 200,
    intents: Sequence[IntentOutcome] = (),
) -> None:
    """Write the engine's verdict back onto the row stored on receipt, and with it (same
    statement) the send outcomes of the signal's intents when given."""
    with translate_errors():
        if intents:
            # the intents' outcomes and the verdict in one statement
            await ex.execute(
                q("intents.finish_many"),
                *intent_outcome_params(intents),
                signal_id,
                verdict,
                _text(filter),
                _text(reason),
                orders,
                detail,
                http_status,
            )
            return
        await ex.execute(
            q("signals.set_outcome"),
            signal_id,
            verdict,
            _text(filter),
            _text(reason),
            orders,
            detail,
            http_status,
        )


async def result(ex: Executor, signal_id: int) -> SignalResult | None:
    with translate_errors():
        row = await ex.fetchrow(q("signals.result"), signal_id)
    return None if row is None else SignalResult(**dict(row))


async def is_stored(ex: Executor, signal_id: int, within_s: float | None = None) -> bool:
    """Whether the signal's row exists; False when the database cannot say (within
    ``within_s``): callers then treat the delivery as not stored, as the webhook's 503 does
    (TradingView re-sends it, which is harmless if it was stored after all: a duplicate)."""
    try:
        async with asyncio.timeout(within_s):
            return await result(ex, signal_id) is not None
    except Exception:
        return False


async def list_signals(
    ex: Executor,
    *,
    recorder: str | None = None,
    since: datetime | None = None,
    limit: int = 50,
    user: str | None = None,
    verdict: str | None = None,
) -> list[SignalRow]:
    """Newest first."""
    with translate_errors():
        rows = await ex.fetch(q("signals.list"), recorder, since, limit, user, verdict)
    return [SignalRow(**dict(r)) for r in rows]


async def verdict_counts(ex: Executor) -> dict[str, int]:
    with translate_errors():
        rows = await ex.fetch(q("signals.verdict_counts"))
    return {r["verdict"]: int(r["n"]) for r in rows}


async def prune_keys(ex: Executor, older_than: datetime) -> int:
    """Drop idempotency keys created before ``older_than``; returns how many."""
    with translate_errors():
        n: int = await ex.fetchval(q("signals.prune_keys"), older_than)
    return n


async def settle_interrupted(ex: Executor, before: datetime) -> dict[int, str]:
    """Give rows left ``received`` by a stopped daemon a verdict; returns id → verdict."""
    with translate_errors():
        rows = await ex.fetch(q("signals.settle_interrupted"), before)
    return {r["id"]: r["verdict"] for r in rows}


async def give_back_unsent(ex: Executor, since: datetime) -> list[int]:
    """The counts of interrupted signals (``settle_interrupted``) received since ``since``
    whose orders never reached the broker go back, as ``engine.verdicts.Judged.settle`` gives
    them back in a run that lives: run after startup reconciliation resolved the intents and
    before the session counters are read. Returns the signals whose ``detail`` changed."""
    with translate_errors():
        rows = await ex.fetch(q("signals.give_back_unsent"), since)
    return [int(r["id"]) for r in rows]
