"""Orders through the Tradovate client, checked in the simulator's own books."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import (
    BracketOrder,
    Broker,
    OcoRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    OsoRequest,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
    TimeInForce,
)
from jtrades.broker.tradovate.client import TradovateBroker, strategy_params
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.errors import BrokerRejected, NotFound, OutcomeUnknown
from jtrades.sim.api import Answer, Api
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim

D = Decimal


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
async def broker(sim: SimHandle) -> AsyncIterator[TradovateBroker]:
    settings = sim_tradovate_defaults(sim, request_timeout_s=5)
    pool = TradovatePool(settings)
    try:
        yield await pool.broker("demo", LOGIN, PASSWORD)
    finally:
        await pool.close()


def account(sim: SimHandle, name: str = "SIM1") -> SubAccount:
    return SubAccount(sim.account_id(name), name)


def book(sim: SimHandle, name: str = "SIM1") -> dict[str, Any]:
    state: dict[str, Any] = sim.state()["accounts"][name]
    return state


async def test_the_client_is_a_broker(broker: TradovateBroker) -> None:
    assert isinstance(broker, Broker)


async def test_contract_lookup_continuous_and_explicit(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    front = sim.contract("MNQ")
    c = await broker.find_contract("MNQ1!")
    assert (c.symbol, c.root, c.contract_id) == (front.name, "MNQ", front.id)
    assert (c.tick_size, c.value_per_point, c.tick_value) == (D("0.25"), D(2), D("0.5"))
    assert await broker.find_contract(front.name) == c
    nxt = await broker.find_contract("MNQ2!")
    assert nxt.symbol != c.symbol
    assert nxt.root == "MNQ"
    gc = await broker.find_contract("GC1!")
    assert gc.root == "GC"  # whole root: never MGC
    assert gc.tick_size == D("0.1")
    with pytest.raises(NotFound):
        await broker.find_contract("NOPEZ9")


async def test_bracket_ladder_fills_entry_and_works_exact_exits(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    acct = account(sim)
    contract = await broker.find_contract("MNQ1!")
    await sim.set_price("MNQ", "21500.25")
    entry = OrderRequest(acct, contract.symbol, Side.BUY, 3, cl_ord_id="s1-SIM1-entry")
    legs = tuple(
        StrategyBracket(qty=1, profit_target=D(tp), stop_loss=D("-15"))
        for tp in ("10", "20", "30.5")
    )
    result = await broker.start_strategy(StrategyRequest(entry, legs))
    assert result.strategy_id is not None

    mine = book(sim)
    assert mine["positions"] == [
        {
            "symbol": contract.symbol,
            "contractId": contract.contract_id,
            "netPos": 3,
            "netPrice": 21500.25,
        }
    ]
    assert [f["qty"] for f in mine["fills"]] == [3]
    working = sorted(
        (o["orderType"], o["action"], o["qty"], o["price"], o["stopPrice"]) for o in mine["orders"]
    )
    assert working == [
        ("Limit", "Sell", 1, 21510.25, None),
        ("Limit", "Sell", 1, 21520.25, None),
        ("Limit", "Sell", 1, 21530.75, None),
        ("Stop", "Sell", 3, None, 21485.25),
    ]
    assert book(sim, "SIM2")["orders"] == []  # never another sub-account

    # the live view agrees, from the event stream alone
    await until(lambda: len(broker.working_orders(acct.account_id)) == 4)
    [pos] = broker.positions(acct.account_id)
    assert (pos.net_pos, pos.net_price, pos.symbol) == (3, D("21500.25"), contract.symbol)
    prices = sorted(o.price or o.stop_price or D(0) for o in broker.working_orders(acct.account_id))
    assert prices == [D("21485.25"), D("21510.25"), D("21520.25"), D("21530.75")]

    # the price goes through the first target: that leg fills, the stop shrinks to the rest
    await sim.set_price("MNQ", "21512")
    mine = book(sim)
    assert mine["positions"][0]["netPos"] == 2
    stops = [o for o in mine["orders"] if o["orderType"] == "Stop"]
    assert [(s["qty"], s["stopPrice"]) for s in stops] == [(2, 21485.25)]
    assert sorted(o["price"] for o in mine["orders"] if o["orderType"] == "Limit") == [
        21520.25,
        21530.75,
    ]
    await until(lambda: broker.positions(acct.account_id)[0].net_pos == 2)
    await until(
        lambda: any(
            o.qty == 2 and o.order_type is OrderType.STOP
            for o in broker.working_orders(acct.account_id)
        )
    )

    # liquidate: flat, nothing working, in the simulator and in the view
    assert contract.contract_id is not None
    await broker.liquidate_position(acct, contract.contract_id)
    mine = book(sim)
    assert mine["positions"] == []
    assert mine["orders"] == []
    await until(
        lambda: (
            broker.positions(acct.account_id) == [] and broker.working_orders(acct.account_id) == []
        )
    )
    await until(lambda: len(broker.fills(acct.account_id)) == 3)  # entry, TP1, liquidation


async def test_order_types_modify_cancel_and_lookup_by_cl_ord_id(
    sim: SimHandle, broker: TradovateBroker
) -> None:
    acct = account(sim)
    c = await broker.find_contract("MNQ1!")
    await sim.set_price("MNQ", 21500)
    limit = await broker.place_order(
        OrderRequest(
            acct,
            c.symbol,
            Side.BUY,
            2,
            OrderType.LIMIT,
            "c-limit",
            price=D("21490.5"),
            time_in_force=TimeInForce.GTC,
        )
    )
    stop = await broker.place_order(
        OrderRequest(acct, c.symbol, Side.BUY, 1, OrderType.STOP, "c-stop", stop_price=D("21510"))
    )
    stop_limit = await broker.place_order(
        OrderRequest(
            acct,
            c.symbol,
            Side.BUY,
            1,
            OrderType.STOP_LIMIT,
            "c-sl",
            price=D("21511"),
            stop_price=D("21510"),
        )
    )
    by_id = {o["id"]: o for o in book(sim)["orders"]}
    assert by_id[limit.order_id]["price"] == 21490.5
    assert by_id[limit.order_id]["clOrdId"] == "c-limit"
    assert by_id[stop.order_id]["stopPrice"] == 21510
    assert by_id[stop_limit.order_id]["orderType"] == "StopLimit"

    await broker.modify_order(limit.order_id, qty=1, order_type=OrderType.LIMIT, price=D("21495"))
    by_id = {o["id"]: o for o in book(sim)["orders"]}
    assert (by_id[limit.order_id]["qty"], by_id[limit.order_id]["price"]) == (1, 21495)
    await until(
        lambda: any(
            o.order_id == limit.order_id and o.price == D(21495)
            for o in broker.working_orders(acct.account_id)
        )
    )

    found = await broker.order_by_cl_ord_id(acct.account_id, "c-limit")
    assert found is not None
    assert found.order_id == limit.order_id
    at_broker = await broker.order_by_cl_ord_id_at_broker(acct.account_id, "c-stop")
    assert at_broker is not None
    assert (at_broker.order_id, at_broker.stop_price, at_broker.status) == (
        stop.order_id,
        D(21510),
        OrderStatus.WORKING,
    )
    assert await broker.order_by_cl_ord_id_at_broker(acct.account_id, "never-sent") is None
    assert await broker.order_by_cl_ord_id(account(sim, "SIM2").account_id, "c-limit") is None

    for r in (limit, stop, stop_limit):
        await broker.cancel_order(r.order_id)
    assert book(sim)["orders"] == []


async def test_trailing_stop_market_and_oso_oco(sim: SimHandle, broker: TradovateBroker) -> None:
    acct = account(sim)
    c = await broker.find_contract("MNQ1!")
    await sim.set_price("MNQ", 21500)
    await broker.place_order(OrderRequest(acct, c.symbol, Side.BUY, 1, cl_ord_id="m1"))
    trail = await broker.place_order(
        OrderRequest(
            acct,
            c.symbol,
            Side.SELL,
            1,
            OrderType.TRAILING_STOP,
            "t1",
            stop_price=D(21480),
            peg_difference=D(-20),
        )
    )
    assert {o["id"]: o for o in book(sim)["orders"]}[trail.order_id]["orderType"] == "TrailingStop"
    await broker.cancel_order(trail.order_id)

    oso = await broker.place_oso(
        OsoRequest(
            OrderRequest(acct, c.symbol, Side.BUY, 1, OrderType.LIMIT, "o1", price=D(21490)),
            BracketOrder(Side.SELL, OrderType.LIMIT, price=D(21520), cl_ord_id="o1-tp"),
            BracketOrder(Side.SELL, OrderType.STOP, stop_price=D(21470), cl_ord_id="o1-sl"),
        )
    )
    assert len(oso.linked_ids) == 2
    oco = await broker.place_oco(
        OcoRequest(
            OrderRequest(acct, c.symbol, Side.SELL, 1, OrderType.LIMIT, "x-tp", price=D(21550)),
            OrderRequest(acct, c.symbol, Side.SELL, 1, OrderType.STOP, "x-sl", stop_price=D(21450)),
        )
    )
    assert len(oco.linked_ids) == 1
    await sim.set_price("MNQ", 21550)  # the OCO's limit fills; its stop goes
    ids = {o["id"] for o in book(sim)["orders"]}
    assert oco.order_id not in ids
    assert oco.linked_ids[0] not in ids


async def test_rejections_carry_the_brokers_words(sim: SimHandle, broker: TradovateBroker) -> None:
    acct = account(sim)
    c = await broker.find_contract("MNQ1!")
    sim.fault("reject_order", reason="MaxPosLimitReached", text="Max position limit reached")
    with pytest.raises(BrokerRejected, match=r"MaxPosLimitReached.*Max position limit"):
        await broker.place_order(OrderRequest(acct, c.symbol, Side.BUY, 1, cl_ord_id="r1"))
    with pytest.raises(BrokerRejected, match="InvalidPrice"):
        await broker.place_order(
            OrderRequest(acct, c.symbol, Side.BUY, 1, OrderType.LIMIT, "r2", price=D("21490.1"))
        )
    foreign = SubAccount(acct.account_id + 10_000, "NOT-MINE")
    with pytest.raises(BrokerRejected, match="Access is denied"):
        await broker.place_order(OrderRequest(foreign, c.symbol, Side.BUY, 1, cl_ord_id="r3"))
    assert book(sim)["orders"] == []


@pytest.mark.parametrize("answer", [None, {}])
async def test_a_strategy_accepted_without_its_id_is_unknown_and_found_by_its_uuid(
    sim: SimHandle, broker: TradovateBroker, monkeypatch: pytest.MonkeyPatch, answer: Any
) -> None:
    """A 200 naming no strategy (no id, no errorText) was a final "rejected", though the
    strategy may be live; like an order answered without its orderId, its fate is open, and
    reconciliation finds it by its uuid."""
    real = Api.call

    def call(self: Api, endpoint: str, *args: Any, **kw: Any) -> Answer:
        done = real(self, endpoint, *args, **kw)  # the strategy starts
        if endpoint.lower().strip("/") == "orderstrategy/startorderstrategy":
            done.data = answer
        return done

    monkeypatch.setattr(Api, "call", call)
    acct = account(sim)
    contract = await broker.find_contract("MNQ1!")
    entry = OrderRequest(acct, contract.symbol, Side.BUY, 2, cl_ord_id="s9-SIM1-entry")
    legs = (StrategyBracket(qty=2, profit_target=D("10"), stop_loss=D("-5")),)
    with pytest.raises(OutcomeUnknown):
        await broker.start_strategy(StrategyRequest(entry, legs))
    found = await broker.order_by_cl_ord_id(acct.account_id, "s9-SIM1-entry", strategy=True)
    assert found is not None
    assert found.cl_ord_id == "s9-SIM1-entry"
    at_broker = await broker.strategy_entry_at_broker(acct.account_id, "s9-SIM1-entry")
    assert at_broker is not None
    assert at_broker.order_id == found.order_id


def test_strategy_params_are_a_json_string_with_signed_offsets() -> None:
    acct = SubAccount(1, "A")
    entry = OrderRequest(acct, "MNQZ6", Side.SELL, 2)
    text = strategy_params(StrategyRequest(entry, (StrategyBracket(2, D("-10"), D("5.25")),)))
    assert (
        text
        == '{"entryVersion":{"orderQty":2,"orderType":"Market","timeInForce":"Day"},"brackets":[{"qty":2,"trailingStop":false,"profitTarget":-10,"stopLoss":5.25}]}'
    )
    with pytest.raises(ValueError, match="signed"):
        strategy_params(StrategyRequest(entry, (StrategyBracket(2, D("10"), D("5")),)))
    with pytest.raises(ValueError, match="add up"):
        strategy_params(StrategyRequest(entry, (StrategyBracket(1, D("-10"), D("5")),)))


def test_auto_trail_distances_are_unsigned_points_on_either_side() -> None:
    """autoTrail's ``stopLoss`` is a distance (public references: a buy's bracket ``stopLoss:
    -12.5`` beside ``autoTrail.stopLoss: 5``); the bracket's signed offset went out negative
    on every long (the simulator took its absolute value, so nothing showed it)."""
    acct = SubAccount(1, "A")
    legs = {}
    for side, sign in ((Side.BUY, 1), (Side.SELL, -1)):
        leg = StrategyBracket(
            1, D(10) * sign, D(-5) * sign, trailing_stop=True,
            trail_trigger=D("7.5"), trail_freq=D(1),
        )  # fmt: skip
        params = strategy_params(StrategyRequest(OrderRequest(acct, "MNQZ6", side, 1), (leg,)))
        (legs[side],) = json.loads(params)["brackets"]
    assert legs[Side.BUY]["stopLoss"] == -5  # the bracket's own offset stays signed
    assert legs[Side.BUY]["autoTrail"] == {"stopLoss": 5, "trigger": 7.5, "freq": 1}
    assert legs[Side.SELL]["autoTrail"] == legs[Side.BUY]["autoTrail"]


async def test_the_simulator_refuses_a_signed_auto_trail_distance(sim: SimHandle) -> None:
    """As Tradovate would not read it as meant: the simulator no longer hides the sign."""
    acct = account(sim)
    await sim.set_price("MNQ", "21500")
    symbol = sim.contract("MNQ").name
    entry = OrderRequest(acct, symbol, Side.BUY, 1)
    leg = StrategyBracket(1, D(10), D(-5), trailing_stop=True, trail_trigger=D(7), trail_freq=D(1))
    params = json.loads(strategy_params(StrategyRequest(entry, (leg,))))
    body = {
        "accountId": acct.account_id, "accountSpec": acct.name, "symbol": symbol,
        "action": "Buy", "orderStrategyTypeId": 2,
    }  # fmt: skip
    start = Api(sim.world).commands["orderstrategy/startorderstrategy"]
    login = sim.world.auth.login(LOGIN)
    _, data = start(login, {**body, "params": json.dumps(params)})
    assert "errorText" not in (data or {}), data
    params["brackets"][0]["autoTrail"]["stopLoss"] = -5
    _, data = start(login, {**body, "params": json.dumps(params)})
    assert "autoTrail" in str(data.get("errorText")), data


def test_breakeven_is_refused_with_a_reason_not_dropped() -> None:
    acct = SubAccount(1, "A")
    entry = OrderRequest(acct, "MNQZ6", Side.BUY, 1)
    leg = StrategyBracket(1, D("10"), D("-5"), breakeven=D("4"))
    with pytest.raises(BrokerRejected, match="breakeven is not supported"):
        strategy_params(StrategyRequest(entry, (leg,)))
