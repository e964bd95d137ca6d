"""A reduce (the strategy's, or a partial exit) on a position with a stop working: the stop is
cancelled first, then the broker refuses the reduce. Nothing was reduced; the cancel counted as
"went", and the row said accepted ("closed only" for a trim). It is the broker's refusal."""

from __future__ import annotations

from decimal import Decimal

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


async def test_a_trim_the_broker_refused_is_not_said_closed(
    database: Database, start: Start
) -> None:
    pool = database.pool
    u = await make_user(pool, "trimrej")
    rec = await make_recorder(pool, u, "rec", size=3, sl=Decimal(40))
    (sub,) = await make_paper_account(pool, u, "trimrej-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    aid, _ = await account_of(pool, sub)
    broker = RefusesMarket()
    engine = await start({aid: broker})

    first = await send(engine, pool, rec, buy())
    assert first.verdict == "accepted", first
    assert await net_pos(engine, pool, sub) == 3
    assert await working(engine, pool, sub), "the stop works"

    broker.refuse = True
    trim = await send(engine, pool, rec, sell(quantity=1, source="native"))
    assert await net_pos(engine, pool, sub) == 3  # nothing trimmed: the broker refused
    left = await working(engine, pool, sub)
    # what the row says: it must not claim the account closed (rule 9)
    assert (trim.verdict, trim.filter) == ("rejected", "broker"), (trim, left)
    assert "insufficient margin" in (trim.reason or "")


async def test_a_strategy_reduce_the_broker_refused_is_not_accepted_silently(
    database: Database, start: Start
) -> None:
    """The same with the strategy's own reduce (``market_position: long``): older code, same
    root (the exits' cancels count as "went"): accepted, no reason, nothing reduced."""
    pool = database.pool
    u = await make_user(pool, "redrej")
    rec = await make_recorder(pool, u, "rec", size=3, sl=Decimal(40))
    (sub,) = await make_paper_account(pool, u, "redrej-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    aid, _ = await account_of(pool, sub)
    broker = RefusesMarket()
    engine = await start({aid: broker})
    assert (await send(engine, pool, rec, buy())).verdict == "accepted"
    broker.refuse = True
    red = await send(
        engine, pool, rec, sell(quantity=1, market_position=MarketPosition.LONG, source="native")
    )
    assert await net_pos(engine, pool, sub) == 3
    assert (red.verdict, red.filter) == ("rejected", "broker"), red
