"""Disagreements between DESIGN.md §2/§4 (what a signal does) and the engine, through the real
engine with the paper broker."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from jtrades.broker.base import OrderRequest, OrderStatus, OrderType, Side, SubAccount
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


async def _follower(database: Database, name: str, mult: Any = 1, **risk: Any):
    pool = database.pool
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", **risk)
    (sub,) = await make_paper_account(pool, u, f"{name}-paper")
    await make_trader(pool, u, rec, [(sub, mult)])
    return rec, sub


async def test_a_traderspost_entry_replaces_the_resting_entry_of_its_side(
    database: Database, engine_factory: Any
) -> None:
    """TradersPost (DESIGN §4: its alerts "work unchanged"): a buy with no open position first
    cancels the ticker's open orders, then enters. A limit buy that did not fill, followed by a
    market buy, leaves one long, not a long plus a buy limit still resting that doubles it
    (with --size 1 and --same-direction ignore)."""
    pool = database.pool
    rec, sub = await _follower(database, "tp-rest", size=1, tp=[{"target": "80"}], sl=Decimal(80))
    engine = await engine_factory()
    limit = {"ticker": "MNQ1!", "action": "buy", "sentiment": "bullish", "signalPrice": 21500,
             "orderType": "limit", "limitPrice": 21400}  # fmt: skip
    market = {"ticker": "MNQ1!", "action": "buy", "sentiment": "bullish", "signalPrice": 21500}

    assert (await send(engine, pool, rec, alert(limit))).orders == 1
    out = await send(engine, pool, rec, alert(market))

    held = await net_pos(engine, pool, sub)
    resting_buys = sum(
        o.qty
        for o in await working(engine, pool, sub)
        if o.side is Side.BUY and o.status is not OrderStatus.SUSPENDED
    )
    assert held + resting_buys == 1, (held, resting_buys, out.detail["accounts"])


async def test_a_cancel_of_a_resting_paper_entry_is_not_reported_as_refused(
    database: Database, engine_factory: Any
) -> None:
    """A TradersPost ``cancel`` (or a close while flat) of a limit entry that has not filled
    cancels it and its TP/SL: on the paper broker the entry's suspended brackets go with it,
    then the plan's own cancels of those brackets are 'rejected' (the rest not sent), the
    intent rows say rejected/expired and ``dispatch.orders_failed`` goes out as a
    notification, though everything asked for was done."""
    pool = database.pool
    rec, sub = await _follower(database, "tp-cancel", size=1, tp=[{"target": "80"}], sl=Decimal(80))
    engine = await engine_factory()
    limit = {"ticker": "MNQ1!", "action": "buy", "signalPrice": 21500,
             "orderType": "limit", "limitPrice": 21400}  # fmt: skip
    assert (await send(engine, pool, rec, alert(limit))).orders == 1

    out = await send(engine, pool, rec, alert({"ticker": "MNQ1!", "action": "cancel"}))

    assert await working(engine, pool, sub) == []
    (account,) = out.detail["accounts"].values()
    assert (account["rejected"], account["expired"]) == (0, 0), account


async def test_a_limit_entry_sent_again_at_a_new_price_does_not_stack(
    database: Database, engine_factory: Any
) -> None:
    """A TradersPost strategy that moves its resting limit entry sends the buy again with the
    new limitPrice; TradersPost cancels the ticker's open orders before an entry when no
    position is open. Here each alert adds one more resting buy beside the old ones, so a
    --size 1 follower ends long 3 when the market falls through them."""
    pool = database.pool
    rec, sub = await _follower(database, "tp-stack", size=1)
    engine = await engine_factory()
    for level in (21450, 21440, 21430):
        body = {"ticker": "MNQ1!", "action": "buy", "signalPrice": 21500,
                "orderType": "limit", "limitPrice": level}  # fmt: skip
        await send(engine, pool, rec, alert(body))
    resting = [(o.price, o.qty) for o in await working(engine, pool, sub) if o.side is Side.BUY]

    # the market falls through every level (an alert that trades nothing carries the price)
    await send(
        engine, pool, rec, alert({"ticker": "MNQ1!", "action": "cancel", "signalPrice": 21420})
    )
    assert await net_pos(engine, pool, sub) == 1, resting


LIMIT = {"ticker": "MNQ1!", "action": "buy", "signalPrice": 21500,
         "orderType": "limit", "limitPrice": 21400}  # fmt: skip
MARKET = {"ticker": "MNQ1!", "action": "buy", "signalPrice": 21500}


async def test_a_buy_alert_does_not_cancel_a_limit_order_placed_by_hand(
    database: Database, engine_factory: Any
) -> None:
    """A buy limit the trader placed by hand (no jtrades clOrdId) on the sub-account is not
    an entry of the recorder's to replace: left alone, as ``orphans`` leaves one."""
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
