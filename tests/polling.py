"""Waiting on state another task or process moves (a socket feeding a view, a notification
feeding a cache): check, sleep briefly, fail after a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(check: Callable[[], bool], within_s: float = 5) -> None:
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110  (polling state fed from elsewhere)
            await asyncio.sleep(0.01)
