"""A plan that did less than the alert asked says so where the user looks (DESIGN §5.9).

README: "without it [market_position_size], an alert that says it reverses only closes (the
signal's row says why)". The why ("cannot plan the reversal ... add market_position_size")
was only in the row's `detail` column: the webhook's answer, the log line and `jtrades
signals list` (table and --json) said `accepted` with no reason, so the follower sat flat
while the strategy was short and nothing visible said why. An accepted signal an account
followed only in part (closed only, or not traded at all for a limit of its own) now carries
that on its row's reason.

Real Postgres, the engine and the paper broker; the webhook through the real HTTP server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.parsing import parse_payload
from tests.cli import ainvoke
from tests.integration.test_engine import (
    buy,
    follower,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    sell,
    send,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_server import serving

BASE = {"ticker": "MNQ1!", "price": 21500}
LONG = {"action": "buy", "quantity": 1, "market_position": "long", "prev_market_position": "flat"}
# TradingView's reversal "long 1 -> short 1": order size 2, no market_position_size
REVERSE = {"action": "sell", "quantity": 2, "market_position": "short",
           "prev_market_position": "long"}  # fmt: skip


def alert(**fields: Any) -> Any:
    return parse_payload(json.dumps(fields).encode(), "application/json")


async def test_a_reversal_that_only_closes_says_why_where_the_user_can_see_it(
    database: Database, engine_factory: Any
) -> None:
    """The reviewer's case (README walk-through, market_position_size)."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rev", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, alert(**LONG, **BASE))
    assert await net_pos(engine, pool, sub) == 1
    out = await send(engine, pool, rec, alert(**REVERSE, **BASE))
    assert await net_pos(engine, pool, sub) == 0  # closed only, as documented
    hidden = json.dumps(out.detail)
    assert "market_position_size" in hidden  # the why exists ...
    row = await pool.fetchrow(
        "SELECT verdict, filter, reason FROM signals WHERE id = (SELECT max(id) FROM signals)"
    )
    # ... and is in what `jtrades signals list` shows (verdict, filter, reason)
    assert row["reason"] is not None, dict(row)
    assert "market_position_size" in row["reason"], dict(row)


async def test_the_reason_says_closed_only_and_the_signal_stays_accepted(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, _sub, _ = await follower(pool, "revc", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, alert(**LONG, **BASE))

    out = await send(engine, pool, rec, alert(**REVERSE, **BASE))

    assert (out.verdict, out.filter, out.orders) == ("accepted", None, 1), out
    assert (out.reason or "").startswith("closed only: cannot plan the reversal"), out.reason


async def test_a_reversal_the_followers_direction_forbids_says_it_closed_only(
    database: Database, engine_factory: Any
) -> None:
    """Any plan that did less than asked, not only a missing size: a long-only follower of a
    strategy that reverses is closed, and the row says why it is not short."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "revd", {"size": 1}, {"direction": "long"})
    engine = await engine_factory()
    await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, sub) == 1

    out = await send(engine, pool, rec, sell())

    assert await net_pos(engine, pool, sub) == 0
    assert out.verdict == "accepted", out
    assert out.reason == "closed only: short entries are off (--direction long)", out.reason


async def test_a_full_reversal_has_no_reason(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "revok", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, buy())

    out = await send(engine, pool, rec, sell())

    assert await net_pos(engine, pool, sub) == -1
    assert (out.verdict, out.filter, out.reason) == ("accepted", None, None), out


async def test_with_two_accounts_the_reason_names_the_one_that_closed_only(
    database: Database, engine_factory: Any
) -> None:
    """One account of the trader reversed, the other, on a long-only follower, only closed."""
    pool = database.pool
    u = await make_user(pool, "revtwo")
    rec = await make_recorder(pool, u, "rec", size=1)
    (both,) = await make_paper_account(pool, u, "revtwo-both")
    (longs,) = await make_paper_account(pool, u, "revtwo-long")
    await make_trader(pool, u, rec, [(both, 1)])
    await make_trader(pool, u, rec, [(longs, 1)], direction="long")
    engine = await engine_factory()
    await send(engine, pool, rec, buy())

    out = await send(engine, pool, rec, sell())

    assert (await net_pos(engine, pool, both), await net_pos(engine, pool, longs)) == (-1, 0)
    assert out.verdict == "accepted", out
    assert out.reason == ("revtwo-long-1: closed only: short entries are off (--direction long)"), (
        out.reason
    )


async def test_the_webhook_answer_and_signals_list_say_why(
    settings: Settings, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    async with serving(settings, pool) as stack:
        uid = await pool.fetchval("SELECT user_id FROM recorders WHERE id = $1", stack.recorder_id)
        (sub,) = await make_paper_account(pool, uid, "revweb-paper")
        await make_trader(pool, uid, stack.recorder_id, [(sub, 1)])
        await stack.hooks.engine.config.refresh()
        status, body = await stack.post(json.dumps({**LONG, **BASE, "id": "r1"}).encode())
        assert (status, body["orders"]) == (200, 1), body

        status, body = await stack.post(json.dumps({**REVERSE, **BASE, "id": "r2"}).encode())

        assert status == 200, body
        assert body["verdict"] == "accepted", body
        assert "market_position_size" in body.get("reason", ""), body

    r = await ainvoke(["signals", "list", "--limit", "1", "--json"], db_url=db_url,
                      data_dir=data_dir)  # fmt: skip
    assert r.exit_code == 0, r.stderr
    (row,) = r.json()
    assert row["verdict"] == "accepted"
    assert "market_position_size" in row["reason"], row
    r = await ainvoke(["signals", "list", "--limit", "1"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    # the table shows the fix, not a reason cut off before it
    assert "market_position_size" in " ".join(r.stdout.split()), r.stdout
