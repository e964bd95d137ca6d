"""The one statement before any order leaves: a delivery's row, its dedup decision and its
order intents (money rules 1 and 3). The engine's use of it is in test_engine.py."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from jtrades.engine.parsing import parse_payload
from jtrades.engine.signal import Action, Signal
from jtrades.store import signals as signal_store
from jtrades.store.intents import NewIntent
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_user,
)


def delivery(signal_id: int, recorder_id: int, signal: Signal, key: str) -> signal_store.Delivery:
    return signal_store.Delivery(
        signal_id=signal_id,
        recorder_id=recorder_id,
        idem_key=key,
        window=timedelta(hours=24),
        received_at=datetime.now(UTC),
        remote_addr="127.0.0.1",
        content_type="application/json",
        raw_body=b'{"action": "buy"}',
        signal=signal,
    )


def intent(signal_id: int, sub: int, step: int) -> NewIntent:
    return NewIntent(
        signal_id=signal_id,
        trader_id=None,
        sub_account_id=sub,
        cl_ord_id=f"jt-{signal_id}-{sub}-{step}",
        step=step,
        kind="order",
        symbol="MNQZ6",
        side="Buy",
        qty=1,
        request={"type": "order"},
        expires_at=datetime.now(UTC) + timedelta(seconds=30),
    )


async def test_a_new_delivery_is_stored_with_its_intents_and_a_duplicate_writes_none(
    pool: asyncpg.Pool,
) -> None:
    u = await make_user(pool, "cas")
    rec = await make_recorder(pool, u, "rec")
    subs = await make_paper_account(pool, u, "cas-paper", subs=2)
    ids = signal_store.SignalIds(pool, block=4)
    first_id, again_id = await ids.take(), await ids.take()

    first = await signal_store.claim_delivery(
        pool,
        delivery(first_id, rec, buy(), "k"),
        [intent(first_id, subs[0], 0), intent(first_id, subs[1], 0), intent(first_id, subs[1], 1)],
    )
    again = await signal_store.claim_delivery(
        pool, delivery(again_id, rec, buy(), "k"), [intent(again_id, subs[0], 0)]
    )

    assert (first.signal_id, first.duplicate_of) == (first_id, None)
    assert len(first.intent_ids) == 3
    assert None not in first.intent_ids
    rows = await pool.fetch("SELECT id, signal_id, cl_ord_id FROM order_intents ORDER BY id")
    assert [r["id"] for r in rows] == list(first.intent_ids)  # in the order handed over
    assert {r["signal_id"] for r in rows} == {first_id}
    assert (again.signal_id, again.duplicate_of, again.intent_ids) == (again_id, first_id, ())
    verdicts = await pool.fetch("SELECT id, verdict, duplicate_of FROM signals ORDER BY id")
    assert [tuple(r) for r in verdicts] == [
        (first_id, "received", None),
        (again_id, "duplicate", first_id),
    ]


async def test_an_intent_whose_cl_ord_id_exists_is_not_written_again(pool: asyncpg.Pool) -> None:
    u = await make_user(pool, "cid")
    rec = await make_recorder(pool, u, "rec")
    (sub,) = await make_paper_account(pool, u, "cid-paper")
    ids = signal_store.SignalIds(pool)
    a, b = await ids.take(), await ids.take()
    await signal_store.claim_delivery(pool, delivery(a, rec, buy(), "a"), [intent(a, sub, 0)])
    clash = intent(a, sub, 0)  # the same clOrdId under a new delivery
    claim = await signal_store.claim_delivery(
        pool, delivery(b, rec, buy(), "b"), [clash, intent(b, sub, 0)]
    )
    assert claim.intent_ids[0] is None
    assert claim.intent_ids[1] is not None
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 2


async def test_signal_ids_are_distinct_under_concurrency_and_refill(pool: asyncpg.Pool) -> None:
    ids = signal_store.SignalIds(pool, block=8)
    taken = await asyncio.gather(*(ids.take() for _ in range(100)))
    await ids.close()
    assert len(set(taken)) == 100
    nextval = await pool.fetchval("SELECT nextval(pg_get_serial_sequence('signals', 'id'))")
    assert nextval > max(taken)  # drawn from the table's own sequence: no later id repeats


async def test_every_intent_column_is_stored_as_handed_over(pool: asyncpg.Pool) -> None:
    """The intents travel as one JSON array: nothing may be lost or reinterpreted on the way
    (microseconds, a naive time read as UTC like the driver does, NULLs, decimals in the
    request, a clOrdId with JSON's special characters)."""
    u = await make_user(pool, "cols")
    rec = await make_recorder(pool, u, "rec")
    subs = await make_paper_account(pool, u, "cols-paper", subs=2)
    tid = await pool.fetchval(
        "INSERT INTO traders (user_id, recorder_id) VALUES ($1, $2) RETURNING id", u, rec
    )
    sid = await signal_store.SignalIds(pool, block=1).take()
    aware = datetime(2026, 11, 29, 7, 30, 22, 123456, tzinfo=UTC)
    naive = datetime(2026, 11, 29, 8, 0, 0, 654321)
    request = {"type": "oco", "note": 'tp "1"\\', "request": {"price": Decimal("21500.25")}}
    handed = [
        NewIntent(sid, tid, subs[0], f"jt-{sid}-{subs[0]}-0", 0, "order", "MNQZ6", "Sell", 3,
                  request, aware),
        NewIntent(sid, None, subs[1], f"jt-{sid}-{subs[1]}-2", 2, "cancel", "MNQZ6", None, None,
                  {"type": "cancel", "cancel_order_id": 2**40}, naive),
    ]  # fmt: skip

    async with pool.acquire() as conn:
        # a session whose zone is not UTC: a naive time must still be read as UTC
        await conn.execute("SET TimeZone = 'America/Chicago'")
        try:
            claim = await signal_store.claim_delivery(
                conn, delivery(sid, rec, buy(), "cols"), handed
            )
        finally:
            await conn.execute("RESET TimeZone")

    rows = await pool.fetch(
        "SELECT signal_id, trader_id, sub_account_id, cl_ord_id, step, kind, symbol, side, qty,"
        " request, expires_at, state FROM order_intents WHERE id = ANY($1) ORDER BY id",
        list(claim.intent_ids),
    )
    assert [tuple(r) for r in rows] == [
        (sid, tid, subs[0], f"jt-{sid}-{subs[0]}-0", 0, "order", "MNQZ6", "Sell", 3,
         {"type": "oco", "note": 'tp "1"\\', "request": {"price": "21500.25"}}, aware, "pending"),
        (sid, None, subs[1], f"jt-{sid}-{subs[1]}-2", 2, "cancel", "MNQZ6", None, None,
         {"type": "cancel", "cancel_order_id": 2**40}, naive.replace(tzinfo=UTC), "pending"),
    ]  # fmt: skip


async def test_nul_in_a_signal_or_its_outcome_is_stored_as_the_replacement_character(
    pool: asyncpg.Pool,
) -> None:
    """Postgres refuses NUL in text and in jsonb; an alert may carry one anywhere (JSON allows
    ``\\u0000``) and must still be stored, with its verdict, not fail with a 500."""
    u = await make_user(pool, "nul")
    rec = await make_recorder(pool, u, "rec")
    sid = await signal_store.SignalIds(pool, block=1).take()
    signal = Signal(Action.BUY, ticker="MNQ\x001!", extra={"no\x00te": ["a\x00", "\\u0000"]})

    await signal_store.claim_delivery(pool, delivery(sid, rec, signal, "nul"))
    await signal_store.set_outcome(
        pool, sid, verdict="rejected", filter="f\x00", reason="r\x00", detail={"why": "x\x00"}
    )

    row = await pool.fetchrow(
        "SELECT symbol, parsed, filter, reason, detail FROM signals WHERE id = $1", sid
    )
    assert row["symbol"] == "MNQ\ufffd1!"
    assert row["parsed"]["extra"] == {"no\ufffdte": ["a\ufffd", "\\u0000"]}
    assert (row["filter"], row["reason"]) == ("f\ufffd", "r\ufffd")
    assert row["detail"] == {"why": "x\ufffd"}


async def test_the_parsed_signal_is_stored_whole_with_its_exits_and_without_its_token(
    pool: asyncpg.Pool,
) -> None:
    u = await make_user(pool, "parsed")
    rec = await make_recorder(pool, u, "rec")
    sid = await signal_store.SignalIds(pool, block=1).take()
    signal = parse_payload(
        b'{"ticker": "MNQ1!", "action": "buy", "sentiment": "long", "quantity": "2",'
        b' "price": "21500.25", "takeProfit": {"limitPrice": 21600}, "token": "secret-tok",'
        b' "stopLoss": {"type": "trailing_stop", "trailAmount": 10}, "foo": {"bar": [1, 2.5]}}',
        "application/json",
    )

    await signal_store.claim_delivery(pool, delivery(sid, rec, signal, "parsed"))

    parsed = await pool.fetchval("SELECT parsed FROM signals WHERE id = $1", sid)
    exit_fields = {"trailing": False, "trail_trigger": None, "trail_freq": None}
    assert parsed == {
        "action": "buy",
        "ticker": "MNQ1!",
        "quantity": 2,
        "price": "21500.25",
        "market_position": "long",
        "take_profit": [{"value": "21600", "units": "price"} | exit_fields],
        "stop_loss": {"value": "10", "units": "points"} | exit_fields | {"trailing": True},
        "source": "traderspost",
        "extra": {"foo": {"bar": [1, 2.5]}},
    }


async def test_an_outcome_merges_into_the_detail_the_claim_stored(pool: asyncpg.Pool) -> None:
    """The claim stores what the filters counted; an outcome written on an error path carries
    only the error and replaced it, so a restart forgot the counts of a signal whose orders
    may have left."""
    u = await make_user(pool, "mrg")
    rec = await make_recorder(pool, u, "rec")
    sid = await signal_store.SignalIds(pool, block=1).take()
    d = dataclasses.replace(
        delivery(sid, rec, Signal(Action.BUY, ticker="MNQZ6"), "merge"),
        detail={"entry": True, "nth_seen": True, "trader_entries": [7]},
    )
    await signal_store.claim_delivery(pool, d)
    await signal_store.set_outcome(
        pool, sid, verdict="accepted", reason="internal error", detail={"error": "KeyError"}
    )
    row = await pool.fetchval("SELECT detail FROM signals WHERE id = $1", sid)
    assert row == {"entry": True, "nth_seen": True, "trader_entries": [7], "error": "KeyError"}
    await signal_store.set_outcome(pool, sid, verdict="accepted", detail=None)
    assert await pool.fetchval("SELECT detail FROM signals WHERE id = $1", sid) == row


async def test_the_dedup_window_runs_between_receptions_not_claims(pool: asyncpg.Pool) -> None:
    """A re-send received 5 s after the first is its duplicate however late it is claimed (it
    waits behind the first's claim, whose fate may take a while: ``claim_doubt``): claimed
    70 s on, a window measured from the claim took it for a new alert and traded it again.
    Two deliveries received 70 s apart are two alerts, however close their claims."""
    u = await make_user(pool, "win")
    rec = await make_recorder(pool, u, "rec")
    ids = signal_store.SignalIds(pool, block=8)
    now = datetime.now(UTC)

    async def claim(key: str, received_s_ago: float) -> signal_store.Claim:
        d = delivery(await ids.take(), rec, buy(), key)
        d = dataclasses.replace(d, window=timedelta(seconds=60))
        d = dataclasses.replace(d, received_at=now - timedelta(seconds=received_s_ago))
        return await signal_store.claim_delivery(pool, d)

    first = await claim("late", 75)
    resent = await claim("late", 70)  # received 5 s after it, claimed now
    assert resent.duplicate_of == first.signal_id

    await claim("apart", 70)
    later = await claim("apart", 0)  # received 70 s after it
    assert later.duplicate_of is None
