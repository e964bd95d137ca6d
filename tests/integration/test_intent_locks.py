"""Two writers move the same order intents at the same moment: the broker-event mirror (the
order went working) and the signal's outcome write (the send's answer). Each locks its rows in
id order, so neither can hold one row while waiting for another the other holds: before, the
two deadlocked under load and Postgres killed one of them (an outcome or a mirror batch lost).

The test makes the old order observable: a third connection holds the lower intent, the
outcome writer is given the ids high-first on a heap that also stores them high-first, and the
mirror then asks for the higher one. Locking in id order, the outcome writer waits on the lower
intent holding nothing, so the mirror goes straight through."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from jtrades.store import Executor
from jtrades.store import intents as intent_store
from jtrades.store import mirror as mirror_store
from jtrades.store import signals as signal_store
from jtrades.store.intents import Outcome
from tests.integration.test_claim import delivery, intent
from tests.integration.test_engine import buy, make_paper_account, make_recorder, make_user

Writer = Callable[[Executor, int, list[Outcome]], Awaitable[None]]


async def _signal_outcome(pool: Executor, signal_id: int, outcomes: list[Outcome]) -> None:
    await signal_store.set_outcome(pool, signal_id, verdict="accepted", orders=2, intents=outcomes)


async def _dispatch_outcome(pool: Executor, signal_id: int, outcomes: list[Outcome]) -> None:
    await intent_store.finish_many(pool, outcomes)


async def _waiting_on_lock(pool: asyncpg.Pool, pid: int) -> None:
    for _ in range(200):
        if await pool.fetchval("SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid):
            return
        await asyncio.sleep(0.025)
    raise AssertionError("the outcome writer never waited on the held intent")


def _order(sub: int, order_id: int, cl_ord_id: str) -> mirror_store.OrderRow:
    """The order row an intent row goes with (its sub-account says whose intent it can be)."""
    return (sub, order_id, cl_ord_id, "MNQZ6", "Buy", 1, "Market", None, None, "Working", None,
            None)  # fmt: skip


async def _claimed(pool: asyncpg.Pool, name: str, steps: int) -> tuple[int, list[int]]:
    """A signal of a new user's recorder, claimed with ``steps`` intents on one sub-account."""
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec")
    (sub,) = await make_paper_account(pool, u, f"{name}-paper")
    signal_id = await signal_store.SignalIds(pool, block=1).take()
    claim = await signal_store.claim_delivery(
        pool,
        delivery(signal_id, rec, buy(), name),
        [intent(signal_id, sub, s) for s in range(steps)],
    )
    return signal_id, [i for i in claim.intent_ids if i is not None]


@pytest.mark.parametrize("writer", [_signal_outcome, _dispatch_outcome], ids=["signal", "dispatch"])
async def test_the_mirror_is_not_blocked_by_an_outcome_writer_waiting_on_another_intent(
    pool: asyncpg.Pool, writer: Writer
) -> None:
    signal_id, ids = await _claimed(pool, "locks", 2)
    low, high = sorted(ids)
    # a new version of the lower row lands after the higher one on the heap
    await pool.execute("UPDATE order_intents SET updated_at = now() WHERE id = $1", low)
    high_cl, sub = await pool.fetchrow(
        "SELECT cl_ord_id, sub_account_id FROM order_intents WHERE id = $1", high
    )

    holder = await pool.acquire()
    tx = holder.transaction()
    await tx.start()
    await holder.execute("SELECT 1 FROM order_intents WHERE id = $1 FOR UPDATE", low)
    outcomes = [Outcome(high, "sent", 9002, sent=True), Outcome(low, "sent", 9001, sent=True)]
    # the writer runs on a connection of its own whose pid we know
    wconn = await pool.acquire()
    wpid = wconn.get_server_pid()
    writing = asyncio.create_task(writer(wconn, signal_id, outcomes))
    try:
        await _waiting_on_lock(pool, wpid)
        async with pool.acquire() as mirror, mirror.transaction():
            await mirror.execute("SET LOCAL lock_timeout = '5s'")
            await mirror_store.write_batch(
                mirror,
                mirror_store.Batch(
                    intents=[(high_cl, "working", 9002, None)],
                    orders=[_order(sub, 9002, high_cl)],
                ),
            )
    finally:
        await tx.commit()
        await pool.release(holder)
        await writing
        await pool.release(wconn)

    rows = await pool.fetch(
        "SELECT id, state, broker_order_id, sent_at IS NOT NULL AS sent FROM order_intents"
    )
    got = {r["id"]: (r["state"], r["broker_order_id"], r["sent"]) for r in rows}
    # the send's answer does not move an intent the broker's events already moved on
    assert got == {high: ("working", 9002, True), low: ("sent", 9001, True)}


async def test_the_mirror_moves_only_open_intents_and_keeps_a_known_order_id(
    pool: asyncpg.Pool,
) -> None:
    _, (a, b, c) = await _claimed(pool, "sync", 3)
    await intent_store.set_state(pool, a, "filled", broker_order_id=1)  # final: stays
    await intent_store.set_state(pool, b, "sent", broker_order_id=2)  # its order id stays
    cl = dict(await pool.fetch("SELECT id, cl_ord_id FROM order_intents"))
    sub = await pool.fetchval("SELECT sub_account_id FROM order_intents WHERE id = $1", a)

    moves = [(a, "cancelled", 11), (b, "working", 22), (c, "working", 33)]
    await mirror_store.write_batch(
        pool,
        mirror_store.Batch(
            intents=[(cl[i], state, oid, None) for i, state, oid in moves]
            + [("jt-unknown", "working", 44, None)],
            orders=[_order(sub, oid, cl[i]) for i, _state, oid in moves]
            + [_order(sub, 44, "jt-unknown")],
        ),
    )

    rows = await pool.fetch("SELECT id, state, broker_order_id FROM order_intents")
    assert {r["id"]: (r["state"], r["broker_order_id"]) for r in rows} == {
        a: ("filled", 1),
        b: ("working", 2),
        c: ("working", 33),
    }
