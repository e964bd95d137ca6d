"""What a fill's contract is worth per point, for the mirror: looked up in tasks of their own, on
a backoff per (login, symbol).

The mirror writes every login's events through one writer. A lookup the broker refuses (a 429,
a penalty ticket, a session that is down) used to be asked again inside the writer with every
batch — retried there, for seconds each time, while the other logins' fills and the realized
P&L the daily-loss filter reads waited behind it, and asking again during a penalty (rule 7).
Now a lookup runs beside the writer, one at a time per (login, symbol): the writer waits for it
only briefly (a cached contract, a quick answer) and otherwise holds the fill, and after a
failure the symbol is not asked again before its wait (doubling up to a bound) has passed,
however many batches go by. When a lookup ends, ``on_done`` wakes the writer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import structlog

from jtrades.broker.base import Broker
from jtrades.errors import JtradesError

log = structlog.get_logger(__name__)

_Key = tuple[int, str]  # (login account id, symbol)


@dataclass(slots=True)
class _Failed:
    why: str
    wait: float  # the wait that followed this failure
    next_at: float  # loop time from which the symbol may be asked again


class Pricing:
    """Values per point by symbol, and the lookups in flight or backing off."""

    def __init__(self, on_done: Callable[[], None]) -> None:
        self.asked = 0  # lookups started (for tests and diagnostics)
        self._on_done = on_done
        self._vpp: dict[str, Decimal] = {}
        self._failed: dict[_Key, _Failed] = {}
        self._asking: dict[_Key, asyncio.Task[None]] = {}
        self._closed = False

    def value(self, symbol: str) -> Decimal | None:
        """``symbol``'s value per point, if it has been looked up."""
        return self._vpp.get(symbol)

    def ask(
        self, broker: Broker, login: int, symbol: str, waits_s: tuple[float, float]
    ) -> asyncio.Task[None] | None:
        """Look ``symbol`` up through ``login``'s broker unless it is known, being looked up,
        or waiting out a failure; the lookup in flight, if there is one. ``waits_s``: the
        first and the longest wait after a failure."""
        if symbol in self._vpp or self._closed:
            return None
        key = (login, symbol)
        task = self._asking.get(key)
        if task is None:
            failed = self._failed.get(key)
            if failed is not None and asyncio.get_running_loop().time() < failed.next_at:
                return None
            self.asked += 1
            task = asyncio.create_task(
                self._lookup(broker, key, waits_s), name=f"mirror.price.{login}.{symbol}"
            )
            self._asking[key] = task
        return task

    def why(self, login: int, symbol: str) -> str:
        """Why ``symbol`` has no value per point yet."""
        failed = self._failed.get((login, symbol))
        if (login, symbol) in self._asking or failed is None:
            return "its contract is being looked up"
        return failed.why

    def due_in(self, login: int, symbol: str) -> float | None:
        """Seconds until ``symbol`` may be looked up again (0: now); None while a lookup is in
        flight (its end wakes the writer)."""
        if symbol in self._vpp:
            return 0.0
        if (login, symbol) in self._asking:
            return None
        failed = self._failed.get((login, symbol))
        if failed is None:
            return 0.0
        return max(0.0, failed.next_at - asyncio.get_running_loop().time())

    async def _lookup(self, broker: Broker, key: _Key, waits_s: tuple[float, float]) -> None:
        login, symbol = key
        try:
            contract = await broker.find_contract(symbol)
        except Exception as exc:
            if not isinstance(exc, JtradesError):  # a bug, not the broker: say so, and wait
                log.error("mirror.price_failed", login=login, symbol=symbol, error=repr(exc))
            was = self._failed.get(key)
            wait = waits_s[0] if was is None else min(max(was.wait * 2, waits_s[0]), waits_s[1])
            # a penalty ticket's p-time, when the error carries it, is waited out whole (rule 7)
            wait = max(wait, float(getattr(exc, "wait_s", 0) or 0))
            now = asyncio.get_running_loop().time()
            self._failed[key] = _Failed(f"{type(exc).__name__}: {exc}", wait, now + wait)
        else:
            self._vpp[symbol] = contract.value_per_point
            self._failed.pop(key, None)
        finally:
            self._asking.pop(key, None)
            self._on_done()

    async def close(self) -> None:
        """Stop the lookups in flight, and start no more."""
        self._closed = True
        tasks = list(self._asking.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._asking.clear()
