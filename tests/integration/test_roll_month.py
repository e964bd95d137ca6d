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
