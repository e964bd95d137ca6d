"""Two users who added the same Tradovate login each have a sub-account row for one account at
the broker. Reconciliation acts on the account at the broker, once per pass, never once per
row: a row protected after another re-read a view that did not show the other's stop yet (its
events lag) and stopped the same long 2 a second time — if hit, the account ended short 2,
unprotected. With the real Tradovate client against the simulator over real sockets."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import structlog.testing

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.plan_context import PROTECTION_PREFIX
from jtrades.store import status as status_store
from tests.integration.test_engine import buy, make_recorder, make_trader, make_user, send, wait_for
from tests.login_rows import hold_password
from tests.polling import until
from tests.sim_worlds import sim_tradovate
from tests.simutil import SimHandle, running_sim


@asynccontextmanager
async def _shared_login(
    database: Database, settings: Settings, **risk: Any
) -> AsyncIterator[tuple[SimHandle, Engine, dict[str, Any]]]:
    """alice and bob each add the login ``px_tv`` (one account at the broker, PX1) and each
    follows a recorder of their own with a trader on their row for PX1."""
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("px_tv", "px-pw", ["PX1"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "px_tv", "px-pw")
            bid = sim.account_id("PX1")
            brokers = BrokerRegistry(database, settings)
            w: dict[str, Any] = {"broker": broker, "bid": bid, "rec": [], "sub": [], "trader": []}
            for name in ("alice", "bob"):
                u = await make_user(pool, name)
                rec = await make_recorder(
                    pool, u, f"{name}-rec", size=1, add_size=1, same_direction="add", **risk
                )
                aid = await pool.fetchval(
                    "INSERT INTO accounts (user_id, label, env, username)"
                    " VALUES ($1, $2, 'demo', 'px_tv') RETURNING id",
                    u,
                    f"{name}-demo",
                )
                await hold_password(pool, aid, "px-pw", proven=True)  # added, then used
                sub = await pool.fetchval(
                    "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                    " VALUES ($1, $2, 'PX1') RETURNING id",
                    aid,
                    bid,
                )
                w["trader"].append(await make_trader(pool, u, rec, [(sub, 1)]))
                brokers.attach(aid, "demo", broker)
                w["rec"].append(rec)
                w["sub"].append(sub)
            engine = Engine(database, settings, brokers)
            await engine.start()
            try:
                yield sim, engine, w
            finally:
                await engine.close()
        finally:
            await tv.close()


async def _long_2_unstopped(database: Database, engine: Engine, w: dict[str, Any]) -> None:
    """alice opens long 1 and bob's alert adds 1, no stop loss configured; then alice's trader
    gets a stop loss of 40 ticks (10 points) and bob's 80 (20 points)."""
    pool = database.pool
    await send(engine, pool, w["rec"][0], buy("21500"))
    await send(engine, pool, w["rec"][1], buy("21500"))

    async def long2() -> bool:
        return sum(p.net_pos for p in w["broker"].positions(w["bid"])) == 2

    await wait_for(long2, "long 2")
    for trader, sl in zip(w["trader"], (40, 80), strict=True):
        await pool.execute(
            "UPDATE traders SET sl = $2, updated_at = now() WHERE id = $1", trader, sl
        )
    await engine.config.refresh()


def _stops(sim: SimHandle) -> list[tuple[float, int]]:
    return [
        (o["stopPrice"], o["qty"]) for o in sim.working_orders("PX1") if o["orderType"] == "Stop"
    ]


async def test_one_account_at_the_broker_is_stopped_once_when_its_events_lag(
    database: Database, settings: Settings
) -> None:
    async with _shared_login(database, settings) as (sim, engine, w):
        await _long_2_unstopped(database, engine, w)
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        sim.fault("events_after", on=True, ms=6000)  # the stream lags 6 s: past CANCEL_WAIT_S
        placed = await engine.reconciler.protect_positions()
        sim.fault("clear")
        await asyncio.sleep(6.5)
        await sim.flush()
        # one stop, for the whole long 2, at the price of bob's trader: his alert was the last
        # to touch the contract, so his stop loss protects it (and the stop is his row's)
        assert placed == 1
        assert _stops(sim) == [(21480.0, 2)]
        rows = await database.pool.fetch(
            "SELECT sub_account_id, trader_id FROM order_intents WHERE cl_ord_id LIKE $1",
            f"{PROTECTION_PREFIX}%",
        )
        assert [(r["sub_account_id"], r["trader_id"]) for r in rows] == [
            (w["sub"][1], w["trader"][1])
        ]


async def test_a_stop_placed_but_not_yet_shown_is_not_placed_again_on_the_next_pass(
    database: Database, settings: Settings
) -> None:
    async with _shared_login(database, settings) as (sim, engine, w):
        await _long_2_unstopped(database, engine, w)
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        sim.fault("events_after", on=True, ms=15000)  # longer than a pass waits for it
        with structlog.testing.capture_logs() as logs:
            assert await engine.reconciler.protect_positions() == 1
            # the view still lacks the stop: the next pass waits for it, places nothing
            assert await engine.reconciler.protect_positions() == 0
        events = [e["event"] for e in logs]
        assert "reconcile.protect_unsettled" in events
        # held by the record every plan of the account reads (an alert's too), before the
        # protector's own memory of what it placed (``protect_placed_unseen``)
        assert "reconcile.protect_view_lags" in events
        sim.fault("clear")
        await sim.flush()

        async def shown() -> bool:
            return any(o.stop_price for o in w["broker"].working_orders(w["bid"]))

        await wait_for(shown, "the stop in the view", limit_s=30)
        assert await engine.reconciler.protect_positions() == 0  # covered now
        assert _stops(sim) == [(21480.0, 2)]


async def test_the_last_fill_decides_whose_stop_even_while_the_mirror_has_not_stored_it(
    database: Database, settings: Settings
) -> None:
    """Whose stop loss protects a shared position was read from the intents' stored states
    while the mirror had not stored bob's add yet (a loaded machine: CI saw it): alice's entry
    was the last one stored filled, so her 10-point stop protected the long 2 bob added to last.
    Here the mirror is held back by a lock on its fills table until the pass has started."""
    pool = database.pool
    async with _shared_login(database, settings) as (sim, engine, w):
        broker, bid = w["broker"], w["bid"]
        await send(engine, pool, w["rec"][0], buy("21500"))

        def stored() -> Any:  # (fills stored on either row: each mirrors the whole account)
            return pool.fetchval("SELECT count(*) FROM fills WHERE sub_account_id = ANY($1)",
                                 w["sub"])  # fmt: skip

        async def alice_stored() -> bool:
            return await stored() == 2

        await wait_for(alice_stored, "alice's fill stored on both rows")
        sim.fault("events_after", on=True, ms=500)  # bob's fill shows after his send is done
        async with pool.acquire() as blocker:
            held = blocker.transaction()
            await held.start()
            try:
                await blocker.execute("LOCK TABLE fills IN EXCLUSIVE MODE")  # reads still go
                await send(engine, pool, w["rec"][1], buy("21500"))

                async def long2() -> bool:
                    return sum(p.net_pos for p in broker.positions(bid)) == 2

                await wait_for(long2, "long 2")
                sim.fault("clear")
                for trader, sl in zip(w["trader"], (40, 80), strict=True):
                    await pool.execute(
                        "UPDATE traders SET sl = $2, updated_at = now() WHERE id = $1", trader, sl
                    )
                await engine.config.refresh()
                assert await engine.reconciler.protect_positions() == 0  # first sighting
                assert await stored() == 2  # bob's add is not stored yet

                async def let_go() -> None:
                    await asyncio.sleep(0.5)
                    await held.rollback()

                releasing = asyncio.create_task(let_go())
                placed = await engine.reconciler.protect_positions()
                await releasing
            finally:
                if blocker.is_in_transaction():  # let go above unless the test failed first
                    await held.rollback()
        assert placed == 1
        await sim.flush()
        assert _stops(sim) == [(21480.0, 2)]  # bob's 20-point stop: his add filled last


async def test_orphaned_exits_of_one_account_at_the_broker_are_cancelled_once(
    database: Database, settings: Settings
) -> None:
    async with _shared_login(database, settings, tp=[{"target": "20"}], sl=Decimal(40)) as (
        sim,
        engine,
        w,
    ):
        broker, bid = w["broker"], w["bid"]
        await send(engine, database.pool, w["rec"][0], buy("21500"))

        async def with_exits() -> bool:
            held = sum(p.net_pos for p in broker.positions(bid)) == 1
            return held and len(broker.working_orders(bid)) == 2

        await wait_for(with_exits, "long 1 with its take-profit and stop")
        await broker.place_order(OrderRequest(SubAccount(bid, "PX1"), "MNQZ6", Side.SELL, 1))

        async def flat() -> bool:
            return sum(p.net_pos for p in broker.positions(bid)) == 0

        await wait_for(flat, "closed by hand")
        sweeper = engine.reconciler.orphans
        assert await sweeper.sweep() == 0  # seen
        sim.fault("events_after", on=True, ms=6000)  # the cancels show after CANCEL_WAIT_S
        cancelled = await sweeper.sweep()
        sim.fault("clear")
        await asyncio.sleep(6.5)
        await sim.flush()
        rows = await database.pool.fetch(
            "SELECT sub_account_id, state FROM order_intents WHERE cl_ord_id LIKE 'jt-o-%'"
        )
        assert cancelled == 2
        assert len(rows) == 2, [dict(r) for r in rows]  # one cancel per exit, not one per row
        assert {r["sub_account_id"] for r in rows} == {w["sub"][0]}  # alice's row placed them
        assert sim.working_orders("PX1") == []


async def test_a_position_held_over_the_session_change_is_stopped_by_its_last_traders_sl(
    database: Database, settings: Settings
) -> None:
    """Between two users' rows, the row was told by today's orders in the view; over the
    session change there are none, and the first row (alice's, her stop loss off, an old
    intent in the contract) was chosen: bob's long 1 was never stopped."""
    pool = database.pool
    async with _shared_login(database, settings) as (sim, engine, w):
        broker, bid = w["broker"], w["bid"]
        contract = await broker.find_contract("MNQ1!")
        # alice's trader traded this contract last week (an old, finished intent on her row)
        await pool.execute(
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
            " kind, symbol, side, qty, request, state, broker_order_id, created_at, expires_at)"
            " VALUES (NULL, $1, $2, 'jt-lastweek-1', 1, 'order', $3, 'Buy', 1, '{}', 'done',"
            " 4242, now() - interval '7 days', now() - interval '7 days')",
            w["trader"][0], w["sub"][0], contract.symbol,
        )  # fmt: skip
        # today bob's alert opens long 1: his row's intents are the last to touch it
        await send(engine, pool, w["rec"][1], buy("21500"))

        async def long1() -> bool:
            return sum(p.net_pos for p in broker.positions(bid)) == 1

        await wait_for(long1, "long 1")
        # alice turned her stop loss off; bob's is 40 ticks (10 points)
        await pool.execute("UPDATE traders SET sl = 0, updated_at = now() WHERE id = $1",
                           w["trader"][0])  # fmt: skip
        await pool.execute("UPDATE traders SET sl = 40, updated_at = now() WHERE id = $1",
                           w["trader"][1])  # fmt: skip
        await engine.config.refresh()

        # the session changes (17:00 Chicago); the login reconnects and reads the new day
        sim.new_trading_day()
        session = broker.session
        connects = session.connects
        sim.fault("drop", after=0)
        await sim.set_price("MNQ", "21500.25")
        await until(lambda: session.connects > connects and broker.is_synced(bid), within_s=20)
        await until(lambda: sum(p.net_pos for p in broker.positions(bid)) == 1, within_s=10)
        assert [f for f in broker.fills(bid) if f.symbol == contract.symbol] == []
        assert broker.working_orders(bid) == []

        assert await engine.reconciler.protect_positions() == 0  # first sighting
        placed = await engine.reconciler.protect_positions()
        # bob's trader last touched the contract: his 10-point stop should protect long 1
        assert placed == 1, "long 1 left naked: protected on behalf of alice's stale row (sl=0)"
        assert _stops(sim) == [(21490.0, 1)]


async def test_the_other_users_rejected_alert_does_not_take_over_the_position(
    database: Database, settings: Settings
) -> None:
    """The newest intent of any state decided whose stop loss applies: alice's alert, refused
    by the broker (nothing of hers reached it), made her trader (stop loss off) the one that
    protects bob's long 1, and it stayed naked."""
    pool = database.pool
    async with _shared_login(database, settings) as (sim, engine, w):
        broker, bid = w["broker"], w["bid"]
        await send(engine, pool, w["rec"][1], buy("21500"))  # bob: long 1, no exits

        async def long1() -> bool:
            return sum(p.net_pos for p in broker.positions(bid)) == 1

        await wait_for(long1, "long 1")
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id = $1", w["trader"][1]
        )
        await engine.config.refresh()
        sim.fault("reject_order", text="Insufficient margin")
        await send(engine, pool, w["rec"][0], buy("21500"))  # alice's: refused
        last = await pool.fetchrow(
            "SELECT trader_id, state FROM order_intents ORDER BY id DESC LIMIT 1"
        )
        assert (last["trader_id"], last["state"]) == (w["trader"][0], "rejected")

        assert await engine.reconciler.protect_positions() == 0  # first sighting
        assert await engine.reconciler.protect_positions() == 1
        assert _stops(sim) == [(21490.0, 1)]  # bob's 40-tick stop


async def test_the_other_users_order_that_never_filled_does_not_take_over_the_position(
    database: Database, settings: Settings
) -> None:
    """alice's limit, accepted then cancelled unfilled (her stop loss off), was the newest
    intent in the contract and decided whose stop protects bob's long 1: none."""
    pool = database.pool
    async with _shared_login(database, settings) as (sim, engine, w):
        broker, bid = w["broker"], w["bid"]
        contract = await broker.find_contract("MNQ1!")
        await send(engine, pool, w["rec"][1], buy("21500"))  # bob: long 1, no exits

        async def long1() -> bool:
            return sum(p.net_pos for p in broker.positions(bid)) == 1

        await wait_for(long1, "long 1")

        async def bob_filled() -> bool:  # the mirror writes the fill on bob's intent
            n = await pool.fetchval(
                "SELECT count(*) FROM order_intents WHERE trader_id = $1 AND state = 'filled'",
                w["trader"][1],
            )
            return bool(n)

        await wait_for(bob_filled, "bob's entry recorded filled")
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id = $1", w["trader"][1]
        )
        await engine.config.refresh()
        await pool.execute(  # as the mirror leaves alice's limit: cancelled, never filled
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step,"
            " kind, symbol, side, qty, request, state, broker_order_id, expires_at)"
            " VALUES (NULL, $1, $2, 'jt-alice-limit-1', 1, 'order', $3, 'Buy', 1, '{}',"
            " 'cancelled', 999999, now())",
            w["trader"][0], w["sub"][0], contract.symbol,
        )  # fmt: skip
        assert await engine.reconciler.protect_positions() == 0  # first sighting
        assert await engine.reconciler.protect_positions() == 1
        assert _stops(sim) == [(21490.0, 1)]  # bob's 40-tick stop


async def test_a_login_halted_by_one_user_is_halted_for_the_other_users_row_too(
    database: Database, settings: Settings
) -> None:
    """alice's `halt --account alice-demo --flatten` flattened the account both rows name, and
    bob's next alert opened a position on it again: the halt was read per row."""
    pool = database.pool
    async with _shared_login(database, settings) as (_sim, engine, w):
        broker, bid = w["broker"], w["bid"]
        await send(engine, pool, w["rec"][0], buy("21500"))  # alice: long 1

        async def long1() -> bool:
            return sum(p.net_pos for p in broker.positions(bid)) == 1

        await wait_for(long1, "alice long 1")
        await status_store.set_account_halted(pool, "alice-demo", True)  # `halt --account`
        await engine.config.refresh()
        out = await send(engine, pool, w["rec"][1], buy("21500"))  # bob's alert
        assert out.orders == 0, out
        assert "halt" in str(out.detail), out.detail
        assert sum(p.net_pos for p in broker.positions(bid)) == 1  # nothing added


async def test_a_flatten_liquidates_an_account_two_users_share_once(
    database: Database, settings: Settings
) -> None:
    """Flattened row by row, with the events lagging each row re-read a view still long and
    sent a liquidation of its own: two for one position in one pass (harmless only because
    Tradovate's liquidateposition closes what it holds, whoever asks). The liquidations are
    now one row's (a later pass may try again while the view lags, as for any account)."""
    pool = database.pool
    async with _shared_login(database, settings) as (sim, engine, w):
        broker, bid = w["broker"], w["bid"]
        await send(engine, pool, w["rec"][0], buy("21500"))
        await send(engine, pool, w["rec"][1], buy("21500"))

        async def long2() -> bool:
            return sum(p.net_pos for p in broker.positions(bid)) == 2

        await wait_for(long2, "long 2")
        sim.fault("events_after", on=True, ms=3000)
        requested = "2026-01-02T03:04:05.678901+00:00"
        await pool.execute(  # what `jtrades halt --flatten` writes
            "INSERT INTO system_flags (name, value) VALUES ('halted', $1)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            {"halted": True, "flattens": {requested: {"requested_at": requested}}},
        )
        await engine.config.refresh()

        async def flat() -> bool:
            return sum(p.net_pos for p in broker.positions(bid)) == 0

        await wait_for(flat, "flat")
        sim.fault("clear")
        rows = await pool.fetch(
            "SELECT sub_account_id, cl_ord_id FROM order_intents WHERE kind = 'liquidate'"
        )
        assert len({r["sub_account_id"] for r in rows}) == 1, [dict(r) for r in rows]
