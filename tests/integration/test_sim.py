"""The simulator over real sockets, driven by a bare aiohttp client (not our Tradovate client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from jtrades.broker.tradovate.codec import Event, Response, encode_request, parse_server_frame
from jtrades.sim.config import default_config
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

    async def call(self, endpoint: str, body: Any = None, query: str = "") -> Response:
        rid = self.next_id
        self.next_id += 1
        await self.ws.send_str(encode_request(endpoint, rid, body, query))
        await self.recv_until(lambda: rid in self.responses)
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
