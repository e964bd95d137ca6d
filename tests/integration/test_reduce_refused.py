"""A reduce (the strategy's, or a partial exit) on a position with a stop working: the stop is
cancelled first, then the broker refuses the reduce. Nothing was reduced; the cancel counted as
"went", and the row said accepted ("closed only" for a trim). It is the broker's refusal."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import OrderRequest, OrderType, PlaceResult
from jtrades.broker.paper import PaperBroker
from jtrades.db import Database
from jtrades.engine.signal import MarketPosition
from jtrades.errors import BrokerRejected
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    sell,
    send,
    working,
)
from tests.integration.test_flatten import Start
from tests.integration.test_flatten import (
    start as start,  # the fixture
)


class RefusesMarket(PaperBroker):
    refuse = False

    async def place_order(self, req: OrderRequest) -> PlaceResult:
        if self.refuse and req.order_type is OrderType.MARKET:
            raise BrokerRejected("Order rejected: insufficient margin (injected)")
        return await super().place_order(req)


@pytest.mark.parametrize(
    "reduce",
    [
        {},  # a partial exit: fewer than held, no market position (``trim``)
        {"market_position": MarketPosition.LONG},  # the strategy's own reduce
    ],
    ids=["partial exit", "strategy reduce"],
)
async def test_a_reduce_the_broker_refused_is_its_refusal(
    database: Database, start: Start, reduce: dict[str, Any]
) -> None:
    pool = database.pool
    u = await make_user(pool, "redrej")
    rec = await make_recorder(pool, u, "rec", size=3, sl=Decimal(40))
    (sub,) = await make_paper_account(pool, u, "redrej-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    aid, _ = await account_of(pool, sub)
    broker = RefusesMarket()
    engine = await start({aid: broker})
    assert (await send(engine, pool, rec, buy())).verdict == "accepted"
    assert await working(engine, pool, sub), "the stop works"

    broker.refuse = True
    out = await send(engine, pool, rec, sell(quantity=1, source="native", **reduce))
    assert await net_pos(engine, pool, sub) == 3  # nothing reduced: the broker refused
    assert (out.verdict, out.filter) == ("rejected", "broker"), out
    assert "insufficient margin" in (out.reason or "")
