"""What the owed-stop evidence (``owed_stops.evidence``) reads: it runs for every naked position
of a trader without a stop loss on every reconciliation pass, under the account's dispatcher
lock, so its cost must be this position's own history, whatever the other accounts (or this
account in other contracts) wrote since. Judged on the plan's row counts (EXPLAIN ANALYZE), not
on time: walked by primary key, it read every intent any account wrote since the position's
last one (300,000 rows, 150 ms)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from jtrades.db import Database
from jtrades.queries import q
from tests.integration.test_owed_stop_evidence import SYM, world

OTHER_SUBS, PER_SUB = 60, 500  # 30,000 intents of other accounts, newer than the position's
OTHER_CONTRACT_FILLS = 3000  # this sub-account's fills in another contract, newer too
BOUND = 100  # rows of order_intents or fills one evaluation may touch: the position's own


def _nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("Plans", ()):
        yield from _nodes(child)


def rows_read(plan: dict[str, Any]) -> dict[str, int]:
    """Rows each table's scans produced or threw away, over all their loops."""
    read: dict[str, int] = {}
    for n in _nodes(plan["Plan"]):
        rel = n.get("Relation Name")
        if rel is None:
            continue
        per_loop = (
            n.get("Actual Rows", 0)
            + n.get("Rows Removed by Filter", 0)
            + n.get("Rows Removed by Index Recheck", 0)
        )
        read[rel] = read.get(rel, 0) + int(per_loop * n.get("Actual Loops", 1))
    return read


def indexes(plan: dict[str, Any]) -> set[str]:
    return {n["Index Name"] for n in _nodes(plan["Plan"]) if "Index Name" in n}


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_the_evidence_reads_the_position_s_own_history_only(
    database: Database, mode: str
) -> None:
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    pool, me = db.pool, db.subs[0]
    aid = await pool.fetchval("SELECT account_id FROM sub_accounts WHERE id = $1", me)
    await pool.execute(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " SELECT $1, 800000 + g, 'O' || g FROM generate_series(1, $2) g",
        aid,
        OTHER_SUBS,
    )
    sig = await db.signal()
    await pool.execute(
        "INSERT INTO order_intents (signal_id, sub_account_id, cl_ord_id, step, kind, symbol,"
        " side, qty, request, state, expires_at)"
        " SELECT $1::bigint, s.id, 'jt-o' || g || '-' || s.id || '-1', 1, 'order', $2, 'Buy', 1,"
        " '{\"type\": \"order\"}'::jsonb, 'filled', now()"
        " FROM sub_accounts s, generate_series(1, $3) g WHERE s.id <> $4",
        sig,
        SYM,
        PER_SUB,
        me,
    )
    await pool.execute(
        "INSERT INTO fills (sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty,"
        " price, filled_at) SELECT $1, 500000 + g, 500000 + g, 'ESZ6', 'Buy', 1, 6000, now()"
        " FROM generate_series(1, $2) g",
        me,
        OTHER_CONTRACT_FILLS,
    )
    await pool.execute("ANALYZE order_intents, fills, orders")
    assert await db.owed() is not None  # the full path: a plan with a cancel and a stop owed

    async with pool.acquire() as conn:
        await conn.execute(f"SET plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE owed_evidence(bigint[], text) AS {q('owed_stops.evidence')}")
        try:
            out = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE owed_evidence('{{{me}}}', '{SYM}')"
            )
        finally:
            await conn.execute("DEALLOCATE owed_evidence")
            await conn.execute("RESET plan_cache_mode")
    (plan,) = json.loads(out) if isinstance(out, str) else out
    read = rows_read(plan)
    assert read.get("order_intents", 0) < BOUND, read
    assert read.get("fills", 0) < BOUND, read
    assert "order_intents_position_idx" in indexes(plan), indexes(plan)
