"""Two users' rows of one Tradovate account (one login's shared session), one row proven and
one not yet: 00b596a made them share one lock (``account_locks.lock_key``) so that two alerts
through the two rows are serialised (rule 3). Serialising is the lock *and* the note the
settle wait leaves when the view lags what was sent (``UnsettledViews``), which the next
dispatch on the account reads before planning; the note is still keyed by ``broker_account``
(row id for the unproven row, username for the proven one), so the second alert, taking the
now free lock, plans from a view without the first alert's fill and opens again."""

from __future__ import annotations

from decimal import Decimal

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import connect
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import (
    make_recorder,
    make_trader,
    make_user,
    store_signal,
    wait_for,
)
from tests.sim_worlds import with_sim
from tests.simutil import running_sim

LATE_MS = 2500


def _buy() -> Signal:
    return Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))


def _close() -> Signal:
    return Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal(21500))


async def test_a_lagging_view_holds_the_other_row_of_the_account_too(settings: Settings) -> None:
    async with running_sim() as sim:
        await sim.set_price("MNQ", 21500)
        s = with_sim(settings, sim, request_timeout_s=2.0)
        db = await connect(s)
        tv = TradovatePool(s.tradovate)
        pool = db.pool
        try:
            sim.add_login("sh_tv", "pw", ["SH1"])
            broker = await tv.broker("demo", "sh_tv", "pw")
            bid = sim.account_id("SH1")
            brokers = BrokerRegistry(db, s)
            recs = {}
            for name, proven in (("alice", True), ("bob", False)):
                u = await make_user(pool, name)
                rec = await make_recorder(pool, u, f"{name}-rec")
                aid = await pool.fetchval(
                    "INSERT INTO accounts (user_id, label, env, username)"
                    " VALUES ($1, $2, 'demo', 'sh_tv') RETURNING id",
                    u,
                    f"{name}-demo",
                )
                if proven:
                    await pool.execute(
                        "UPDATE accounts SET password_enc = '\\x01', password_key_id = 'k',"
                        " password_proven_at = now() WHERE id = $1",
                        aid,
                    )
                sub = await pool.fetchval(
                    "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                    " VALUES ($1, $2, 'SH1') RETURNING id",
                    aid,
                    bid,
                )
                await make_trader(pool, u, rec, [(sub, 1)])
                brokers.attach(aid, "demo", broker)
                recs[name] = rec
            engine = Engine(db, s, brokers)
            await engine.start()
            engine.dispatcher._settle_timeout = 0.5

            async def on(name: str, signal: Signal):  # type: ignore[no-untyped-def]
                sid, at = await store_signal(pool, recs[name])
                return await engine.on_signal(
                    signal_id=sid, recorder_id=recs[name], signal=signal, received_at=at
                )

            async def view_net(n: int) -> None:
                async def seen() -> bool:
                    return sum(p.net_pos for p in broker.positions(bid)) == n

                await wait_for(seen, f"the view shows net {n}")

            try:
                # warm up with events on time: the contract is looked up and cached
                await on("alice", _buy())
                await view_net(1)
                await on("alice", _close())
                await view_net(0)

                sim.fault("events_after", on=True, ms=LATE_MS)
                first = await on("alice", _buy())  # alice's row: long 1, its fill shown late
                assert first.orders == 1, first.detail
                second = await on("bob", _buy())  # bob's row, the same account at the broker
                sim.fault("clear")
                await view_net(sum(sim.positions("SH1").values()))
                net = sum(sim.positions("SH1").values())
                # serial (rule 3): bob's buy is held until the view shows alice's fill (or,
                # planned from long 1, ignored): never a second entry
                assert net == 1, (
                    f"net {net} at the broker: bob's alert was planned from a view without"
                    f" alice's fill: {second.detail.get('accounts')}"
                )
            finally:
                await engine.close()
        finally:
            await tv.close()
            await db.close()
