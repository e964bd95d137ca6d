"""Holes a review found in the owed stop (``engine.owed_stop``): a position whose only stop came
with its entry alert (no ``--sl``), cut short after the cancel of that stop, stayed naked for
good when

- the daemon was down across the CME day turn (17:00 Chicago): reconciliation closes the
  never-answered stop step 'done' ("outcome unknown: written in an earlier trading session"),
  and the sweep stores a stop whose Canceled event was lost as 'Unknown';
- the protection placing the owed stop cancelled a take-profit first and then failed: that
  protection became the last plan, and its cancel took no *stop* away;
- the strategy's next alert came first: a plain market add (no exit cancelled or placed)
  became the last plan; a close whose liquidation never left hid it while the position was
  still open."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.owed_stop import lookup
from jtrades.engine.tradingday import session_start
from jtrades.queries import q
from jtrades.sim import ws as sim_ws
from tests.cut_short_world import deliver, deliver_and_die_at, delivery, sim_world
from tests.integration.test_engine import buy
from tests.integration.test_owed_stop_after_cut_resize import (
    RISK,
    _cut_dca_restarted,
    _open_with_alert_stop,
)
from tests.integration.test_owed_stop_cost import indexes, rows_read
from tests.integration.test_owed_stop_evidence import SYM, UNCONFIRMED, order_doc, world

# what reconcile.resolve_intent writes for a never-answered step written before 17:00 Chicago
EARLIER_SESSION = (
    "outcome unknown: written in an earlier trading session, whose finished orders the broker"
    " no longer lists (filled, cancelled or never sent); never sent late: look at the account"
    " at the broker"
)


async def _written_before_the_session(w: Any) -> None:
    """Everything the dead process wrote is of the session before this one (it died before
    17:00 Chicago, the restart comes after)."""
    pool = w.database.pool
    earlier = session_start(await pool.fetchval("SELECT now()")) - timedelta(minutes=10)
    await pool.execute(
        "UPDATE order_intents SET created_at = $1::timestamptz,"
        " expires_at = $1::timestamptz + interval '30 seconds'",
        earlier,
    )


async def _cut_dca_across_the_day_turn(w: Any, *, lose_canceled_event: bool = False) -> Any:
    """A DCA add killed after its cancel of the alert's stop, restarted after 17:00 Chicago;
    the restarted engine."""
    await w.start()
    await _open_with_alert_stop(w)
    went = await deliver_and_die_at(w, await delivery(w, buy("21500"), "a1"), 3)
    assert went == ["1:order:sent", "2:cancel:done"], went
    assert w.net("KA") == 2
    assert w.stops("KA") == []
    if lose_canceled_event:  # as a SIGKILL right after the cancel left: never stored
        n = await w.database.pool.execute(
            "UPDATE orders SET status = 'Working' WHERE status = 'Canceled' AND order_type = 'Stop'"
        )
        assert n == "UPDATE 1", n
    await _written_before_the_session(w)
    w.sim.new_trading_day()  # 17:00 Chicago passed while the daemon was down
    e = await w.restart()
    await w.view_net("KA", 2)
    return e


async def _add(db: Any) -> None:
    """The strategy's next add: a plain market order (no exit cancelled or placed), filled."""
    sig = await db.signal()
    cl = f"jt-{sig}-{db.subs[0]}-1"
    i = await db.intent(
        cl, "order", "filled", signal=sig, side="Buy", qty=1,
        request=order_doc("Buy", 1, "Market"),
    )  # fmt: skip
    await db.filled(cl, intent=i)


async def _passes(w: Any, e: Any, n: int = 3) -> None:
    for _ in range(n):  # passes of the reconciliation loop
        await e.reconciler.tick()
    await w.sim.flush()


# --- the daemon down across the day turn ----------------------------------------------------


async def test_killed_after_the_dca_cancel_restarted_after_the_day_turn_stop_comes_back(
    database: Database, settings: Settings
) -> None:
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await _cut_dca_across_the_day_turn(w)
        await _passes(w, e)
        rows = await w.database.pool.fetch(
            "SELECT cl_ord_id, kind, state, reason FROM order_intents ORDER BY id"
        )
        # long 2, the stop the plan owes it never placed
        assert w.stop_qty("KA") == 2, (w.orders("KA"), [dict(r) for r in rows])


async def test_canceled_event_lost_with_the_process_restarted_after_the_day_turn(
    database: Database, settings: Settings
) -> None:
    """After the day turn the broker no longer lists the cancelled stop, whose Canceled event
    the dead process never stored: the restart's sweep stores it 'Unknown'."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await _cut_dca_across_the_day_turn(w, lose_canceled_event=True)
        await _passes(w, e)
        st = await w.database.pool.fetch(
            "SELECT order_type, status FROM orders WHERE order_type = 'Stop'"
        )
        assert w.stop_qty("KA") == 2, (w.orders("KA"), [dict(r) for r in st])


async def test_the_stop_step_closed_across_the_day_turn_is_still_owed(database: Database) -> None:
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    assert await db.owed() is not None  # control: restarted the same session
    # the same plan, its never-sent stop resolved after 17:00 Chicago
    await db.pool.execute(
        "UPDATE order_intents SET state = 'done', reason = $1 WHERE cl_ord_id LIKE '%-3x'",
        EARLIER_SESSION,
    )
    assert await db.owed() is not None


async def test_a_stop_step_closed_across_the_day_turn_that_reached_the_broker_is_not_owed(
    database: Database,
) -> None:
    """A stored order row carries its clOrdId: it reached the broker, and is no longer working
    (filled or cancelled since): it was placed, not owed."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    await db.pool.execute(
        "UPDATE order_intents SET state = 'done', reason = $1 WHERE cl_ord_id LIKE '%-3x'",
        EARLIER_SESSION,
    )
    cl = await db.pool.fetchval("SELECT cl_ord_id FROM order_intents WHERE cl_ord_id LIKE '%-3x'")
    await db.pool.execute(
        "INSERT INTO orders (sub_account_id, broker_order_id, cl_ord_id, symbol, side, qty,"
        " order_type, stop_price, status) VALUES ($1, 99, $2, 'MNQZ6', 'Sell', 2, 'Stop', 21490,"
        " 'Unknown')",
        db.subs[0],
        cl,
    )
    assert await db.owed() is None


async def test_a_stop_swept_unknown_across_the_day_turn_still_counts_as_taken(
    database: Database,
) -> None:
    """The Canceled event never stored; after the day turn the sweep writes the stop 'Unknown'
    (mirror.end_vanished): the position has no stop at the broker either way."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    await db.stop_status("Unknown")
    assert await db.owed() is not None


async def _killed_before_anything_left(w: Any, *, day_turn: bool) -> Any:
    """A DCA add killed before any of its steps left (the add, the cancel, the new stop all
    unsent), restarted (after 17:00 Chicago when ``day_turn``); the restarted engine, the
    alert's stop still working."""
    await w.start()
    await _open_with_alert_stop(w)
    went = await deliver_and_die_at(w, await delivery(w, buy("21500"), "a1"), 1)
    assert went == [], went  # nothing of the DCA plan reached the broker
    assert w.net("KA") == 1
    assert w.stops("KA") == [(21490, 1)]
    if day_turn:
        await _written_before_the_session(w)
        w.sim.new_trading_day()  # 17:00 Chicago passed while the daemon was down
    e = await w.restart()
    await w.view_net("KA", 1)
    await _passes(w, e)
    assert w.stops("KA") == [(21490, 1)]  # the alert's stop still protects the long 1
    return e


async def _person_cancels_the_stop(w: Any, e: Any) -> list[Any]:
    (stop,) = w.orders("KA")
    await w.broker.cancel_order(stop["id"])  # a person removes the stop on purpose
    await w.view_orders("KA", 0)
    await _passes(w, e)
    rows = await w.database.pool.fetch(
        "SELECT cl_ord_id, kind, state, left(reason, 40) r FROM order_intents ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def test_a_stop_cancelled_by_hand_after_a_plan_killed_unsent_stays_cancelled(
    database: Database, settings: Settings
) -> None:
    """Control: restarted the same session, the plan's steps expire 'not sent'."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await _killed_before_anything_left(w, day_turn=False)
        rows = await _person_cancels_the_stop(w, e)
        assert w.stop_qty("KA") == 0, (w.orders("KA"), rows)


async def test_an_add_filled_but_its_rows_lost_across_the_day_turn_still_owes_the_stop(
    database: Database, settings: Settings
) -> None:
    """A DCA add the broker took and filled, killed after its cancel of the alert's stop, the
    mirror's last batches (the add's order and fill, the stop's Canceled event) lost with the
    process, restarted after the day turn: the add reads 'done' in an earlier session with no
    broker id and no stored row, as an add never sent would. Taken for never sent, it hid the
    cancel after it and the long 2 stayed naked; the stop is owed. (The price: a plan killed
    before anything left, its stop then cancelled by hand, gets the stop back across a day
    turn; the same session tells them apart, ``test_a_stop_cancelled_by_hand_after_a_plan_killed_unsent_stays_cancelled``.)"""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        await w.start()
        await _open_with_alert_stop(w)
        went = await deliver_and_die_at(w, await delivery(w, buy("21500"), "a1"), 3)
        assert went == ["1:order:sent", "2:cancel:done"], went
        assert w.net("KA") == 2
        assert w.stops("KA") == []
        pool = w.database.pool
        add = await pool.fetchval(
            "SELECT cl_ord_id FROM order_intents WHERE kind = 'order'"
            " AND request ->> 'note' LIKE 'DCA add%'"
        )
        oid = await pool.fetchval("SELECT broker_order_id FROM orders WHERE cl_ord_id = $1", add)
        assert oid is not None
        # the mirror's batches that died with the process (SIGKILL): the add's order and fill,
        # the intent's move to filled in the same statement, the stop's Canceled event after
        await pool.execute("DELETE FROM fills WHERE broker_order_id = $1", oid)
        await pool.execute("DELETE FROM orders WHERE broker_order_id = $1", oid)
        await pool.execute(
            "UPDATE order_intents SET state = 'pending', broker_order_id = NULL"
            " WHERE cl_ord_id = $1",
            add,
        )
        n = await pool.execute(
            "UPDATE orders SET status = 'Working' WHERE status = 'Canceled' AND order_type = 'Stop'"
        )
        assert n == "UPDATE 1", n
        await _written_before_the_session(w)
        w.sim.new_trading_day()
        e = await w.restart()
        await w.view_net("KA", 2)
        await _passes(w, e)
        assert w.stop_qty("KA") == 2, w.orders("KA")


# --- a failed protection ----------------------------------------------------------------------


async def test_a_refused_replacement_after_its_take_profit_cancel_keeps_the_stop_owed(
    database: Database, settings: Settings
) -> None:
    """A position owing a stop with a take-profit beside it (a person's, placed by hand after
    the cut) is re-placed whole: the take-profit cancelled, then the OCO refused. That
    protection reached the broker (its cancel) but its stop did not: still owed."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await _cut_dca_restarted(w)  # long 2, its stop cancelled, the new one never sent
        assert w.stop_qty("KA") == 0
        bid = w.bids["KA"]
        (p,) = w.broker.positions(bid)
        await w.broker.place_order(
            OrderRequest(SubAccount(bid, "KA"), p.symbol, Side.SELL, 2, OrderType.LIMIT,
                         price=Decimal("21540"))
        )  # fmt: skip
        await w.view_orders("KA", 1)

        # the broker refuses the OCO of the first attempt and its in-pass retries
        w.sim.fault("reject_order", endpoint="placeoco", count=4, text="busy")
        await e.reconciler.tick()
        await w.sim.flush()
        w.sim.fault("clear")
        await _passes(w, e)  # the broker taking orders again
        rows = await w.database.pool.fetch(
            "SELECT cl_ord_id, kind, state FROM order_intents ORDER BY id"
        )
        assert w.net("KA") == 2
        assert w.stop_qty("KA") == 2, (w.orders("KA"), [tuple(r) for r in rows])


async def test_a_protection_whose_take_profit_cancel_showed_late_keeps_the_stop_owed(
    database: Database, settings: Settings
) -> None:
    """The protection re-placing the owed stop beside a take-profit cancels the take-profit;
    the broker takes the cancel but its Canceled event comes late (the stream lags past
    CANCEL_WAIT_S), so the protection places nothing beside an order that may still fill and
    writes no stop step. Its cancel reached the broker, but it is passed over: the next
    attempt still finds the stop owed."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await _cut_dca_restarted(w)  # long 2, its stop cancelled, the new one never sent
        bid = w.bids["KA"]
        (p,) = w.broker.positions(bid)
        await w.broker.place_order(
            OrderRequest(SubAccount(bid, "KA"), p.symbol, Side.SELL, 2, OrderType.LIMIT,
                         price=Decimal("21540"))
        )  # fmt: skip
        await w.view_orders("KA", 1)

        w.sim.fault("events_after", on=True, ms=6000)  # the stream lags once
        await e.reconciler.tick()
        w.sim.fault("clear")
        await w.sim.flush()
        await w.view_orders("KA", 0)  # the take-profit's cancel shows in the end
        await _passes(w, e)  # the stream is back to normal
        rows = await w.database.pool.fetch(
            "SELECT cl_ord_id, kind, state FROM order_intents ORDER BY id"
        )
        assert w.net("KA") == 2
        assert w.stop_qty("KA") == 2, (w.orders("KA"), [tuple(r) for r in rows])


# --- the next alert -----------------------------------------------------------------------------


async def test_the_next_add_does_not_wipe_out_the_owed_stop(
    database: Database, settings: Settings, monkeypatch: Any
) -> None:
    """The socket drops right after the simulator cancelled the alert's stop; the strategy's
    next add comes before a protection pass: a plain market order (no exit working, none
    configured)."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await w.start()
        await _open_with_alert_stop(w)
        real = sim_ws.WsConn._frame
        armed = {"on": True}

        async def frame(self: Any, text: str) -> None:
            if armed["on"] and text.split("\n", 1)[0].lower().endswith("cancelorder"):
                armed["on"] = False
                await self._call(sim_ws.parse_request(text))  # the simulator cancels the stop...
                self.abort()  # ...and the socket dies before the answer
                return
            await real(self, text)

        monkeypatch.setattr(sim_ws.WsConn, "_frame", frame)
        await deliver(w, await delivery(w, buy("21500"), "a1"))
        assert w.net("KA") == 2
        assert w.stops("KA") == []
        await w.view_net("KA", 2)  # reconnected
        (p,) = w.broker.positions(w.bids["KA"])
        assert await lookup(w.database.pool, [w.subs["KA"]], p, 0) is not None  # control

        out = await deliver(w, await delivery(w, buy("21500"), "a2"))
        assert out.orders == 1, out
        await w.view_net("KA", 3)
        await _passes(w, e)
        assert w.net("KA") == 3
        # the stop the cut plan owed (21490), for the whole long 3
        assert w.stop_qty("KA") >= 2, w.orders("KA")


async def test_a_close_whose_liquidation_never_left_does_not_hide_the_owed_stop(
    database: Database,
) -> None:
    """A close alert's liquidation sent into a dead socket (closed 'outcome not confirmed' by
    reconciliation): the position is still long 2 with no stop."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    sig = await db.signal()
    p = f"jt-{sig}-{db.subs[0]}"
    await db.intent(f"{p}-1", "liquidate", "expired", signal=sig, reason=UNCONFIRMED)
    assert await db.owed() is not None


async def test_a_position_reopened_by_hand_after_an_add_is_not_owed_the_stop(
    database: Database,
) -> None:
    """The add is passed over for the plan, and its fill for the latest fill: a fill by hand
    before it still means a person traded the contract since the cut."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    await db.filled(None)  # by hand
    await _add(db)
    assert await db.owed(net=4) is None


async def test_the_add_passed_over_owes_the_cut_plan_s_stop_for_the_whole_position(
    database: Database,
) -> None:
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    await _add(db)
    owed = await db.owed(net=3)
    assert owed is not None
    assert (owed.stop_price, owed.qty) == (Decimal("21490.0"), 3)


async def test_an_add_after_a_liquidation_that_reached_the_broker_is_a_new_trade(
    database: Database,
) -> None:
    """A close whose liquidation is in doubt but whose fill is stored (its order linked to the
    intent): it flattened, and the plain entry after it opened a new trade."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    sig = await db.signal()
    cl = f"jt-{sig}-{db.subs[0]}-1"
    i = await db.intent(cl, "liquidate", "expired", signal=sig, reason=UNCONFIRMED)
    await db.filled(cl, intent=i, side="Sell")
    await _add(db)
    assert await db.owed(net=1) is None


# --- the cost of the day turn's check ---------------------------------------------------------


@pytest.mark.parametrize("mode", ["force_custom_plan", "force_generic_plan"])
async def test_whether_the_broker_had_a_stop_step_reads_its_own_orders_only(
    database: Database, mode: str
) -> None:
    """A last plan whose stop step reconciliation closed across the day turn: whether the
    broker had it is one index probe, whatever the orders of other accounts (30,000) and of
    this account in another contract (3,000)."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    await db.pool.execute(
        "UPDATE order_intents SET state = 'done', reason = $1 WHERE cl_ord_id LIKE '%-3x'",
        EARLIER_SESSION,
    )
    pool, me = db.pool, db.subs[0]
    aid = await pool.fetchval("SELECT account_id FROM sub_accounts WHERE id = $1", me)
    await pool.execute(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " SELECT $1, 800000 + g, 'O' || g FROM generate_series(1, 60) g",
        aid,
    )
    await pool.execute(
        "INSERT INTO orders (sub_account_id, broker_order_id, cl_ord_id, symbol, side, qty,"
        " order_type, status) SELECT s.id, 100000 + g, 'jt-o' || g || '-' || s.id, $1, 'Buy',"
        " 1, 'Market', 'Filled' FROM sub_accounts s, generate_series(1, 500) g WHERE s.id <> $2",
        SYM,
        me,
    )
    await pool.execute(
        "INSERT INTO orders (sub_account_id, broker_order_id, cl_ord_id, symbol, side, qty,"
        " order_type, status) SELECT $1, 500000 + g, 'jt-es' || g, 'ESZ6', 'Buy', 1, 'Market',"
        " 'Filled' FROM generate_series(1, 3000) g",
        me,
    )
    await pool.execute("ANALYZE order_intents, fills, orders")
    assert await db.owed() is not None

    async with pool.acquire() as conn:
        await conn.execute(f"SET plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE owed_evidence(bigint[], text) AS {q('owed_stops.evidence')}")
        try:
            out = await conn.fetchval(
                f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE owed_evidence('{{{me}}}', '{SYM}')"
            )
        finally:
            await conn.execute("DEALLOCATE owed_evidence")
            await conn.execute("RESET plan_cache_mode")
    (plan,) = json.loads(out) if isinstance(out, str) else out
    read = rows_read(plan)
    assert read.get("orders", 0) < 100, (read, indexes(plan))
