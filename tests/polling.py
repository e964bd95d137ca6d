"""Waiting on state another task or process moves (a socket feeding a view, a notification
feeding a cache): check, sleep briefly, fail after a bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(check: Callable[[], bool], within_s: float = 30, what: str = "") -> None:
    """Wait for ``check`` to hold. The bound only stops a hang: on a loaded CI machine (two
    shared cores) what moves the state may lag by seconds."""
    try:
        async with asyncio.timeout(within_s):
            while not check():  # noqa: ASYNC110  (polling state fed from elsewhere)
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"never happened within {within_s:g} s: {what or check}") from None
