"""aiohttp logs every malformed HTTP request at error level as "Error handling request from
<peer address>" (web_protocol.handle_error): a notified event. The repeat filter keys a
notice on its event name, which for a stdlib record is its whole message, address included:
each sender address is a source of its own, and nothing of jtrades' sources (sub-account,
account, session, login) is in it. Malformed requests from many addresses (internet scanners,
one host's IPv6 /64) each go out; the filter that should hold one event to three per ten
minutes does not hold, and its memory (``Repeats._seen``) grows with every address."""

from __future__ import annotations

import asyncio
import io
import logging

import structlog
from aiohttp import web

from jtrades import logging as jlog
from jtrades.notify import Notifier, Target
from jtrades.server import make_runner

SENDERS = [f"127.0.0.{i}" for i in range(2, 12)]  # ten peers (Linux loopback: any 127/8)


async def test_malformed_requests_from_many_peers_are_not_a_flood() -> None:
    notifier = Notifier([Target("webhook", "http://127.0.0.1:9/hook")])  # buffers
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    jlog.configure("json", "info", stream=out, sink=notifier.processor)
    app = web.Application()

    async def ok(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_get("/healthz", ok)
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        for peer in SENDERS:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(peer, 0))
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n")
            await writer.drain()
            assert b" 400 " in await reader.readline()
            writer.close()
        await asyncio.sleep(0.1)
    finally:
        await runner.cleanup()
        root.handlers[:] = handlers
        root.setLevel(level)
        structlog.reset_defaults()

    sent = [n.event for n in notifier._buffer]  # what the repeat filter let through
    assert all(e.startswith("Error handling request from 127.0.0.") for e in sent), sent
    # one event held to three per ten minutes, whichever address each came from
    assert len(sent) <= 3, f"{len(sent)} notices of one event, one per peer address"
    assert notifier.held == len(SENDERS) - len(sent)
