"""The simulator over real sockets: auth, sessions, faults, control endpoints, the CLI.

Driven by the bare protocol client of ``tests.simutil`` (not our Tradovate client)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from jtrades.broker.tradovate.codec import Response, parse_server_frame
from jtrades.sim.config import config_from_dict, default_config
from tests.simutil import (
    LOGIN_BODY,
    SimHandle,
    bare_connect,
    http,
    market_order,
    request_token,
    running_sim,
    sim,
)

__all__ = ["http", "sim"]


async def test_login_success_body_and_me(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    body = await request_token(http, sim)
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
    body = await request_token(http, sim, password="wrong")
    assert "errorText" in body
    assert "accessToken" not in body
    body = await request_token(http, sim, cid=[1])
    assert "errorText" in body


async def test_calls_need_a_live_token(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{sim.rest_url}/account/list") as r:
        assert r.status == 401
    async with http.get(
        f"{sim.rest_url}/account/list", headers={"Authorization": "Bearer nope"}
    ) as r:
        assert r.status == 401
    access = (await request_token(http, sim))["accessToken"]
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


async def test_a_third_session_closes_the_oldest(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    first = (await request_token(http, sim))["accessToken"]
    second = (await request_token(http, sim))["accessToken"]
    old = await bare_connect(http, sim, first)
    keep = await bare_connect(http, sim, second)
    third = (await request_token(http, sim))["accessToken"]
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
        first = await request_token(http, s)
        headers = {"Authorization": f"Bearer {first['accessToken']}"}
        bare = await bare_connect(http, s, first["accessToken"], sync=False)
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
        assert "accessToken" in await request_token(http, s)
        assert "accessToken" in await request_token(http, s)
        penalty = await request_token(http, s)
        assert penalty["p-time"] == 30
        assert "accessToken" not in penalty
        clock.now += 10  # too early: another ticket, for the time left
        early = await request_token(http, s, **{"p-ticket": penalty["p-ticket"]})
        assert early["p-time"] == 20
        clock.now += 20
        assert "accessToken" in await request_token(http, s, **{"p-ticket": early["p-ticket"]})
        s.config.logins_per_hour = 100  # now failures, not the budget, bring the tickets
        url = f"{s.rest_url}/auth/accesstokenrequest"
        bad = {**LOGIN_BODY, "password": "bad"}
        assert "errorText" in await request_token(http, s, password="bad")
        assert "errorText" in await request_token(http, s, password="bad")
        third = await request_token(http, s, password="bad")
        assert third["p-time"] == 30
        blocked = await request_token(http, s)  # even the right password waits out the ticket
        assert "accessToken" not in blocked
        clock.now += 30
        fourth = await request_token(http, s, password="bad", **{"p-ticket": blocked["p-ticket"]})
        clock.now += 30
        async with http.post(url, json={**bad, "p-ticket": fourth["p-ticket"]}) as r:
            assert r.status == 423  # the warning before the lock
        captcha = await request_token(http, s, password="bad")
        assert captcha["p-captcha"] is True
        clock.now += 3000
        assert (await request_token(http, s)).get(
            "p-captcha"
        ) is True  # a try within the hour restarts it
        clock.now += 3601
        assert "accessToken" in await request_token(http, s)


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


async def test_drop_after_n_frames(sim: SimHandle, http: aiohttp.ClientSession) -> None:
    bare = await bare_connect(http, sim, (await request_token(http, sim))["accessToken"])
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
        bare = await bare_connect(
            http, s, (await request_token(http, s))["accessToken"], sync=False
        )
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
    access = (await request_token(http, sim))["accessToken"]
    bare = await bare_connect(http, sim, access)
    sim.fault("reject_order", text="Max position reached", reason="MaxPosLimitReached")
    r = await bare.call("order/placeorder", market_order(sim))
    assert r.data == {"failureReason": "MaxPosLimitReached", "failureText": "Max position reached"}
    assert "orderId" in (await bare.call("order/placeorder", market_order(sim))).data
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
        assert "accessToken" in await request_token(http, s, name="late", password="pw")
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
    bare = await bare_connect(
        http, sim, (await request_token(http, sim))["accessToken"], sync=False
    )
    sim.fault("rate_limit", count=1)
    r = await bare.call("account/list")
    assert (r.status, r.data) == (429, None)
    assert (await bare.call("account/list")).status == 200


async def test_websockets_past_the_per_login_limit_close_the_oldest(
    http: aiohttp.ClientSession,
) -> None:
    cfg = default_config()
    cfg.max_websockets = 2
    async with running_sim(cfg) as s:
        access = (await request_token(http, s))["accessToken"]
        first = await bare_connect(http, s, access, sync=False)
        second = await bare_connect(http, s, access, sync=False)
        third = await bare_connect(http, s, access, sync=False)
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


async def test_heartbeats_before_authorize_are_ignored(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    access = (await request_token(http, sim))["accessToken"]
    ws = await http.ws_connect(sim.ws_url)
    assert await ws.receive_str() == "o"
    await ws.send_str("[]")
    await ws.send_str(f"authorize\n3\n\n{access}")
    frame = parse_server_frame(await ws.receive_str())
    while frame.kind == "heartbeat":
        frame = parse_server_frame(await ws.receive_str())
    assert frame.messages == (Response(3, 200, None),)


async def test_sticky_drop_and_refused_upgrades(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    access = (await request_token(http, sim))["accessToken"]
    sim.fault("refuse_ws", count=1)
    async with http.get(sim.ws_url.replace("ws://", "http://", 1)) as r:
        assert r.status == 503  # refused before any upgrade
    sim.fault("drop", after=2, sticky=True)  # "o" and the authorize answer, then cut
    bare = await bare_connect(http, sim, access, sync=False)
    with pytest.raises(ConnectionError):
        await bare.call("account/list")
    sim.fault("clear")
    bare = await bare_connect(http, sim, access, sync=False)
    assert (await bare.call("account/list")).status == 200
    assert sim.positions("SIM1") == {}
    assert sim.working_orders("SIM1") == []
