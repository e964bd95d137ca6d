"""The simulator's order endpoints over real sockets: events, strict rejections, strategies,
liquidate, reads. Driven by the bare protocol client of ``tests.simutil``."""

from __future__ import annotations

from typing import Any

import aiohttp
import orjson
import pytest

from tests.simutil import (
    SimHandle,
    bare_connect,
    http,
    market_order,
    request_token,
    sim,
)

__all__ = ["http", "sim"]


async def test_market_order_fills_with_events_in_order(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    r = await bare.call("order/placeorder", market_order(sim, qty=2, clOrdId="sig-1"))
    assert r.status == 200
    assert r.data["orderId"] > 0
    oid = r.data["orderId"]
    await bare.recv_until(
        lambda: any(e[0] == "order" and e[2]["ordStatus"] == "Filled" for e in bare.props())
    )
    seq = [(t, ev, e.get("ordStatus")) for t, ev, e in bare.props()]
    assert seq == [
        ("order", "Created", "PendingNew"),
        ("orderVersion", "Created", None),
        ("command", "Created", None),
        ("order", "Updated", "Working"),
        ("fill", "Created", None),
        ("position", "Created", None),
        ("cashBalance", "Updated", None),
        ("order", "Updated", "Filled"),
    ]
    fill = bare.props("fill")[0][2]
    assert fill["orderId"] == oid
    assert fill["qty"] == 2
    assert fill["price"] == float(sim.price("MNQ"))
    assert bare.props("command")[0][2]["clOrdId"] == "sig-1"
    pos = (await bare.call("position/list")).data
    assert [(p["netPos"], p["netPrice"]) for p in pos] == [(2, float(sim.price("MNQ")))]
    assert sim.state()["accounts"]["SIM1"]["positions"][0]["netPos"] == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"isAutomated": None}, "UnknownReason"),
        ({"isAutomated": False}, "UnknownReason"),
        ({"orderQty": 1.5}, "UnknownReason"),
        ({"orderQty": "1"}, "UnknownReason"),
        ({"bogus": 1}, "UnknownReason"),
        ({"clOrdId": "x" * 65}, "UnknownReason"),
        ({"orderType": "Limit", "price": 21500.1}, "InvalidPrice"),
        ({"orderType": "Limit"}, "InvalidPrice"),
        ({"symbol": "XYZZ6"}, "InvalidContract"),
        ({"accountId": 1, "accountSpec": None}, "Unauthorized"),
    ],
)
async def test_strict_rejections(
    sim: SimHandle, http: aiohttp.ClientSession, change: dict[str, Any], reason: str
) -> None:
    access = (await request_token(http, sim))["accessToken"]
    body = {k: v for k, v in {**market_order(sim), **change}.items() if v is not None}
    async with http.post(
        f"{sim.rest_url}/order/placeorder", headers={"Authorization": f"Bearer {access}"}, json=body
    ) as r:
        assert r.status == 200
        data = await r.json()
    assert data["failureReason"] == reason, data
    assert data["failureText"]
    assert "orderId" not in data
    assert sim.state()["accounts"]["SIM1"]["fills"] == []


async def test_order_for_another_logins_account_is_denied(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    sim.add_login("bob", "pw", ["BOB1"])
    access = (await request_token(http, sim))["accessToken"]
    body = market_order(sim, "SIM1")
    body.update(accountSpec="BOB1", accountId=sim.account_id("BOB1"))
    async with http.post(
        f"{sim.rest_url}/order/placeorder", headers={"Authorization": f"Bearer {access}"}, json=body
    ) as r:
        data = await r.json()
    assert data == {"failureReason": "Unauthorized", "failureText": "Access is denied"}
    assert sim.state()["accounts"]["BOB1"]["fills"] == []


def ladder_body(sim: SimHandle, account: str = "SIM1", params: Any = None) -> dict[str, Any]:
    if params is None:
        params = orjson.dumps(
            {
                "entryVersion": {"orderQty": 3, "orderType": "Market", "isAutomated": True},
                "brackets": [
                    {"qty": 1, "profitTarget": 5, "stopLoss": -10, "trailingStop": False},
                    {"qty": 1, "profitTarget": 10.25, "stopLoss": -10, "trailingStop": False},
                    {"qty": 1, "profitTarget": "+20", "stopLoss": "-10", "trailingStop": False},
                ],
            }
        ).decode()
    return {
        "accountId": sim.account_id(account),
        "accountSpec": account,
        "symbol": sim.contract("MNQ").name,
        "action": "Buy",
        "orderStrategyTypeId": 2,
        "params": params,
    }


def working_orders(state: dict[str, Any], account: str) -> list[tuple[Any, ...]]:
    return sorted(
        (o["action"], o["orderType"], o["qty"], o["price"], o["stopPrice"])
        for o in state["accounts"][account]["orders"]
        if o["status"] == "Working"
    )


async def test_three_leg_strategy_then_a_target_fills_and_the_stop_shrinks(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    r = await bare.call("orderStrategy/startOrderStrategy", ladder_body(sim))
    assert r.status == 200
    assert "orderStrategy" in r.data, r.data
    assert r.data["orderStrategy"]["status"] == "ActiveStrategy"
    async with http.get(f"{sim.base_url}/sim/state") as resp:
        state = await resp.json()
    assert state["accounts"]["SIM1"]["positions"][0]["netPos"] == 3
    assert [f["price"] for f in state["accounts"]["SIM1"]["fills"]] == [21500.0]
    assert working_orders(state, "SIM1") == [
        ("Sell", "Limit", 1, 21505.0, None),
        ("Sell", "Limit", 1, 21510.25, None),
        ("Sell", "Limit", 1, 21520.0, None),
        ("Sell", "Stop", 3, None, 21490.0),
    ]
    bare.events.clear()
    async with http.post(
        f"{sim.base_url}/sim/price", json={"symbol": "MNQ", "price": 21506}
    ) as resp:
        assert resp.status == 200
    await bare.recv_until(
        lambda: any(t == "orderVersion" and e["orderQty"] == 2 for t, _, e in bare.props())
    )
    state = sim.state()
    assert state["accounts"]["SIM1"]["positions"][0]["netPos"] == 2
    assert working_orders(state, "SIM1") == [
        ("Sell", "Limit", 1, 21510.25, None),
        ("Sell", "Limit", 1, 21520.0, None),
        ("Sell", "Stop", 2, None, 21490.0),
    ]
    stop_id = next(o["id"] for o in state["accounts"]["SIM1"]["orders"] if o["orderType"] == "Stop")
    versions = (await bare.call("orderVersion/deps", query=f"masterid={stop_id}")).data
    assert versions[-1]["orderQty"] == 2
    assert state["accounts"]["SIM1"]["realizedPnL"] == 5 * 2.0


async def test_strategy_params_must_be_a_json_string(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(
        http, sim, (await request_token(http, sim))["accessToken"], sync=False
    )
    body = ladder_body(
        sim, params={"entryVersion": {"orderQty": 1, "orderType": "Market"}, "brackets": []}
    )
    r = await bare.call("orderStrategy/startorderstrategy", body)
    assert "Invalid or missed parameters" in r.data["errorText"]
    assert sim.state()["accounts"]["SIM1"]["orders"] == []


async def test_liquidate_flattens_one_account_and_keeps_the_others_orders(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    for account in ("SIM1", "SIM2"):
        assert (
            "orderStrategy"
            in (await bare.call("orderstrategy/startorderstrategy", ladder_body(sim, account))).data
        )
    sim2_before = working_orders(sim.state(), "SIM2")
    body = {
        "accountId": sim.account_id("SIM1"),
        "contractId": sim.contract("MNQ").id,
        "admin": False,
    }
    r = await bare.call("order/liquidateposition", body)
    assert r.data["orderId"] > 0
    state = sim.state()
    assert state["accounts"]["SIM1"]["positions"] == []
    assert state["accounts"]["SIM1"]["orders"] == []
    assert working_orders(state, "SIM2") == sim2_before
    assert state["accounts"]["SIM2"]["positions"][0]["netPos"] == 3


async def test_events_reach_only_the_logins_own_sockets(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    sim.add_login("bob", "pw", ["BOB1"])
    mine = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    bob_access = (await request_token(http, sim, name="bob", password="pw"))["accessToken"]
    bob = await bare_connect(http, sim, bob_access, sync=False)
    assert (
        await bob.call("user/syncrequest", {"accounts": [sim.account_id("BOB1")]})
    ).status == 200
    await mine.call("order/placeorder", market_order(sim))
    assert (await bob.call("account/list")).data[0]["name"] == "BOB1"
    assert bob.props() == []
    assert mine.props("fill")


async def test_reads_contracts_products_and_items(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(
        http, sim, (await request_token(http, sim))["accessToken"], sync=False
    )
    front = sim.contract("MNQ")
    found = (await bare.call("contract/find", query=f"name={front.name}")).data
    assert found["id"] == front.id
    assert (await bare.call("contract/item", query=f"id={front.id}")).data["name"] == front.name
    suggested = (await bare.call("contract/suggest", query="t=MNQ&l=5")).data
    assert suggested[0]["name"] == front.name
    assert len(suggested) == 2
    product = (await bare.call("product/find", query="name=MNQ")).data
    assert (product["tickSize"], product["valuePerPoint"]) == (0.25, 2.0)
    assert (await bare.call("contract/find", query="name=NOPEZ6")).status == 404
    oid = (await bare.call("order/placeorder", market_order(sim))).data["orderId"]
    assert (await bare.call("order/item", query=f"id={oid}")).data["ordStatus"] == "Filled"
    fills = (await bare.call("fill/deps", query=f"masterid={oid}")).data
    assert [f["orderId"] for f in fills] == [oid]
    snapshot = (
        await bare.call("cashBalance/getCashBalanceSnapshot", {"accountId": sim.account_id("SIM1")})
    ).data
    assert snapshot["realizedPnL"] == 0.0


async def test_sync_with_entity_types_and_accounts_filters_events(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    access = (await request_token(http, sim))["accessToken"]
    fills_only = await bare_connect(http, sim, access, sync=False)
    body = {"accounts": [sim.account_id("SIM2")], "entityTypes": ["fill"]}
    snap = (await fills_only.call("user/syncrequest", body)).data
    assert [a["name"] for a in snap["accounts"]] == ["SIM2"]
    everything = await bare_connect(http, sim, access)
    await everything.call("order/placeorder", market_order(sim, "SIM1"))
    await everything.call("order/placeorder", market_order(sim, "SIM2", clOrdId="two"))
    await fills_only.call("account/list")  # events of both orders were flushed before this answer
    assert [t for t, _, _ in fills_only.props()] == ["fill"]
    assert {t for t, _, _ in everything.props()} >= {
        "order",
        "orderVersion",
        "command",
        "fill",
        "position",
    }
    commands = (await everything.call("command/list")).data
    assert [c.get("clOrdId") for c in commands] == [None, "two"]


async def test_ioc_limit_that_cannot_fill_is_canceled(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    body = market_order(sim, orderType="Limit", price=21000, timeInForce="IOC")
    oid = (await bare.call("order/placeorder", body)).data["orderId"]
    assert (await bare.call("order/item", query=f"id={oid}")).data["ordStatus"] == "Canceled"
    assert sim.state()["accounts"]["SIM1"]["orders"] == []


async def test_replay_fault_resends_fills_with_the_same_ids(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    await bare.call("order/placeorder", market_order(sim))
    first = [e["id"] for _, _, e in bare.props("fill")]
    async with http.post(f"{sim.base_url}/sim/fault", json={"kind": "replay", "login": "sim"}) as r:
        assert (await r.json())["fills"] == 1
    await bare.recv_until(lambda: len(bare.props("fill")) == 2)
    assert [e["id"] for _, _, e in bare.props("fill")] == first * 2


async def test_reject_after_accept_answers_an_order_id_then_rejects_it(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    sim.fault(
        "reject_order", text="Risk check failed", reason="MaxPosLimitReached", after_accept=True
    )
    oid = (await bare.call("order/placeorder", market_order(sim))).data["orderId"]
    await bare.recv_until(
        lambda: any(t == "order" and e["ordStatus"] == "Rejected" for t, _, e in bare.props())
    )
    report = bare.props("commandReport")[0][2]
    assert (report["rejectReason"], report["text"]) == ("MaxPosLimitReached", "Risk check failed")
    assert (await bare.call("order/item", query=f"id={oid}")).data["ordStatus"] == "Rejected"
    assert sim.state()["accounts"]["SIM1"]["fills"] == []
    assert "orderId" in (await bare.call("order/placeorder", market_order(sim))).data  # one-shot
    assert sim.state()["accounts"]["SIM1"]["positions"][0]["netPos"] == 1


async def test_reject_order_for_liquidations_refuses_the_next_n_and_nothing_else(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    """``endpoint`` names the command a rejection is for: a liquidation the broker refuses
    (twice here), while orders go on as usual; the default leaves liquidations alone."""
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    sim.fault("reject_order", endpoint="liquidateposition", text="Busy", count=2)
    assert "orderId" in (await bare.call("order/placeorder", market_order(sim))).data
    body = {"accountId": sim.account_id("SIM1"), "contractId": sim.contract("MNQ").id}
    for _ in range(2):
        r = await bare.call("order/liquidateposition", {**body, "admin": False})
        assert r.data.get("failureText") == "Busy", r.data
    assert sim.state()["accounts"]["SIM1"]["positions"][0]["netPos"] == 1
    sim.fault("reject_order", text="Only orders")  # the default: not a liquidation
    assert (await bare.call("order/liquidateposition", {**body, "admin": False})).data["orderId"]
    assert sim.state()["accounts"]["SIM1"]["positions"] == []
    r = await bare.call("order/placeorder", market_order(sim))
    assert r.data.get("failureText") == "Only orders", r.data


async def test_events_after_fault_sends_the_answer_first(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
    sim.fault("events_after")
    await bare.call("order/placeorder", market_order(sim))
    assert bare.props() == []  # the answer came first
    await bare.recv_until(lambda: bare.props("fill"))
    sim.fault("clear")
    await bare.call("order/placeorder", market_order(sim))
    assert len(bare.props("fill")) == 2  # events first again
