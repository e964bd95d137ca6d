"""The dispatcher under the money rules: intents first and in one transaction, deterministic
clOrdIds, fail closed, TTL, unknown outcomes, rejections, per-sub-account serialisation and
isolation. Real Postgres; the paper broker behind a fault-injecting wrapper of the Broker port.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import structlog
import structlog.testing

from jtrades.broker.base import (
    BrokerEvent,
    CashBalance,
    Contract,
    Fill,
    OcoRequest,
    OrderRequest,
    OrderType,
    OsoRequest,
    PlaceResult,
    Position,
    Side,
    StrategyRequest,
    SubAccount,
    WorkingOrder,
)
from jtrades.broker.paper import PaperBroker
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import connect
from jtrades.engine.config_cache import LinkConfig
from jtrades.engine.dispatch import Dispatcher, WorkItem
from jtrades.engine.engine import Engine
from jtrades.engine.planning import AccountPlan, AccountState, PlannedOrder, PositionAction
from jtrades.engine.signal import Action, Signal
from jtrades.engine.steps import account_state, expected_position
from jtrades.errors import BrokerRejected, OutcomeUnknown
from tests.integration.test_engine import (
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    store_signal,
    wait_for,
)
from tests.polling import until
from tests.sim_worlds import with_sim
from tests.simutil import SimHandle, running_sim


class FaultyBroker:
    """The Broker port over a PaperBroker, with faults per broker account id:
    ``lost_request`` (no answer, nothing placed), ``lost_answer`` (placed, no answer),
    ``reject`` (the broker says no), ``unsynced`` (the live view cannot be trusted),
    ``no_order_id`` (placed, answered without the order's id)."""

    def __init__(self, inner: PaperBroker, delay_s: float = 0.0) -> None:
        self.inner = inner
        self.faults: dict[int, str] = {}
        self.delay_s = delay_s
        self.calls = 0

    async def _place(self, account_id: int, coro: Any) -> PlaceResult:
        self.calls += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        fault = self.faults.get(account_id)
        if fault == "lost_request":
            coro.close()
            raise OutcomeUnknown("socket dropped before the answer")
        if fault == "reject":
            coro.close()
            raise BrokerRejected("MaxPosLimitReached: position limit")
        result: PlaceResult = await coro
        if fault == "lost_answer":
            raise OutcomeUnknown("socket dropped after the request")
        if fault == "no_order_id":  # a strategy answered before its entry order showed
            return dataclasses.replace(result, order_id=0)
        return result

    async def place_order(self, req: OrderRequest) -> PlaceResult:
        return await self._place(req.account.account_id, self.inner.place_order(req))

    async def place_oso(self, req: OsoRequest) -> PlaceResult:
        return await self._place(req.entry.account.account_id, self.inner.place_oso(req))

    async def place_oco(self, req: OcoRequest) -> PlaceResult:
        return await self._place(req.first.account.account_id, self.inner.place_oco(req))

    async def start_strategy(self, req: StrategyRequest) -> PlaceResult:
        return await self._place(req.entry.account.account_id, self.inner.start_strategy(req))

    async def modify_order(self, order_id: int, **kw: Any) -> None:
        await self.inner.modify_order(order_id, **kw)

    async def cancel_order(self, order_id: int) -> None:
        await self.inner.cancel_order(order_id)

    async def liquidate_position(self, account: SubAccount, contract_id: int) -> None:
        await self.inner.liquidate_position(account, contract_id)

    def is_synced(self, account_id: int) -> bool:
        return self.faults.get(account_id) != "unsynced"

    async def find_contract(self, symbol: str) -> Contract:
        return await self.inner.find_contract(symbol)

    def positions(self, account_id: int) -> list[Position]:
        return self.inner.positions(account_id)

    def working_orders(self, account_id: int) -> list[WorkingOrder]:
        return self.inner.working_orders(account_id)

    async def position_changed(self, account_id: int, within_s: float) -> None:
        await self.inner.position_changed(account_id, within_s)

    def fills(self, account_id: int) -> list[Fill]:
        return self.inner.fills(account_id)

    def filled_qty(self, account_id: int, order_ids: Any) -> dict[int, int]:
        return self.inner.filled_qty(account_id, order_ids)

    def knows_order(self, account_id: int, order_id: int | None, cl_ord_id: str | None) -> bool:
        return self.inner.knows_order(account_id, order_id, cl_ord_id)

    def last_fill_id(self, account_id: int) -> int:
        return self.inner.last_fill_id(account_id)

    def cash(self, account_id: int) -> CashBalance | None:
        return self.inner.cash(account_id)

    async def order_by_cl_ord_id(self, account_id: int, cl_ord_id: str) -> WorkingOrder | None:
        return await self.inner.order_by_cl_ord_id(account_id, cl_ord_id)

    def events(self) -> AsyncIterator[BrokerEvent]:
        return self.inner.events()


def link(sub_id: int, broker_account_id: int, account_id: int = 1) -> LinkConfig:
    return LinkConfig(
        trader_id=0,
        sub_account_id=sub_id,
        multiplier=Decimal(1),
        account_id=account_id,
        env="paper",
        broker_account_id=broker_account_id,
        sub_name=f"acct-{broker_account_id}",
        label="paper",
        user_id=0,
        halted=False,
    )


def entry_with_stop(side: Side, qty: int, stop: str) -> Any:
    """A plan: market entry (step 1) then a protective stop (step 2), on whatever state."""

    def plan(state: AccountState, account: SubAccount, symbol: str) -> AccountPlan:
        return AccountPlan(
            PositionAction.OPEN,
            (
                PlannedOrder(1, "order", OrderRequest(account, symbol, side, qty)),
                PlannedOrder(
                    2,
                    "order",
                    OrderRequest(
                        account,
                        symbol,
                        side.opposite,
                        qty,
                        OrderType.STOP,
                        stop_price=Decimal(stop),
                    ),
                ),
            ),
            "open",
        )

    return plan


_TRADER: list[int] = []


@pytest.fixture
async def setup(pool: asyncpg.Pool) -> dict[str, Any]:
    u = await make_user(pool, "disp")
    subs = await make_paper_account(pool, u, "disp-paper", subs=3)
    rec = await make_recorder(pool, u, "disp-rec")
    _TRADER.append(await make_trader(pool, u, rec, [(s, 1) for s in subs]))
    paper = PaperBroker()
    paper.on_price("MNQZ6", Decimal("21500"))
    contract = await paper.find_contract("MNQZ6")
    return {"subs": subs, "rec": rec, "paper": paper, "contract": contract}


def items(
    broker: Any, contract: Contract, subs: list[int], plan: Any, seen: list[int] | None = None
) -> list[WorkItem]:
    assert _TRADER, "the setup fixture makes the trader"
    out = []
    for i, sub in enumerate(subs, 1):
        acct = SubAccount(i, f"acct-{i}")

        def bound(state: AccountState, acct: SubAccount = acct) -> AccountPlan:
            if seen is not None:
                seen.append(state.net_pos)
            return plan(state, acct, contract.symbol)

        out.append(WorkItem(_TRADER[-1], link(sub, i), broker, contract, bound))
    return out


async def intents(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT sub_account_id, cl_ord_id, step, state, broker_order_id, reason, sent_at"
        " FROM order_intents ORDER BY sub_account_id, step"
    )


async def test_intents_are_written_then_sent_with_deterministic_ids(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    sid, at = await store_signal(pool, setup["rec"])
    d = Dispatcher(pool, ttl_s=30)

    res = await d.dispatch(
        sid, at, items(paper, contract, subs[:2], entry_with_stop(Side.BUY, 2, "21490"))
    )

    assert res.orders == 4
    rows = await intents(pool)
    assert [r["cl_ord_id"] for r in rows] == [
        f"jt-{sid}-{subs[0]}-1",
        f"jt-{sid}-{subs[0]}-2",
        f"jt-{sid}-{subs[1]}-1",
        f"jt-{sid}-{subs[1]}-2",
    ]
    assert {r["state"] for r in rows} == {"sent"}
    assert all(r["broker_order_id"] and r["sent_at"] for r in rows)
    for acct in (1, 2):
        assert paper.positions(acct)[0].net_pos == 2
        assert [o.cl_ord_id for o in paper.working_orders(acct)] == [f"jt-{sid}-{subs[acct - 1]}-2"]


async def test_fail_closed_when_the_intents_cannot_be_written(
    db_url: str, setup: dict[str, Any], pool: asyncpg.Pool
) -> None:
    paper, contract = setup["paper"], setup["contract"]
    sid, at = await store_signal(pool, setup["rec"])
    dead = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    assert dead is not None
    await dead.close()
    d = Dispatcher(dead, ttl_s=30)

    res = await d.dispatch(
        sid, at, items(paper, contract, setup["subs"], entry_with_stop(Side.BUY, 1, "21490"))
    )

    assert res.storage_failed
    assert res.orders == 0
    assert all(paper.positions(a) == [] and paper.all_orders(a) == [] for a in (1, 2, 3))


async def test_a_stale_intent_is_never_sent(pool: asyncpg.Pool, setup: dict[str, Any]) -> None:
    paper, contract = setup["paper"], setup["contract"]
    sid, at = await store_signal(pool, setup["rec"])
    d = Dispatcher(pool, ttl_s=30, clock=lambda: at + timedelta(seconds=31))

    res = await d.dispatch(
        sid, at, items(paper, contract, setup["subs"][:1], entry_with_stop(Side.BUY, 1, "21490"))
    )

    assert res.orders == 0
    assert {r["state"] for r in await intents(pool)} == {"expired"}
    assert paper.all_orders(1) == []


async def test_disconnect_mid_fan_out(pool: asyncpg.Pool, setup: dict[str, Any]) -> None:
    paper, contract, subs = setup["paper"], setup["contract"], setup["subs"]
    broker = FaultyBroker(paper)
    broker.faults = {2: "lost_request", 3: "lost_answer"}
    sid, at = await store_signal(pool, setup["rec"])

    res = await Dispatcher(pool, ttl_s=30).dispatch(
        sid, at, items(broker, contract, subs, entry_with_stop(Side.BUY, 1, "21490"))
    )

    rows = await intents(pool)
    by_sub = {s: [r["state"] for r in rows if r["sub_account_id"] == s] for s in subs}
    assert by_sub[subs[0]] == ["sent", "sent"]
    # the entry's outcome is unknown: the stop after it is not sent (it might protect nothing,
    # or be a second order later), and nothing is re-sent
    assert by_sub[subs[1]] == ["unknown", "expired"]
    assert by_sub[subs[2]] == ["unknown", "expired"]
    assert res.orders == 2
    assert paper.positions(2) == []  # the lost request never reached the broker
    assert paper.positions(3)[0].net_pos == 1  # the lost answer did
    assert broker.calls == 4


async def test_broker_rejection_keeps_its_text(pool: asyncpg.Pool, setup: dict[str, Any]) -> None:
    broker = FaultyBroker(setup["paper"])
    broker.faults = {1: "reject"}
    sid, at = await store_signal(pool, setup["rec"])

    await Dispatcher(pool, ttl_s=30).dispatch(
        sid,
        at,
        items(broker, setup["contract"], setup["subs"][:1], entry_with_stop(Side.BUY, 1, "21490")),
    )

    rows = await intents(pool)
    assert [r["state"] for r in rows] == ["rejected", "expired"]
    assert "MaxPosLimitReached" in rows[0]["reason"]


async def test_an_unsynced_view_plans_nothing(pool: asyncpg.Pool, setup: dict[str, Any]) -> None:
    broker = FaultyBroker(setup["paper"])
    broker.faults = {1: "unsynced"}
    sid, at = await store_signal(pool, setup["rec"])

    res = await Dispatcher(pool, ttl_s=30).dispatch(
        sid,
        at,
        items(broker, setup["contract"], setup["subs"][:1], entry_with_stop(Side.BUY, 1, "21490")),
    )

    assert res.orders == 0
    assert "not synced" in res.accounts[0].reason
    assert await intents(pool) == []


async def test_two_signals_on_one_sub_account_are_serialised(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    broker = FaultyBroker(setup["paper"], delay_s=0.02)
    seen: list[int] = []
    d = Dispatcher(pool, ttl_s=30)
    (s1, a1), (s2, a2) = (
        await store_signal(pool, setup["rec"]),
        await store_signal(pool, setup["rec"]),
    )
    plan = entry_with_stop(Side.BUY, 1, "21490")

    await asyncio.gather(
        d.dispatch(s1, a1, items(broker, setup["contract"], setup["subs"][:1], plan, seen)),
        d.dispatch(s2, a2, items(broker, setup["contract"], setup["subs"][:1], plan, seen)),
    )

    assert seen == [0, 1]  # the second planned against the first one's position


def _shared(
    broker: Any, contract: Contract, sub: int, account_id: int, plan: Any, seen: list[int]
) -> WorkItem:
    """A sub-account row of login row ``account_id`` naming broker account 1 on demo: two
    users who added the same Tradovate login (each holding its password) each have such a
    row for the same account."""
    shared = dataclasses.replace(
        link(sub, 1, account_id), env="demo", username="px_tv", has_credential=True
    )

    def bound(state: AccountState) -> AccountPlan:
        seen.append(state.net_pos)
        return plan(state, SubAccount(1, "acct-1"), contract.symbol)

    return WorkItem(_TRADER[-1], shared, broker, contract, bound)


async def test_two_rows_for_one_broker_account_are_one_account(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    """Locked and de-duplicated by the row, two alerts racing through the two rows both
    planned from flat (long 2 where the strategy is long 1), and one alert with a trader on
    each row sent twice."""
    u = await make_user(pool, "disp2")
    (other,) = await make_paper_account(pool, u, "disp2-paper")
    mine = setup["subs"][0]
    broker = FaultyBroker(setup["paper"], delay_s=0.02)
    contract, plan = setup["contract"], entry_with_stop(Side.BUY, 1, "21490")
    d = Dispatcher(pool, ttl_s=30)
    seen: list[int] = []
    (s1, a1), (s2, a2), (s3, a3) = [await store_signal(pool, setup["rec"]) for _ in range(3)]

    await asyncio.gather(
        d.dispatch(s1, a1, [_shared(broker, contract, mine, 1, plan, seen)]),
        d.dispatch(s2, a2, [_shared(broker, contract, other, 2, plan, seen)]),
    )
    assert seen == [0, 1]  # the second planned against the first one's position

    both = [_shared(broker, contract, sub, aid, plan, seen) for sub, aid in ((mine, 1), (other, 2))]
    res = await d.dispatch(s3, a3, both)
    assert seen[2:] == [2, 2]  # both planned against the one account's position
    ignored = [a for a in res.accounts if a.action == "ignore"]
    assert [a.sub_account_id for a in ignored] == [other]
    assert "traded by trader" in ignored[0].reason
    assert [a.sub_account_id for a in res.accounts if a.sent] == [mine]  # one plan sent


async def test_a_duplicate_dispatch_sends_nothing_again(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    paper = setup["paper"]
    d = Dispatcher(pool, ttl_s=30)
    sid, at = await store_signal(pool, setup["rec"])
    plan = entry_with_stop(Side.BUY, 1, "21490")

    first = await d.dispatch(sid, at, items(paper, setup["contract"], setup["subs"][:1], plan))
    second = await d.dispatch(sid, at, items(paper, setup["contract"], setup["subs"][:1], plan))

    assert (first.orders, second.orders) == (2, 0)
    assert paper.positions(1)[0].net_pos == 1
    assert len(await intents(pool)) == 2


async def test_orders_stay_on_their_own_sub_account(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    paper, contract, subs = setup["paper"], setup["contract"], setup["subs"]
    d = Dispatcher(pool, ttl_s=30)
    sid, at = await store_signal(pool, setup["rec"])
    await d.dispatch(
        sid, at, items(paper, contract, subs[:2], entry_with_stop(Side.BUY, 1, "21490"))
    )
    b_orders = paper.working_orders(2)

    def flatten(state: AccountState, account: SubAccount, symbol: str) -> AccountPlan:
        req = OrderRequest(account, symbol, Side.SELL, state.net_pos)
        return AccountPlan(PositionAction.CLOSE, (PlannedOrder(1, "liquidate", req),), "close")

    sid2, at2 = await store_signal(pool, setup["rec"])
    await d.dispatch(sid2, at2, items(paper, contract, subs[:1], flatten))

    assert paper.positions(1)[0].net_pos == 0
    assert paper.working_orders(1) == []
    assert paper.positions(2)[0].net_pos == 1
    assert paper.working_orders(2) == b_orders
    assert account_state(paper, 2, contract) == AccountState(1, Decimal("21500"), tuple(b_orders))


async def test_received_at_in_the_past_is_measured_from_reception(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    """The TTL runs from when the alert arrived, not from when dispatch started."""
    sid, _ = await store_signal(pool, setup["rec"])
    old = datetime.now(UTC) - timedelta(seconds=60)
    res = await Dispatcher(pool, ttl_s=30).dispatch(
        sid,
        old,
        items(
            setup["paper"],
            setup["contract"],
            setup["subs"][:1],
            entry_with_stop(Side.BUY, 1, "21490"),
        ),
    )
    assert res.orders == 0
    assert setup["paper"].all_orders(1) == []


# --- against the simulator, through the real Tradovate client --------------------------------


@asynccontextmanager
async def sim_engine(
    settings: Settings, logins: dict[str, list[str]], *, request_timeout_s: float = 1.0
) -> AsyncIterator[tuple[Engine, SimHandle, asyncpg.Pool, int, dict[str, int]]]:
    """An engine whose logins are sessions on an in-process simulator; one recorder (size 1, no
    exits) followed by one trader per login on all of its accounts."""
    async with running_sim() as sim:
        await sim.set_price("MNQ", 21500)
        s = with_sim(settings, sim, request_timeout_s=request_timeout_s)
        tv_settings = s.tradovate
        db = await connect(s)
        tv = TradovatePool(tv_settings)
        pool = db.pool
        try:
            u = await make_user(pool, "simuser")
            rec = await make_recorder(pool, u, "sim-rec")
            brokers = BrokerRegistry(db, s)
            subs: dict[str, int] = {}
            for login, names in logins.items():
                sim.add_login(login, "pw", names)
                aid = await pool.fetchval(
                    "INSERT INTO accounts (user_id, label, env, username)"
                    " VALUES ($1, $2, 'demo', $2) RETURNING id",
                    u,
                    login,
                )
                for n in names:
                    subs[n] = await pool.fetchval(
                        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                        " VALUES ($1, $2, $3) RETURNING id",
                        aid,
                        sim.account_id(n),
                        n,
                    )
                await make_trader(pool, u, rec, [(subs[n], 1) for n in names])
                brokers.attach(aid, "demo", await tv.broker("demo", login, "pw"))
            engine = Engine(db, s, brokers)
            await engine.start()
            try:
                yield engine, sim, pool, rec, subs
            finally:
                await engine.close()
        finally:
            await tv.close()
            await db.close()


async def test_disconnect_mid_fan_out_at_the_simulator(settings: Settings) -> None:
    async with sim_engine(settings, {"ok_tv": ["OK1"], "dead_tv": ["DEAD1"]}) as (
        engine,
        sim,
        pool,
        rec,
        _subs,
    ):
        warm, at = await store_signal(pool, rec)  # resolves the contract on both sessions
        await engine.on_signal(
            signal_id=warm,
            recorder_id=rec,
            signal=Signal(Action.CLOSE, ticker="MNQ1!"),
            received_at=at,
        )
        sim.fault("zombie", login="dead_tv")  # the socket stays open and never answers
        sid, at = await store_signal(pool, rec)

        out = await engine.on_signal(
            signal_id=sid,
            recorder_id=rec,
            signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)),
            received_at=at,
        )

        assert out.orders == 1
        states = dict(
            await pool.fetch(
                "SELECT s.name, i.state FROM order_intents i"
                " JOIN sub_accounts s ON s.id = i.sub_account_id"
            )
        )
        assert states["DEAD1"] == "unknown"  # no answer: reconciliation's, never re-sent
        assert states["OK1"] in ("sent", "working", "filled")
        accounts = sim.state()["accounts"]
        assert [p["netPos"] for p in accounts["OK1"]["positions"]] == [1]
        # the order reached the zombie's broker side or not: either way it is there at most once
        assert len(accounts["DEAD1"]["fills"]) <= 1


async def test_broker_rejection_text_from_the_simulator(settings: Settings) -> None:
    async with sim_engine(settings, {"rj_tv": ["RJ1"]}) as (engine, sim, pool, rec, _subs):
        sim.fault("reject_order", reason="MaxPosLimitReached", text="Max position limit reached")
        sid, at = await store_signal(pool, rec)

        with structlog.testing.capture_logs() as logs:
            out = await engine.on_signal(
                signal_id=sid,
                recorder_id=rec,
                signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)),
                received_at=at,
            )

        assert out.orders == 0
        row = await pool.fetchrow("SELECT state, reason FROM order_intents")
        assert row["state"] == "rejected"
        assert "Max position limit" in row["reason"]
        # the operator hears of it (a notification when [notify] is set), with the broker's text
        (warning,) = [e for e in logs if e["event"] == "dispatch.orders_failed"]
        assert warning["log_level"] == "warning"
        assert (warning["signal_id"], warning["rejected"], warning["unknown"]) == (sid, 1, 0)
        assert "Max position limit" in warning["broker"]
        assert sim.state()["accounts"]["RJ1"]["positions"] == []


async def test_the_next_signal_waits_for_the_position_event_not_a_timer(
    settings: Settings,
) -> None:
    """A market order's fill reaches the view after its answer; the sub-account's lock is held
    until the position shows, and is freed by the position event itself: with the settle bound
    at a minute, the close behind the entry still goes out within seconds."""
    async with sim_engine(settings, {"st_tv": ["ST1"]}) as (engine, sim, pool, rec, _subs):
        engine.dispatcher._settle_timeout = 60.0  # only the event can free the lock in time
        sim.fault("events_after", ms=200)  # each fill shows 0.2 s after its order's answer
        for action in (Action.BUY, Action.CLOSE):
            sid, at = await store_signal(pool, rec)
            out = await asyncio.wait_for(
                engine.on_signal(
                    signal_id=sid,
                    recorder_id=rec,
                    signal=Signal(action, ticker="MNQ1!", price=Decimal(21500)),
                    received_at=at,
                ),
                10,
            )
            assert out.orders == 1, out
        for _ in range(100):
            if sim.state()["accounts"]["ST1"]["positions"] in ([], [{"netPos": 0}]):
                break
            await asyncio.sleep(0.05)
        fills = sim.state()["accounts"]["ST1"]["fills"]
        assert [f["action"] for f in fills] == ["Buy", "Sell"]


def test_expected_position_after_each_kind_of_step() -> None:
    acct = SubAccount(1, "A")
    market = PlannedOrder(1, "order", OrderRequest(acct, "X", Side.SELL, 3))
    limit = PlannedOrder(
        2, "order", OrderRequest(acct, "X", Side.BUY, 1, OrderType.LIMIT, price=Decimal(1))
    )
    flat = PlannedOrder(3, "liquidate", OrderRequest(acct, "X", Side.SELL, 2))
    cancel = PlannedOrder(4, "cancel", None, cancel_order_id=9)
    assert expected_position(2, market) == -1
    assert expected_position(2, limit) is None
    assert expected_position(2, flat) == 0
    assert expected_position(2, cancel) is None


async def test_an_answer_without_the_order_id_never_overwrites_the_one_recorded(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    """A strategy answered before its entry order showed carries order id 0; written as 0, it
    replaced the id the mirror had recorded from the order's events (COALESCE keeps a 0)."""
    subs, paper, contract = setup["subs"], setup["paper"], setup["contract"]
    broker = FaultyBroker(paper)
    broker.faults[1] = "no_order_id"
    sid, at = await store_signal(pool, setup["rec"])
    res = await Dispatcher(pool, ttl_s=30).dispatch(
        sid, at, items(broker, contract, subs[:1], entry_with_stop(Side.BUY, 1, "21490"))
    )
    assert res.orders == 2
    rows = await intents(pool)
    assert [(r["state"], r["broker_order_id"]) for r in rows] == [("sent", None), ("sent", None)]


async def test_a_market_add_rejected_after_acceptance_leaves_the_exits_as_they_were(
    settings: Settings,
) -> None:
    """Long 1 with its stop; a DCA add the broker accepts, then rejects (a risk check). Taken
    as done when answered, the plan cancelled the stop and placed one for 2 on a long 1, which
    would close the long and open a short. The exits wait for the add to show in the position:
    it does not, so they are left as they were, and the reason is said."""
    async with sim_engine(settings, {"dca_tv": ["DC1"]}) as (engine, sim, pool, rec, _subs):
        await pool.execute(
            "UPDATE recorders SET sl = 40, dca = true, same_direction = 'add', add_size = 1"
            " WHERE id = $1",
            rec,
        )
        await engine.config.load()
        buy = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))

        def stops() -> list[tuple[str, int]]:
            return [
                (o["status"], o["qty"])
                for o in sim.working_orders("DC1")
                if o["orderType"] == "Stop"
            ]

        sid, at = await store_signal(pool, rec)
        await engine.on_signal(signal_id=sid, recorder_id=rec, received_at=at, signal=buy)
        await until(lambda: stops() == [("Working", 1)])
        sim.fault("reject_order", reason="MaxPosLimitReached", text="limit", after_accept=True)
        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(signal_id=sid, recorder_id=rec, received_at=at, signal=buy)

        assert list(sim.positions("DC1").values()) == [1]
        assert stops() == [("Working", 1)]
        (account,) = out.detail["accounts"].values()
        assert account["sent"] == 1, account
        assert account["expired"] >= 1, account
        assert any("did not show" in m for m in account["messages"]), account


async def test_a_rejection_after_acceptance_keeps_the_brokers_text(settings: Settings) -> None:
    """A risk check rejects the order after ``placeorder`` answered its id: the text comes in
    a commandReport, which names the command, not the order. The view ignored it, and the
    intent ended rejected with no reason."""
    async with sim_engine(settings, {"lr_tv": ["LR1"]}) as (engine, sim, pool, rec, _subs):
        sim.fault(
            "reject_order", reason="MaxPosLimitReached", text="limit reached", after_accept=True
        )
        sid, at = await store_signal(pool, rec)
        buy = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))
        await engine.on_signal(signal_id=sid, recorder_id=rec, received_at=at, signal=buy)

        async def rejected() -> bool:
            state = await pool.fetchval("SELECT state FROM order_intents")
            return bool(state == "rejected")

        await wait_for(rejected, "the intent rejected")
        reason = await pool.fetchval("SELECT reason FROM order_intents")
        assert reason == "MaxPosLimitReached: limit reached"
        assert sim.positions("LR1") == {}
