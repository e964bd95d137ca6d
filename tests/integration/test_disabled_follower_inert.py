"""A trader that is switched off still has its links walked by the fan-out (``Fanout._links``
runs for every trader of the recorder before any gate), and there the alert's price is noted as
the paper market of the follower's login (``registry.note_price``) and as its user's daily-loss
mark. So user A's alert, at any price A cares to post, moves user B's paper market (B's stops
and limits fill at it) through a trader B disabled."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import (
    buy,
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


async def test_a_disabled_follower_keeps_its_paper_market_out_of_the_leaders_alerts(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    bob = await make_user(pool, "bob")
    own = await make_recorder(pool, bob, "brec", size=1, sl=Decimal(40))  # stop 10 points off
    (b_sub,) = await make_paper_account(pool, bob, "bob-paper")
    await make_trader(pool, bob, own, [(b_sub, 1)])
    alice = await make_user(pool, "alice")
    arec = await make_recorder(pool, alice, "arec", size=1, is_private=False)
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    await make_trader(pool, alice, arec, [(a_sub, 1)])
    # bob followed alice once, and switched it off
    await make_trader(pool, bob, arec, [(b_sub, 1)], enabled=False)
    engine = await engine_factory()

    await send(engine, pool, own, buy("21500"))
    assert await net_pos(engine, pool, b_sub) == 1  # long 1, stop at 21490

    out = await send(
        engine, pool, arec, Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal("21000"))
    )
    assert await net_pos(engine, pool, b_sub) == 1, (
        "alice's alert price filled bob's stop through a trader bob disabled:"
        f" {out.verdict} {out.detail.get('traders')}"
    )


async def test_a_disabled_follower_does_not_take_the_leaders_price_as_my_daily_loss_mark(
    database: Database, engine_factory: Any
) -> None:
    """The per-user marks (fanout ``_marks`` keyed by the trader's user) still take alice's
    price as bob's, through a trader of bob's that follows alice's public recorder switched
    off: bob's priceless entry then passes his daily-loss limit on alice's price."""
    pool = database.pool
    bob = await make_user(pool, "userb")
    opener = await make_recorder(pool, bob, "opener", size=1)
    rec = await make_recorder(pool, bob, "rec", size=1)
    sub1, sub2 = await make_paper_account(pool, bob, "b-paper", subs=2)
    (sub3,) = await make_paper_account(pool, bob, "b-other")
    await make_trader(pool, bob, opener, [(sub1, 1)])
    await make_trader(pool, bob, rec, [(sub1, 1), (sub2, 1)], max_daily_loss=Decimal(100))
    alice = await make_user(pool, "usera")
    arec = await make_recorder(pool, alice, "arec", size=1, is_private=False)
    (asub,) = await make_paper_account(pool, alice, "a-paper")
    await make_trader(pool, alice, arec, [(asub, 1)])
    await make_trader(pool, bob, arec, [(sub3, 1)], enabled=False)  # bob's, switched off
    engine = await engine_factory()

    await send(engine, pool, opener, buy("21500"))  # bob long 1 at 21500 on sub1
    out = await send(engine, pool, rec, buy("21400"))  # open loss $200 > $100
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out

    await send(engine, pool, arec, buy("21600"))  # alice's alert, alice's price

    out = await send(engine, pool, rec, Signal(Action.BUY, ticker="MNQ1!"))  # no price
    assert await net_pos(engine, pool, sub2) == 0, (
        f"bob's entry passed his daily-loss limit on alice's price: {out.verdict} {out.reason}"
    )
