"""The trading WebSocket at ``/v1/websocket``: ``o``, authorize, requests, heartbeats, events.

The server sends ``o`` and expects ``authorize\\n<id>\\n\\n<token>`` within
``authorize_timeout_s`` (else it closes); a bad token gets ``{"s":401}`` and the socket is closed,
as is one whose authorize a fault answers with a penalty ticket or a 429.
Every REST endpoint is callable with the same name and body; ``user/syncrequest`` answers with the
snapshot and subscribes the socket to its accounts' ``props`` events. ``h`` goes out every
``heartbeat_s``. A revoked session's sockets get ``{"e":"shutdown"}``, then ``c[…]``, then close.

Framing is the shared codec's (``jtrades.broker.tradovate.codec``); the per-frame path is: parse,
call, encode once, send.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from jtrades.broker.tradovate.codec import (
    CLIENT_HEARTBEAT,
    OPEN,
    SERVER_HEARTBEAT,
    Event,
    FrameError,
    Request,
    Response,
    encode_close,
    encode_messages,
    parse_request,
)
from jtrades.sim.auth import Session
from jtrades.sim.config import LoginSpec

if TYPE_CHECKING:
    from jtrades.sim.api import Api
    from jtrades.sim.world import Simulator

MAX_FRAME = 16 * 1024 * 1024


class WsConn:
    """One client socket; also the ``SimSocket`` the world fans events out to."""

    def __init__(
        self, world: Simulator, api: Api, ws: web.WebSocketResponse, request: web.Request
    ) -> None:
        self.world = world
        self.api = api
        self.ws = ws
        self.request = request
        self.login: LoginSpec | None = None
        self.session: Session | None = None
        self.token = ""
        self.accounts: frozenset[int] | None = None
        self.entity_types: frozenset[str] | None = None
        self.zombie = False
        self._hearing = asyncio.Event()  # cleared by the ``deaf`` fault: the socket stops reading
        self._hearing.set()
        self.drop_at: int | None = None
        self.sent = 0

    @property
    def deaf(self) -> bool:
        return not self._hearing.is_set()

    @deaf.setter
    def deaf(self, value: bool) -> None:
        if value:
            self._hearing.clear()
        else:
            self._hearing.set()

    # --- SimSocket -----------------------------------------------------------------------------

    async def send(self, frame: str) -> None:
        if self.zombie or self.ws.closed:
            return
        if self.drop_at is not None and self.sent >= self.drop_at:
            self.abort()
            return
        try:
            await self.ws.send_str(frame)
        except (ConnectionError, RuntimeError):
            return
        self.sent += 1
        self.world.stats.frames_out += 1
        if self.drop_at is not None and self.sent >= self.drop_at:
            self.abort()

    def drop_after(self, frames: int) -> None:
        self.drop_at = self.sent + frames
        if frames <= 0:
            self.abort()

    def abort(self) -> None:
        """Cut the TCP connection with no close frame, like a network failure."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def shutdown(self, reason_code: str) -> None:
        await self.send(encode_messages([Event("shutdown", {"reasonCode": reason_code})]))
        await self.send(encode_close(1000, reason_code))
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close()

    # --- loop ----------------------------------------------------------------------------------

    async def run(self) -> None:
        cfg = self.world.config
        await self.send(OPEN)
        heartbeat = asyncio.create_task(self._heartbeats(cfg.heartbeat_s))
        try:
            try:
                async with asyncio.timeout(cfg.authorize_timeout_s):
                    first = await self.ws.receive()
                    while first.type == WSMsgType.TEXT and first.data == CLIENT_HEARTBEAT:
                        self.world.stats.frames_in += 1  # a heartbeat is not an authorization
                        first = await self.ws.receive()
            except TimeoutError:
                await self.send(encode_close(1008, "Authorization timeout"))
                await self.ws.close()
                return
            if first.type != WSMsgType.TEXT or not await self._authorize(first.data):
                return
            async for msg in self.ws:
                # a deaf socket reads no more: the client's writes back up
                await self._hearing.wait()
                if msg.type == WSMsgType.TEXT:
                    await self._frame(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            heartbeat.cancel()
            self.world.sockets.discard(self)
            if self.login is not None:
                self.world.synced.get(self.login.name, set()).discard(self)
                mine = self.world.authorized.get(self.login.name, [])
                if self in mine:
                    mine.remove(self)
            if self.session is not None:
                self.session.sockets.discard(self)

    async def _heartbeats(self, every: float) -> None:
        while not self.ws.closed:
            await asyncio.sleep(every)
            if not self.zombie:
                await self.send(SERVER_HEARTBEAT)

    async def _authorize(self, text: str) -> bool:
        self.world.stats.frames_in += 1
        try:
            req = parse_request(text)
        except FrameError:
            req = None
        if req is None or req.endpoint.lower() != "authorize":
            await self.send(
                encode_messages([Response(req.id if req else 0, 401, "Not authorized")])
            )
            await self.ws.close()
            return False
        stats = self.world.stats
        stats.by_endpoint["authorize"] = stats.by_endpoint.get("authorize", 0) + 1
        if (refused := self.world.faults.take_refusal("authorize")) is not None:
            await self.send(encode_messages([Response(req.id, *refused)]))
            await self.ws.close()
            return False
        token = req.body.strip()
        tok = self.world.auth.token(token)
        if tok is None or self.world.faults.take_unauthorized(token):
            await self.send(encode_messages([Response(req.id, 401, "Access is denied")]))
            await self.ws.close()
            return False
        self.token, self.session, self.login = token, tok.session, tok.session.login
        tok.session.sockets.add(self)
        await self.send(encode_messages([Response(req.id, 200)]))
        mine = self.world.authorized.setdefault(self.login.name, [])
        mine.append(self)
        while len(mine) > self.world.config.max_websockets:
            # Partner docs: past the per-user limit the oldest connection is closed and its
            # token revoked (unless that token is also the newcomer's).
            oldest = mine.pop(0)
            if oldest.session is not None and oldest.session is not self.session:
                oldest.session.revoked = True
            await oldest.shutdown("ConnectionQuotaReached")
        return True

    async def _frame(self, text: str) -> None:
        self.world.stats.frames_in += 1
        if self.zombie:
            return
        try:
            req = parse_request(text)
        except FrameError:
            return  # Tradovate ignores what it cannot parse; the client's timeout will tell
        if req is None:
            return
        stats, key = self.world.stats, req.endpoint.strip("/").lower()
        stats.answering[key] = now = stats.answering.get(key, 0) + 1
        stats.most_at_once[key] = max(stats.most_at_once.get(key, 0), now)
        try:
            status, data = await self._call(req)
            delay = self.world.faults.delay_ms
            if delay:
                await asyncio.sleep(delay / 1000)
        finally:
            stats.answering[key] -= 1
        if self.zombie:
            return
        await self.send(encode_messages([Response(req.id, status, data)]))
        if self.world.faults.events_after_answer:
            if self.world.faults.events_after_ms:
                await asyncio.sleep(self.world.faults.events_after_ms / 1000)
            await self.world.flush()

    async def _call(self, req: Request) -> tuple[int, Any]:
        endpoint = req.endpoint
        if endpoint.lower() == "authorize":
            return 200, None
        try:
            body = req.json()
        except FrameError:
            return 400, "Invalid JSON body"
        params = dict(parse_qsl(req.query)) if req.query else {}
        answer = self.api.call(endpoint, params, body, self.token, session=self.session)
        world = self.world
        if answer.revoked:
            await world.revoke(answer.revoked, "ConnectionQuotaReached")
        if answer.status == 200 and endpoint.lower().strip("/") == "user/syncrequest":
            assert self.login is not None
            wanted = self.api.sync_accounts(self.login, body)
            every = {a.id for a in self.login.accounts}
            self.accounts = None if wanted == every else frozenset(wanted)
            types = body.get("entityTypes") if isinstance(body, dict) else None
            if isinstance(types, list) and types:
                self.entity_types = frozenset(str(t).lower() for t in types)
            world.synced.setdefault(self.login.name, set()).add(self)
        if not world.faults.events_after_answer:
            await world.flush()
        return answer.status, answer.data


async def websocket_handler(request: web.Request) -> web.StreamResponse:
    from jtrades.sim.app import API, WORLD

    world = request.app[WORLD]
    if world.faults.refuse_ws:
        world.faults.refuse_ws -= 1
        raise web.HTTPServiceUnavailable(text="refused by the simulator (fault)")
    ws = web.WebSocketResponse(max_msg_size=MAX_FRAME, autoping=True)
    await ws.prepare(request)
    conn = WsConn(world, request.app[API], ws, request)
    if world.faults.drop_new_after is not None:
        conn.drop_at = world.faults.drop_new_after
    world.sockets.add(conn)
    world.stats.websockets_opened += 1
    await conn.run()
    return ws
