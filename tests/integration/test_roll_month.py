"""After the roll: an alert on the continuous symbol acts on the month a sub-account holds, and
its price (the new month's chart) is not that month's market."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_engine import (
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    working,
)


async def test_a_continuous_alert_s_price_is_not_the_held_month_s_market(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "roll")
    rec = await make_recorder(
        pool, u, "rec", size=1, add_size=1, same_direction="add", dca=True,
        tp=[{"target": "80"}], sl=Decimal(40),
    )  # fmt: skip
    (sub,) = await make_paper_account(pool, u, "roll-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    # long 1 in next year's March contract (what the held month is after a roll)
    held = Signal(Action.BUY, ticker="MNQH7", price=Decimal(21500))
    assert (await send(engine, pool, rec, held)).orders >= 1
    assert await net_pos(engine, pool, sub) == 1
    exits = sorted(
        (o.order_type.value, o.price or o.stop_price) for o in await working(engine, pool, sub)
    )

    # the continuous symbol names December now (the calendar's front month), at its chart's price
    out = await send(engine, pool, rec, Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21700)))
    assert await net_pos(engine, pool, sub) == 1, out  # no add averaged at December's price
    # and the price did not reach March's take-profit (21520) at the paper broker
    assert (
        sorted(
            (o.order_type.value, o.price or o.stop_price) for o in await working(engine, pool, sub)
        )
        == exits
    )
    assert "signal price" in str(out), out


async def _held_month_world(pool: Any, name: str) -> tuple[int, int, int, int]:
    """A recorder whose trader (max daily loss $500) follows two paper sub-accounts, and an
    ``opener`` recorder trading the first alone: (rec, opener, sub1, sub2)."""
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", size=1)
    opener = await make_recorder(pool, u, "opener", size=1)
    sub1, sub2 = await make_paper_account(pool, u, f"{name}-paper", subs=2)
    await make_trader(pool, u, opener, [(sub1, 1)])
    await make_trader(pool, u, rec, [(sub1, 1), (sub2, 1)], max_daily_loss=Decimal(500))
    return rec, opener, sub1, sub2


async def test_a_held_months_loss_is_seen_by_the_daily_loss_filter(
    database: Database, engine_factory: Any
) -> None:
    """Long 1 MNQ in the next quarter at 21500 (held across the roll); the root has since
    fallen 1500 points (-$3000 on 1 MNQ, six times the $500 limit). A buy on MNQ1! at 20000:
    sub-account 1 holds the old month (the signal acts on it), sub-account 2 is flat and would
    open. The held month was marked at the last price an alert gave for it (21500: open P&L 0),
    so the entry passed a day already 6x past its daily-loss limit."""
    pool = database.pool
    rec, opener, sub1, sub2 = await _held_month_world(pool, "heldloss")
    engine = await engine_factory()
    # the position in the month that is no longer the front (as after the roll)
    opened = await send(
        engine, pool, opener, Signal(Action.BUY, ticker="MNQ2!", price=Decimal(21500))
    )
    assert opened.orders >= 1, opened
    assert await net_pos(engine, pool, sub1) == 1

    out = await send(engine, pool, rec, Signal(Action.BUY, ticker="MNQ1!", price=Decimal(20000)))
    assert await net_pos(engine, pool, sub2) == 0, (out.verdict, out.filter, out.reason, out.detail)
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out


async def test_a_priced_alert_is_not_refused_for_having_no_price(
    database: Database, engine_factory: Any
) -> None:
    """After a restart (no price known for the held month), a priced MNQ1! alert is refused
    with 'no price in the alert', and the trader's flat sub-account opens nothing either."""
    pool = database.pool
    rec, opener, sub1, sub2 = await _held_month_world(pool, "heldnoprice")
    first = await engine_factory()
    await send(first, pool, opener, Signal(Action.BUY, ticker="MNQ2!", price=Decimal(21500)))
    assert await net_pos(first, pool, sub1) == 1
    await first.close()
    engine = await engine_factory()

    out = await send(engine, pool, rec, Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21490)))
    assert "no price in the alert" not in (out.reason or ""), out.reason
    assert await net_pos(engine, pool, sub2) == 1, (out.verdict, out.filter, out.reason)
