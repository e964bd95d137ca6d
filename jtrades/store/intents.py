"""Order intents: the durable record written before an order leaves (money rules 1 and 2).

All intents of one signal go in one transaction (``insert_all``): either every sub-account's
orders are on disk or none are, and nothing is sent unless the write committed. ``cl_ord_id`` is
unique, so writing the same signal's intents twice inserts nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from jtrades.queries import q
from jtrades.store import Executor, translate_errors

# Intent states that no longer change.
FINAL_STATES = frozenset({"filled", "rejected", "cancelled", "expired", "done"})


@dataclass(frozen=True, slots=True)
class NewIntent:
    signal_id: int | None
    trader_id: int | None
    sub_account_id: int
    cl_ord_id: str
    step: int
    kind: str
    symbol: str
    side: str | None
    qty: int | None
    request: dict[str, Any]
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class OpenIntent:
    id: int
    signal_id: int | None
    trader_id: int | None
    sub_account_id: int
    cl_ord_id: str
    step: int
    kind: str
    symbol: str
    state: str
    broker_order_id: int | None
    created_at: datetime
    expires_at: datetime
    account_id: int
    broker_account_id: int
    env: str


async def insert_all(pool: asyncpg.Pool, intents: Sequence[NewIntent]) -> list[int | None]:
    """Write the intents atomically (one statement); an id of None means the clOrdId already
    existed (a duplicate delivery of the same signal), so that order must not be sent again."""
    if not intents:
        return []
    with translate_errors():
        rows = await pool.fetch(
            q("intents.insert_many"),
            [it.signal_id for it in intents],
            *columns(intents),
        )
    return ids_in_order(intents, ((r["cl_ord_id"], r["id"]) for r in rows))


def columns(intents: Sequence[NewIntent]) -> list[list[Any]]:
    """The intents as column arrays for an ``unnest`` insert, ``trader_id`` to ``expires_at``
    (``signal_id`` left to the statement: ``signals.claim`` takes it from the row it inserts)."""
    return [
        [it.trader_id for it in intents],
        [it.sub_account_id for it in intents],
        [it.cl_ord_id for it in intents],
        [it.step for it in intents],
        [it.kind for it in intents],
        [it.symbol for it in intents],
        [it.side for it in intents],
        [it.qty for it in intents],
        [it.request for it in intents],
        [it.expires_at for it in intents],
    ]


def ids_in_order(
    intents: Sequence[NewIntent], written: Iterable[tuple[str, int]]
) -> list[int | None]:
    """Per intent, in order, the id it was written under; None when its clOrdId already existed
    (nothing was written, so that order must not be sent again)."""
    ids = {cl: int(i) for cl, i in written}
    return [ids.get(it.cl_ord_id) for it in intents]


async def mark_sent(
    ex: Executor,
    intent_id: int,
    state: str,
    *,
    broker_order_id: int | None = None,
    reason: str | None = None,
) -> None:
    """Record what happened when the intent was handed to the broker (sets ``sent_at``)."""
    with translate_errors():
        await ex.execute(q("intents.mark_sent"), intent_id, state, broker_order_id, reason)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one intent when it was (or was not) handed to the broker."""

    intent_id: int
    state: str
    broker_order_id: int | None = None
    reason: str | None = None
    sent: bool = False


async def finish_many(ex: Executor, outcomes: Sequence[Outcome]) -> None:
    """Record several intents' outcomes in one statement (``sent`` sets ``sent_at``)."""
    if not outcomes:
        return
    with translate_errors():
        await ex.execute(
            q("intents.finish_many"),
            [o.intent_id for o in outcomes],
            [o.state for o in outcomes],
            [o.broker_order_id for o in outcomes],
            [o.reason for o in outcomes],
            [o.sent for o in outcomes],
        )


async def set_state(
    ex: Executor,
    intent_id: int,
    state: str,
    *,
    broker_order_id: int | None = None,
    reason: str | None = None,
) -> None:
    """Move an intent without touching ``sent_at`` (expired, resolved by reconciliation)."""
    with translate_errors():
        await ex.execute(q("intents.set_state"), intent_id, state, broker_order_id, reason)


async def open_older_than(ex: Executor, before: datetime) -> list[OpenIntent]:
    """Intents still pending/sent/unknown created before ``before``: reconciliation's work."""
    with translate_errors():
        rows = await ex.fetch(q("intents.open_older_than"), before)
    return [OpenIntent(**dict(r)) for r in rows]


async def by_signal(ex: Executor, signal_id: int) -> list[dict[str, Any]]:
    with translate_errors():
        rows = await ex.fetch(q("intents.by_signal"), signal_id)
    return [dict(r) for r in rows]


async def id_by_broker_order(ex: Executor, sub_account_id: int, broker_order_id: int) -> int | None:
    with translate_errors():
        v = await ex.fetchval(q("intents.by_broker_order"), sub_account_id, broker_order_id)
    return int(v) if v is not None else None


async def id_by_cl_ord_id(ex: Executor, cl_ord_id: str) -> int | None:
    with translate_errors():
        v = await ex.fetchval(q("intents.by_cl_ord_id"), cl_ord_id)
    return int(v) if v is not None else None


async def last_trader_for(ex: Executor, sub_account_id: int, symbol: str) -> int | None:
    """The trader whose intents last touched this sub-account's contract: whose SL protects it."""
    with translate_errors():
        v = await ex.fetchval(q("intents.last_trader_for"), sub_account_id, symbol)
    return int(v) if v is not None else None
