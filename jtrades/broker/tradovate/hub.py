"""The fan-out of a session's view changes to its subscribers, apart from the view itself.

The view is pure state, built and tested without an event loop; delivering its changes needs
queues, back-pressure and closing, which is this module's one job. A subscriber too slow to keep
up is told to re-read the view instead of holding the session back or growing without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from jtrades.broker.base import BrokerEvent
from jtrades.broker.wakeups import Wakeups

_CLOSED = object()


class Subscription:
    """One subscriber's queue of events; iterate it with ``async for``.

    A subscriber that falls ``maxsize`` events behind loses its backlog and receives one
    ``session`` event with ``state="overflow"``: re-read the view, the queue cannot be trusted."""

    def __init__(self, hub: EventHub, maxsize: int) -> None:
        self._hub = hub
        self._queue: asyncio.Queue[object] = asyncio.Queue(maxsize)

    def _put(self, item: object) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(BrokerEvent("session", None, None, detail={"state": "overflow"}))
            if item is _CLOSED:
                self._queue.put_nowait(item)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> BrokerEvent:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            raise StopAsyncIteration
        assert isinstance(item, BrokerEvent)
        return item

    def drain(self) -> list[BrokerEvent]:
        """The events already published and not read yet, taken without waiting: with them
        read, the subscriber has every change the view holds now (the view publishes as it
        applies)."""
        out: list[BrokerEvent] = []
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is _CLOSED:
                self._queue.put_nowait(_CLOSED)
                break
            assert isinstance(item, BrokerEvent)
            out.append(item)
        return out

    def close(self) -> None:
        self._hub.unsubscribe(self)
        self._put(_CLOSED)


class EventHub:
    """Fan-out of view changes: every subscriber gets every event, in order."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._subs: list[Subscription] = []
        self._closed = False
        # who waits for an account's position to change (the dispatcher, settling an order)
        self.positions = Wakeups()

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self.maxsize)
        if self._closed:
            sub._put(_CLOSED)
        else:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, events: Iterable[BrokerEvent]) -> None:
        for event in events:
            for sub in self._subs:
                sub._put(event)
            self.positions.on_event(event)

    def close(self) -> None:
        self._closed = True
        for sub in list(self._subs):
            sub.close()
