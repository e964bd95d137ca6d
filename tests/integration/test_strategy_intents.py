"""Order strategies (``startorderstrategy``) and money rule 2, against the simulator.

A strategy's orders carry no clOrdId: the intent's id travels as the strategy's ``uuid``
(StartOrderStrategy.uuid, kept on the OrderStrategy entity), and the entry order is reached
through the strategy's ``orderStrategyLink``. A strategy that was sent is found by that id and
takes its entry order's state; one that never reached the broker is expired; the lookup costs a
handful of requests, not one per order on the account.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from jtrades.broker.base import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
)
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings, TradovateSettings
from jtrades.db import Database, connect
from jtrades.engine.engine import Engine
from jtrades.errors import TransientBrokerError
from jtrades.store import intents as intent_store
from tests.integration.test_engine import make_recorder, make_trader, make_user, store_signal
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim

D = Decimal


def _tv_settings(sim: SimHandle) -> TradovateSettings:
    return sim_tradovate_defaults(sim, request_timeout_s=5)


@asynccontextmanager
async def _broker(sim: SimHandle) -> AsyncIterator[TradovateBroker]:
    """One process's connection: its live view starts from a fresh snapshot."""
    pool = TradovatePool(_tv_settings(sim))
    try:
        yield await pool.broker("demo", LOGIN, PASSWORD)
    finally:
        await pool.close()


def _strategy(
    acct: SubAccount, symbol: str, cl: str, price: Decimal | None = None
) -> StrategyRequest:
    entry = OrderRequest(
        acct,
        symbol,
        Side.BUY,
        2,
        OrderType.LIMIT if price is not None else OrderType.MARKET,
        cl_ord_id=cl,
        price=price,
    )
    legs = tuple(StrategyBracket(qty=1, profit_target=D(tp), stop_loss=D(-15)) for tp in (10, 20))
    return StrategyRequest(entry, legs)


def _requests(sim: SimHandle) -> int:
    return int(sim.stats()["requests"])


# --- the client against the simulator ---------------------------------------------------------


async def test_a_strategy_carries_the_intent_id_and_is_found_by_it() -> None:
    async with running_sim() as sim, _broker(sim) as broker:
        acct = SubAccount(sim.account_id("SIM1"), "SIM1")
        contract = await broker.find_contract("MNQ1!")
        await sim.set_price("MNQ", "21500")
        result = await broker.start_strategy(_strategy(acct, contract.symbol, "jt-st-1"))

        st = sim.world.exchange.strategies[result.strategy_id or 0]
        assert st.uuid == "jt-st-1"  # kept by the broker with the strategy
        assert result.order_id == st.entry_id  # the entry order, not 0

        found = await broker.order_by_cl_ord_id(acct.account_id, "jt-st-1", strategy=True)
        assert found is not None
        assert (found.order_id, found.cl_ord_id) == (st.entry_id, "jt-st-1")
        plain = await broker.order_by_cl_ord_id(acct.account_id, "jt-st-1")  # the view knows it
        assert plain is not None
        assert plain.order_id == st.entry_id
        await until(lambda: broker.session.view.order(st.entry_id) is not None)
        found = await broker.order_by_cl_ord_id(acct.account_id, "jt-st-1", strategy=True)
        assert found is not None
        assert found.status is OrderStatus.FILLED
        # never across sub-accounts
        other = sim.account_id("SIM2")
        assert await broker.order_by_cl_ord_id(other, "jt-st-1", strategy=True) is None


async def test_starting_a_strategy_costs_one_request() -> None:
    """The hot path: ``startorderstrategy`` and nothing else. The entry order comes from the
    stream (the strategy's ``orderStrategyLink``): the answer carries its id when the events
    came first, else 0, and the entry takes the intent's id as soon as its link arrives."""
    async with running_sim() as sim, _broker(sim) as broker:
        acct = SubAccount(sim.account_id("SIM1"), "SIM1")
        contract = await broker.find_contract("MNQ1!")
        await sim.set_price("MNQ", "21500")
        await until(lambda: broker.is_synced(acct.account_id))
        view = broker.session.view

        before = _requests(sim)
        first = await broker.start_strategy(_strategy(acct, contract.symbol, "jt-one-1", D(21000)))
        assert _requests(sim) - before == 1
        entry = sim.world.exchange.strategies[first.strategy_id or 0].entry_id
        assert first.order_id == entry  # its events overtook the answer
        known = view.order_by_cl_ord_id(acct.account_id, "jt-one-1")
        assert known is not None
        assert known.order_id == entry

        sim.fault("events_after", on=True, ms=100)  # the answer first, the events later
        before = _requests(sim)
        late = await broker.start_strategy(_strategy(acct, contract.symbol, "jt-one-2", D(21000)))
        assert _requests(sim) - before == 1
        assert late.order_id == 0  # not known yet: the stream tells
        entry = sim.world.exchange.strategies[late.strategy_id or 0].entry_id
        await until(lambda: view.order_by_cl_ord_id(acct.account_id, "jt-one-2") is not None)
        bound = view.order_by_cl_ord_id(acct.account_id, "jt-one-2")
        assert bound is not None
        assert (bound.order_id, bound.status) == (entry, OrderStatus.WORKING)
        assert _requests(sim) - before == 1


async def test_after_a_restart_a_strategy_is_found_at_the_broker_in_a_few_requests() -> None:
    """The reviewer's case: 21 strategies on the account cost one lookup 64 requests."""
    async with running_sim() as sim:
        acct = SubAccount(sim.account_id("SIM1"), "SIM1")
        async with _broker(sim) as first:  # the process that sent them, then died
            contract = await first.find_contract("MNQ1!")
            await sim.set_price("MNQ", "21500")
            started = [
                await first.start_strategy(_strategy(acct, contract.symbol, f"jt-many-{n}"))
                for n in range(21)
            ]
            await first.place_order(
                OrderRequest(
                    acct, contract.symbol, Side.BUY, 1, OrderType.LIMIT,
                    cl_ord_id="jt-plain-1", price=D(20000),
                )
            )  # fmt: skip
        async with _broker(sim) as broker:
            await until(lambda: broker.is_synced(acct.account_id))
            entry = sim.world.exchange.strategies[started[3].strategy_id or 0].entry_id

            before = _requests(sim)
            found = await broker.order_by_cl_ord_id(acct.account_id, "jt-many-3", strategy=True)
            assert found is not None
            assert (found.order_id, found.status) == (entry, OrderStatus.FILLED)
            assert _requests(sim) - before <= 4

            before = _requests(sim)
            assert (
                await broker.order_by_cl_ord_id(acct.account_id, "jt-never", strategy=True) is None
            )
            assert _requests(sim) - before <= 1  # one complete list of the account's strategies

            # plain orders: the commands of many orders in one request, not one per order
            before = _requests(sim)
            plain = await broker.order_by_cl_ord_id(acct.account_id, "jt-plain-1")
            assert plain is not None
            assert plain.status is OrderStatus.WORKING
            assert _requests(sim) - before <= 4
            before = _requests(sim)
            assert await broker.order_by_cl_ord_id(acct.account_id, "jt-gone") is None
            assert _requests(sim) - before <= 3

            # orders older than the intent cannot carry its id: not even their commands are read
            before = _requests(sim)
            later = datetime.now(UTC) + timedelta(minutes=10)
            assert await broker.order_by_cl_ord_id(acct.account_id, "jt-new", since=later) is None
            assert _requests(sim) - before == 1


async def test_an_unreadable_strategy_list_concludes_nothing() -> None:
    """Rule 2: "not sent" only from a complete answer; a refused read raises instead."""
    async with running_sim() as sim, _broker(sim) as broker:
        acct = SubAccount(sim.account_id("SIM1"), "SIM1")
        await until(lambda: broker.is_synced(acct.account_id))
        sim.fault("rate_limit", count=10)
        with pytest.raises(TransientBrokerError):
            await broker.order_by_cl_ord_id(acct.account_id, "jt-x", strategy=True)


# --- reconciliation on Postgres ---------------------------------------------------------------


@asynccontextmanager
async def _engine(
    settings: Settings, sim: SimHandle, broker: TradovateBroker
) -> AsyncIterator[tuple[Engine, asyncpg.Pool, dict[str, Any]]]:
    db: Database = await connect(settings)
    pool = db.pool
    try:
        u = await make_user(pool, "st")
        rec = await make_recorder(pool, u, "st-rec")
        aid = await pool.fetchval(
            "INSERT INTO accounts (user_id, label, env, username)"
            " VALUES ($1, 'st-demo', 'demo', $2) RETURNING id",
            u,
            LOGIN,
        )
        sub = await pool.fetchval(
            "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
            " VALUES ($1, $2, 'SIM1') RETURNING id",
            aid,
            sim.account_id("SIM1"),
        )
        trader = await make_trader(pool, u, rec, [(sub, 1)])
        brokers = BrokerRegistry(db, settings)
        brokers.attach(aid, "demo", broker)
        engine = Engine(db, settings, brokers)
        yield engine, pool, {"rec": rec, "trader": trader, "sub": sub}
    finally:
        await db.close()


async def _intent(pool: asyncpg.Pool, w: dict[str, Any], cl: str, state: str) -> int:
    sid, at = await store_signal(pool, w["rec"])
    return int(
        await pool.fetchval(
            "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step, kind,"
            " symbol, side, qty, request, state, expires_at)"
            " VALUES ($1,$2,$3,$4,1,'strategy','MNQ1!','Buy',2,'{}',$5,$6) RETURNING id",
            sid,
            w["trader"],
            w["sub"],
            cl,
            state,
            at + timedelta(seconds=30),
        )
    )


async def _state(pool: asyncpg.Pool, iid: int) -> tuple[str, int | None]:
    row = await pool.fetchrow("SELECT state, broker_order_id FROM order_intents WHERE id=$1", iid)
    return row["state"], row["broker_order_id"]


async def _eventually(pool: asyncpg.Pool, iid: int, want: tuple[str, int | None]) -> None:
    async with asyncio.timeout(5):
        while await _state(pool, iid) != want:  # noqa: ASYNC110  (the mirror writes it)
            await asyncio.sleep(0.02)


async def test_a_sent_strategy_reaches_its_state_and_is_never_expired(settings: Settings) -> None:
    async with running_sim() as sim, _broker(sim) as broker:
        acct = SubAccount(sim.account_id("SIM1"), "SIM1")
        async with _engine(settings, sim, broker) as (engine, pool, w):
            await engine.start()
            try:
                contract = await broker.find_contract("MNQ1!")
                await sim.set_price("MNQ", "21500")
                sent = {}
                for cl, price in (("jt-st-mkt", None), ("jt-st-lmt", D(21000))):
                    iid = await _intent(pool, w, cl, "pending")  # as the dispatcher writes it
                    r = await broker.start_strategy(_strategy(acct, contract.symbol, cl, price))
                    await intent_store.mark_sent(pool, iid, "sent", broker_order_id=r.order_id)
                    sent[cl] = (iid, sim.world.exchange.strategies[r.strategy_id or 0].entry_id)

                mkt, mkt_entry = sent["jt-st-mkt"]
                lmt, lmt_entry = sent["jt-st-lmt"]
                # the mirror moves them from their entry orders' events
                for iid, want in ((mkt, ("filled", mkt_entry)), (lmt, ("working", lmt_entry))):
                    await _eventually(pool, iid, want)

                # a pass long after: nothing open is expired while its strategy is at the broker
                await engine.reconciler.resolve_intents(before=datetime.now(UTC) + timedelta(1))
                assert await _state(pool, mkt) == ("filled", mkt_entry)
                assert await _state(pool, lmt) == ("working", lmt_entry)
                assert len(sim.world.exchange.strategies) == 2
            finally:
                await engine.close()


async def test_an_unknown_strategy_outcome_is_looked_up_before_anything(
    settings: Settings,
) -> None:
    """The connection died mid-send (or the process with it): the strategy that reached the
    broker is found by its id and takes its entry's state; the one that did not is expired;
    nothing is sent again."""
    async with running_sim() as sim:
        acct = SubAccount(sim.account_id("SIM1"), "SIM1")
        async with _broker(sim) as first:  # sends, then its answers are lost with it
            contract = await first.find_contract("MNQ1!")
            await sim.set_price("MNQ", "21500")
            mkt = await first.start_strategy(_strategy(acct, contract.symbol, "jt-lost-mkt"))
            lmt = await first.start_strategy(
                _strategy(acct, contract.symbol, "jt-lost-lmt", D(21000))
            )
        entries = {
            cl: sim.world.exchange.strategies[r.strategy_id or 0].entry_id
            for cl, r in (("jt-lost-mkt", mkt), ("jt-lost-lmt", lmt))
        }
        async with _broker(sim) as broker, _engine(settings, sim, broker) as (engine, pool, w):
            ids = {
                cl: await _intent(pool, w, cl, "unknown")
                for cl in ("jt-lost-mkt", "jt-lost-lmt", "jt-never-st")
            }
            await engine.start()
            try:
                assert await _state(pool, ids["jt-lost-mkt"]) == (
                    "filled",
                    entries["jt-lost-mkt"],
                )
                assert await _state(pool, ids["jt-lost-lmt"]) == (
                    "working",
                    entries["jt-lost-lmt"],
                )
                state, _ = await _state(pool, ids["jt-never-st"])
                assert state == "expired"
                assert len(sim.world.exchange.strategies) == 2  # nothing re-sent
            finally:
                await engine.close()
