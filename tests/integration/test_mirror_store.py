"""The mirror's one-statement batch and the trades it closes, at the store: every field of every
row kind lands in its column as handed over (the rows travel as JSON; decimals must stay exact,
times keep their microseconds, NULLs stay NULL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from jtrades.store import mirror as mirror_store
from jtrades.store import signals as signal_store
from tests.integration.test_claim import delivery, intent
from tests.integration.test_engine import buy, make_paper_account, make_recorder, make_user

AT = datetime(2026, 11, 27, 14, 30, 0, 123456, tzinfo=UTC)


async def test_a_batch_and_its_trades_store_every_field_exactly(pool: asyncpg.Pool) -> None:
    u = await make_user(pool, "mirror")
    rec = await make_recorder(pool, u, "rec")
    sub, other = await make_paper_account(pool, u, "mirror-paper", subs=2)
    sid = await signal_store.SignalIds(pool, block=1).take()
    claim = await signal_store.claim_delivery(
        pool, delivery(sid, rec, buy(), "mirror"), [intent(sid, sub, 0)]
    )
    cl = f"jt-{sid}-{sub}-0"
    avg = Decimal("21500.0833333333")
    batch = mirror_store.Batch(
        intents=[(cl, "sent", 7, None), (cl, "working", 7, None)],  # the last of a key wins
        orders=[
            (sub, 7, cl, "MNQZ6", "Buy", 3, "Limit", Decimal("21500.25"), None, "Working",
             None, None),
            (other, 8, None, "MNQZ6", "Sell", 1, "Stop", None, Decimal("21490.5"), "Working",
             7, 2**40),
        ],
        positions=[(sub, "MNQZ6", 3, avg), (other, "MNQZ6", 0, None)],
        fills=[(sub, 70, 7, "MNQZ6", "Buy", 3, Decimal("21500.25"), AT)],
    )  # fmt: skip

    async with pool.acquire() as conn, conn.transaction():
        new = await mirror_store.write_batch(conn, batch)
        await mirror_store.insert_trades(
            conn, [(sub, "MNQZ6", "long", 3, avg, Decimal("21510.75"), Decimal("-0.5"), AT, AT)]
        )
    again = await mirror_store.write_batch(pool, batch)  # a replayed fill is not new

    assert new == {(sub, 70)}
    assert again == set()
    assert tuple(
        await pool.fetchrow(
            "SELECT state, broker_order_id FROM order_intents WHERE id = $1", claim.intent_ids[0]
        )
    ) == ("working", 7)
    orders = await pool.fetch(
        "SELECT sub_account_id, broker_order_id, intent_id, cl_ord_id, symbol, side, qty,"
        " order_type, price, stop_price, status, parent_id, oco_id FROM orders ORDER BY id"
    )
    assert [tuple(r) for r in orders] == [
        (sub, 7, claim.intent_ids[0], cl, "MNQZ6", "Buy", 3, "Limit", Decimal("21500.25"), None,
         "Working", None, None),
        (other, 8, None, None, "MNQZ6", "Sell", 1, "Stop", None, Decimal("21490.5"), "Working",
         7, 2**40),
    ]  # fmt: skip
    positions = await pool.fetch(
        "SELECT sub_account_id, symbol, net_pos, net_price FROM positions ORDER BY sub_account_id"
    )
    assert [tuple(r) for r in positions] == [(sub, "MNQZ6", 3, avg), (other, "MNQZ6", 0, None)]
    fills = await pool.fetch(
        "SELECT sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty, price,"
        " filled_at FROM fills"
    )
    assert [tuple(r) for r in fills] == [(sub, 70, 7, "MNQZ6", "Buy", 3, Decimal("21500.25"), AT)]
    trades = await pool.fetch(
        "SELECT sub_account_id, symbol, side, qty, entry_price, exit_price, pnl, opened_at,"
        " closed_at FROM trades"
    )
    assert [tuple(r) for r in trades] == [
        (sub, "MNQZ6", "long", 3, avg, Decimal("21510.75"), Decimal("-0.5"), AT, AT)
    ]


async def test_a_replayed_row_keeps_the_time_it_last_changed(pool: asyncpg.Pool) -> None:
    """A restart or a reconnect writes every order and position again: "updated" became the
    restart's time on all of them, and the newest-first listing lost its order."""
    u = await make_user(pool, "replay")
    (sub,) = await make_paper_account(pool, u, "replay-paper")

    def batch(status: str, net: int) -> mirror_store.Batch:
        return mirror_store.Batch(
            intents=[],
            orders=[(sub, 9, None, "MNQZ6", "Sell", 1, "Stop", None, Decimal(21490), status,
                     None, None)],
            positions=[(sub, "MNQZ6", net, Decimal(21500))],
            fills=[],
        )  # fmt: skip

    async def times() -> tuple[datetime, datetime]:
        return (
            await pool.fetchval("SELECT updated_at FROM orders WHERE broker_order_id = 9"),
            await pool.fetchval("SELECT updated_at FROM positions WHERE sub_account_id = $1", sub),
        )

    await mirror_store.write_batch(pool, batch("Working", 1))
    first = await times()
    await mirror_store.write_batch(pool, batch("Working", 1))  # the same, replayed
    assert await times() == first
    await mirror_store.write_batch(pool, batch("Canceled", 0))  # changed: now
    order_at, position_at = await times()
    assert order_at > first[0]
    assert position_at > first[1]


async def test_a_batch_commits_durably(pool: asyncpg.Pool) -> None:
    """The batch's commit waits for its WAL flush. It did not (``synchronous_commit`` off: "what
    a Postgres crash could lose is restored at the next reconnect"), and a crash lost committed
    round trips for good: the reconnect's snapshot stored the fill again but measured it against
    a position in memory that already held it, so no trade was booked (``trades list`` and, after
    a restart, the daily loss missed it; reviewed 2026-12-01 with a private server crashed by
    ``pg_ctl -m immediate``). The setting is the transaction's own: read back inside it."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SET LOCAL synchronous_commit = 'off'")  # a setting it must override
        await mirror_store.write_batch(conn, mirror_store.Batch())
        assert await conn.fetchval("SHOW synchronous_commit") == "on"
