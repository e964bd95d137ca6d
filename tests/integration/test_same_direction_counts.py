"""A buy every account ignores under ``--same-direction ignore`` trades nothing: it used the
recorder's --max-signals turn and started its cooldown, and the session's next real entry was
refused for a limit nothing was traded towards. Like an entry held back at --max-contracts,
its turn goes back (``plan_context.HELD_BACK``; reviewed 2026-12-01)."""

from __future__ import annotations

from typing import Any

from jtrades.db import Database
from tests.integration.test_engine import (
    buy,
    close,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


async def _follower(pool: Any, name: str, **recorder: Any) -> tuple[int, int]:
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", size=1, same_direction="ignore", **recorder)
    (sub,) = await make_paper_account(pool, u, f"{name}-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    return rec, sub


async def test_an_ignored_same_direction_buy_uses_no_max_signals_turn(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub = await _follower(pool, "sdm", max_signals=2)
    engine = await engine_factory()
    assert (await send(engine, pool, rec, buy("21500"))).verdict == "accepted"
    ignored = await send(engine, pool, rec, buy("21501"))  # the strategy pyramids: ignored
    assert ignored.orders == 0
    assert await net_pos(engine, pool, sub) == 1
    await send(engine, pool, rec, close("21502"))
    assert await net_pos(engine, pool, sub) == 0

    out = await send(engine, pool, rec, buy("21503"))  # the session's second real entry

    assert out.verdict == "accepted", (out.filter, out.reason)
    assert await net_pos(engine, pool, sub) == 1


async def test_an_ignored_same_direction_buy_starts_no_cooldown(
    database: Database, engine_factory: Any
) -> None:
    """The account already holds a long (opened by another recorder): this recorder's buy is
    ignored, and its hour-long cooldown must not start from it."""
    pool = database.pool
    u = await make_user(pool, "sdc")
    rec = await make_recorder(pool, u, "rec", size=1, same_direction="ignore", cooldown_s=3600)
    opener = await make_recorder(pool, u, "opener", size=1)
    (sub,) = await make_paper_account(pool, u, "sdc-paper")
    await make_trader(pool, u, opener, [(sub, 1)])
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    await send(engine, pool, opener, buy("21500"))
    assert await net_pos(engine, pool, sub) == 1

    ignored = await send(engine, pool, rec, buy("21501"))
    assert ignored.orders == 0
    await send(engine, pool, opener, close("21502"))
    assert await net_pos(engine, pool, sub) == 0

    out = await send(engine, pool, rec, buy("21503"))

    assert out.verdict == "accepted", (out.filter, out.reason)
    assert await net_pos(engine, pool, sub) == 1
