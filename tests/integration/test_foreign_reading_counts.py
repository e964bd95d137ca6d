"""A follower of another user's public recorder who reads its signals its own way (``--inverse``
or ``--direction``) spends the *recorder's* session counts (max signals, cooldown, every-Nth)
with its entries: the recorder owner's own trader, which reads the recorder as the recorder
does and made no entry at all, is then refused. User B's override decides user A's verdict."""

from __future__ import annotations

from typing import Any

from jtrades.db import Database
from tests.integration.test_engine import (
    buy,
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


async def _world(pool: Any, **rec: Any) -> tuple[int, int, int]:
    alice = await make_user(pool, "alice")
    r = await make_recorder(pool, alice, "arec", direction="long", is_private=False, size=1, **rec)
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    await make_trader(pool, alice, r, [(a_sub, 1)])  # inherits everything
    bob = await make_user(pool, "bob")
    (b_sub,) = await make_paper_account(pool, bob, "bob-paper")
    await make_trader(pool, bob, r, [(b_sub, 1)], inverse=True)  # bob reads it his own way
    return r, a_sub, b_sub


async def test_another_users_inverse_follower_spends_my_max_signals(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, a_sub, b_sub = await _world(pool, max_signals=1)
    engine = await engine_factory()

    await send(engine, pool, rec, sell())  # no entry for alice (long-only); bob reads a buy
    assert await net_pos(engine, pool, b_sub) == 1
    assert await net_pos(engine, pool, a_sub) == 0

    out = await send(engine, pool, rec, buy())  # alice's first entry of the session
    assert await net_pos(engine, pool, a_sub) == 1, (
        f"alice's first entry was refused by bob's follower: {out.verdict} {out.filter} {out.reason}"
    )


async def test_another_users_inverse_follower_starts_my_cooldown(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, a_sub, b_sub = await _world(pool, cooldown_s=3600)
    engine = await engine_factory()

    await send(engine, pool, rec, sell())
    assert await net_pos(engine, pool, b_sub) == 1

    out = await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, a_sub) == 1, (
        f"alice's first entry was refused by bob's follower: {out.verdict} {out.filter} {out.reason}"
    )


async def test_control_without_the_follower_my_entry_passes(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    alice = await make_user(pool, "alice")
    rec = await make_recorder(pool, alice, "arec", direction="long", max_signals=1, size=1)
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    await make_trader(pool, alice, rec, [(a_sub, 1)])
    engine = await engine_factory()
    await send(engine, pool, rec, sell())
    await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, a_sub) == 1


async def test_another_users_inverse_follower_shifts_my_every_nth(
    database: Database, engine_factory: Any
) -> None:
    """--every-nth 2 on alice's long-only recorder: alice trades every second buy. Bob's
    inverse follower takes alice's strategy's sell as its entry, which moves the recorder's
    every-Nth turn: alice's *first* buy, which she set up to skip, is traded (an order she did
    not ask for), whereas without bob it is skipped."""
    pool = database.pool
    rec, a_sub, _ = await _world(pool, every_nth=2)
    engine = await engine_factory()

    await send(engine, pool, rec, sell())  # bob's reading: an entry; alice: no entry
    out = await send(engine, pool, rec, buy())  # alice's first buy of the session
    assert await net_pos(engine, pool, a_sub) == 0, (
        f"alice's first buy (every-nth 2: skipped) was traded: {out.verdict} {out.filter}"
    )


async def test_control_every_nth_without_the_follower(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    alice = await make_user(pool, "alice")
    rec = await make_recorder(pool, alice, "arec", direction="long", every_nth=2, size=1)
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    await make_trader(pool, alice, rec, [(a_sub, 1)])
    engine = await engine_factory()
    await send(engine, pool, rec, sell())
    await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, a_sub) == 0
    await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, a_sub) == 1


async def test_a_followers_own_reading_counts_are_its_own_after_a_restart(
    database: Database, engine_factory: Any
) -> None:
    """The follower's own-reading entry is on its own counters after a restart too (the row
    lists it in ``trader_entries``, not as the recorder's ``entry``): alice's first buy still
    passes her ``--max-signals 1``, and bob's second entry of his reading is refused."""
    pool = database.pool
    rec, a_sub, b_sub = await _world(pool, max_signals=1)
    first = await engine_factory()
    out = await send(first, pool, rec, sell())
    assert await net_pos(first, pool, b_sub) == 1
    assert out.detail["entry"] is False, out.detail
    await first.close()

    second = await engine_factory()
    out = await send(second, pool, rec, buy())  # alice's first entry; bob's reading: a sell
    assert await net_pos(second, pool, a_sub) == 1, (out.verdict, out.filter, out.reason)
    assert await net_pos(second, pool, b_sub) == 0  # bob's long closed by his reading's sell
    out = await send(second, pool, rec, sell())  # bob's second entry of the session
    assert await net_pos(second, pool, b_sub) == 0, (out.verdict, out.filter, out.reason)
