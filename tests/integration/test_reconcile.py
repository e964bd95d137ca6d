"""Reconciliation: crash between intent and send, unknown outcomes resolved by clOrdId, the
event mirror (fills de-duplicated, trades and their P&L), protective stops for naked positions,
and "missing is not flat" (an unsynced view decides nothing)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.broker.base import (
    BrokerEvent,
    Fill,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    SubAccount,
    WorkingOrder,
)
from jtrades.broker.paper import PaperBroker
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.pnl import OpenPosition, close_trade
from jtrades.engine.reconcile import needs_stop, resolve_intent
from jtrades.store import signals as signal_store
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    send,
    store_signal,
    wait_for,
)
from tests.sim_worlds import sim_tradovate


class UnsyncedPaper(PaperBroker):
    """A paper login whose live view is not current (mid-reconnect)."""

    def is_synced(self, account_id: int) -> bool:
        return False


async def _world(pool: asyncpg.Pool, **risk: Any) -> dict[str, Any]:
    u = await make_user(pool, "rc")
    rec = await make_recorder(pool, u, "rc-rec", **risk)
    (sub,) = await make_paper_account(pool, u, "rc-paper")
    trader = await make_trader(pool, u, rec, [(sub, 1)])
    aid, bid = await account_of(pool, sub)
    return {"user": u, "rec": rec, "sub": sub, "trader": trader, "aid": aid, "bid": bid}


async def _intent(pool: asyncpg.Pool, w: dict[str, Any], cl: str, state: str) -> int:
    sid, at = await store_signal(pool, w["rec"])
    return int(
        await pool.fetchval(
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step, kind,"
            " symbol, side, qty, request, state, expires_at)"
            " VALUES ($1,$2,$3,$4,1,'order','MNQ1!','Buy',1,'{}',$5,$6) RETURNING id",
            sid,
            w["trader"],
            w["sub"],
            cl,
            state,
            at + timedelta(seconds=30),
        )
    )


async def test_crash_between_intent_and_send_is_never_sent_late(
    database: Database,
    settings: Settings,
) -> None:
    pool = database.pool
    w = await _world(pool)
    iid = await _intent(pool, w, "jt-crash-1", "pending")  # written, then the process died

    engine = Engine(database, settings)
    await engine.start()
    try:
        assert engine.ready()
        row = await pool.fetchrow("SELECT state, reason FROM order_intents WHERE id=$1", iid)
        assert row["state"] == "expired"
        assert "never sent late" in row["reason"]
        await engine.reconciler.tick()
        assert engine.brokers.paper(w["aid"]).all_orders(w["bid"]) == []
    finally:
        await engine.close()


async def test_unknown_outcome_found_at_the_broker_takes_its_state(
    database: Database,
    settings: Settings,
) -> None:
    pool = database.pool
    w = await _world(pool)
    brokers = BrokerRegistry(database, settings)
    paper = brokers.paper(w["aid"])
    paper.on_price("MNQ1!", Decimal(100))
    r = await paper.place_order(
        OrderRequest(
            SubAccount(w["bid"], "rc-paper-1"), "MNQ1!", Side.BUY, 1, cl_ord_id="jt-lost-1"
        )
    )
    iid = await _intent(pool, w, "jt-lost-1", "unknown")  # the answer was lost

    engine = Engine(database, settings, brokers)
    await engine.start()
    try:
        row = await pool.fetchrow(
            "SELECT state, broker_order_id FROM order_intents WHERE id=$1", iid
        )
        assert (row["state"], row["broker_order_id"]) == ("filled", r.order_id)
        assert len(paper.all_orders(w["bid"])) == 1  # nothing re-sent
    finally:
        await engine.close()


async def test_an_interrupted_signal_counts_its_orders_found_at_the_broker(
    database: Database, settings: Settings
) -> None:
    """kill -9 while a signal's orders were out: the dead process never wrote its outcome, so at
    restart the signal is settled "accepted, interrupted" and its intents are found by clOrdId,
    but it showed ``orders 0`` for good. It counts the orders that reached the broker: one the
    mirror saw fill before the kill, one found at restart; not one that never left. A signal
    whose orders all filled before the kill has nothing left to resolve: counted as settled."""
    pool = database.pool
    w = await _world(pool)
    brokers = BrokerRegistry(database, settings)
    paper = brokers.paper(w["aid"])
    paper.on_price("MNQ1!", Decimal(100))
    account = SubAccount(w["bid"], "rc-paper-1")
    sid, at = await store_signal(pool, w["rec"])
    done, _ = await store_signal(pool, w["rec"])
    for signal, cl, state, sent in [
        (sid, "jt-k9-1", "filled", True),  # its fill mirrored before the kill
        (sid, "jt-k9-2", "pending", True),  # sent, the answer lost with the process
        (sid, "jt-k9-3", "pending", False),  # never left
        (done, "jt-k9-4", "filled", True),
    ]:
        if sent:
            await paper.place_order(OrderRequest(account, "MNQ1!", Side.BUY, 1, cl_ord_id=cl))
        await pool.execute(
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
            " kind, symbol, side, qty, request, state, expires_at)"
            " VALUES ($1,$2,$3,$4,1,'order','MNQ1!','Buy',1,'{}',$5,$6)",
            signal, w["trader"], w["sub"], cl, state, at + timedelta(seconds=30),
        )  # fmt: skip

    settled = await signal_store.settle_interrupted(pool, datetime.now(UTC))
    assert settled == {sid: "accepted", done: "accepted"}
    engine = Engine(database, settings, brokers)
    await engine.start()  # resolves the intents left open
    try:
        states = await pool.fetch("SELECT cl_ord_id, state FROM order_intents ORDER BY cl_ord_id")
        assert [tuple(r) for r in states] == [
            ("jt-k9-1", "filled"), ("jt-k9-2", "filled"), ("jt-k9-3", "expired"),
            ("jt-k9-4", "filled"),
        ]  # fmt: skip
        rows = await pool.fetch("SELECT verdict, orders, reason FROM signals ORDER BY id")
        assert [(r["verdict"], r["orders"]) for r in rows] == [("accepted", 2), ("accepted", 1)]
        assert all(r["reason"].startswith("interrupted") for r in rows)
    finally:
        await engine.close()


async def test_missing_is_not_flat(database: Database, settings: Settings) -> None:
    pool = database.pool
    w = await _world(pool, sl=Decimal(40))
    brokers = BrokerRegistry(database, settings)
    brokers._paper[w["aid"]] = UnsyncedPaper()
    iid = await _intent(pool, w, "jt-blind-1", "pending")
    await pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price) VALUES ($1,'MNQ1!',2,100)",
        w["sub"],
    )

    engine = Engine(database, settings, brokers)
    await engine.start()
    try:
        await engine.reconciler.tick()
        await engine.reconciler.tick()
        assert await pool.fetchval("SELECT state FROM order_intents WHERE id=$1", iid) == "pending"
        assert brokers.paper(w["aid"]).all_orders(w["bid"]) == []
        out = await send(engine, pool, w["rec"], buy("100"))
        assert out.orders == 0  # no plan on a view that cannot be read
    finally:
        await engine.close()


async def test_naked_position_gets_a_protective_stop(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    w = await _world(pool, size=2)  # no stop configured when the position opens
    engine = Engine(database, settings)
    await engine.start()
    try:
        await send(engine, pool, w["rec"], buy("21500"))
        paper = engine.brokers.paper(w["aid"])
        assert paper.working_orders(w["bid"]) == []
        assert await engine.reconciler.protect_positions() == 0  # first sighting: wait a pass
        assert await engine.reconciler.protect_positions() == 0  # no SL configured: nothing
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id=$1", w["trader"]
        )
        await engine.config.refresh()

        # naked on two passes in a row (the pass above saw it too): now protected
        assert await engine.reconciler.protect_positions() == 1
        (stop,) = paper.working_orders(w["bid"])
        assert (stop.side, stop.qty, stop.order_type) == (Side.SELL, 2, OrderType.STOP)
        assert stop.stop_price == Decimal("21490")  # 40 ticks of 0.25 below the average
        assert await engine.reconciler.protect_positions() == 0
        assert (
            await pool.fetchval(
                "SELECT count(*) FROM order_intents WHERE cl_ord_id LIKE 'jt-p-%' AND state IN ('sent', 'working')"
            )
            == 1
        )
    finally:
        await engine.close()


@asynccontextmanager
async def _mirroring(
    database: Database, settings: Settings, w: dict[str, Any]
) -> AsyncIterator[tuple[Engine, PaperBroker]]:
    """The engine started on ``w``'s rows, and its paper login (MNQ resolved) to tag events."""
    engine = Engine(database, settings)
    await engine.start()
    try:
        paper = engine.brokers.paper(w["aid"])
        await paper.find_contract("MNQ1!")
        yield engine, paper
    finally:
        await engine.close()


def _fill(
    w: dict[str, Any], fill_id: int, order_id: int, side: Side, qty: int, price: str, at: datetime
) -> BrokerEvent:
    f = Fill(fill_id, order_id, w["bid"], 1000, "MNQ1!", side, qty, Decimal(price), at)
    return BrokerEvent("fill", w["bid"], f)


def _order(
    w: dict[str, Any], order_id: int, side: Side, qty: int, status: OrderStatus
) -> BrokerEvent:
    o = WorkingOrder(order_id, w["bid"], 1000, "MNQ1!", side, qty, OrderType.MARKET, status)
    return BrokerEvent("order", w["bid"], o)


def _position(w: dict[str, Any], net: int) -> BrokerEvent:
    return BrokerEvent("position", w["bid"], Position(w["bid"], 1000, "MNQ1!", net, None))


async def test_mirror_dedups_fills_and_records_trades(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    w = await _world(pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        t0 = datetime.now(UTC)
        buy_fill = _fill(w, 1, 10, Side.BUY, 2, "100", t0)
        sell_fill = _fill(w, 2, 11, Side.SELL, 2, "90", t0)
        for ev in (buy_fill, buy_fill, sell_fill, sell_fill):  # replays around the session change
            await engine.reconciler.mirror.apply_events(w["aid"], paper, [ev])
        await engine.reconciler.mirror.apply_events(
            w["aid"], paper, [_order(w, 10, Side.BUY, 2, OrderStatus.FILLED)]
        )
        await engine.reconciler.mirror.apply_events(w["aid"], paper, [_position(w, 0)])

        assert await pool.fetchval("SELECT count(*) FROM fills") == 2
        trades = await pool.fetch("SELECT side, qty, pnl FROM trades")
        assert [(t["side"], t["qty"], t["pnl"]) for t in trades] == [("long", 2, Decimal(-40))]
        assert await pool.fetchval("SELECT status FROM orders WHERE broker_order_id=10") == "Filled"
        assert await pool.fetchval("SELECT net_pos FROM positions") == 0
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(-40)


async def test_mirror_writes_a_batch_with_repeats_once(
    database: Database, settings: Settings
) -> None:
    """One batch as the session delivers it (an order's states, replayed fills, the position):
    the latest state of each order and position, each fill once, the trade they close."""
    pool = database.pool
    w = await _world(pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        t0 = datetime.now(UTC)
        buy_fill = _fill(w, 1, 10, Side.BUY, 3, "100", t0)
        batch = [
            _order(w, 10, Side.BUY, 3, OrderStatus.WORKING),
            buy_fill,
            _order(w, 10, Side.BUY, 3, OrderStatus.FILLED),
            _position(w, 3),
            buy_fill,
            _order(w, 11, Side.SELL, 3, OrderStatus.WORKING),
            _fill(w, 2, 11, Side.SELL, 3, "102.5", t0),
            _order(w, 11, Side.SELL, 3, OrderStatus.FILLED),
            _position(w, 0),
        ]
        await engine.reconciler.mirror.apply_events(w["aid"], paper, batch)
        await engine.reconciler.mirror.apply_events(w["aid"], paper, batch)  # replayed whole

        assert await pool.fetchval("SELECT count(*) FROM fills") == 2
        trades = await pool.fetch("SELECT side, qty, pnl FROM trades")
        # 2.5 points on 3 MNQ at $2 a point
        assert [(t["side"], t["qty"], t["pnl"]) for t in trades] == [("long", 3, Decimal(15))]
        statuses = await pool.fetch("SELECT broker_order_id, status FROM orders")
        assert {r["broker_order_id"]: r["status"] for r in statuses} == {
            10: "Filled",
            11: "Filled",
        }
        assert await pool.fetchval("SELECT net_pos FROM positions") == 0
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(15)


async def test_a_batch_that_fails_leaves_the_days_pnl_as_the_database_has_it(
    database: Database, settings: Settings
) -> None:
    """The trades table is gone for one batch: nothing of the batch is stored, and the
    in-memory P&L the daily-loss filter reads does not count the trade either; once the table
    is back, the same events (a replay) are recorded and counted once."""
    pool = database.pool
    w = await _world(pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        t0 = datetime.now(UTC)
        batch = [_fill(w, 1, 11, Side.BUY, 1, "100", t0), _fill(w, 2, 12, Side.SELL, 1, "110", t0)]
        await pool.execute("ALTER TABLE trades RENAME TO trades_away")
        with pytest.raises(Exception, match="trades"):
            await engine.reconciler.mirror.write([(w["aid"], paper, ev) for ev in batch])
        assert await pool.fetchval("SELECT count(*) FROM fills") == 0
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == 0

        await pool.execute("ALTER TABLE trades_away RENAME TO trades")
        await engine.reconciler.mirror.apply_events(w["aid"], paper, batch)
        assert await pool.fetchval("SELECT count(*) FROM fills") == 2
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(20)  # 10 pt, $2/pt


async def test_one_batch_of_two_logins_keeps_each_event_on_its_own_sub_account(
    database: Database, settings: Settings
) -> None:
    """The mirror writes every login's events together; two logins whose broker account ids
    are the same (1 and 1) still land on their own sub-accounts, orders and fills alike."""
    pool = database.pool
    w = await _world(pool)
    u2 = await make_user(pool, "rc2")
    (other,) = await make_paper_account(pool, u2, "rc2-paper")
    await make_trader(pool, u2, await make_recorder(pool, u2, "rc2-rec"), [(other, 1)])
    aid2, bid2 = await account_of(pool, other)
    assert bid2 == w["bid"]  # the collision this test is about
    async with _mirroring(database, settings, w) as (engine, paper):
        t0 = datetime.now(UTC)

        def events(oid: int, side: Side) -> list[BrokerEvent]:
            return [
                _order(w, oid, side, 1, OrderStatus.FILLED),
                _fill(w, oid, oid, side, 1, "100", t0),
            ]

        await engine.reconciler.mirror.write(
            [(w["aid"], paper, ev) for ev in events(1, Side.BUY)]
            + [(aid2, paper, ev) for ev in events(2, Side.SELL)]
        )

        orders = await pool.fetch("SELECT sub_account_id, broker_order_id, side FROM orders")
        assert {(r["sub_account_id"], r["broker_order_id"], r["side"]) for r in orders} == {
            (w["sub"], 1, "Buy"),
            (other, 2, "Sell"),
        }
        fills = await pool.fetch("SELECT sub_account_id, broker_fill_id FROM fills")
        assert {(r["sub_account_id"], r["broker_fill_id"]) for r in fills} == {
            (w["sub"], 1),
            (other, 2),
        }


# --- pure decisions --------------------------------------------------------------------------


def test_resolve_intent() -> None:
    wo = WorkingOrder(7, 1, 1, "X", Side.BUY, 1, OrderType.LIMIT, OrderStatus.WORKING)
    assert resolve_intent("order", wo) == ("working", 7, None)
    state, oid, reason = resolve_intent("order", None)
    assert (state, oid) == ("expired", None)
    assert reason


def test_needs_stop() -> None:
    pos = Position(1, 1, "X", 2, Decimal(1))
    stop = WorkingOrder(1, 1, 1, "X", Side.SELL, 2, OrderType.STOP, OrderStatus.WORKING)
    wrong_side = WorkingOrder(2, 1, 1, "X", Side.BUY, 2, OrderType.STOP, OrderStatus.WORKING)
    other = WorkingOrder(3, 1, 1, "Y", Side.SELL, 2, OrderType.STOP, OrderStatus.WORKING)
    assert not needs_stop(pos, [stop])
    assert needs_stop(pos, [wrong_side, other])
    assert not needs_stop(Position(1, 1, "X", 0, None), [])


@given(
    st.lists(
        st.tuples(st.sampled_from([-1, 1]), st.integers(1, 5), st.integers(90, 110)), max_size=30
    )
)
def test_trades_add_up_to_the_cash_flow(fills: list[tuple[int, int, int]]) -> None:
    """Realized P&L of the closed trades + the open lots at their prices = the cash flow, exactly
    (first in first out: the average a partial exit leaves is the broker's, not the lots')."""
    pos = OpenPosition()
    realized = Decimal(0)
    cash = Decimal(0)
    t = datetime.now(UTC)
    for sign, qty, price in fills:
        cash -= sign * qty * Decimal(price)
        trade = close_trade(pos, sign * qty, Decimal(price), Decimal(1), t)
        if trade is not None:
            realized += trade.pnl
            assert trade.qty >= 1
    assert cash + sum(qty * price for qty, price in pos.lots) == realized


async def test_restart_resolves_intents_at_the_simulator_by_cl_ord_id(
    database: Database, settings: Settings
) -> None:
    """The real Tradovate client: an order whose answer was lost is found by its clOrdId; an
    intent that never left is expired; nothing is sent again."""
    from jtrades.broker.tradovate.pool import TradovatePool
    from tests.simutil import running_sim

    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("rc_tv", "rc-pw", ["RC1"])
        tv_settings = sim_tradovate(settings, sim)
        tv = TradovatePool(tv_settings)
        try:
            broker = await tv.broker("demo", "rc_tv", "rc-pw")
            u = await make_user(pool, "rcs")
            rec = await make_recorder(pool, u, "rcs-rec")
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'rc-demo', 'demo', 'rc_tv') RETURNING id",
                u,
            )
            bid = sim.account_id("RC1")
            sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'RC1') RETURNING id",
                aid,
                bid,
            )
            trader = await make_trader(pool, u, rec, [(sub, 1)])
            w = {"rec": rec, "trader": trader, "sub": sub}
            contract = await broker.find_contract("MNQ1!")
            placed = await broker.place_order(
                OrderRequest(
                    SubAccount(bid, "RC1"),
                    contract.symbol,
                    Side.BUY,
                    1,
                    OrderType.LIMIT,
                    cl_ord_id="jt-lost-9",
                    price=Decimal("20000"),
                )
            )
            lost = await _intent(pool, w, "jt-lost-9", "unknown")
            never = await _intent(pool, w, "jt-never-1", "pending")

            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            try:
                rows = {
                    r["id"]: r
                    for r in await pool.fetch(
                        "SELECT id, state, broker_order_id FROM order_intents"
                    )
                }
                assert (rows[lost]["state"], rows[lost]["broker_order_id"]) == (
                    "working",
                    placed.order_id,
                )
                assert rows[never]["state"] == "expired"
                assert len(sim.state()["accounts"]["RC1"]["orders"]) == 1
            finally:
                await engine.close()
        finally:
            await tv.close()


async def test_a_lookup_never_moves_an_intent_back_from_a_final_state(
    database: Database, settings: Settings
) -> None:
    """An intent whose send went unanswered is looked up by clOrdId: the broker says Working;
    during that round trip the order fills and the mirror writes "filled". The lookup's older
    answer was written over it, and the intent stayed "working" for good."""
    pool = database.pool
    w = await _world(pool)
    brokers = BrokerRegistry(database, settings)
    paper = brokers.paper(w["aid"])
    paper.on_price("MNQ1!", Decimal(20000))
    engine = Engine(database, settings, brokers)
    await engine.start()
    try:
        account = SubAccount(w["bid"], "rc-paper-1")
        limit = OrderRequest(
            account, "MNQ1!", Side.BUY, 1, OrderType.LIMIT, price=Decimal(19000), cl_ord_id="jt-r-1"
        )
        await paper.place_order(limit)

        async def mirrored() -> bool:
            n = await pool.fetchval("SELECT count(*) FROM orders WHERE cl_ord_id = 'jt-r-1'")
            return bool(n)

        # the mirror writes the placement's Working in the background: were it written after
        # the intent below, it (not the lookup) would move the intent, and nothing is tested
        await wait_for(mirrored, "the placement mirrored")
        sid = await pool.fetchval("SELECT id FROM signals LIMIT 1")
        long_ago = datetime.now(UTC) - timedelta(minutes=5)
        iid = await pool.fetchval(
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
            " kind, symbol, side, qty, request, state, expires_at, created_at)"
            " VALUES ($1,$2,$3,'jt-r-1',1,'order','MNQ1!','Buy',1,'{}','unknown',$4,$4)"
            " RETURNING id",
            sid, w["trader"], w["sub"], long_ago,
        )  # fmt: skip

        async def state() -> object:
            return await pool.fetchval("SELECT state FROM order_intents WHERE id = $1", iid)

        real = paper.order_by_cl_ord_id

        async def answered_late(account_id: int, cl_ord_id: str, **kw: Any) -> Any:
            found = await real(account_id, cl_ord_id, **kw)  # Working
            paper.on_price("MNQ1!", Decimal(18900))  # fills meanwhile; the mirror records it
            await wait_for(lambda: _is(state, "filled"), "the mirror's filled")
            return found

        paper.order_by_cl_ord_id = answered_late  # type: ignore[method-assign]
        assert await engine.reconciler.resolve_intents(before=datetime.now(UTC)) == 1  # looked up
        assert await state() == "filled"
    finally:
        await engine.close()


async def _is(read: Any, want: str) -> bool:
    return bool(await read() == want)


async def test_an_open_intent_of_a_sub_account_no_trader_links_is_still_looked_up(
    database: Database, settings: Settings
) -> None:
    """The daemon died mid-send, then the operator deleted the trader (what one does after an
    incident). Sessions were opened only for logins a trader links or a flatten reaches, so no
    pass ever asked the broker about the intent: ``pending`` for good."""
    pool = database.pool
    w = await _world(pool)
    iid = await _intent(pool, w, "jt-unlinked-1", "pending")
    await pool.execute("DELETE FROM traders WHERE id=$1", w["trader"])

    engine = Engine(database, settings)
    await engine.start()
    try:
        assert engine.ready()
        row = await pool.fetchrow("SELECT state, reason FROM order_intents WHERE id=$1", iid)
        assert row["state"] == "expired"
        assert "never sent late" in row["reason"]
    finally:
        await engine.close()


async def test_an_intent_unresolved_long_past_its_grace_is_reported_once(
    database: Database, settings: Settings
) -> None:
    """An intent whose login cannot be read stays open (missing is not flat), but not silently:
    one error, which is notified, names it; later passes do not repeat it."""
    from structlog.testing import capture_logs

    pool = database.pool
    w = await _world(pool)
    brokers = BrokerRegistry(database, settings)
    brokers._paper[w["aid"]] = UnsyncedPaper()
    sid, _ = await store_signal(pool, w["rec"])
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    iid = await pool.fetchval(
        "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
        " kind, symbol, side, qty, request, state, expires_at, created_at)"
        " VALUES ($1,$2,$3,'jt-stuck-1',1,'order','MNQ1!','Buy',1,'{}','sent',$4,$4)"
        " RETURNING id",
        sid, w["trader"], w["sub"], long_ago,
    )  # fmt: skip
    recent = await _intent(pool, w, "jt-recent-1", "pending")  # within its grace: no error

    engine = Engine(database, settings, brokers)
    with capture_logs() as logs:
        await engine.start()
        try:
            for _ in range(3):
                await engine.reconciler.tick()
        finally:
            await engine.close()
    states = await pool.fetch(
        "SELECT id, state FROM order_intents WHERE id = ANY($1::bigint[])", [iid, recent]
    )
    assert {r["id"]: r["state"] for r in states} == {iid: "sent", recent: "pending"}
    reported = [e for e in logs if e["event"] == "reconcile.intent_unresolved"]
    assert len(reported) == 1
    assert reported[0]["log_level"] == "error"
    assert reported[0]["cl_ord_id"] == "jt-stuck-1"


async def test_an_intent_whose_account_is_being_sent_to_is_left_to_the_dispatcher(
    database: Database, settings: Settings
) -> None:
    """A long plan (an add, its cancels, its exits on a slow broker) holds its account's lock
    past reconciliation's grace: a step not sent yet was looked up, written 'expired' (not
    found), then sent by the dispatcher: a live order its row called never sent."""
    pool = database.pool
    w = await _world(pool)
    brokers = BrokerRegistry(database, settings)
    engine = Engine(database, settings, brokers)
    await engine.start()
    try:
        iid = await _intent(pool, w, "jt-busy-1", "pending")
        link = engine.config.snapshot.links_by_sub[w["sub"]]
        lock = engine.dispatcher.lock_for(link)
        state = "SELECT state FROM order_intents WHERE id = $1"
        async with lock:  # the account's steps are being sent
            await engine.reconciler.resolve_intents(before=datetime.now(UTC))
            assert await pool.fetchval(state, iid) == "pending"
        await engine.reconciler.resolve_intents(before=datetime.now(UTC))
        assert await pool.fetchval(state, iid) == "expired"  # then looked up: never sent
    finally:
        await engine.close()
