"""dcc2905: an entry from flat cancels the account's resting entries of its side first."""

from __future__ import annotations

import json
from typing import Any

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.db import Database
from jtrades.engine.parsing import parse_payload
from tests.integration.test_engine import (
    account_of,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    working,
)
from tests.integration.test_engine import engine_factory as engine_factory


def alert(body: dict[str, Any]):
    return parse_payload(json.dumps(body).encode(), "application/json")


LIMIT = {"ticker": "MNQ1!", "action": "buy", "signalPrice": 21500,
         "orderType": "limit", "limitPrice": 21400}  # fmt: skip
MARKET = {"ticker": "MNQ1!", "action": "buy", "signalPrice": 21500}


async def test_a_buy_alert_does_not_cancel_a_limit_order_placed_by_hand(
    database: Database, engine_factory: Any
) -> None:
    """A buy limit the trader placed by hand (no jtrades clOrdId) on the sub-account is not
    an entry of the recorder's: orphans.py leaves 'an order someone placed by hand' alone,
    the new same-side replacement cancels it."""
    pool = database.pool
    u = await make_user(pool, "by-hand")
    rec = await make_recorder(pool, u, "rec", size=1)
    (sub,) = await make_paper_account(pool, u, "hand-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    aid, bid = await account_of(pool, sub)
    broker = engine.brokers.paper(aid)
    contract = await broker.find_contract("MNQ1!")
    # the market is known (an alert that trades nothing carries the price)
    await send(
        engine, pool, rec, alert({"ticker": "MNQ1!", "action": "cancel", "signalPrice": 21500})
    )
    await broker.place_order(
        OrderRequest(SubAccount(bid, "hand-paper-1"), contract.symbol, Side.BUY, 2,
                     OrderType.LIMIT, price=21300)
    )  # fmt: skip

    out = await send(engine, pool, rec, alert(MARKET))

    assert await net_pos(engine, pool, sub) == 1, out.detail
    limits = [o for o in await working(engine, pool, sub) if o.order_type is OrderType.LIMIT]
    assert [(o.qty, o.price) for o in limits] == [(2, 21300)], (
        f"the hand-placed buy limit was cancelled by the alert: {out.reason}"
    )
