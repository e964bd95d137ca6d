"""One signal fanned out to two Tradovate logins, one whose row holds a proven credential and
one whose row does not (yet): the account keys mix a username and a row id, and the
dispatcher's sort of them raises, so no account of the signal trades."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import connect
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import make_recorder, make_trader, make_user, store_signal
from tests.sim_worlds import with_sim
from tests.simutil import running_sim


@asynccontextmanager
async def _world(settings: Settings) -> AsyncIterator[tuple[Any, ...]]:
    async with running_sim() as sim:
        await sim.set_price("MNQ", 21500)
        s = with_sim(settings, sim, request_timeout_s=2.0)
        db = await connect(s)
        tv = TradovatePool(s.tradovate)
        pool = db.pool
        try:
            u = await make_user(pool, "mk")
            rec = await make_recorder(pool, u, "mk-rec")
            brokers = BrokerRegistry(db, s)
            subs = {}
            for login, sub_name, proven in (("pa_tv", "PA1", True), ("pb_tv", "PB1", False)):
                sim.add_login(login, "pw", [sub_name])
                aid = await pool.fetchval(
                    "INSERT INTO accounts (user_id, label, env, username) VALUES ($1, $2, 'demo', $2)"
                    " RETURNING id",
                    u,
                    login,
                )
                if proven:  # a row whose password Tradovate accepted (``password_proven_at``)
                    await pool.execute(
                        "UPDATE accounts SET password_enc = '\\x01', password_key_id = 'k',"
                        " password_proven_at = now() WHERE id = $1",
                        aid,
                    )
                subs[sub_name] = await pool.fetchval(
                    "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                    " VALUES ($1, $2, $3) RETURNING id",
                    aid,
                    sim.account_id(sub_name),
                    sub_name,
                )
                brokers.attach(aid, "demo", await tv.broker("demo", login, "pw"))
            await make_trader(pool, u, rec, [(subs["PA1"], 1), (subs["PB1"], 1)])
            engine = Engine(db, s, brokers)
            await engine.start()
            try:
                yield engine, sim, pool, rec
            finally:
                await engine.close()
        finally:
            await tv.close()
            await db.close()


async def test_a_signal_reaching_a_proven_and_an_unproven_login_trades_both(
    settings: Settings,
) -> None:
    async with _world(settings) as (engine, sim, pool, rec):
        links = engine.config.snapshot.links_by_sub.values()
        assert {lk.has_credential for lk in links} == {True, False}
        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(
            signal_id=sid,
            recorder_id=rec,
            signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)),
            received_at=at,
        )
        assert out.orders == 2, out
        assert list(sim.positions("PA1").values()) == [1]
        assert list(sim.positions("PB1").values()) == [1]


async def test_two_rows_of_one_account_proven_and_not_are_serialised(settings: Settings) -> None:
    """Two users' rows for one Tradovate account (the login shared), one proven, one not yet:
    the locks are keyed by username for one and by row for the other, so two alerts through
    the two rows at once both plan from flat (rule 3): long 2 where each strategy is long 1."""
    import asyncio

    async with running_sim() as sim:
        await sim.set_price("MNQ", 21500)
        s = with_sim(settings, sim, request_timeout_s=2.0)
        db = await connect(s)
        tv = TradovatePool(s.tradovate)
        pool = db.pool
        try:
            sim.add_login("sh_tv", "pw", ["SH1"])
            broker = await tv.broker("demo", "sh_tv", "pw")
            brokers = BrokerRegistry(db, s)
            recs = []
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
                    sim.account_id("SH1"),
                )
                await make_trader(pool, u, rec, [(sub, 1)])
                brokers.attach(aid, "demo", broker)  # the login's one shared session
                recs.append(rec)
            engine = Engine(db, s, brokers)
            await engine.start()
            try:
                sigs = [await store_signal(pool, r) for r in recs]
                await asyncio.gather(
                    *(
                        engine.on_signal(
                            signal_id=sid,
                            recorder_id=r,
                            received_at=at,
                            signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)),
                        )
                        for r, (sid, at) in zip(recs, sigs, strict=True)
                    )
                )
                # serial: the second buy finds long 1 (--same-direction ignore)
                assert list(sim.positions("SH1").values()) == [1]
            finally:
                await engine.close()
        finally:
            await tv.close()
            await db.close()
