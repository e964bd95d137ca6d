"""Protective stops against the exits a position already has (paper broker, real Postgres).

The reconciler's stop must cover the whole position (a stop for one leg of three is not
protection), and it must never close more than is held together with the take-profits still
working: after a TP leg fills and the price comes back to the stop, the account is flat, never
the other way round."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg

from jtrades.broker.base import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Signal
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    sell,
    send,
)

TP_LADDER = [{"target": "20", "qty": 1}, {"target": "40"}]  # ticks: 5 and 10 points


async def world(pool: asyncpg.Pool, **risk: Any) -> dict[str, Any]:
    u = await make_user(pool, "px")
    rec = await make_recorder(pool, u, "px-rec", **risk)
    (sub,) = await make_paper_account(pool, u, "px-paper")
    trader = await make_trader(pool, u, rec, [(sub, 1)])
    aid, bid = await account_of(pool, sub)
    return {"rec": rec, "sub": sub, "trader": trader, "aid": aid, "bid": bid}


@asynccontextmanager
async def opened(
    database: Database, settings: Settings, signal: Signal, **risk: Any
) -> AsyncIterator[tuple[Engine, dict[str, Any], PaperBroker, str]]:
    """The ``world`` (its recorder's ``risk``) on a running engine, ``signal`` traded through
    it: (engine, world, the login's paper broker, the contract's symbol)."""
    pool = database.pool
    w = await world(pool, **risk)
    engine = Engine(database, settings)
    await engine.start()
    try:
        await send(engine, pool, w["rec"], signal)
        paper = engine.brokers.paper(w["aid"])
        yield engine, w, paper, (await paper.find_contract("MNQ1!")).symbol
    finally:
        await engine.close()


async def place_exit(
    paper: PaperBroker, bid: int, symbol: str, qty: int, kind: OrderType, at: str, side: Side
) -> int:
    """An exit order placed at the broker behind the daemon's back (left over, or by hand)."""
    r = await paper.place_order(
        OrderRequest(
            SubAccount(bid, "px"), symbol, side, qty, kind,
            price=Decimal(at) if kind is OrderType.LIMIT else None,
            stop_price=Decimal(at) if kind is OrderType.STOP else None,
            time_in_force=TimeInForce.GTC,
        )
    )  # fmt: skip
    return r.order_id


async def set_sl(engine: Engine, pool: asyncpg.Pool, trader: int, sl: int = 40) -> None:
    await pool.execute("UPDATE traders SET sl = $2, updated_at = now() WHERE id=$1", trader, sl)
    await engine.config.refresh()


def _net(paper: PaperBroker, bid: int) -> int:
    return sum(p.net_pos for p in paper.positions(bid))


def _stops(orders: list[WorkingOrder]) -> list[WorkingOrder]:
    return [o for o in orders if o.order_type is OrderType.STOP]


def _limits(orders: list[WorkingOrder]) -> list[WorkingOrder]:
    return [o for o in orders if o.order_type is OrderType.LIMIT]


async def test_long_three_with_a_one_lot_stop_gets_the_other_two_covered(
    database: Database, settings: Settings
) -> None:
    """A DCA re-placement whose second OCO was rejected leaves a stop for one leg only."""
    pool = database.pool
    async with opened(database, settings, buy("21500"), size=3) as (engine, w, paper, symbol):
        assert _net(paper, w["bid"]) == 3
        await place_exit(paper, w["bid"], symbol, 1, OrderType.STOP, "21490", Side.SELL)
        await set_sl(engine, pool, w["trader"])
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        assert await engine.reconciler.protect_positions() == 1

        stops = _stops(paper.working_orders(w["bid"]))
        assert sum(s.qty for s in stops) == 3
        assert {s.stop_price for s in stops} == {Decimal("21490")}
        assert await engine.reconciler.protect_positions() == 0  # covered now: left alone

        paper.on_price(symbol, Decimal("21489"))
        assert _net(paper, w["bid"]) == 0  # nothing left open unprotected
        assert paper.working_orders(w["bid"]) == []


async def test_take_profit_legs_without_a_stop_never_end_short(
    database: Database, settings: Settings
) -> None:
    """Long 2 with TP legs at 21505/21510 and no stop: the protection is one OCO per leg, so
    after TP1 fills (long 1) the stop left is for 1, and the stop makes the account flat."""
    pool = database.pool
    traded = opened(database, settings, buy("21500"), size=2, tp=TP_LADDER)
    async with traded as (engine, w, paper, symbol):
        assert _net(paper, w["bid"]) == 2
        assert sorted(o.price for o in _limits(paper.working_orders(w["bid"]))) == [
            Decimal("21505"),
            Decimal("21510"),
        ]
        await set_sl(engine, pool, w["trader"])
        assert await engine.reconciler.protect_positions() == 0
        assert await engine.reconciler.protect_positions() == 1

        orders = paper.working_orders(w["bid"])
        assert sorted((o.price, o.qty) for o in _limits(orders)) == [
            (Decimal("21505"), 1),
            (Decimal("21510"), 1),
        ]
        assert sorted((s.stop_price, s.qty) for s in _stops(orders)) == [
            (Decimal("21490"), 1),
            (Decimal("21490"), 1),
        ]
        by_id = {o.order_id: o for o in orders}
        for tp in _limits(orders):  # each TP leg is OCO-linked with its own share of the stop
            assert tp.oco_id is not None
            assert by_id[tp.oco_id].order_type is OrderType.STOP
        assert await engine.reconciler.protect_positions() == 0

        paper.on_price(symbol, Decimal("21505"))  # TP1
        assert _net(paper, w["bid"]) == 1
        assert sum(s.qty for s in _stops(paper.working_orders(w["bid"]))) == 1
        assert await engine.reconciler.protect_positions() == 0  # still exactly covered

        paper.on_price(symbol, Decimal("21490"))  # the stop
        assert _net(paper, w["bid"]) == 0
        assert paper.working_orders(w["bid"]) == []  # the TP2 sell went with its stop
        paper.on_price(symbol, Decimal("21515"))
        assert _net(paper, w["bid"]) == 0


async def test_take_profits_larger_than_the_position_are_trimmed_to_it(
    database: Database, settings: Settings
) -> None:
    """Short 2 whose buy limits add up to 3 (one left over from before): the protection never
    closes more than 2, whichever of them fill."""
    pool = database.pool
    traded = opened(database, settings, sell("21500"), size=2, tp=TP_LADDER)
    async with traded as (engine, w, paper, symbol):
        assert _net(paper, w["bid"]) == -2
        await place_exit(paper, w["bid"], symbol, 1, OrderType.LIMIT, "21480", Side.BUY)
        await set_sl(engine, pool, w["trader"])
        assert await engine.reconciler.protect_positions() == 0
        assert await engine.reconciler.protect_positions() == 1

        orders = paper.working_orders(w["bid"])
        # the nearest take-profits are kept, one contract each; each has its stop share
        assert sorted((o.price, o.qty) for o in _limits(orders)) == [
            (Decimal("21490"), 1),
            (Decimal("21495"), 1),
        ]
        assert sorted((s.stop_price, s.qty) for s in _stops(orders)) == [
            (Decimal("21510"), 1),
            (Decimal("21510"), 1),
        ]
        paper.on_price(symbol, Decimal("21470"))  # through every take-profit
        assert _net(paper, w["bid"]) == 0
        assert paper.working_orders(w["bid"]) == []


async def test_a_stop_being_cancelled_is_not_protection(
    database: Database, settings: Settings
) -> None:
    """A stop stuck in PendingCancel covers nothing: nothing is placed while it may still
    fill, and once it is gone the position gets its full stop."""
    pool = database.pool
    async with opened(database, settings, buy("21500"), size=2) as (engine, w, paper, symbol):
        oid = await place_exit(paper, w["bid"], symbol, 2, OrderType.STOP, "21480", Side.SELL)
        paper._orders[oid].status = OrderStatus.PENDING_CANCEL
        await set_sl(engine, pool, w["trader"])
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        assert await engine.reconciler.protect_positions() == 0  # it may still fill: wait
        assert len(paper.working_orders(w["bid"])) == 1
        paper._orders[oid].status = OrderStatus.CANCELED  # the cancel completed
        assert await engine.reconciler.protect_positions() == 1
        (stop,) = _stops(paper.working_orders(w["bid"]))
        assert (stop.qty, stop.stop_price) == (2, Decimal("21490"))


async def test_a_bracketed_position_is_left_alone(database: Database, settings: Settings) -> None:
    """Entry + TP legs each OCO-linked with its share of the stop: covered, nothing changes."""
    traded = opened(database, settings, buy("21500"), size=2, tp=TP_LADDER, sl=Decimal(40))
    async with traded as (engine, w, paper, _):
        before = sorted(o.order_id for o in paper.working_orders(w["bid"]))
        assert len(before) == 4
        assert await engine.reconciler.protect_positions() == 0
        assert await engine.reconciler.protect_positions() == 0
        assert sorted(o.order_id for o in paper.working_orders(w["bid"])) == before


async def test_a_stop_over_the_position_is_trimmed_after_the_stop_loss_is_turned_off(
    database: Database, settings: Settings
) -> None:
    """Long 2 with its stop for 2; the trader turns the stop loss off for later trades and sells
    1 by hand. Protection skipped positions without a stop loss, so the stop for 2 stayed on the
    long 1 and flipped it short when it triggered. Nothing naked is stopped without one, but
    stops over the position are still brought down to it."""
    pool = database.pool
    async with opened(database, settings, buy("21500"), size=2, sl=Decimal(40)) as (
        engine, w, paper, symbol,
    ):  # fmt: skip
        await set_sl(engine, pool, w["trader"], 0)
        await paper.place_order(
            OrderRequest(SubAccount(w["bid"], "px"), symbol, Side.SELL, 1, OrderType.MARKET)
        )
        assert sum(p.net_pos for p in paper.positions(w["bid"])) == 1
        await engine.reconciler.protect_positions()
        await engine.reconciler.protect_positions()
        stops = [o for o in paper.working_orders(w["bid"]) if o.order_type is OrderType.STOP]
        assert [o.qty for o in stops] == [1]
        paper.on_price(symbol, Decimal("21489"))  # down through the stop
        assert sum(p.net_pos for p in paper.positions(w["bid"])) == 0
