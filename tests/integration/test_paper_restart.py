"""A paper login restarted keeps its working orders: the paper broker's state is in memory, and
only its positions used to come back, while the ``orders`` table and the intents still said
Working. Exits are put back from the mirrored rows (``jtrades.broker.paper_restore``) with their
ids and links, keep working (a price move fills the take-profit or the stop and cancels its OCO
partner), and the table agrees with the broker; what cannot be put back is marked cancelled."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from jtrades.broker.base import OrderStatus, OrderType
from jtrades.engine.engine import Engine
from tests.integration.test_engine import (
    account_of,
    buy,
    close,
    follower,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    paper_of,
    send,
    wait_for,
    working,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_flatten import flatten_flag, request_flatten, wait_done

SYM = "MNQZ6"


def _key(o: Any) -> tuple[Any, ...]:
    return (o.order_id, str(o.order_type), str(o.status), o.qty, o.price, o.stop_price,
            o.parent_id, o.oco_id, o.cl_ord_id)  # fmt: skip


async def _stored_open(pool: asyncpg.Pool, sub: int) -> list[tuple[Any, ...]]:
    rows = await pool.fetch(
        "SELECT broker_order_id, order_type, status, qty, price, stop_price, parent_id, oco_id,"
        " cl_ord_id FROM orders WHERE sub_account_id = $1"
        " AND status IN ('Working', 'Suspended') ORDER BY broker_order_id",
        sub,
    )
    return [tuple(r) for r in rows]


async def _agrees(engine: Engine, pool: asyncpg.Pool, sub: int) -> bool:
    """The table's open orders are the broker's, field for field."""
    broker = sorted(map(_key, await working(engine, pool, sub)))
    return broker == await _stored_open(pool, sub)


async def _opened(pool: asyncpg.Pool, rec: int, first: Engine, sub: int, n: int = 2) -> list[Any]:
    """Buy one at 21500 and wait until the position and its ``n`` exits are mirrored."""
    await send(first, pool, rec, buy("21500"))
    before = sorted(map(_key, await working(first, pool, sub)))
    assert len(before) == n, before

    async def mirrored() -> bool:
        return len(await _stored_open(pool, sub)) == n and bool(
            await pool.fetchval("SELECT count(*) FROM positions WHERE net_pos = 1")
        )

    await wait_for(mirrored, "position and exits mirrored")
    return before


async def _restart(first: Engine, engine_factory: Any) -> Engine:
    await first.close()
    return await engine_factory()  # type: ignore[no-any-return]


async def test_exits_survive_a_restart_with_their_ids_and_links(
    database: Any, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "pr", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    first = await engine_factory()
    before = await _opened(pool, rec, first, sub)
    second = await _restart(first, engine_factory)
    assert await net_pos(second, pool, sub) == 1
    assert sorted(map(_key, await working(second, pool, sub))) == before
    assert await _agrees(second, pool, sub)
    # reconciliation finds the position protected: nothing placed, nothing cancelled
    await second.reconciler.tick()
    await second.reconciler.tick()
    assert sorted(map(_key, await working(second, pool, sub))) == before
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 1


async def test_a_restored_take_profit_fills_and_cancels_its_stop(
    database: Any, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "pt", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    first = await engine_factory()
    await _opened(pool, rec, first, sub)
    second = await _restart(first, engine_factory)
    aid, bid = await account_of(pool, sub)
    paper = paper_of(second, aid)
    (tp,) = [o for o in paper.working_orders(bid) if o.order_type is OrderType.LIMIT]
    paper.on_price(SYM, Decimal("21506"))  # through the take-profit at 21505
    assert await net_pos(second, pool, sub) == 0
    assert paper.working_orders(bid) == []
    (fill,) = paper.fills(bid)
    assert (fill.order_id, fill.price) == (tp.order_id, Decimal("21505"))

    async def settled() -> bool:
        rows = dict(
            await pool.fetch("SELECT order_type, status FROM orders WHERE parent_id IS NOT NULL")
        )
        flat = await pool.fetchval("SELECT net_pos FROM positions WHERE sub_account_id = $1", sub)
        return rows == {"Limit": "Filled", "Stop": "Canceled"} and flat == 0

    await wait_for(settled, "the fill and the cancelled stop mirrored")
    assert await pool.fetchval("SELECT pnl FROM trades") == Decimal(10)  # 5 points on 1 MNQ
    await second.reconciler.tick()
    assert paper.working_orders(bid) == []  # flat: no protective stop


async def test_a_restored_stop_fills_and_cancels_its_take_profit(
    database: Any, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "ps", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    first = await engine_factory()
    await _opened(pool, rec, first, sub)
    second = await _restart(first, engine_factory)
    aid, bid = await account_of(pool, sub)
    paper = paper_of(second, aid)
    paper.on_price(SYM, Decimal("21489"))  # through the stop at 21490
    assert await net_pos(second, pool, sub) == 0
    assert [o.status for o in paper.all_orders(bid) if o.order_type is OrderType.LIMIT] == [
        OrderStatus.CANCELED
    ]

    async def settled() -> bool:
        rows = dict(
            await pool.fetch("SELECT order_type, status FROM orders WHERE parent_id IS NOT NULL")
        )
        return rows == {"Limit": "Canceled", "Stop": "Filled"}

    await wait_for(settled, "the stop's fill and the cancelled take-profit mirrored")


async def test_orders_after_a_restart_are_numbered_above_the_restored_ones(
    database: Any, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "pn", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    first = await engine_factory()
    before = await _opened(pool, rec, first, sub)
    second = await _restart(first, engine_factory)
    out = await send(second, pool, rec, close("21500"))
    assert out.orders >= 1, out
    aid, bid = await account_of(pool, sub)
    ids = [o.order_id for o in paper_of(second, aid).all_orders(bid)]
    assert len(ids) == len(set(ids))
    assert min(i for i in ids if i not in {b[0] for b in before}) > max(b[0] for b in before)


async def test_a_trailing_stop_keeps_its_distance_after_a_restart(
    database: Any, engine_factory: Any
) -> None:
    """The distance is not in the orders table: it is read from the intent's request."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "pl", {"size": 1, "tp": [{"target": "80"}], "sl": 40, "sl_type": "trailing"}
    )
    first = await engine_factory()
    await _opened(pool, rec, first, sub)
    second = await _restart(first, engine_factory)
    aid, bid = await account_of(pool, sub)
    paper = paper_of(second, aid)
    paper.on_price(SYM, Decimal("21508"))  # up 8: the stop trails 10 behind
    (stop,) = [o for o in paper.working_orders(bid) if o.order_type is OrderType.TRAILING_STOP]
    assert stop.stop_price == Decimal("21498")
    paper.on_price(SYM, Decimal("21497.75"))
    assert await net_pos(second, pool, sub) == 0
    assert paper.fills(bid)[-1].price == Decimal("21497.75")


async def test_breakeven_still_moves_the_stop_after_a_restart(
    database: Any, engine_factory: Any
) -> None:
    """The breakeven trigger is read from the intent, measured from the entry's stored fill."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "pb", {"size": 1, "tp": [{"target": "80"}], "sl": 40, "breakeven_trigger": 16}
    )
    first = await engine_factory()
    await _opened(pool, rec, first, sub)
    second = await _restart(first, engine_factory)
    aid, bid = await account_of(pool, sub)
    paper = paper_of(second, aid)
    paper.on_price(SYM, Decimal("21504"))  # 4 points (16 ticks) in profit
    (stop,) = [o for o in paper.working_orders(bid) if o.order_type is OrderType.STOP]
    assert stop.stop_price == Decimal("21500")  # at the entry


async def test_a_waiting_limit_entry_keeps_its_brackets_after_a_restart(
    database: Any, engine_factory: Any
) -> None:
    """A strategy's legs wait (Suspended) for the entry; they are priced from its fill, with
    the offsets the intent's request holds."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "pw", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    first = await engine_factory()
    limit = buy("21500", order_type="limit", limit_price=Decimal("21490"))
    await send(first, pool, rec, limit)
    before = sorted(map(_key, await working(first, pool, sub)))
    assert [k[2] for k in before] == ["Working", "Suspended", "Suspended"]

    async def mirrored() -> bool:
        return len(await _stored_open(pool, sub)) == 3

    await wait_for(mirrored, "the entry and its legs mirrored")
    second = await _restart(first, engine_factory)
    assert sorted(map(_key, await working(second, pool, sub))) == before
    assert await _agrees(second, pool, sub)
    aid, bid = await account_of(pool, sub)
    paper = paper_of(second, aid)
    paper.on_price(SYM, Decimal("21490"))  # the entry fills; its legs work from 21490
    assert await net_pos(second, pool, sub) == 1
    legs = {str(o.order_type): (o.price, o.stop_price) for o in paper.working_orders(bid)}
    assert legs == {"Limit": (Decimal("21495"), None), "Stop": (None, Decimal("21480"))}
    await wait_for(lambda: _agrees(second, pool, sub), "the table agrees with the broker")


async def test_what_cannot_be_restored_is_not_left_working(
    database: Any, engine_factory: Any
) -> None:
    """A strategy whose request is gone (its intent deleted) cannot price its
    waiting legs: the entry and its legs are cancelled whole, in the table and the intent. A
    trailing stop whose distance is gone works on as a plain stop at its last price."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "px", {"size": 1, "tp": [{"target": "80"}], "sl": 40, "sl_type": "trailing"}
    )
    u = await make_user(pool, "py")
    other = await make_recorder(pool, u, "rec2", tp=[{"target": "20"}], sl=40)
    (osub,) = await make_paper_account(pool, u, "py-paper")
    await make_trader(pool, u, other, [(osub, 1)])
    first = await engine_factory()
    await _opened(pool, rec, first, sub)  # filled: its trailing stop works
    await send(first, pool, other, buy("21500", order_type="limit", limit_price=Decimal("21490")))

    async def mirrored() -> bool:
        return len(await _stored_open(pool, osub)) == 3

    await wait_for(mirrored, "the waiting entry mirrored")
    await first.close()
    # what a delete of their signals took before intents outlived them (migration 0006)
    await pool.execute("DELETE FROM order_intents WHERE signal_id IS NOT NULL")
    second = await engine_factory()

    aid, bid = await account_of(pool, sub)
    (stop,) = [o for o in paper_of(second, aid).working_orders(bid) if o.stop_price]
    assert (stop.order_type, stop.stop_price) == (OrderType.STOP, Decimal("21490"))
    assert await _agrees(second, pool, sub)
    paper_of(second, aid).on_price(SYM, Decimal("21515"))  # no longer trails
    (stop,) = [o for o in paper_of(second, aid).working_orders(bid) if o.stop_price]
    assert stop.stop_price == Decimal("21490")

    oaid, obid = await account_of(pool, osub)
    assert paper_of(second, oaid).working_orders(obid) == []
    assert await _stored_open(pool, osub) == []
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM orders WHERE sub_account_id = $1 AND status = 'Canceled'", osub
        )
        == 3
    )


async def test_a_protective_stop_and_its_intent_work_on_after_a_restart(
    database: Any, engine_factory: Any
) -> None:
    """A stop the reconciler placed has an intent of its own: after a restart the order is
    found under its clOrdId, fills, and its intent follows."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "pg", {"size": 1, "sl": 40})
    first = await engine_factory()
    await _opened(pool, rec, first, sub, n=1)
    aid, bid = await account_of(pool, sub)
    (stop,) = paper_of(first, aid).working_orders(bid)
    await paper_of(first, aid).cancel_order(stop.order_id)
    for _ in range(2):  # naked on two passes: a protective stop is placed
        await first.reconciler.tick()
    (guard,) = paper_of(first, aid).working_orders(bid)
    assert (guard.order_type, guard.cl_ord_id is not None) == (OrderType.STOP, True)

    async def mirrored() -> bool:
        return [r[0] for r in await _stored_open(pool, sub)] == [guard.order_id]

    await wait_for(mirrored, "the protective stop mirrored")
    second = await _restart(first, engine_factory)
    paper = paper_of(second, aid)
    assert list(map(_key, paper.working_orders(bid))) == [_key(guard)]
    found = await paper.order_by_cl_ord_id(bid, guard.cl_ord_id or "")
    assert found is not None
    assert found.order_id == guard.order_id
    paper.on_price(SYM, Decimal("21480"))
    assert await net_pos(second, pool, sub) == 0

    async def filled() -> bool:
        state = "SELECT state FROM order_intents WHERE cl_ord_id = $1"
        return bool(await pool.fetchval(state, guard.cl_ord_id) == "filled")

    await wait_for(filled, "the protective stop's intent filled")


async def test_a_flatten_after_a_restart_keeps_the_stop_until_a_price_closes_the_position(
    database: Any, engine_factory: Any
) -> None:
    """A restart keeps no market price. ``halt --flatten`` then cancelled the position's stop
    and only then found it could not price the close: the position was left open and naked.
    The refusal now changes nothing, and the strategy's next priced alert (refused for entry by
    the kill switch) gives the price the request's next pass closes the position at."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "pf", {"size": 1, "sl": 40})
    first = await engine_factory()
    await _opened(pool, rec, first, sub, n=1)
    second = await _restart(first, engine_factory)
    aid, bid = await account_of(pool, sub)
    paper = paper_of(second, aid)
    (stop,) = paper.working_orders(bid)

    await request_flatten(second, pool)  # jtrades halt --flatten, no alert since the restart

    async def refused() -> bool:
        # not sent (a "not yet", ``NotPricedYet``), never a refusal the flatten gives up on
        q = "SELECT count(*) FROM order_intents WHERE kind = 'liquidate' AND state = 'expired'"
        return bool(await pool.fetchval(q))

    await wait_for(refused, "a liquidation not sent for want of a price")
    reason = await pool.fetchval("SELECT reason FROM order_intents WHERE kind = 'liquidate'")
    assert "no price yet" in reason
    assert paper.working_orders(bid) == [stop]  # the stop still guards the position
    assert await net_pos(second, pool, sub) == 1
    assert not (await flatten_flag(pool)).get("done_at")

    out = await send(second, pool, rec, buy("21510"))  # the next alert: no entry, a price
    assert out.orders == 0
    await wait_done(pool)
    assert await net_pos(second, pool, sub) == 0
    assert paper.working_orders(bid) == []
    assert paper.fills(bid)[-1].price == Decimal("21510")


async def test_a_day_entry_of_an_earlier_session_is_not_restored(
    database: Any, engine_factory: Any
) -> None:
    """The engine sends a limit entry DAY, and Tradovate expires it when its session (the CME
    day, from 17:00 Chicago) ends. A restart days later put it back from the orders table, and
    a price that day filled it. Its row is written Expired, with the legs that waited for it,
    and its intent says why; nothing of it is in the broker."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "pd", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    first = await engine_factory()
    await send(first, pool, rec, buy("21500", order_type="limit", limit_price=Decimal("21490")))
    request = await pool.fetchval("SELECT request FROM order_intents WHERE kind = 'strategy'")
    assert request["request"]["entry"]["time_in_force"] == "Day"

    async def mirrored() -> bool:
        return len(await _stored_open(pool, sub)) == 3

    await wait_for(mirrored, "the entry and its legs mirrored")
    await first.close()
    # three days pass (the daemon was down over a weekend, say): the DAY order's session is over
    for table, col in (("order_intents", "created_at"), ("orders", "updated_at")):
        await pool.execute(f"UPDATE {table} SET {col} = {col} - interval '3 days'")
    second = await engine_factory()
    aid, bid = await account_of(pool, sub)
    paper = paper_of(second, aid)
    assert paper.working_orders(bid) == []
    paper.on_price(SYM, Decimal("21490"))
    assert paper.fills(bid) == [], "a DAY entry placed three sessions ago filled today"
    assert await _stored_open(pool, sub) == []
    statuses = await pool.fetch(
        "SELECT status FROM orders WHERE sub_account_id = $1 ORDER BY broker_order_id", sub
    )
    assert [r["status"] for r in statuses] == ["Expired"] * 3
    intent = await pool.fetchrow("SELECT state, reason FROM order_intents")
    assert intent["state"] == "cancelled"
    assert "expired" in intent["reason"]
