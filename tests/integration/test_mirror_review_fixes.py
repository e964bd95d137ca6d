"""The mirror and reconciliation moving order intents: whose intent an order event moves, and
what a signal's ``orders`` says once an order whose answer was lost is found at the broker.

ClOrdIds (``jt-<signal>-<sub>-<step>``) are unique only within one database: a second jtrades
instance on the same Tradovate login, or a database rebuilt the same day, produces the same ids
for orders on other accounts. Before, the mirror matched an order event to an intent by clOrdId
alone: an order on account B moved account A's ``unknown`` intent to ``working`` with B's order
id and linked B's order row to it, and A's intent, no longer open, was never looked up again.

And a signal whose order's answer was lost said ``accepted, orders 0`` for good once the order
was found filled: only a signal settled as interrupted was counted again."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.config import Settings
from jtrades.engine.signal import Action, Signal
from jtrades.store import Executor
from jtrades.store import intents as intent_store
from jtrades.store import mirror as mirror_store
from jtrades.store import signals as signal_store
from tests.integration.test_dispatch import sim_engine
from tests.integration.test_engine import (
    make_recorder,
    make_user,
    record_outcome,
    store_signal,
)
from tests.polling import until


def _order(sub: int, order_id: int, cl: str, status: str = "Working") -> mirror_store.OrderRow:
    return (sub, order_id, cl, "MNQZ6", "Buy", 1, "Limit", Decimal(20000), None, status, None,
            None)  # fmt: skip


async def _login(pool: asyncpg.Pool, user: int, label: str, env: str, broker_id: int) -> int:
    """A login (``label``) with one sub-account for the broker's account ``broker_id``."""
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username) VALUES ($1, $2, $3, $4)"
        " RETURNING id",
        user, label, env, None if env == "paper" else f"{label}-login",
    )  # fmt: skip
    sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " VALUES ($1, $2, 'A1') RETURNING id",
        aid,
        broker_id,
    )
    return int(sub)


async def _intent(
    pool: asyncpg.Pool, signal_id: int, sub: int, state: str = "unknown", step: int = 1
) -> tuple[int, str]:
    cl = f"jt-{signal_id}-{sub}-{step}"
    iid = await pool.fetchval(
        "INSERT INTO order_intents (signal_id, sub_account_id, cl_ord_id, step, kind, symbol,"
        " side, qty, request, state, expires_at)"
        " VALUES ($1, $2, $3, $4, 'order', 'MNQZ6', 'Buy', 1, '{}', $5, $6) RETURNING id",
        signal_id, sub, cl, step, state, datetime.now(UTC) + timedelta(seconds=30),
    )  # fmt: skip
    return int(iid), cl


async def _state(pool: asyncpg.Pool, intent_id: int) -> tuple[str, int | None]:
    row = await pool.fetchrow(
        "SELECT state, broker_order_id FROM order_intents WHERE id = $1", intent_id
    )
    assert row is not None
    return row["state"], row["broker_order_id"]


async def _signal(pool: asyncpg.Pool, recorder: int, orders: int = 0) -> int:
    """A signal already answered (``accepted``, ``orders`` counted then)."""
    sid, _ = await store_signal(pool, recorder)
    await pool.execute("UPDATE signals SET verdict = 'accepted', orders = $2 WHERE id = $1",
                       sid, orders)  # fmt: skip
    return sid


async def test_an_order_event_on_another_broker_account_never_moves_an_intent(
    pool: asyncpg.Pool,
) -> None:
    u = await make_user(pool, "iso")
    rec = await make_recorder(pool, u, "iso-rec")
    mine = await _login(pool, u, "iso-a", "demo", 501)
    other = await _login(pool, u, "iso-b", "demo", 502)  # another account at the broker
    paper_twin = await _login(pool, u, "iso-p", "paper", 503)
    paper_other = await _login(pool, u, "iso-q", "paper", 503)  # paper: one login each
    sid = await _signal(pool, rec)
    iid, cl = await _intent(pool, sid, mine)
    pid, pcl = await _intent(pool, sid, paper_twin)

    await mirror_store.write_batch(
        pool,
        mirror_store.Batch(
            intents=[(cl, "working", 77, None), (pcl, "filled", 78, None)],
            orders=[_order(other, 77, cl), _order(paper_other, 78, pcl, "Filled")],
        ),
    )

    rows = await pool.fetch("SELECT id, state, broker_order_id FROM order_intents")
    assert {r["id"]: (r["state"], r["broker_order_id"]) for r in rows} == {
        iid: ("unknown", None),
        pid: ("unknown", None),
    }
    assert await pool.fetchval("SELECT count(*) FROM orders WHERE intent_id IS NOT NULL") == 0


async def test_an_order_event_seen_through_another_users_row_of_one_account_moves_its_intent(
    pool: asyncpg.Pool,
) -> None:
    """Two users who added one Tradovate login each have a row for its account: the event
    tagged with bob's row is of alice's order."""
    alice, bob = await make_user(pool, "alice"), await make_user(pool, "bob")
    rec = await make_recorder(pool, alice, "shared-rec")
    hers = await _login(pool, alice, "alice-demo", "demo", 601)
    his = await _login(pool, bob, "bob-demo", "demo", 601)
    sid = await _signal(pool, rec)
    iid, cl = await _intent(pool, sid, hers)

    await mirror_store.write_batch(
        pool,
        mirror_store.Batch(intents=[(cl, "working", 88, None)], orders=[_order(his, 88, cl)]),
    )

    assert await _state(pool, iid) == ("working", 88)
    assert await pool.fetchval("SELECT intent_id FROM orders WHERE sub_account_id = $1", his) == iid


async def test_an_order_on_another_login_with_the_same_cl_ord_id_leaves_the_intent_unknown(
    settings: Settings,
) -> None:
    """Over the simulator: an order placed on IB1 (another login) carrying the clOrdId of IA1's
    unknown intent."""
    async with sim_engine(settings, {"ia_tv": ["IA1"], "ib_tv": ["IB1"]}) as (
        engine, sim, pool, rec, subs,
    ):  # fmt: skip
        sid, _ = await store_signal(pool, rec)
        iid, cl = await _intent(pool, sid, subs["IA1"])
        b_login = await pool.fetchval(
            "SELECT account_id FROM sub_accounts WHERE id = $1", subs["IB1"]
        )
        b_broker = {aid: b for aid, _env, b in engine.brokers.sessions()}[b_login]
        contract = await b_broker.find_contract("MNQ1!")
        await b_broker.place_order(
            OrderRequest(
                SubAccount(sim.account_id("IB1"), "IB1"), contract.symbol, Side.BUY, 1,
                OrderType.LIMIT, price=Decimal(20000), cl_ord_id=cl,
            )
        )  # fmt: skip

        for _ in range(300):  # the mirror writes IB1's order row
            if await pool.fetchval(
                "SELECT count(*) FROM orders WHERE cl_ord_id = $1 AND sub_account_id = $2",
                cl, subs["IB1"],
            ):  # fmt: skip
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the mirror never wrote IB1's order")

        assert await _state(pool, iid) == ("unknown", None)
        assert await pool.fetchval("SELECT intent_id FROM orders WHERE cl_ord_id = $1", cl) is None
        assert sim.working_orders("IA1") == []


async def test_the_mirror_counts_an_unknown_intent_it_finds_filled_on_its_signal(
    pool: asyncpg.Pool,
) -> None:
    u = await make_user(pool, "count")
    rec = await make_recorder(pool, u, "count-rec")
    sub = await _login(pool, u, "count-a", "demo", 701)
    lost = await _signal(pool, rec, orders=1)  # step 1 answered, step 2's answer lost
    await _intent(pool, lost, sub, "sent", step=1)
    _, lost_cl = await _intent(pool, lost, sub, "unknown", step=2)
    answered = await _signal(pool, rec, orders=1)
    _, answered_cl = await _intent(pool, answered, sub, "sent")
    # the count the outcome wrote stands for an intent that was sent (or still is being handled)
    await pool.execute("UPDATE signals SET orders = 5 WHERE id = $1", answered)

    await mirror_store.write_batch(
        pool,
        mirror_store.Batch(
            intents=[(lost_cl, "filled", 91, None), (answered_cl, "filled", 92, None)],
            orders=[_order(sub, 91, lost_cl, "Filled"), _order(sub, 92, answered_cl, "Filled")],
        ),
    )

    rows = await pool.fetch("SELECT id, orders FROM signals")
    assert {r["id"]: r["orders"] for r in rows} == {lost: 2, answered: 5}


async def test_reconciliation_counts_a_live_unknown_intent_it_resolves_on_its_signal(
    pool: asyncpg.Pool,
) -> None:
    u = await make_user(pool, "settle")
    rec = await make_recorder(pool, u, "settle-rec")
    sub = await _login(pool, u, "settle-a", "demo", 801)
    found = await _signal(pool, rec)
    fid, _ = await _intent(pool, found, sub)
    gone = await _signal(pool, rec)
    gid, _ = await _intent(pool, gone, sub)

    await intent_store.set_state(pool, fid, "filled", broker_order_id=93)
    await intent_store.set_state(pool, gid, "expired", reason="not at the broker")

    rows = await pool.fetch("SELECT id, orders FROM signals")
    assert {r["id"]: r["orders"] for r in rows} == {found: 1, gone: 0}


async def test_a_lost_answer_order_found_filled_counts_on_its_signal(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the simulator: the socket drops after the order went out, before its answer. The
    mirror writes nothing until the outcome is recorded (an event written before it is the
    outcome writer's to count); then the order's events, or reconciliation's lookup, find the
    order filled."""
    async with sim_engine(settings, {"uk_tv": ["UK1"]}) as (engine, sim, pool, rec, _subs):
        warm, at = await store_signal(pool, rec)
        await engine.on_signal(
            signal_id=warm, recorder_id=rec, signal=Signal(Action.CLOSE, ticker="MNQ1!"),
            received_at=at,
        )  # fmt: skip
        outcome_written = asyncio.Event()
        write_batch = mirror_store.write_batch

        async def after_the_outcome(ex: Executor, batch: mirror_store.Batch) -> set[Any]:
            await outcome_written.wait()
            return await write_batch(ex, batch)

        monkeypatch.setattr(mirror_store, "write_batch", after_the_outcome)
        sim.fault("drop", after=1, login="uk_tv")
        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(
            signal_id=sid, recorder_id=rec,
            signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)), received_at=at,
        )  # fmt: skip
        await record_outcome(pool, sid, out)
        (account,) = out.detail["accounts"].values()
        assert account["unknown"] == 1
        assert out.orders == 0
        assert await pool.fetchval("SELECT state FROM order_intents WHERE signal_id = $1", sid) == (
            "unknown"
        )
        outcome_written.set()

        (_aid, _env, broker), *_ = engine.brokers.sessions()
        assert isinstance(broker, TradovateBroker)
        await until(lambda: broker.session.ready)
        await engine.reconciler.resolve_intents(before=datetime.now(UTC))

        assert await pool.fetchval("SELECT state FROM order_intents WHERE signal_id = $1", sid) == (
            "filled"
        )
        assert list(sim.positions("UK1").values()) == [1]
        row = await pool.fetchrow("SELECT verdict, orders FROM signals WHERE id = $1", sid)
        assert row is not None
        assert (row["verdict"], row["orders"]) == ("accepted", 1)


# The outcome write and a mirror batch overlapping (a second review): each left the count to
# the other, and the signal said "orders 0" for a working order.


async def _wait_blocked(pool: asyncpg.Pool, pid: int) -> None:
    for _ in range(500):
        if await pool.fetchval(
            "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = $1", pid
        ):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("never waited on a lock")


async def test_outcome_written_while_the_mirror_moves_the_unknown_intent_counts_it(
    pool: asyncpg.Pool,
) -> None:
    """The order's event is being written by the mirror (its batch has fills: a transaction
    with insert_trades after the write) when the webhook writes the outcome saying the
    step's answer was lost. Once both committed, the order is working at the broker:
    the signal must count it."""
    u = await make_user(pool, "race")
    rec = await make_recorder(pool, u, "race-rec")
    sub = await _login(pool, u, "race-a", "demo", 901)
    sid, _ = await store_signal(pool, rec)  # 'received': being handled
    iid, cl = await _intent(pool, sid, sub, state="pending")

    mirror = await pool.acquire()
    tx = mirror.transaction()
    await tx.start()
    try:
        await mirror_store.write_batch(
            mirror,
            mirror_store.Batch(intents=[(cl, "working", 55, None)], orders=[_order(sub, 55, cl)]),
        )
        async with pool.acquire() as webhook:
            pid = webhook.get_server_pid()
            task = asyncio.create_task(
                signal_store.set_outcome(
                    webhook, sid, verdict="accepted", orders=0,
                    intents=[intent_store.Outcome(iid, "unknown", reason="no answer")],
                )
            )  # fmt: skip
            await _wait_blocked(pool, pid)
            await tx.commit()
            await task
    finally:
        await pool.release(mirror)

    assert await pool.fetchval("SELECT state FROM order_intents WHERE id = $1", iid) == "working"
    row = await pool.fetchrow("SELECT verdict, orders FROM signals WHERE id = $1", sid)
    assert row is not None
    assert (row["verdict"], row["orders"]) == ("accepted", 1), dict(row)


async def test_mirror_move_waiting_on_the_outcome_write_counts_the_order(
    pool: asyncpg.Pool,
) -> None:
    """The other order: the outcome (step 1 'unknown': its answer was lost) is being written
    when the mirror's batch with that order's event arrives and waits on the intent's lock.
    Once both committed the order is working at the broker: the signal must count it."""
    u = await make_user(pool, "race2")
    rec = await make_recorder(pool, u, "race2-rec")
    sub = await _login(pool, u, "race2-a", "demo", 902)
    sid, _ = await store_signal(pool, rec)
    iid, cl = await _intent(pool, sid, sub, state="pending")

    webhook = await pool.acquire()
    tx = webhook.transaction()
    await tx.start()
    try:
        await signal_store.set_outcome(
            webhook, sid, verdict="accepted", orders=0,
            intents=[intent_store.Outcome(iid, "unknown", reason="no answer")],
        )  # fmt: skip
        async with pool.acquire() as mirror:
            pid = mirror.get_server_pid()
            task = asyncio.create_task(
                mirror_store.write_batch(
                    mirror,
                    mirror_store.Batch(
                        intents=[(cl, "working", 56, None)], orders=[_order(sub, 56, cl)]
                    ),
                )
            )
            await _wait_blocked(pool, pid)
            await tx.commit()
            await task
    finally:
        await pool.release(webhook)

    assert await pool.fetchval("SELECT state FROM order_intents WHERE id = $1", iid) == "working"
    row = await pool.fetchrow("SELECT verdict, orders FROM signals WHERE id = $1", sid)
    assert row is not None
    assert (row["verdict"], row["orders"]) == ("accepted", 1), dict(row)
