"""A daemon killed after a signal's claim committed and before its orders left: at the restart
the entry that never traded gives back what it counted (--max-signals, --cooldown, every-Nth),
as a run that lives gives it back (``verdicts.Judged.settle``); one whose orders reached the
broker, or whose outcome is still unknown, keeps counting (fail closed). Real Postgres, the
engine and the paper broker; the crash is left as the dying process leaves it (the claim)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from jtrades.db import Database
from jtrades.store import intents as intent_store
from jtrades.store import signals as signal_store
from jtrades.store.intents import NewIntent
from jtrades.store.signals import Delivery, SignalIds
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    send,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)

# what the daemon writes on the intent of a plan's entry step (``account_plans._plan_one``)
ENTRY = {"entry": True}


async def _claim_then_die(
    pool: asyncpg.Pool, rec: int, key: str, entries: list[int], legs: list[tuple[int, int]]
) -> tuple[int, dict[int, int]]:
    """What a process killed right after its claim leaves: the signal 'received', the counts
    its filters moved on its ``detail`` (the recorder's entry, the traders' ``entries``), and
    one pending intent per (trader, sub-account) of ``legs``. Returns the signal id and each
    trader's intent id."""
    sid = await SignalIds(pool, block=1).take()
    now = datetime.now(UTC)
    detail = {
        "entry": True,
        "nth_seen": True,
        "traders": {},
        "trader_entries": list(entries),
        "trader_seen": [],
    }
    d = Delivery(sid, rec, f"id:{key}", timedelta(hours=24), now, None, "application/json",
                 b'{"action":"buy"}', buy(), detail)  # fmt: skip
    expires = now + timedelta(seconds=30)
    intents = [
        NewIntent(sid, tid, sub, f"jt-{sid}-{sub}-1", 1, "order", "MNQZ6", "Buy", 1, ENTRY, expires)
        for tid, sub in legs
    ]
    claim = await signal_store.claim_delivery(pool, d, intents)
    assert claim.duplicate_of is None
    rows = await pool.fetch("SELECT id, trader_id FROM order_intents WHERE signal_id = $1", sid)
    return sid, {int(r["trader_id"]): int(r["id"]) for r in rows}


async def one_entry_a_session(pool: asyncpg.Pool, name: str) -> tuple[int, int, int]:
    """A recorder and its one trader on one paper sub-account, each allowing one entry per
    session and a cooldown of an hour: a count left standing refuses the next entry.
    (recorder, sub-account, trader)"""
    u = await make_user(pool, name)
    rec = await make_recorder(
        pool, u, f"{name}-rec", max_signals=1, cooldown_s=3600, same_direction="add"
    )
    (sub,) = await make_paper_account(pool, u, f"{name}-paper")
    trader = await make_trader(pool, u, rec, [(sub, 1)], max_signals=1, cooldown_s=3600)
    return rec, sub, trader


async def test_an_entry_that_never_left_before_a_crash_uses_no_count_after_the_restart(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, trader = await one_entry_a_session(pool, "kc")
    sid, _ = await _claim_then_die(pool, rec, "kc-1", [trader], [(trader, sub)])
    # --- kill -9 here: nothing was sent ---

    await signal_store.settle_interrupted(pool, datetime.now(UTC))  # Daemon.run does this
    engine = await engine_factory()  # its startup reconciliation: not at the broker

    row = await pool.fetchrow("SELECT state, reason FROM order_intents")
    assert row["state"] == "expired", dict(row)
    assert "not sent" in row["reason"]
    sig = await pool.fetchrow("SELECT verdict, orders, detail FROM signals WHERE id=$1", sid)
    assert (sig["verdict"], sig["orders"]) == ("accepted", 0)
    # the row says what a restart counts, as a run that lived writes it (Judged.settle)
    assert sig["detail"]["entry"] is False
    assert sig["detail"]["nth_seen"] is False
    assert sig["detail"]["trader_entries"] == []

    # nothing was ever traded: neither max signals nor the cooldowns hold the next real alert
    out = await send(engine, pool, rec, buy())
    assert (out.verdict, out.filter, out.orders) == ("accepted", None, 1), out


async def test_a_restart_gives_back_per_trader_and_keeps_what_reached_or_is_unresolved(
    database: Database, engine_factory: Any
) -> None:
    """Trader A's order never left: its count goes back. Trader B's broker had answered with
    an order id before the crash: it reached the broker, its count stays. Trader C's login
    has no session, so its intent cannot be looked up: unresolved, it keeps counting. The
    recorder's entry stays with them."""
    pool = database.pool
    u = await make_user(pool, "kt")
    rec = await make_recorder(pool, u, "kt-rec", max_signals=2, same_direction="add")
    (sub_a,) = await make_paper_account(pool, u, "kt-a")
    (sub_b,) = await make_paper_account(pool, u, "kt-b")
    aid_c = await pool.fetchval(  # a login whose session cannot open: no password stored
        "INSERT INTO accounts (user_id, label, env, username)"
        " VALUES ($1, 'kt-c', 'demo', 'kt_tv') RETURNING id",
        u,
    )
    sub_c = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " VALUES ($1, 77, 'kt-c-1') RETURNING id",
        aid_c,
    )
    a = await make_trader(pool, u, rec, [(sub_a, 1)], max_signals=1)
    b = await make_trader(pool, u, rec, [(sub_b, 1)], max_signals=1)
    c = await make_trader(pool, u, rec, [(sub_c, 1)], max_signals=1)
    sid, intent_of = await _claim_then_die(
        pool, rec, "kt-1", [a, b, c], [(a, sub_a), (b, sub_b), (c, sub_c)]
    )
    await intent_store.mark_sent(pool, intent_of[b], "sent", broker_order_id=4242)
    # --- kill -9 here ---

    await signal_store.settle_interrupted(pool, datetime.now(UTC))
    engine = await engine_factory()

    states = {
        int(r["trader_id"]): r["state"]
        for r in await pool.fetch("SELECT trader_id, state FROM order_intents")
    }
    assert states == {a: "expired", b: "done", c: "pending"}, states
    detail = await pool.fetchval("SELECT detail FROM signals WHERE id=$1", sid)
    assert detail["entry"] is True
    assert detail["nth_seen"] is True
    assert detail["trader_entries"] == [b, c]

    out = await send(engine, pool, rec, buy())
    assert out.verdict == "accepted", out
    traders = {int(k): v for k, v in out.detail["traders"].items()}
    assert traders[b].get("filter") == "max_signals", traders
    assert traders[c].get("filter") == "max_signals", traders
    assert "filter" not in traders.get(a, {}), traders
    assert await pool.fetchval(
        "SELECT count(*) FROM order_intents WHERE signal_id <> $1 AND trader_id = $2", sid, a
    ) == 1  # fmt: skip


async def test_an_entry_the_broker_refused_before_a_crash_uses_no_count_after_the_restart(
    database: Database, engine_factory: Any
) -> None:
    """The broker refused the order (its answer stored) and the daemon died before the
    signal's outcome: nothing changed at the broker, so the restart gives the counts back, as
    a run that lives does (``verdicts._reached``)."""
    pool = database.pool
    u = await make_user(pool, "kr")
    rec = await make_recorder(pool, u, "kr-rec", max_signals=1, same_direction="add")
    (sub,) = await make_paper_account(pool, u, "kr-paper")
    trader = await make_trader(pool, u, rec, [(sub, 1)], max_signals=1)
    sid, intent_of = await _claim_then_die(pool, rec, "kr-1", [trader], [(trader, sub)])
    await intent_store.mark_sent(pool, intent_of[trader], "rejected", reason="Insufficient margin")
    # --- kill -9 here ---

    await signal_store.settle_interrupted(pool, datetime.now(UTC))
    engine = await engine_factory()

    detail = await pool.fetchval("SELECT detail FROM signals WHERE id=$1", sid)
    assert detail["entry"] is False
    assert detail["trader_entries"] == []
    out = await send(engine, pool, rec, buy())
    assert (out.verdict, out.filter, out.orders) == ("accepted", None, 1), out
