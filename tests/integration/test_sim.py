"""The simulator over real sockets, driven by a bare aiohttp client (not our Tradovate client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from jtrades.broker.tradovate.codec import Event, Response, encode_request, parse_server_frame
from jtrades.sim.config import config_from_dict, default_config
from tests.simutil import SimHandle, running_sim, sim

__all__ = ["sim"]

LOGIN = {
    "name": "sim",
    "password": "sim",
    "appId": "jtrades",
    "appVersion": "1.0",
    "cid": 8,
    "sec": "secret",
    "deviceId": "dev-1",
}


class Bare:
    """A minimal Tradovate WebSocket client: just framing, ids and a queue of events."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 1
        self.events: list[dict[str, Any]] = []
        self.responses: dict[int, Response] = {}
        self.frames: list[str] = []

    async def recv_until(self, pred: Any, wait_s: float = 5.0) -> None:
        async with asyncio.timeout(wait_s):
            while not pred():
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError(f"socket ended: {msg.type}")
                self.frames.append(msg.data)
                frame = parse_server_frame(msg.data)
                for m in frame.messages:
                    if isinstance(m, Response):
                        self.responses[m.id] = m
                    elif isinstance(m, Event):
                        self.events.append({"e": m.name, "d": m.data})

    async def call(
        self, endpoint: str, body: Any = None, query: str = "", wait_s: float = 5.0
    ) -> Response:
        rid = self.next_id
        self.next_id += 1
        await self.ws.send_str(encode_request(endpoint, rid, body, query))
        await self.recv_until(lambda: rid in self.responses, wait_s)
        return self.responses.pop(rid)

    def props(self, entity_type: str | None = None) -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for ev in self.events:
            if ev["e"] == "props":
                d = ev["d"]
                if entity_type is None or d["entityType"] == entity_type:
                    out.append((d["entityType"], d["eventType"], d["entity"]))
        return out


async def token(http: aiohttp.ClientSession, sim: SimHandle, **extra: Any) -> dict[str, Any]:
    async with http.post(f"{sim.rest_url}/auth/accesstokenrequest", json={**LOGIN, **extra}) as r:
        assert r.status == 200
        return await r.json()  # type: ignore[no-any-return]


async def connect(
    http: aiohttp.ClientSession, sim: SimHandle, access: str, sync: bool = True
) -> Bare:
    ws = await http.ws_connect(sim.ws_url)
    assert (await ws.receive_str()) == "o"
    bare = Bare(ws)
    r = await bare.call("authorize", access)
    assert r.status == 200
    if sync:
        snap = await bare.call("user/syncrequest", {"users": [sim.world.config.logins[0].user_id]})
        assert snap.status == 200
    return bare


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def market(
    sim: SimHandle, account: str = "SIM1", qty: int = 1, action: str = "Buy", **kw: Any
) -> dict[str, Any]:
    return {
        "accountSpec": account,
        "accountId": sim.account_id(account),
        "action": action,
        "symbol": sim.contract("MNQ").name,
        "orderQty": qty,
        "orderType": "Market",
        "isAutomated": True,
        **kw,
    }


# --- auth -----------------------------------------------------------------------------------


async def test_login_success_body_and_me(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    body = await token(http, sim)
    assert body["userId"] == sim.world.config.logins[0].user_id
    assert body["expirationTime"].endswith("Z")
    assert body["mdAccessToken"]
    assert body["accessToken"]
    headers = {"Authorization": f"Bearer {body['accessToken']}"}
    async with http.get(f"{sim.rest_url}/auth/me", headers=headers) as r:
        assert (await r.json())["name"] == "sim"
    async with http.get(f"{sim.rest_url}/Account/List", headers=headers) as r:
        assert sorted(a["name"] for a in await r.json()) == ["SIM1", "SIM2"]


async def test_login_failures_are_200_with_error_text(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    body = await token(http, sim, password="wrong")
    assert "errorText" in body
    assert "accessToken" not in body
    body = await token(http, sim, cid=[1])
    assert "errorText" in body


async def test_calls_need_a_live_token(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.rest_url}/account/list") as r:
        assert r.status == 401
    async with http.get(
        f"{sim.rest_url}/account/list", headers={"Authorization": "Bearer nope"}
    ) as r:
        assert r.status == 401
    access = (await token(http, sim))["accessToken"]
    async with http.get(
        f"{sim.rest_url}/foo/bar", headers={"Authorization": f"Bearer {access}"}
    ) as r:
        assert r.status == 404
        assert await r.text() == '"Not found: foo/bar"'


async def test_ws_needs_authorize_and_rejects_bad_token(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    ws = await http.ws_connect(sim.ws_url)
    assert await ws.receive_str() == "o"
    await ws.send_str("authorize\n0\n\nnot-a-token")
    frame = parse_server_frame(await ws.receive_str())
    assert isinstance(frame.messages[0], Response)
    assert frame.messages[0].status == 401
    msg = await ws.receive()
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


async def test_ws_closes_a_socket_that_never_authorizes(http: aiohttp.ClientSession) -> None:
    cfg = default_config()
    cfg.authorize_timeout_s = 0.2
    async with running_sim(cfg) as s:
        ws = await http.ws_connect(s.ws_url)
        assert await ws.receive_str() == "o"
        async with asyncio.timeout(5):
            while True:
                msg = await ws.receive()
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
        assert ws.closed or msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)


# --- orders over the WebSocket ----------------------------------------------------------------


async def test_market_order_fills_with_events_in_order(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await connect(http, sim, (await token(http, sim))["accessToken"])
    r = await bare.call("order/placeorder", market(sim, qty=2, clOrdId="sig-1"))
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
    access = (await token(http, sim))["accessToken"]
    body = {k: v for k, v in {**market(sim), **change}.items() if v is not None}
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
    access = (await token(http, sim))["accessToken"]
    body = market(sim, "SIM1")
    body.update(accountSpec="BOB1", accountId=sim.account_id("BOB1"))
    async with http.post(
        f"{sim.rest_url}/order/placeorder", headers={"Authorization": f"Bearer {access}"}, json=body
    ) as r:
        data = await r.json()
    assert data == {"failureReason": "Unauthorized", "failureText": "Access is denied"}
    assert sim.state()["accounts"]["BOB1"]["fills"] == []


# --- strategies, liquidate ----------------------------------------------------------------------


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
    bare = await connect(http, sim, (await token(http, sim))["accessToken"])
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
    bare = await connect(http, sim, (await token(http, sim))["accessToken"], sync=False)
    body = ladder_body(
        sim, params={"entryVersion": {"orderQty": 1, "orderType": "Market"}, "brackets": []}
    )
    r = await bare.call("orderStrategy/startorderstrategy", body)
    assert "Invalid or missed parameters" in r.data["errorText"]
    assert sim.state()["accounts"]["SIM1"]["orders"] == []


async def test_liquidate_flattens_one_account_and_keeps_the_others_orders(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await connect(http, sim, (await token(http, sim))["accessToken"])
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


# --- sessions -----------------------------------------------------------------------------------


async def test_a_third_session_closes_the_oldest(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    first = (await token(http, sim))["accessToken"]
    second = (await token(http, sim))["accessToken"]
    old = await connect(http, sim, first)
    keep = await connect(http, sim, second)
    third = (await token(http, sim))["accessToken"]
    with pytest.raises(ConnectionError):
        await old.recv_until(lambda: False)
    assert {"e": "shutdown", "d": {"reasonCode": "ConnectionQuotaReached"}} in old.events
    assert any(f.startswith("c[") for f in old.frames)
    for access, status in ((first, 401), (second, 200), (third, 200)):
        async with http.get(
            f"{sim.rest_url}/account/list", headers={"Authorization": f"Bearer {access}"}
        ) as r:
            assert r.status == status
    assert (await keep.call("account/list")).status == 200
    assert sim.state()["logins"]["sim"]["sessions"] == 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_renewal_extends_the_session_without_opening_one(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    cfg = default_config()
    cfg.token_lifetime_s = 60
    async with running_sim(cfg, clock) as s:
        first = await token(http, s)
        headers = {"Authorization": f"Bearer {first['accessToken']}"}
        bare = await connect(http, s, first["accessToken"], sync=False)
        clock.now += 50
        async with http.post(f"{s.rest_url}/auth/renewAccessToken", headers=headers) as r:
            renewed = await r.json()
        assert renewed["accessToken"] != first["accessToken"]
        assert renewed["expirationTime"] > first["expirationTime"]
        clock.now += 30  # the first token has expired, the renewed one has not
        async with http.get(f"{s.rest_url}/account/list", headers=headers) as r:
            assert r.status == 401
        new_headers = {"Authorization": f"Bearer {renewed['accessToken']}"}
        async with http.get(f"{s.rest_url}/account/list", headers=new_headers) as r:
            assert r.status == 200
        assert (
            await bare.call("account/list")
        ).status == 200  # an authorized socket outlives its token
        assert s.state()["logins"]["sim"]["sessions"] == 1
        assert s.stats()["renewals"] == 1


async def test_login_budget_then_p_ticket_then_captcha(http: aiohttp.ClientSession) -> None:
    clock = FakeClock()
    cfg = default_config()
    cfg.logins_per_hour = 2
    cfg.penalty_s = 30
    cfg.max_sessions = 5
    async with running_sim(cfg, clock) as s:
        assert "accessToken" in await token(http, s)
        assert "accessToken" in await token(http, s)
        penalty = await token(http, s)
        assert penalty["p-time"] == 30
        assert "accessToken" not in penalty
        clock.now += 10  # too early: another ticket, for the time left
        early = await token(http, s, **{"p-ticket": penalty["p-ticket"]})
        assert early["p-time"] == 20
        clock.now += 20
        assert "accessToken" in await token(http, s, **{"p-ticket": early["p-ticket"]})
        s.config.logins_per_hour = 100  # now failures, not the budget, bring the tickets
        url = f"{s.rest_url}/auth/accesstokenrequest"
        bad = {**LOGIN, "password": "bad"}
        assert "errorText" in await token(http, s, password="bad")
        assert "errorText" in await token(http, s, password="bad")
        third = await token(http, s, password="bad")
        assert third["p-time"] == 30
        blocked = await token(http, s)  # even the right password waits out the ticket
        assert "accessToken" not in blocked
        clock.now += 30
        fourth = await token(http, s, password="bad", **{"p-ticket": blocked["p-ticket"]})
        clock.now += 30
        async with http.post(url, json={**bad, "p-ticket": fourth["p-ticket"]}) as r:
            assert r.status == 423  # the warning before the lock
        captcha = await token(http, s, password="bad")
        assert captcha["p-captcha"] is True
        clock.now += 3000
        assert (await token(http, s)).get("p-captcha") is True  # a try within the hour restarts it
        clock.now += 3601
        assert "accessToken" in await token(http, s)


async def test_oauth_code_exchange_form_encoded_without_v1(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    async with http.post(f"{sim.base_url}/sim/oauth/code", json={"login": "sim"}) as r:
        code = (await r.json())["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": "x",
        "client_id": "c",
        "client_secret": "s",
    }
    async with http.post(f"{sim.base_url}/auth/oauthtoken", data=form) as r:
        body = await r.json()
    assert body["token_type"] == "bearer"
    async with http.get(
        f"{sim.rest_url}/account/list", headers={"Authorization": f"Bearer {body['access_token']}"}
    ) as r:
        assert r.status == 200
    async with http.post(f"{sim.rest_url}/auth/oauthtoken", json=form) as r:
        assert (await r.json())["error"] == "invalid_grant"  # a code is good once


# --- faults -------------------------------------------------------------------------------------


async def test_drop_after_n_frames(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    bare = await connect(http, sim, (await token(http, sim))["accessToken"])
    async with http.post(f"{sim.base_url}/sim/fault", json={"kind": "drop", "after": 1}) as r:
        assert (await r.json())["sockets"] == 1
    assert (await bare.call("account/list")).status == 200  # the one frame it still gets
    with pytest.raises(ConnectionError):
        await bare.call("account/list")
    assert sim.stats()["websockets_open"] == 0


async def test_zombie_keeps_the_socket_open_but_silent(http: aiohttp.ClientSession) -> None:
    cfg = default_config()
    cfg.heartbeat_s = 0.02
    async with running_sim(cfg) as s:
        bare = await connect(http, s, (await token(http, s))["accessToken"], sync=False)
        await bare.recv_until(lambda: "h" in bare.frames)
        s.fault("zombie", login="sim")
        bare.frames.clear()
        with pytest.raises(TimeoutError):
            await bare.call("account/list", wait_s=0.3)  # no answer, no heartbeat
        assert bare.frames == []
        assert not bare.ws.closed


async def test_delay_reject_and_unauthorized_faults(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    access = (await token(http, sim))["accessToken"]
    bare = await connect(http, sim, access)
    sim.fault("reject_order", text="Max position reached", reason="MaxPosLimitReached")
    r = await bare.call("order/placeorder", market(sim))
    assert r.data == {"failureReason": "MaxPosLimitReached", "failureText": "Max position reached"}
    assert "orderId" in (await bare.call("order/placeorder", market(sim))).data
    sim.fault("delay", ms=150)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await bare.call("account/list")).status == 200
    assert loop.time() - started >= 0.15
    sim.fault("clear")
    sim.fault("unauthorized")
    assert (await bare.call("account/list")).status == 401
    assert (await bare.call("account/list")).status == 200
    sim.fault("unauthorized", token=access)
    async with http.get(
        f"{sim.rest_url}/account/list", headers={"Authorization": f"Bearer {access}"}
    ) as r:
        assert r.status == 401


async def test_events_reach_only_the_logins_own_sockets(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    sim.add_login("bob", "pw", ["BOB1"])
    mine = await connect(http, sim, (await token(http, sim))["accessToken"])
    bob_access = (await token(http, sim, name="bob", password="pw"))["accessToken"]
    bob = await connect(http, sim, bob_access, sync=False)
    assert (
        await bob.call("user/syncrequest", {"accounts": [sim.account_id("BOB1")]})
    ).status == 200
    await mine.call("order/placeorder", market(sim))
    assert (await bob.call("account/list")).data[0]["name"] == "BOB1"
    assert bob.props() == []
    assert mine.props("fill")


async def test_reads_contracts_products_and_items(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await connect(http, sim, (await token(http, sim))["accessToken"], sync=False)
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
    oid = (await bare.call("order/placeorder", market(sim))).data["orderId"]
    assert (await bare.call("order/item", query=f"id={oid}")).data["ordStatus"] == "Filled"
    fills = (await bare.call("fill/deps", query=f"masterid={oid}")).data
    assert [f["orderId"] for f in fills] == [oid]
    snapshot = (
        await bare.call("cashBalance/getCashBalanceSnapshot", {"accountId": sim.account_id("SIM1")})
    ).data
    assert snapshot["realizedPnL"] == 0.0


async def test_runtime_logins_and_a_config_with_many_accounts(http: aiohttp.ClientSession) -> None:
    cfg = config_from_dict(
        {
            "logins": [{"name": f"u{i}", "password": "pw", "account_count": 10} for i in range(10)],
            "prices": {"MNQ": 20000},
        }
    )
    async with running_sim(cfg) as s:
        assert sum(len(lg["accounts"]) for lg in s.state()["logins"].values()) == 100
        assert s.price("MNQ") == 20000
        async with http.post(
            f"{s.base_url}/sim/logins", json={"name": "late", "password": "pw", "accounts": ["L1"]}
        ) as r:
            assert (await r.json())["accounts"][0]["name"] == "L1"
        assert "accessToken" in await token(http, s, name="late", password="pw")
        async with http.post(
            f"{s.base_url}/sim/logins", json={"name": "late", "password": "other"}
        ) as r:
            assert r.status == 409
        async with http.post(
            f"{s.base_url}/sim/logins", json={"name": "late", "account_count": 2}
        ) as r:
            assert [a["name"] for a in (await r.json())["accounts"]] == ["L1", "LATE-2", "LATE-3"]
        async with http.post(
            f"{s.base_url}/sim/logins", json={"name": "u0", "accounts": ["L1"]}
        ) as r:
            assert r.status == 409  # account names are unique across logins


def test_cli_rejects_a_bad_price_flag() -> None:
    from typer.testing import CliRunner

    from jtrades.cli.main import app

    result = CliRunner().invoke(app, ["sim", "--price", "MNQ"])
    assert result.exit_code == 1
    result = CliRunner().invoke(app, ["sim", "--price", "XYZ=1"])
    assert result.exit_code == 1


async def test_rate_limit_fault_answers_429(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    bare = await connect(http, sim, (await token(http, sim))["accessToken"], sync=False)
    sim.fault("rate_limit", count=1)
    r = await bare.call("account/list")
    assert (r.status, r.data) == (429, None)
    assert (await bare.call("account/list")).status == 200


async def test_sync_with_entity_types_and_accounts_filters_events(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    access = (await token(http, sim))["accessToken"]
    fills_only = await connect(http, sim, access, sync=False)
    body = {"accounts": [sim.account_id("SIM2")], "entityTypes": ["fill"]}
    snap = (await fills_only.call("user/syncrequest", body)).data
    assert [a["name"] for a in snap["accounts"]] == ["SIM2"]
    everything = await connect(http, sim, access)
    await everything.call("order/placeorder", market(sim, "SIM1"))
    await everything.call("order/placeorder", market(sim, "SIM2", clOrdId="two"))
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
    bare = await connect(http, sim, (await token(http, sim))["accessToken"])
    body = market(sim, orderType="Limit", price=21000, timeInForce="IOC")
    oid = (await bare.call("order/placeorder", body)).data["orderId"]
    assert (await bare.call("order/item", query=f"id={oid}")).data["ordStatus"] == "Canceled"
    assert sim.state()["accounts"]["SIM1"]["orders"] == []


async def test_websockets_past_the_per_login_limit_close_the_oldest(
    http: aiohttp.ClientSession,
) -> None:
    cfg = default_config()
    cfg.max_websockets = 2
    async with running_sim(cfg) as s:
        access = (await token(http, s))["accessToken"]
        first = await connect(http, s, access, sync=False)
        second = await connect(http, s, access, sync=False)
        third = await connect(http, s, access, sync=False)
        with pytest.raises(ConnectionError):
            await first.recv_until(lambda: False)
        assert {"e": "shutdown", "d": {"reasonCode": "ConnectionQuotaReached"}} in first.events
        assert (await second.call("account/list")).status == 200
        assert (await third.call("account/list")).status == 200
        assert s.state()["logins"]["sim"]["websockets"] == 2


async def test_jtrades_sim_runs_standalone_and_prints_its_urls(
    http: aiohttp.ClientSession, tmp_path: Any
) -> None:
    import sys
    from pathlib import Path

    world = tmp_path / "world.json"
    world.write_text('{"logins": [{"name": "ops", "password": "pw", "accounts": ["OPS1"]}]}')
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "jtrades"),
        "sim",
        "--port",
        "0",
        "--price",
        "MNQ=21000",
        "--config",
        str(world),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        rest = ""
        async with asyncio.timeout(30):
            while not rest:
                line = (await proc.stdout.readline()).decode()
                assert line, "jtrades sim exited early"
                if line.startswith("export JTRADES_TRADOVATE__DEMO_REST_URL="):
                    rest = line.strip().split("=", 1)[1]
        async with http.post(
            f"{rest}/auth/accesstokenrequest", json={"name": "ops", "password": "pw"}
        ) as r:
            access = (await r.json())["accessToken"]
        async with http.get(
            f"{rest}/account/list", headers={"Authorization": f"Bearer {access}"}
        ) as r:
            assert [a["name"] for a in await r.json()] == ["OPS1"]
        base = rest.removesuffix("/v1")
        async with http.get(f"{base}/sim/state") as r:
            prices = (await r.json())["prices"]
        assert {v for k, v in prices.items() if k.startswith("MNQ")} == {21000.0}
    finally:
        proc.terminate()
        await proc.wait()


async def test_replay_fault_resends_fills_with_the_same_ids(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await connect(http, sim, (await token(http, sim))["accessToken"])
    await bare.call("order/placeorder", market(sim))
    first = [e["id"] for _, _, e in bare.props("fill")]
    async with http.post(f"{sim.base_url}/sim/fault", json={"kind": "replay", "login": "sim"}) as r:
        assert (await r.json())["fills"] == 1
    await bare.recv_until(lambda: len(bare.props("fill")) == 2)
    assert [e["id"] for _, _, e in bare.props("fill")] == first * 2


async def test_reject_after_accept_answers_an_order_id_then_rejects_it(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    bare = await connect(http, sim, (await token(http, sim))["accessToken"])
    sim.fault(
        "reject_order", text="Risk check failed", reason="MaxPosLimitReached", after_accept=True
    )
    oid = (await bare.call("order/placeorder", market(sim))).data["orderId"]
    await bare.recv_until(
        lambda: any(t == "order" and e["ordStatus"] == "Rejected" for t, _, e in bare.props())
    )
    report = bare.props("commandReport")[0][2]
    assert (report["rejectReason"], report["text"]) == ("MaxPosLimitReached", "Risk check failed")
    assert (await bare.call("order/item", query=f"id={oid}")).data["ordStatus"] == "Rejected"
    assert sim.state()["accounts"]["SIM1"]["fills"] == []
    assert "orderId" in (await bare.call("order/placeorder", market(sim))).data  # one-shot
    assert sim.state()["accounts"]["SIM1"]["positions"][0]["netPos"] == 1
