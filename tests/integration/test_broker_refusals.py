"""A signal every order of which the broker refused (a risk check, margin: nothing changed at
the broker) is stored rejected for ``broker`` with the broker's text, and an entry refused so
uses no turn: the row said "accepted", 0 orders, no reason (a refused close read as a close on
a flat account, its position still open), and the refused entry's max-signals turn refused the
strategy's next real one. DESIGN §5.9: every rejection is explainable."""

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
from tests.conftest import *  # noqa: F403
from tests.integration.test_dispatch import sim_engine
from tests.integration.test_engine import make_recorder, make_trader, make_user, store_signal
from tests.sim_worlds import with_sim
from tests.simutil import running_sim


async def test_close_refused_by_the_broker_says_so_on_the_signal(settings: Settings) -> None:
    async with sim_engine(settings, {"rv_tv": ["RV1"]}) as (engine, sim, pool, rec, _subs):
        sid, at = await store_signal(pool, rec)
        buy = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))
        await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy, received_at=at)
        assert list(sim.positions("RV1").values()) == [1]

        sim.fault("reject_order", endpoint="liquidateposition", text="Risk check failed")
        sid, at = await store_signal(pool, rec)
        close = Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal(21500))
        out = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=close, received_at=at)

        assert list(sim.positions("RV1").values()) == [1]  # still open
        # the signal's row must not read like a close that had nothing to do
        assert (out.verdict, out.filter, out.orders) == ("rejected", "broker", 0), out
        assert "Risk check failed" in (out.reason or ""), out.reason


async def test_entry_refused_by_the_broker_says_so_on_the_signal(settings: Settings) -> None:
    async with sim_engine(settings, {"rw_tv": ["RW1"]}) as (engine, sim, pool, rec, _subs):
        sim.fault("reject_order", reason="MaxPosLimitReached", text="Insufficient margin")
        sid, at = await store_signal(pool, rec)
        buy = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))
        out = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy, received_at=at)
        assert sim.positions("RW1") == {}
        assert (out.verdict, out.filter, out.orders) == ("rejected", "broker", 0), out
        assert "Insufficient margin" in (out.reason or ""), out.reason
        # what a restart counts: no entry (store.trading.recorder_counters)
        assert out.detail["entry"] is False
        assert out.detail["trader_entries"] == []


@asynccontextmanager
async def engine_on_sim(settings: Settings, **risk: Any) -> AsyncIterator[tuple[Any, ...]]:
    async with running_sim() as sim:
        await sim.set_price("MNQ", 21500)
        s = with_sim(settings, sim, request_timeout_s=1.0)
        tv_settings = s.tradovate
        db = await connect(s)
        tv = TradovatePool(tv_settings)
        pool = db.pool
        try:
            u = await make_user(pool, "simuser")
            rec = await make_recorder(pool, u, "sim-rec", **risk)
            brokers = BrokerRegistry(db, s)
            sim.add_login("mx_tv", "pw", ["MX1"])
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'mx_tv', 'demo', 'mx_tv') RETURNING id",
                u,
            )
            sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'MX1') RETURNING id",
                aid,
                sim.account_id("MX1"),
            )
            await make_trader(pool, u, rec, [(sub, 1)])
            brokers.attach(aid, "demo", await tv.broker("demo", "mx_tv", "pw"))
            engine = Engine(db, s, brokers)
            await engine.start()
            try:
                yield engine, sim, pool, rec
            finally:
                await engine.close()
        finally:
            await tv.close()
            await db.close()


async def test_a_broker_refused_entry_uses_no_max_signals_turn(settings: Settings) -> None:
    async with engine_on_sim(settings, max_signals=1) as (engine, sim, pool, rec):
        buy = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))
        sim.fault("reject_order", reason="MaxPosLimitReached", text="Insufficient margin")
        sid, at = await store_signal(pool, rec)
        first = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy, received_at=at)
        assert first.orders == 0
        assert sim.positions("MX1") == {}  # nothing was opened

        sid, at = await store_signal(pool, rec)
        second = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy, received_at=at)
        assert second.verdict == "accepted", (second.verdict, second.filter, second.reason)
        assert list(sim.positions("MX1").values()) == [1]


async def test_a_reversal_whose_close_was_refused_names_the_refusal_not_the_ttl(
    settings: Settings,
) -> None:
    """The entry step after a refused close is written expired (never sent after a failed
    step): the row read "waited past the TTL", the broker's text dropped."""
    async with sim_engine(settings, {"rr_tv": ["RR1"]}) as (engine, sim, pool, rec, _subs):
        sid, at = await store_signal(pool, rec)
        buy = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))
        await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy, received_at=at)
        assert list(sim.positions("RR1").values()) == [1]

        sim.fault("reject_order", endpoint="liquidateposition", text="Risk check failed")
        sid, at = await store_signal(pool, rec)
        sell = Signal(Action.SELL, ticker="MNQ1!", price=Decimal(21500))
        out = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=sell, received_at=at)
        assert list(sim.positions("RR1").values()) == [1]  # nothing changed
        assert (out.verdict, out.filter) == ("rejected", "broker"), (out.verdict, out.reason)
        assert "Risk check failed" in (out.reason or "")
