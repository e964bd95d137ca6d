"""Keeping a session's socket alive and noticing a dead peer, apart from the connection loop.

Tradovate's own heartbeats carry liveness (the socket's pings are off): we send ``[]`` every
``heartbeat_s``, and a connection that has sent us nothing for ``dead_after_s`` is dead: the
watchdog has the session cut it (no closing handshake with a zombie).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from jtrades.broker.tradovate.codec import CLIENT_HEARTBEAT


async def send_heartbeats(ws: ClientConnection, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await ws.send(CLIENT_HEARTBEAT)
        except ConnectionClosed:
            return


async def watch_silence(
    last_rx: Callable[[], float], dead_after_s: float, kill: Callable[[str], None]
) -> None:
    """Call ``kill`` once the last frame (``last_rx``, loop time) is ``dead_after_s`` old."""
    loop = asyncio.get_running_loop()
    step = min(1.0, dead_after_s / 4)
    while True:
        await asyncio.sleep(step)
        silent = loop.time() - last_rx()
        if silent > dead_after_s:
            kill(f"no frame from Tradovate for {silent:.1f} s")
            return
