"""A switched-off trader is inert (``fanout.inert``): it trades nothing, and another user's
alerts are no market of its user's paper login (``test_disabled_follower_inert``). But a user
who switches off the trader of *her own* recorder while in a position keeps that position, and
its stop, working at the paper broker; her own strategy's alerts are the only market that
paper login has. Skipping the inert trader's links altogether, the stop no longer triggered
however far the price ran through it, where a stop at a real broker fills. Real Postgres, the
engine and the paper broker."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.db import Database
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    working,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


async def test_a_paper_stop_of_a_switched_off_trader_still_triggers_on_its_own_alerts(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    bob = await make_user(pool, "bob")
    rec = await make_recorder(pool, bob, "brec", size=1, sl=Decimal(40))  # 10 points
    (sub,) = await make_paper_account(pool, bob, "bob-paper")
    tid = await make_trader(pool, bob, rec, [(sub, 1)])
    engine = await engine_factory()

    await send(engine, pool, rec, buy("21500"))
    assert await net_pos(engine, pool, sub) == 1
    assert await working(engine, pool, sub)  # the stop at 21490

    await pool.execute("UPDATE traders SET enabled = false WHERE id = $1", tid)
    await engine.config.refresh()

    # bob's strategy goes on alerting; the market falls 500 points through his stop
    out = await send(engine, pool, rec, buy("21000"))
    assert await net_pos(engine, pool, sub) == 0, (
        "the working stop at 21490 did not trigger with the market at 21000:"
        f" {out.verdict} {out.filter}"
    )
    assert (out.verdict, out.filter) == ("rejected", "trader_disabled"), out  # still inert


async def test_the_own_alert_reaches_only_the_owners_paper_login(
    database: Database, engine_factory: Any
) -> None:
    """Bob's public recorder, followed by alice through a trader she switched off: bob's alert
    notes the price on bob's paper login (his own trader, switched off too), not on alice's,
    whose stop stays working."""
    pool = database.pool
    bob = await make_user(pool, "bob")
    rec = await make_recorder(pool, bob, "brec", size=1, sl=Decimal(40), is_private=False)
    (b_sub,) = await make_paper_account(pool, bob, "bob-paper")
    b_tid = await make_trader(pool, bob, rec, [(b_sub, 1)])
    alice = await make_user(pool, "alice")
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    a_tid = await make_trader(pool, alice, rec, [(a_sub, 1)])
    engine = await engine_factory()

    await send(engine, pool, rec, buy("21500"))
    assert (await net_pos(engine, pool, b_sub), await net_pos(engine, pool, a_sub)) == (1, 1)

    await pool.execute("UPDATE traders SET enabled = false WHERE id = ANY($1)", [b_tid, a_tid])
    await engine.config.refresh()

    await send(engine, pool, rec, buy("21000"))
    assert await net_pos(engine, pool, b_sub) == 0  # bob's own market: his stop filled
    assert await net_pos(engine, pool, a_sub) == 1  # not alice's
    assert await working(engine, pool, a_sub)


async def test_recording_off_still_moves_its_followers_paper_market(
    database: Database, engine_factory: Any
) -> None:
    """`recorder disable-recording` refuses every alert before any trader is walked, yet the
    strategy's prices are still the only market its followers' paper logins have: a stop the
    recorder's entry placed was never triggered however far the price ran through it. Noted
    for bob's own trader and alice's active one; not for carol's switched-off trader (inert:
    another user's alerts are no market of hers)."""
    pool = database.pool
    bob = await make_user(pool, "bob")
    rec = await make_recorder(pool, bob, "brec", size=1, sl=Decimal(40), is_private=False)
    subs = {}
    tids = {}
    for name, user in (("bob", bob), ("alice", None), ("carol", None)):
        uid = user or await make_user(pool, name)
        (subs[name],) = await make_paper_account(pool, uid, f"{name}-paper")
        tids[name] = await make_trader(pool, uid, rec, [(subs[name], 1)])
    engine = await engine_factory()
    await send(engine, pool, rec, buy("21500"))
    assert [await net_pos(engine, pool, s) for s in subs.values()] == [1, 1, 1]

    await pool.execute("UPDATE traders SET enabled = false WHERE id = $1", tids["carol"])
    await pool.execute("UPDATE recorders SET recording_enabled = false WHERE id = $1", rec)
    await engine.config.refresh()

    out = await send(engine, pool, rec, buy("21000"))  # 490 points through the stops
    assert (out.verdict, out.filter) == ("rejected", "recording_disabled"), out
    held = {name: await net_pos(engine, pool, s) for name, s in subs.items()}
    assert held == {"bob": 0, "alice": 0, "carol": 1}


async def test_a_disabled_owners_alert_moves_no_paper_market_with_recording_off(
    database: Database, engine_factory: Any
) -> None:
    """A disabled user's recorder reaches nobody: with recording on its alerts are refused
    ``owner_not_approved`` before any trader is walked; with recording off too, the price it
    posted still filled a follower's paper stop (``market_only``)."""
    pool = database.pool
    bob = await make_user(pool, "bob")
    rec = await make_recorder(pool, bob, "brec", size=1, sl=Decimal(40), is_private=False)
    alice = await make_user(pool, "alice")
    (sub,) = await make_paper_account(pool, alice, "alice-paper")
    await make_trader(pool, alice, rec, [(sub, 1)])
    engine = await engine_factory()
    await send(engine, pool, rec, buy("21500"))
    assert await net_pos(engine, pool, sub) == 1  # the stop at 21490
    await pool.execute("UPDATE users SET status = 'disabled' WHERE id = $1", bob)
    await pool.execute("UPDATE recorders SET recording_enabled = false WHERE id = $1", rec)
    await engine.config.refresh()

    out = await send(engine, pool, rec, buy("21000"))
    assert out.verdict == "rejected", out
    assert await net_pos(engine, pool, sub) == 1
