"""A daemon killed after its market entries left comes back after the CME session change
(17:00 Chicago): Tradovate's lists then hold only working orders, so the filled entries are
gone from order/list (``SimHandle.new_trading_day``, mirror.sql ``end_vanished``). A miss by
clOrdId no longer proves "never sent": an order the broker accepted, or one written before
the session began, is closed as done, outcome unknown, and a person is told; one written this
session and never answered is still "not sent". Real Postgres, the Tradovate simulator over
real sockets."""

from __future__ import annotations

from datetime import timedelta

from structlog.testing import capture_logs

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.tradingday import session_start
from jtrades.notify import wanted
from jtrades.store import signals as signal_store
from tests.integration.test_engine import make_recorder, make_trader, make_user, store_signal
from tests.sim_worlds import sim_tradovate
from tests.simutil import running_sim

_INSERT = (
    "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step, kind,"
    " symbol, side, qty, request, state, broker_order_id, created_at, expires_at)"
    " VALUES ($1,$2,$3,$4,1,'order',$5,'Buy',1,'{}',$6,$7,$8::timestamptz,"
    " $8::timestamptz + interval '30 seconds')"
)


async def test_entries_filled_before_the_session_change_are_not_recorded_as_never_sent(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("dc_tv", "dc-pw", ["DC1"])
        tv_settings = sim_tradovate(settings, sim)
        u = await make_user(pool, "dc")
        rec = await make_recorder(pool, u, "dc-rec")
        aid = await pool.fetchval(
            "INSERT INTO accounts (user_id, label, env, username)"
            " VALUES ($1, 'dc-demo', 'demo', 'dc_tv') RETURNING id",
            u,
        )
        bid = sim.account_id("DC1")
        sub = await pool.fetchval(
            "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
            " VALUES ($1, $2, 'DC1') RETURNING id",
            aid,
            bid,
        )
        trader = await make_trader(pool, u, rec, [(sub, 1)])

        # --- the process that dies, in the last session: its entries go out and fill -------
        old = TradovatePool(tv_settings)
        broker = await old.broker("demo", "dc_tv", "dc-pw")
        contract = await broker.find_contract("MNQ1!")
        await sim.set_price(contract.symbol, "21500")
        acct = SubAccount(bid, "DC1")
        a = await broker.place_order(
            OrderRequest(acct, contract.symbol, Side.BUY, 1, cl_ord_id="jt-dc-1")
        )
        await broker.place_order(
            OrderRequest(acct, contract.symbol, Side.BUY, 1, cl_ord_id="jt-dc-2")
        )
        await old.close()
        assert sim.positions("DC1") == {contract.symbol: 2}

        # its rows are of the session before this one; its signal was being handled
        earlier = session_start(await pool.fetchval("SELECT now()")) - timedelta(minutes=10)
        before, _ = await store_signal(pool, rec, earlier)
        # one whose answer was written (the broker's order id), one whose answer died with it
        await pool.execute(_INSERT, before, trader, sub, "jt-dc-1", contract.symbol, "sent",
                           a.order_id, earlier)  # fmt: skip
        await pool.execute(_INSERT, before, trader, sub, "jt-dc-2", contract.symbol, "pending",
                           None, earlier)  # fmt: skip
        # and one of this session that never left (claimed, then the process died)
        now_sid, now_at = await store_signal(pool, rec)
        await pool.execute(_INSERT, now_sid, trader, sub, "jt-dc-3", contract.symbol, "pending",
                           None, now_at)  # fmt: skip

        sim.new_trading_day()  # 17:00 Chicago passed while the daemon was down
        await signal_store.settle_interrupted(pool, now_at + timedelta(seconds=1))

        # --- the restart -------------------------------------------------------------------
        tv = TradovatePool(tv_settings)
        try:
            fresh = await tv.broker("demo", "dc_tv", "dc-pw")
            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", fresh)
            engine = Engine(database, settings, brokers)
            with capture_logs() as logs:
                await engine.start()
            try:
                rows = {
                    r["cl_ord_id"]: r
                    for r in await pool.fetch(
                        "SELECT cl_ord_id, state, reason, broker_order_id FROM order_intents"
                    )
                }
            finally:
                await engine.close()
        finally:
            await tv.close()

        assert sim.positions("DC1") == {contract.symbol: 2}  # both reached the broker
        accepted, unanswered, unsent = rows["jt-dc-1"], rows["jt-dc-2"], rows["jt-dc-3"]
        # the broker had accepted it: never "not sent"
        assert accepted["state"] == "done", dict(accepted)
        assert accepted["broker_order_id"] == a.order_id
        assert "not sent" not in accepted["reason"]
        assert "outcome unknown" in accepted["reason"]
        # written before the session began: a miss proves nothing
        assert unanswered["state"] == "done", dict(unanswered)
        assert "outcome unknown" in unanswered["reason"]
        assert "not sent" not in unanswered["reason"]
        # this session's, never answered: the lists hold all of today's orders, so not sent
        assert unsent["state"] == "expired", dict(unsent)
        assert "not sent, never sent late" in unsent["reason"]

        # a person is told, of those two only, as errors the notifier sends
        told = [e for e in logs if e["event"] == "reconcile.intent_outcome_lost"]
        assert sorted(e["cl_ord_id"] for e in told) == ["jt-dc-1", "jt-dc-2"], told
        assert all(e["log_level"] == "error" for e in told)
        assert all(wanted(e["event"], e["log_level"]) for e in told)
        assert all("look at the account" in e["effect"] for e in told)

        # the interrupted signals count what may have reached the broker
        orders = dict(await pool.fetch("SELECT id, orders FROM signals"))
        assert orders == {before: 2, now_sid: 0}, orders
