"""A follower reading a recorder its own way (here ``--direction both`` on a long-only
recorder) inherits the recorder's --cooldown / --max-signals / --every-nth, and all its entries
are judged and counted in one place: its own counters. Its entries of a side the recorder's
direction forbids (the recorder's sells) were already counted there, but its entries on the
recorder's own reading (the buys) were judged on the recorder's counters, which never see the
follower's sells: the follower made two entries inside one cooldown, and twice its
--max-signals. The recorder's counters still move by the recorder's reading alone (the
owner's follower, reading it as the recorder does, is judged on them:
``test_foreign_reading_counts``). Real Postgres, the engine and the paper broker."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jtrades.db import Database
from jtrades.store import status as status_store
from tests.integration.test_engine import (
    buy,
    close,
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


async def _world(pool: Any, **rec: Any) -> tuple[int, int, int, int]:
    """Alice's long-only public recorder and her follower (inheriting everything); Bob's
    follower with ``--direction both``, inheriting the limits. (recorder, alice's sub-account,
    bob's sub-account, bob's trader)."""
    alice = await make_user(pool, "alice")
    r = await make_recorder(pool, alice, "arec", direction="long", is_private=False, size=1, **rec)
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    await make_trader(pool, alice, r, [(a_sub, 1)])
    bob = await make_user(pool, "bob")
    (b_sub,) = await make_paper_account(pool, bob, "bob-paper")
    tid = await make_trader(pool, bob, r, [(b_sub, 1)], direction="both")
    return r, a_sub, b_sub, tid


async def test_own_reading_follower_enters_twice_inside_the_inherited_cooldown(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, a_sub, b_sub, tid = await _world(pool, cooldown_s=3600)
    engine = await engine_factory()

    await send(engine, pool, rec, sell())  # bob's entry (his own reading): short 1
    assert await net_pos(engine, pool, b_sub) == -1

    out = await send(engine, pool, rec, buy())  # seconds later: alice's first entry
    assert await net_pos(engine, pool, a_sub) == 1
    # bob's cooldown (inherited, 1 h) started with his short: his buy only closes it
    assert await net_pos(engine, pool, b_sub) == 0, (
        "bob opened a second entry inside his 3600 s cooldown:"
        f" {out.verdict} {out.detail.get('traders')}"
    )
    assert out.verdict == "accepted", out  # alice's entry
    assert out.detail["entry"] is True  # the recorder's count: its reading's entry
    assert out.detail["traders"][str(tid)]["filter"] == "cooldown"
    assert tid not in out.detail["trader_entries"]  # bob's count: not moved by a refused entry


async def test_own_reading_follower_makes_twice_its_inherited_max_signals(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, a_sub, b_sub, _ = await _world(pool, max_signals=1)
    engine = await engine_factory()

    await send(engine, pool, rec, sell())  # bob's one entry of the session
    assert await net_pos(engine, pool, b_sub) == -1
    out = await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, a_sub) == 1
    assert await net_pos(engine, pool, b_sub) == 0, (
        f"bob made a second entry past --max-signals 1: {out.verdict} {out.detail.get('traders')}"
    )


async def test_the_recorders_reading_entry_counts_on_the_followers_counters(
    database: Database, engine_factory: Any
) -> None:
    """The other way round: bob's first entry is a buy (the recorder's reading); his sell
    after it, an entry only his reading makes, meets the cooldown that buy started on his
    counters. Alice's recorder made one entry: its counters say one, not two."""
    pool = database.pool
    rec, a_sub, b_sub, tid = await _world(pool, max_signals=2, cooldown_s=3600)
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy())
    assert (await net_pos(engine, pool, a_sub), await net_pos(engine, pool, b_sub)) == (1, 1)
    assert tid in out.detail["trader_entries"]
    out = await send(engine, pool, rec, sell())
    assert await net_pos(engine, pool, b_sub) == 0, (out.verdict, out.detail.get("traders"))
    assert out.detail["traders"][str(tid)]["filter"] == "cooldown"
    counts = engine.counters.get("recorder", rec, datetime.now(UTC))
    assert counts.entries == 1, counts


async def test_the_followers_count_of_both_readings_survives_a_restart(
    database: Database, engine_factory: Any
) -> None:
    """Seeded from the rows (``trader_entries``): bob's short before the restart holds his
    cooldown after it, for an entry on the recorder's reading too."""
    pool = database.pool
    rec, a_sub, b_sub, _ = await _world(pool, cooldown_s=3600)
    first = await engine_factory()
    await send(first, pool, rec, sell())
    assert await net_pos(first, pool, b_sub) == -1
    await first.close()

    second = await engine_factory()
    out = await send(second, pool, rec, buy())
    assert await net_pos(second, pool, a_sub) == 1, (out.verdict, out.filter, out.reason)
    assert await net_pos(second, pool, b_sub) == 0, (out.verdict, out.detail.get("traders"))


async def test_every_nth_is_the_recorders_turn_once_not_again_on_the_followers(
    database: Database, engine_factory: Any
) -> None:
    """--every-nth 2, inherited. A buy (the recorder's reading) takes the recorder's turn, as
    for every follower; it is not judged again on bob's counters: every second of every second
    is not what he set. His sells (his reading alone) take his turn."""
    pool = database.pool
    rec, a_sub, b_sub, _ = await _world(pool, every_nth=2)
    engine = await engine_factory()

    await send(engine, pool, rec, sell())  # bob's turn 1: skipped
    await send(engine, pool, rec, buy())  # the recorder's turn 1: skipped, for both
    assert (await net_pos(engine, pool, a_sub), await net_pos(engine, pool, b_sub)) == (0, 0)
    await send(engine, pool, rec, sell())  # bob's turn 2: short
    assert await net_pos(engine, pool, b_sub) == -1
    out = await send(engine, pool, rec, buy())  # the recorder's turn 2: both long
    assert await net_pos(engine, pool, a_sub) == 1
    assert await net_pos(engine, pool, b_sub) == 1, (out.verdict, out.detail.get("traders"))


async def test_an_entry_the_follower_never_made_gives_his_count_back(
    database: Database, engine_factory: Any
) -> None:
    """Bob's login halted (``halt --account``): the recorder's buy is alice's entry, not his,
    and his count of it goes back. After ``resume`` his next entry, a sell only his reading
    makes, meets no cooldown on his counters."""
    pool = database.pool
    rec, a_sub, b_sub, tid = await _world(pool, cooldown_s=3600)
    engine = await engine_factory()
    await status_store.set_account_halted(pool, "bob-paper", True)
    await engine.config.refresh()

    out = await send(engine, pool, rec, buy())
    assert (await net_pos(engine, pool, a_sub), await net_pos(engine, pool, b_sub)) == (1, 0)
    assert tid not in out.detail["trader_entries"], out.detail

    await status_store.set_account_halted(pool, "bob-paper", False)
    await engine.config.refresh()
    out = await send(engine, pool, rec, sell())
    assert await net_pos(engine, pool, b_sub) == -1, (out.verdict, out.filter, out.reason)


async def test_the_recorders_refusal_still_binds_the_follower(
    database: Database, engine_factory: Any
) -> None:
    """His own counters are judged besides the recorder's, not instead: within the cooldown
    alice's buy started on the recorder's counters, bob's next buy is refused too."""
    pool = database.pool
    rec, a_sub, b_sub, _ = await _world(pool, cooldown_s=3600)
    engine = await engine_factory()
    await send(engine, pool, rec, buy())
    assert (await net_pos(engine, pool, a_sub), await net_pos(engine, pool, b_sub)) == (1, 1)
    await send(engine, pool, rec, close())
    out = await send(engine, pool, rec, buy())
    assert (out.verdict, out.filter) == ("rejected", "cooldown"), out
    assert (await net_pos(engine, pool, a_sub), await net_pos(engine, pool, b_sub)) == (0, 0)
