"""The simulator as an aiohttp application: REST, WebSocket and the ``/sim`` control endpoints.

``/sim/…`` needs no token (it is the test bench, not Tradovate): ``POST /sim/price``
``{"symbol": root or contract, "price"}``, ``GET /sim/state``, ``GET /sim/stats``, ``POST /sim/fault``
(see ``faults``), ``POST /sim/logins`` ``{"name", "password", "accounts": [...], "account_count"}``
(a new login, or more accounts for an existing one), ``POST /sim/oauth/code`` ``{"login"}`` (the code an OAuth redirect would
bring). ``serve`` runs it standalone for ``jtrades sim``.
"""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from aiohttp import web

from jtrades.errors import ConfigError
from jtrades.sim.api import Api
from jtrades.sim.entities import on_tick
from jtrades.sim.faults import apply_fault
from jtrades.sim.rest import read_body, rest_handler
from jtrades.sim.world import Simulator
from jtrades.sim.ws import websocket_handler

WORLD = web.AppKey("world", Simulator)
API = web.AppKey("api", Api)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    try:
        body = await read_body(request)
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text="body is not JSON") from exc
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="body must be a JSON object")
    return body


async def sim_price(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    body = await _body(request)
    symbol = str(body.get("symbol", ""))
    try:
        price = Decimal(str(body.get("price")))
    except InvalidOperation:
        return _json({"error": "price must be a number"}, 400)
    contracts = world.contracts_for(symbol)
    if not contracts:
        return _json({"error": f"unknown symbol {symbol!r}"}, 404)
    if price <= 0 or not on_tick(price, contracts[0].root.tick):
        return _json({"error": f"price {price} is not on the tick {contracts[0].root.tick}"}, 400)
    await world.set_price(symbol, price)
    return _json(
        {"symbol": symbol, "price": float(price), "contracts": [c.name for c in contracts]}
    )


async def sim_state(request: web.Request) -> web.Response:
    return _json(request.app[WORLD].state())


async def sim_stats(request: web.Request) -> web.Response:
    return _json(request.app[WORLD].stats_json())


async def sim_fault(request: web.Request) -> web.Response:
    world = request.app[WORLD]
    try:
        result = apply_fault(world, await _body(request))
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    await world.flush()
    return _json(result)


async def sim_logins(request: web.Request) -> web.Response:
    """Add a login with accounts, or (name of an existing login) more accounts to it."""
    body = await _body(request)
    world = request.app[WORLD]
    existing = world.auth.login(str(body.get("name", "")))
    try:
        if existing is not None:
            if body.get("password", existing.password) != existing.password:
                return _json({"error": "login exists with another password"}, 409)
            world.add_accounts(
                existing,
                [str(a) for a in body.get("accounts", [])],
                int(body.get("account_count", 0)),
            )
            login = existing
        else:
            login = world.add_login(
                str(body["name"]),
                str(body.get("password", body["name"])),
                [str(a) for a in body.get("accounts", [])],
                int(body.get("account_count", 0)),
            )
    except KeyError:
        return _json({"error": "name is required"}, 400)
    except ConfigError as exc:
        return _json({"error": str(exc)}, 409)
    return _json(
        {
            "name": login.name,
            "userId": login.user_id,
            "accounts": [{"id": a.id, "name": a.name} for a in login.accounts],
        }
    )


async def sim_oauth_code(request: web.Request) -> web.Response:
    body = await _body(request)
    code = request.app[WORLD].auth.oauth_code(str(body.get("login", "")))
    if code is None:
        return _json({"error": "unknown login"}, 404)
    return _json({"code": code})


async def _close_sockets(app: web.Application) -> None:
    for sock in list(app[WORLD].sockets):
        with contextlib.suppress(Exception):
            await sock.ws.close()  # type: ignore[attr-defined]


def make_app(world: Simulator) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app[WORLD] = world
    app[API] = Api(world)
    app.router.add_get("/v1/websocket", websocket_handler)
    app.router.add_route("*", "/v1/{tail:.*}", rest_handler)
    app.router.add_route("*", "/auth/oauthtoken", rest_handler)
    app.router.add_post("/sim/price", sim_price)
    app.router.add_get("/sim/state", sim_state)
    app.router.add_get("/sim/stats", sim_stats)
    app.router.add_post("/sim/fault", sim_fault)
    app.router.add_post("/sim/logins", sim_logins)
    app.router.add_post("/sim/oauth/code", sim_oauth_code)
    app.on_shutdown.append(_close_sockets)
    return app


async def start(world: Simulator, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (``await runner.cleanup()`` to stop) and the bound port."""
    runner = web.AppRunner(make_app(world), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    return runner, int(bound)


async def serve(world: Simulator, host: str, port: int, ready: Any = None) -> None:
    """Run until cancelled (Ctrl-C)."""
    runner, bound = await start(world, host, port)
    if ready is not None:
        ready(bound)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
