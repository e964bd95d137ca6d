"""The floor in its own process: the least any design must do per alert.

    python -m bench.floorproc < config.json      # prints "ready PORT" once every socket is up

``POST /floor/{token}`` makes one durable INSERT into ``signals`` and writes one
``order/placeorder`` frame per sub-account of the token's group, over one bare WebSocket per
simulator login (its own session: an access token from ``/auth/accesstokenrequest``).

config.json: ``{"dsn", "rest_url", "ws_url", "symbol", "groups": {token: {"login", "password",
"accounts": [{"id", "name"}, …]}}}``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
import uuid
from typing import Any

import aiohttp
import asyncpg
import orjson
from aiohttp import web
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from jtrades import aio


async def _token(http: aiohttp.ClientSession, rest_url: str, login: str, password: str) -> str:
    body = {
        "name": login,
        "password": password,
        "appId": "jtrades",
        "appVersion": "1.0",
        "cid": 8,
        "sec": "secret",
        "deviceId": "bench-floor",
    }
    async with http.post(f"{rest_url}/auth/accesstokenrequest", json=body) as r:
        answer = await r.json()
        assert r.status == 200, (r.status, answer)
        assert "accessToken" in answer, answer
        return str(answer["accessToken"])


async def _connect(ws_url: str, access: str) -> ClientConnection:
    # The daemon's transport settings: no per-message deflate (websockets offers it by default,
    # and compressing every order frame here and inflating it in the simulator would slow the
    # floor for nothing the daemon pays).
    ws = await ws_connect(ws_url, max_size=16 * 1024 * 1024, ping_interval=None, compression=None)
    assert await ws.recv() == "o"
    await ws.send(f"authorize\n0\n\n{access}")
    answer = await ws.recv()
    assert '"s":200' in str(answer), answer
    return ws


async def _drain(ws: ClientConnection) -> None:
    """Read (and drop) what the simulator sends, and keep the socket alive."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(2)
            await ws.send("[]")

    hb = asyncio.create_task(beat())
    try:
        async for _ in ws:
            pass
    except Exception:  # closed at the end of the run
        return
    finally:
        hb.cancel()


class Floor:
    def __init__(self, pool: asyncpg.Pool, symbol: str) -> None:
        self.pool, self.symbol = pool, symbol
        self.routes: dict[str, tuple[ClientConnection, list[dict[str, Any]]]] = {}
        self.ids = itertools.count(1)

    async def handle(self, request: web.Request) -> web.Response:
        ws, accounts = self.routes[request.match_info["token"]]
        body = await request.read()
        await self.pool.execute(
            "INSERT INTO signals (raw_body, verdict) VALUES ($1, 'received')", body
        )
        tag = uuid.uuid4().hex[:8]
        for i, a in enumerate(accounts):
            order = {
                "accountSpec": a["name"],
                "accountId": a["id"],
                "action": "Buy",
                "symbol": self.symbol,
                "orderQty": 1,
                "orderType": "Market",
                "isAutomated": True,
                "clOrdId": f"floor-{tag}-{i}",
            }
            await ws.send(f"order/placeorder\n{next(self.ids)}\n\n{orjson.dumps(order).decode()}")
        return web.json_response({"ok": True})


async def main(cfg: dict[str, Any]) -> None:
    pool = await asyncpg.create_pool(cfg["dsn"], min_size=2, max_size=20)
    assert pool is not None
    floor = Floor(pool, cfg["symbol"])
    readers = []
    async with aiohttp.ClientSession() as http:
        for token, group in cfg["groups"].items():
            access = await _token(http, cfg["rest_url"], group["login"], group["password"])
            ws = await _connect(cfg["ws_url"], access)
            readers.append(asyncio.create_task(_drain(ws)))
            floor.routes[token] = (ws, group["accounts"])
    app = web.Application()
    app.router.add_post("/floor/{token}", floor.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await pool.close()


if __name__ == "__main__":
    aio.run(main(json.loads(sys.stdin.read())))
