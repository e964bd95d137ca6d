"""The legs of ``placeoco`` (``other``) and ``placeoso`` (``bracket1``/``bracket2``).

Tradovate's OpenAPI spec (tradovate/example-api-csharp-trading, ``swagger/services.swagger.yaml``;
the generated clients have the same model) types them ``RestrainedOrderVersion``: action and
orderType (required), clOrdId, price, stopPrice, maxShow, pegDifference, timeInForce,
expireTime, text. A leg has its own clOrdId and no orderQty: it works the main order's quantity.
The simulator checks bodies the way Tradovate does (an unknown field is an error), so a body
that is wrong here is refused there; the client's bodies are read as the simulator receives
them, over real sockets.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import aiohttp
import pytest

from jtrades.broker.base import (
    BracketOrder,
    OcoRequest,
    OrderRequest,
    OrderType,
    OsoRequest,
    Side,
    SubAccount,
    TimeInForce,
)
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.sim.api import Answer, Api
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import (
    LOGIN,
    PASSWORD,
    BareClient,
    SimHandle,
    bare_connect,
    http,
    market_order,
    request_token,
    running_sim,
)

__all__ = ["http"]

D = Decimal
RESTRAINED = {
    "action", "clOrdId", "orderType", "price", "stopPrice", "maxShow", "pegDifference",
    "timeInForce", "expireTime", "text",
}  # fmt: skip


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The (endpoint, body) of every order command the simulator receives, as it receives
    them; the simulator then answers as ever."""
    seen: list[tuple[str, Any]] = []
    real = Api.call

    def call(self: Api, endpoint: str, *args: Any, **kw: Any) -> Answer:
        key = endpoint.strip("/").lower()
        if key.startswith("order/"):
            seen.append((key, args[1]))  # (params, body, token)
        return real(self, endpoint, *args, **kw)

    monkeypatch.setattr(Api, "call", call)
    return seen


@pytest.fixture
async def broker(sim: SimHandle) -> AsyncIterator[TradovateBroker]:
    settings = sim_tradovate_defaults(sim, request_timeout_s=5)
    pool = TradovatePool(settings)
    try:
        yield await pool.broker("demo", LOGIN, PASSWORD)
    finally:
        await pool.close()


def _account(sim: SimHandle) -> SubAccount:
    return SubAccount(sim.account_id("SIM1"), "SIM1")


def _orders(sim: SimHandle) -> dict[int, dict[str, Any]]:
    return {o["id"]: o for o in sim.working_orders("SIM1")}


async def _bare(sim: SimHandle, http: aiohttp.ClientSession) -> BareClient:
    return await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])


def _exit_pair(sim: SimHandle, **other: Any) -> dict[str, Any]:
    """A take-profit of 2 with its stop as ``other``, over a long of 2."""
    px = sim.price("MNQ")
    body = market_order(sim, qty=2, action="Sell", clOrdId="a-1")
    body.update(orderType="Limit", price=float(px + 50), timeInForce="GTC")
    body["other"] = {"action": "Sell", "orderType": "Stop", "stopPrice": float(px - 50), **other}
    return body


def _entry_with_brackets(sim: SimHandle, **bracket: Any) -> dict[str, Any]:
    px = sim.price("MNQ")
    body = market_order(sim, qty=3, clOrdId="e-1")
    body.update(orderType="Limit", price=float(px - 10))
    body["bracket1"] = {"action": "Sell", "orderType": "Limit", "price": float(px + 40), **bracket}
    body["bracket2"] = {"action": "Sell", "orderType": "Stop", "stopPrice": float(px - 40)}
    return body


# --- the simulator: RestrainedOrderVersion as the spec has it -----------------------------------


async def test_an_oco_other_has_its_own_cl_ord_id_and_the_first_orders_quantity(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await _bare(sim, http)
    assert "orderId" in (await bare.call("order/placeorder", market_order(sim, qty=2))).data
    body = _exit_pair(sim, clOrdId="a-2", text="protective stop", timeInForce="GTC")
    r = await bare.call("order/placeoco", body)
    assert r.status == 200
    assert "failureReason" not in r.data, r.data
    first, other = _orders(sim)[r.data["orderId"]], _orders(sim)[r.data["ocoId"]]
    assert (first["clOrdId"], first["qty"]) == ("a-1", 2)
    assert (other["clOrdId"], other["qty"], other["orderType"]) == ("a-2", 2, "Stop")
    await bare.recv_until(lambda: len(bare.props("command")) >= 3)
    commands = {c["orderId"]: c for _t, _e, c in bare.props("command")}
    assert commands[r.data["ocoId"]]["clOrdId"] == "a-2"
    versions = (await bare.call("orderVersion/deps", query=f"masterid={r.data['ocoId']}")).data
    assert [(v["orderQty"], v["text"]) for v in versions] == [(2, "protective stop")]


async def test_an_oso_bracket_has_its_own_cl_ord_id_and_the_entrys_quantity(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await _bare(sim, http)
    r = await bare.call("order/placeoso", _entry_with_brackets(sim, clOrdId="e-1-tp"))
    assert "failureReason" not in r.data, r.data
    orders = _orders(sim)
    tp, sl = orders[r.data["oso1Id"]], orders[r.data["oso2Id"]]
    assert (tp["clOrdId"], tp["qty"], tp["status"]) == ("e-1-tp", 3, "Suspended")
    assert (sl["clOrdId"], sl["qty"]) == (None, 3)


@pytest.mark.parametrize(
    ("endpoint", "leg"),
    [("order/placeoco", "other"), ("order/placeoso", "bracket1"), ("order/placeoso", "bracket2")],
)
async def test_a_leg_with_a_quantity_is_refused_as_an_unknown_field(
    sim: SimHandle, http: aiohttp.ClientSession, endpoint: str, leg: str
) -> None:
    bare = await _bare(sim, http)
    assert "orderId" in (await bare.call("order/placeorder", market_order(sim, qty=2))).data
    body = _exit_pair(sim) if endpoint == "order/placeoco" else _entry_with_brackets(sim)
    body[leg]["orderQty"] = 2
    r = await bare.call(endpoint, body)
    assert r.status == 200
    assert r.data == {
        "failureReason": "UnknownReason",
        "failureText": f"Invalid or missed parameters: unknown field {leg}.orderQty",
    }
    assert [o["orderType"] for o in sim.working_orders("SIM1")] == []  # nothing placed


@pytest.mark.parametrize(
    ("field", "value"),
    [("accountId", 1), ("symbol", "MNQZ6"), ("isAutomated", True), ("bogus", 1)],
)
async def test_a_leg_takes_nothing_but_restrained_order_version_fields(
    sim: SimHandle, http: aiohttp.ClientSession, field: str, value: Any
) -> None:
    bare = await _bare(sim, http)
    r = await bare.call("order/placeoco", _exit_pair(sim, **{field: value}))
    assert r.data["failureText"] == f"Invalid or missed parameters: unknown field other.{field}"


@pytest.mark.parametrize("missing", ["action", "orderType"])
async def test_a_leg_needs_its_action_and_order_type(
    sim: SimHandle, http: aiohttp.ClientSession, missing: str
) -> None:
    bare = await _bare(sim, http)
    body = _entry_with_brackets(sim)
    del body["bracket2"][missing]
    r = await bare.call("order/placeoso", body)
    assert r.data == {
        "failureReason": "UnknownReason",
        "failureText": f"Invalid or missed parameters: bracket2.{missing} is required",
    }


# --- the client: its bodies as the simulator receives them ------------------------------------


async def test_place_oco_sends_other_as_a_restrained_order_version(
    sim: SimHandle, broker: TradovateBroker, received: list[tuple[str, Any]]
) -> None:
    acct = _account(sim)
    c = await broker.find_contract("MNQ1!")
    await broker.place_order(OrderRequest(acct, c.symbol, Side.BUY, 2, cl_ord_id="m-1"))
    tp = OrderRequest(acct, c.symbol, Side.SELL, 2, OrderType.LIMIT, "jt-5-1-3x",
                      price=D(21550), time_in_force=TimeInForce.GTC, text="jtrades exit")  # fmt: skip
    sl = OrderRequest(acct, c.symbol, Side.SELL, 2, OrderType.STOP, "jt-5-1-3xb",
                      stop_price=D("21450.5"), time_in_force=TimeInForce.GTC, text="jtrades exit")  # fmt: skip
    placed = await broker.place_oco(OcoRequest(tp, sl))

    [(_endpoint, body)] = [(e, b) for e, b in received if e == "order/placeoco"]
    assert body == {
        "accountSpec": "SIM1",
        "accountId": acct.account_id,
        "action": "Sell",
        "symbol": c.symbol,
        "orderQty": 2,
        "orderType": "Limit",
        "price": 21550,
        "timeInForce": "GTC",
        "clOrdId": "jt-5-1-3x",
        "text": "jtrades exit",
        "isAutomated": True,
        "other": {
            "action": "Sell",
            "orderType": "Stop",
            "stopPrice": 21450.5,
            "timeInForce": "GTC",
            "clOrdId": "jt-5-1-3xb",
            "text": "jt-5-1-3xb",  # the id in text too, where the orphan sweep also reads it
        },
    }
    assert set(body["other"]) <= RESTRAINED

    # the stop is an order of its own id and the pair's quantity, at the broker and in the view
    [stop_id] = placed.linked_ids
    assert {k: _orders(sim)[stop_id][k] for k in ("clOrdId", "qty", "ocoId")} == {
        "clOrdId": "jt-5-1-3xb",
        "qty": 2,
        "ocoId": placed.order_id,
    }
    aid = acct.account_id
    await until(lambda: broker.session.view.order_by_cl_ord_id(aid, "jt-5-1-3xb") is not None)
    stop = await broker.order_by_cl_ord_id(aid, "jt-5-1-3xb")
    assert stop is not None
    assert (stop.order_id, stop.cl_ord_id, stop.text, stop.qty) == (
        stop_id, "jt-5-1-3xb", "jt-5-1-3xb", 2
    )  # fmt: skip
    first = await broker.order_by_cl_ord_id(aid, "jt-5-1-3x")  # the intent's id: still its order
    assert first is not None
    assert first.order_id == placed.order_id
    assert first.text == "jtrades exit"


async def test_place_oso_sends_brackets_as_restrained_order_versions(
    sim: SimHandle, broker: TradovateBroker, received: list[tuple[str, Any]]
) -> None:
    acct = _account(sim)
    c = await broker.find_contract("MNQ1!")
    entry = OrderRequest(acct, c.symbol, Side.BUY, 3, OrderType.LIMIT, "o1", price=D(21490))
    placed = await broker.place_oso(
        OsoRequest(
            entry,
            BracketOrder(Side.SELL, OrderType.LIMIT, price=D(21520), cl_ord_id="o1-tp"),
            BracketOrder(Side.SELL, OrderType.STOP, stop_price=D("21470.25")),
        )
    )
    [(_endpoint, body)] = [(e, b) for e, b in received if e == "order/placeoso"]
    assert body["bracket1"] == {
        "action": "Sell",
        "orderType": "Limit",
        "price": 21520,
        "clOrdId": "o1-tp",
        "text": "o1-tp",
    }
    assert body["bracket2"] == {"action": "Sell", "orderType": "Stop", "stopPrice": 21470.25}
    orders = _orders(sim)
    tp, sl = (orders[i] for i in placed.linked_ids)
    assert (tp["clOrdId"], tp["qty"], sl["clOrdId"], sl["qty"]) == ("o1-tp", 3, None, 3)


@pytest.mark.parametrize(
    "change",
    [{"qty": 1}, {"symbol": "MNQH7"}, {"account": SubAccount(99, "OTHER")}],
    ids=["quantity", "contract", "sub-account"],
)
async def test_an_oco_pair_tradovate_cannot_express_is_never_sent(
    sim: SimHandle, broker: TradovateBroker, received: list[tuple[str, Any]], change: Any
) -> None:
    """``other`` has no quantity, contract or account: it takes the first order's."""
    acct = _account(sim)
    c = await broker.find_contract("MNQ1!")
    tp = OrderRequest(acct, c.symbol, Side.SELL, 2, OrderType.LIMIT, "p-1x", price=D(21550))
    sl = OrderRequest(acct, c.symbol, Side.SELL, 2, OrderType.STOP, "p-1xb", stop_price=D(21450))
    with pytest.raises(ValueError, match="same"):
        await broker.place_oco(OcoRequest(tp, dataclasses.replace(sl, **change)))
    assert [e for e, _b in received] == []
    assert sim.working_orders("SIM1") == []
