"""A trader that reads a signal its own way (its own ``--direction`` or ``--inverse``) against
the recorder's filters. Real Postgres, the engine and the paper broker.

The recorder's chain judges the signal as the recorder reads it; a buy/sell on a side the
recorder's ``--direction`` forbids is no entry there, so its window, cutoff, cooldown, max
signals and every-Nth never ran. A trader whose own reading is an entry opened it all the
same: outside the recorder's window, uncounted on the recorder's counters. And the recorder's
refusal of "short entries" was final for an inverse follower, which reads the same sell as a
long entry from flat.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from jtrades.db import Database
from jtrades.engine.signal import MarketPosition
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


def _closed_window() -> str:
    """A window that surely excludes now on a Chicago clock (the default zone)."""
    now = datetime.now(UTC).astimezone(ZoneInfo("America/Chicago"))
    a, b = now + timedelta(hours=2), now + timedelta(hours=3)
    return f"{a:%H:%M}-{b:%H:%M}"


async def test_a_traders_own_direction_meets_the_recorders_window(
    database: Database, engine_factory: Any
) -> None:
    """Long-only recorder out of its window, a follower with ``--direction both``: a plain sell
    (no position information) was no entry for the recorder, so its window never ran, and the
    follower opened a short outside it."""
    pool = database.pool
    u = await make_user(pool, "dora")
    rec = await make_recorder(pool, u, "rec", direction="long", windows=[_closed_window()])
    (sub,) = await make_paper_account(pool, u, "dora-paper")
    await make_trader(pool, u, rec, [(sub, 1)], direction="both")
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy())
    assert (out.verdict, out.filter) == ("rejected", "window"), out
    out = await send(engine, pool, rec, sell())
    assert await net_pos(engine, pool, sub) == 0, (out.verdict, out.filter, out.orders)
    assert (out.verdict, out.filter) == ("rejected", "window"), out
    assert out.detail["entry"] is False
    assert out.detail["trader_entries"] == []


async def test_an_inverse_trader_meets_the_recorders_window(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "ivan")
    rec = await make_recorder(pool, u, "rec", direction="long", windows=[_closed_window()])
    (sub,) = await make_paper_account(pool, u, "ivan-paper")
    await make_trader(pool, u, rec, [(sub, 1)], inverse=True)
    engine = await engine_factory()

    out = await send(engine, pool, rec, sell())  # read by the trader as a buy (long: allowed)
    assert await net_pos(engine, pool, sub) == 0, (out.verdict, out.filter, out.orders)
    assert (out.verdict, out.filter) == ("rejected", "window"), out


async def test_a_traders_own_reading_counts_on_its_own_counters(
    database: Database, engine_factory: Any
) -> None:
    """The entry an inverse follower made of a sell the long-only recorder cannot open is an
    entry of the follower's reading, judged by the recorder's (inherited) filters on the
    follower's own counts: with ``--max-signals 1`` its next one is refused, in memory and
    after a restart (the row lists it in ``trader_entries``; the recorder's ``entry`` stays
    false). The recorder made no entry: its own first one, which a follower reading it as the
    recorder does takes, still passes. (It used to count on the recorder's counters, where one
    follower's reading spent every other follower's max signals, another user's included.)"""
    pool = database.pool
    u = await make_user(pool, "max")
    rec = await make_recorder(pool, u, "rec", direction="long", max_signals=1, size=1)
    sub, plain_sub = await make_paper_account(pool, u, "max-paper", subs=2)
    tid = await make_trader(pool, u, rec, [(sub, 1)], inverse=True, same_direction="add")
    await make_trader(pool, u, rec, [(plain_sub, 1)])  # reads it as the recorder does
    first = await engine_factory()

    out = await send(first, pool, rec, sell())
    assert (out.verdict, out.orders) == ("accepted", 1), out
    assert await net_pos(first, pool, sub) == 1
    assert (out.detail["entry"], out.detail["trader_entries"]) == (False, [tid])
    again = await send(first, pool, rec, sell())
    assert (again.verdict, again.filter) == ("rejected", "max_signals"), again
    assert again.detail["traders"][str(tid)]["filter"] == "max_signals"
    assert await net_pos(first, pool, sub) == 1
    await first.close()

    second = await engine_factory()
    again = await send(second, pool, rec, sell())
    assert (again.verdict, again.filter) == ("rejected", "max_signals"), again
    assert await net_pos(second, pool, sub) == 1
    out = await send(second, pool, rec, buy())  # the recorder's first entry of the session
    assert await net_pos(second, pool, plain_sub) == 1, (out.verdict, out.filter, out.reason)
    assert out.detail["entry"] is True


async def test_an_inverse_trader_reads_a_sell_from_flat_as_its_long_entry(
    database: Database, engine_factory: Any
) -> None:
    """The same raw sell carrying ``prev_market_position: flat`` (the README's message) was
    refused for the inverse follower by the recorder's direction check on the recorder's
    reading ("short entries are off"), although the follower reads it as a long entry from
    flat, which its effective ``--direction long`` allows."""
    pool = database.pool
    u = await make_user(pool, "iris")
    # no window: always open
    rec = await make_recorder(pool, u, "rec", direction="long", is_private=False)
    (sub,) = await make_paper_account(pool, u, "iris-paper")
    plain = await make_user(pool, "plain")
    (plain_sub,) = await make_paper_account(pool, plain, "plain-paper")
    await make_trader(pool, u, rec, [(sub, 1)], inverse=True)
    await make_trader(pool, plain, rec, [(plain_sub, 1)])  # inherits: the recorder's answer
    engine = await engine_factory()

    out = await send(engine, pool, rec, sell(prev_market_position=MarketPosition.FLAT))
    assert await net_pos(engine, pool, sub) == 1, (out.verdict, out.filter, out.reason)
    assert await net_pos(engine, pool, plain_sub) == 0
    assert out.verdict == "accepted", out
    assert "direction" in out.detail["accounts"][str(plain_sub)]["reason"]


async def test_a_side_the_direction_forbids_from_flat_is_rejected_for_direction(
    database: Database, engine_factory: Any
) -> None:
    """A sell from flat on a long-only recorder without ``prev_market_position``: nothing is
    traded (the planner ignores it for the direction), but the row said accepted, with no
    filter and no reason (rule 9)."""
    pool = database.pool
    u = await make_user(pool, "vic")
    rec = await make_recorder(pool, u, "rec", direction="long")
    (sub,) = await make_paper_account(pool, u, "vic-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()

    await send(engine, pool, rec, sell())
    assert await net_pos(engine, pool, sub) == 0
    row = await pool.fetchrow("SELECT verdict, filter, reason FROM signals")
    assert (row["verdict"], row["filter"]) == ("rejected", "direction"), dict(row)
    assert row["reason"] == "short entries are off (--direction long)"


async def test_the_row_names_the_window_that_refused_the_own_way_trader(
    database: Database, engine_factory: Any
) -> None:
    """Long-only recorder out of its window, a follower with ``--direction both``, a sell from
    flat: the follower is refused by the recorder's window (its own reading is a short entry),
    yet the row blamed the recorder's direction, which never refused it (rule 9)."""
    pool = database.pool
    u = await make_user(pool, "winprev")
    rec = await make_recorder(pool, u, "rec", direction="long", windows=[_closed_window()])
    (sub,) = await make_paper_account(pool, u, "winprev-paper")
    tid = await make_trader(pool, u, rec, [(sub, 1)], direction="both")
    engine = await engine_factory()

    out = await send(engine, pool, rec, sell(prev_market_position=MarketPosition.FLAT))
    assert await net_pos(engine, pool, sub) == 0
    assert out.detail["traders"][str(tid)]["filter"] == "window"
    assert (out.verdict, out.filter) == ("rejected", "window"), (out.filter, out.reason)
    assert "outside the trading window" in (out.reason or "")


async def test_the_row_names_the_own_way_traders_own_refusal(
    database: Database, engine_factory: Any
) -> None:
    """The follower of a long-only recorder allows shorts and has its own one-hour cooldown:
    its second short from flat is refused by that cooldown, and the row said "short entries are
    off (--direction long)", which did not apply to it. With an inheriting follower beside it
    (refused by the recorder's direction), the row still names the cooldown."""
    pool = database.pool
    u = await make_user(pool, "cdprev")
    rec = await make_recorder(pool, u, "rec", direction="long", size=1, same_direction="add")
    own_sub, plain_sub = await make_paper_account(pool, u, "cdprev-paper", subs=2)
    tid = await make_trader(pool, u, rec, [(own_sub, 1)], direction="both", cooldown_s=3600)
    await make_trader(pool, u, rec, [(plain_sub, 1)])
    engine = await engine_factory()

    first = await send(engine, pool, rec, sell(prev_market_position=MarketPosition.FLAT))
    assert first.verdict == "accepted", first
    assert await net_pos(engine, pool, own_sub) == -1
    out = await send(engine, pool, rec, sell(prev_market_position=MarketPosition.FLAT))
    assert await net_pos(engine, pool, own_sub) == -1
    assert out.detail["traders"][str(tid)]["filter"] == "cooldown"
    assert (out.verdict, out.filter) == ("rejected", "cooldown"), (out.filter, out.reason)
    assert (out.reason or "").startswith(f"trader {tid}: cooldown")


async def test_a_sell_every_trader_refused_is_not_stored_accepted(
    database: Database, engine_factory: Any
) -> None:
    """Long-only recorder outside its window, a plain sell (no position information): the
    own-way follower (``--direction both``) is refused by the recorder's window, the inheriting
    one ignores the sell for its direction. Nothing traded, each for a filter, yet the row said
    accepted with no filter and no reason (rule 9)."""
    pool = database.pool
    u = await make_user(pool, "mixed")
    rec = await make_recorder(pool, u, "rec", direction="long", windows=[_closed_window()])
    sub_a, sub_b = await make_paper_account(pool, u, "mixed-paper", subs=2)
    a = await make_trader(pool, u, rec, [(sub_a, 1)], direction="both")
    await make_trader(pool, u, rec, [(sub_b, 1)])
    engine = await engine_factory()

    out = await send(engine, pool, rec, sell())
    assert await net_pos(engine, pool, sub_a) == 0
    assert await net_pos(engine, pool, sub_b) == 0
    assert out.detail["traders"][str(a)]["filter"] == "window"
    assert out.orders == 0
    assert (out.verdict, out.filter) == ("rejected", "window"), (out, out.detail["accounts"])
    row = await pool.fetchrow("SELECT verdict, filter, reason FROM signals")
    assert (row["verdict"], row["filter"]) == ("rejected", "window"), dict(row)
