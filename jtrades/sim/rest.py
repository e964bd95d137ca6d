"""REST under ``/v1`` (and ``/auth/oauthtoken`` without it, where Tradovate's OAuth tutorial posts).

Bodies are JSON, or form-encoded for the OAuth exchange; the query string carries the parameters of
reads. Answers are JSON; errors that Tradovate sends as HTTP 200 bodies stay HTTP 200 here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web


async def read_body(request: web.Request) -> Any:
    if request.content_type == "application/x-www-form-urlencoded":
        return dict(await request.post())
    raw = await request.read()
    if not raw.strip():
        return None
    return orjson.loads(raw)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def rest_handler(request: web.Request) -> web.StreamResponse:
    from jtrades.sim.app import API, WORLD

    world = request.app[WORLD]
    endpoint = request.match_info.get("tail") or "auth/oauthtoken"
    try:
        body = await read_body(request)
    except orjson.JSONDecodeError:
        return web.Response(status=400, text='"Invalid JSON body"', content_type="application/json")
    answer = request.app[API].call(endpoint, dict(request.query), body, bearer(request))
    if answer.revoked:
        await world.revoke(answer.revoked, "ConnectionQuotaReached")
    await world.flush()
    if world.faults.delay_ms:
        await asyncio.sleep(world.faults.delay_ms / 1000)
    if answer.status == 200:
        return web.Response(body=orjson.dumps(answer.data), content_type="application/json")
    if answer.data is None:
        return web.Response(status=answer.status)
    text = answer.data if isinstance(answer.data, str) else orjson.dumps(answer.data).decode()
    return web.Response(status=answer.status, text=text, content_type="application/json")
