"""The paper broker's average is the exact average of its fills: rebuilt from the last
rounded average at each add, a repeating one (21492.638…) drifted, and four buys whose average
is 21490.75 read 21490.75000000000000000000001; the DCA re-pricing rounds exits toward the
entry from it, and the configured 20-point stop went out at 21471.00 (19.75 points)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    paper_of,
    send,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)

FILLS = [(5, "21494.75"), (4, "21490"), (4, "21484.5"), (4, "21492.75")]


async def test_the_average_of_four_buys_is_the_exact_average() -> None:
    b = PaperBroker()
    await b.find_contract("MNQZ6")
    a = SubAccount(1, "a")
    for qty, px in FILLS:
        b.on_price("MNQZ6", Decimal(px))
        await b.place_order(OrderRequest(a, "MNQZ6", Side.BUY, qty))
    (pos,) = b.positions(1)
    assert pos.net_pos == 17
    assert pos.net_price == Decimal("21490.75")  # sum(q*p)/17, exactly
    assert str(pos.net_price.normalize()) == "21490.75", pos.net_price


async def test_a_dca_stop_is_placed_at_the_configured_distance(
    database: Any, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "drift")
    rec = await make_recorder(
        pool, u, "driftrec", size=5, add_size=4, same_direction="add", dca=True,
        tp=[{"target": "10"}], tp_units="points", sl=Decimal(20), sl_units="points",
    )  # fmt: skip
    (sub,) = await make_paper_account(pool, u, "drift-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    for _qty, px in FILLS:
        out = await send(engine, pool, rec, buy(px))
        assert out.verdict == "accepted", out
    aid, bid = await account_of(pool, sub)
    paper = paper_of(engine, aid)
    (pos,) = [p for p in paper.positions(bid) if p.net_pos]
    assert pos.net_pos == 17
    (stop,) = [o for o in paper.working_orders(bid) if o.order_type is OrderType.STOP]
    # 17 @ 21490.75 with a 20-point stop: 21470.75 (what the plan itself says)
    assert stop.stop_price == Decimal("21470.75"), (stop.stop_price, pos.net_price)
