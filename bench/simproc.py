"""The Tradovate simulator in its own process, with a probe that timestamps order frames.

    python -m bench.simproc [PORT]     # prints "ready PORT" once listening (PORT 0: any free one)

On top of the simulator's own app (``/v1/…``, ``/sim/…``, see ``jtrades.sim.app``) it serves:

- ``POST /probe/expect {"frames": n}``: reset the count, and wait for ``n`` order frames;
- ``GET /probe/wait?timeout=30``: answers ``{"count", "first", "last", "done"}`` once ``n``
  frames have arrived (or at the timeout); ``first``/``last`` are ``time.perf_counter()`` at the
  first and the last order frame;
- ``GET /probe/count``: the same, at once;
- ``GET /probe/info``: ``{"symbol"}``, the front-month MNQ contract the floor orders.

An order frame is any request to ``order/…`` or ``orderstrategy/…`` other than a read (``list``,
``item``, ``deps``…), timed when the simulator's socket hands it over, before it is processed.
``time.perf_counter()`` is CLOCK_MONOTONIC on Linux, so ``last`` compares with the
``perf_counter()`` of another process on the same machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from decimal import Decimal

from aiohttp import web

from jtrades import aio
from jtrades.logging import configure
from jtrades.sim.app import make_app
from jtrades.sim.config import default_config
from jtrades.sim.world import Simulator
from jtrades.sim.ws import WsConn

ORDER_ENDPOINTS = ("order/", "orderstrategy/")
READS = frozenset({"list", "item", "items", "ldeps", "deps", "find", "suggest"})


class Probe:
    """Counts and times the order frames the simulator receives."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.first = 0.0
        self.last = 0.0
        self.done = asyncio.Event()

    def expect(self, frames: int) -> None:
        self.count, self.target, self.done = 0, frames, asyncio.Event()
        self.first = self.last = 0.0

    def hit(self) -> None:
        self.count += 1
        self.last = time.perf_counter()
        if self.count == 1:
            self.first = self.last
        if self.count >= self.target:
            self.done.set()

    def install(self) -> None:
        original = WsConn._frame
        probe = self

        async def _frame(self: WsConn, text: str) -> None:
            head = text[:40].lower()
            if head.startswith(ORDER_ENDPOINTS):
                action = head.split("\n", 1)[0].split("/", 1)[1]
                if action not in READS:
                    probe.hit()
            await original(self, text)

        WsConn._frame = _frame  # type: ignore[method-assign]

    def state(self) -> web.Response:
        done = self.count >= self.target
        return web.json_response(
            {"count": self.count, "first": self.first, "last": self.last, "done": done}
        )


PROBE = web.AppKey("probe", Probe)


async def expect(request: web.Request) -> web.Response:
    probe = request.app[PROBE]
    probe.expect(int((await request.json())["frames"]))
    return probe.state()


async def wait(request: web.Request) -> web.Response:
    probe = request.app[PROBE]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(probe.done.wait(), float(request.query.get("timeout", "30")))
    return probe.state()


async def count(request: web.Request) -> web.Response:
    return request.app[PROBE].state()


async def main(port: int) -> None:
    world = Simulator(default_config())
    await world.set_price("MNQ", Decimal(21500))
    probe = Probe()
    probe.install()
    app = make_app(world)
    app[PROBE] = probe
    app.router.add_post("/probe/expect", expect)
    app.router.add_get("/probe/wait", wait)
    app.router.add_get("/probe/count", count)

    async def info(_request: web.Request) -> web.Response:
        return web.json_response({"symbol": world.front["MNQ"].name})

    app.router.add_get("/probe/info", info)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    configure(level="error")
    aio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 0))
