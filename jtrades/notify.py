"""Operator notifications: the log events a person must see, posted to Discord and/or a webhook.

Why a sink in the logging chain and not calls at the call sites: everything worth telling an
operator is already a named log event, and every event has passed the secret redaction by the
time it reaches the sink, so no call site has to learn about notifications and none can notify
a secret. Which events (``wanted``): every error, and a short list of warnings and lifecycle
events that need a person (a protective stop placed, orders the broker refused, an account
flattened, a broker session lost, the daemon started, stopped or interrupted).

An outage must not become a flood: of one event from one source (the same sub-account,
account, session or login) at most three go out in ten minutes; the ones beyond are counted,
and the next one let through says how many were held back (``Repeats``).

Never in the way of trading: the sink only appends to a bounded buffer (a full buffer drops
the newest and says how many in the next message); one background task posts them, a burst
gathered into one request per target (``window_s``), well within Discord's five per two
seconds. A 429 (Discord's ``retry_after`` honoured) or a 5xx or a network error is retried
under the project's retry policy; what still fails is logged as ``notify.failed`` (never
itself notified) and dropped. The URLs carry Discord's webhook token: they are registered as
secrets, and no message of ours names them.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
import orjson
import structlog

from jtrades import retry
from jtrades.aio import within
from jtrades.config import NotifySettings
from jtrades.errors import JtradesError, Transient
from jtrades.logging import register_secret

log = structlog.get_logger(__name__)

# Warnings and lifecycle events worth a message; every error-level event is sent as well.
EVENTS = frozenset(
    {
        "daemon.ready",
        "daemon.stopped",
        "daemon.interrupted_signals",
        "dispatch.orders_failed",
        "reconcile.protective_stop",
        "engine.flattened",
        "engine.changes_unheard",
        "tradovate.session.dead_peer",
        "daemon.session_restored",
        "tradovate.login.penalty",
        "tradovate.pool.cooldown",
    }
)
_LEVELS = frozenset({"error", "critical", "exception"})
_DROP = frozenset({"event", "level", "timestamp", "exc_info", "exception", "stack"})
DISCORD_LIMIT = 2000  # characters in one message's content
_LINE_LIMIT = 300
_NAME_LIMIT = 80  # the event's code span always closes within a line
POLICY = retry.RetryPolicy(attempts=3, total_s=30.0, initial_s=0.5, max_s=5.0, jitter_s=0.25)
MAX_RETRY_AFTER_S = 30.0
_MAX_SOURCES = 10_000  # event sources remembered by Repeats before the finished ones go


def wanted(event: str, level: str) -> bool:
    """Whether a log event becomes a notification (``notify.*`` never does: no loops)."""
    if event.startswith("notify."):
        return False
    return level in _LEVELS or event in EVENTS


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


@dataclass(frozen=True, slots=True)
class Notice:
    """One log event as sent: its name, level, time and flat fields (already redacted)."""

    event: str
    level: str
    at: str
    fields: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event_dict: MutableMapping[str, Any]) -> Notice:
        fields = {
            k: _plain(v) for k, v in event_dict.items() if k not in _DROP and not k.startswith("_")
        }
        level = str(event_dict.get("level", ""))
        return cls(
            event=str(event_dict.get("event", "")),
            level="error" if level == "exception" else level,
            at=str(event_dict.get("timestamp", "")),
            fields=fields,
        )


def _flat(text: str) -> str:
    """One line, no backticks: a newline would split the event's line, and a backtick would end
    its code span and let the rest format the message."""
    return " ".join(text.replace("`", "").split())


def _line(n: Notice) -> str:
    mark = {"error": "🔴", "critical": "🔴", "warning": "🟠"}.get(n.level, "🔵")
    name = _flat(n.event)[:_NAME_LIMIT] or "?"
    fields = _flat(" ".join(f"{k}={v}" for k, v in n.fields.items()))
    text = f"{mark} `{name}` {fields}".rstrip()
    return text if len(text) <= _LINE_LIMIT else text[: _LINE_LIMIT - 1] + "…"


def discord_body(notices: Sequence[Notice], host: str, dropped: int = 0) -> dict[str, Any]:
    """One Discord message: a header and a line per event, cut to Discord's limit; mentions
    disabled, so an ``@everyone`` inside a field pings nobody."""
    head = f"**jtrades** on {host}"
    if dropped:
        head += f" ({dropped} earlier events dropped)"
    lines = [head]
    size = len(head)
    for i, n in enumerate(notices):
        line = _line(n)
        rest = len(notices) - i
        tail = f"… and {rest} more"
        if size + 1 + len(line) + (1 + len(tail) if rest > 1 else 0) > DISCORD_LIMIT:
            lines.append(tail)
            break
        lines.append(line)
        size += 1 + len(line)
    return {"content": "\n".join(lines), "allowed_mentions": {"parse": []}}


def webhook_body(notices: Sequence[Notice], host: str, dropped: int = 0) -> dict[str, Any]:
    """The generic webhook's JSON: every event whole, for a program to route."""
    return {
        "source": "jtrades",
        "host": host,
        "dropped": dropped,
        "events": [{"event": n.event, "level": n.level, "at": n.at, **n.fields} for n in notices],
    }


# the fields that tell one source of an event from another
_SOURCE = ("sub_account_id", "account_id", "account", "session", "username", "symbol")


# addresses, numbers and hex ids in an event: a library's record (aiohttp's "Error handling
# request from 203.0.113.7") has its whole message for an event name
_VARYING = re.compile(r"[0-9A-Fa-f]*[0-9][0-9A-Fa-f:.]*|\[[0-9A-Fa-f:.]+\]")


def _shape(event: str) -> str:
    """The event a notice repeats: its name, a library message with what varies taken out, so
    each sender address was not a source of its own (a scanner's malformed requests from many
    addresses each went out, and the memory of sources grew with them). Our own events are
    names (``engine.flatten_refused``), kept whole."""
    return _VARYING.sub("#", event) if " " in event else event


class Repeats:
    """At most ``limit`` notices of one event from one source per ``window_s``; the rest are
    held back and counted, and the next notice let through carries the count
    (``repeats_not_sent``)."""

    def __init__(
        self, limit: int = 3, window_s: float = 600.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        # key -> [window start, let through in the window, held back since the last one sent]
        self._seen: dict[tuple[Any, ...], list[float]] = {}

    def admit(self, n: Notice) -> Notice | None:
        """The notice to send (with the count held back before it), or None to hold it back."""
        key = (_shape(n.event), *(n.fields.get(k) for k in _SOURCE))
        now = self._clock()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window_s:
            if len(self._seen) >= _MAX_SOURCES:
                self._forget(now)
            seen = self._seen[key] = [now, 0, seen[2] if seen else 0]
        if seen[1] >= self.limit:
            seen[2] += 1
            return None
        seen[1] += 1
        if seen[2]:
            n = dataclasses.replace(n, fields={**n.fields, "repeats_not_sent": int(seen[2])})
            seen[2] = 0
        return n

    def _forget(self, now: float) -> None:
        """Drop the sources whose window is over and that hold nothing back (bounded memory)."""
        for key in [k for k, v in self._seen.items() if now - v[0] >= self.window_s and not v[2]]:
            del self._seen[key]


Kind = Literal["discord", "webhook"]


@dataclass(frozen=True, slots=True)
class Target:
    kind: Kind
    url: str = field(repr=False)


class NotifyFailed(Transient):
    """A target answered 429 or 5xx, or could not be reached; the message names no URL."""


class Notifier:
    """The sink (``processor``) and the task that posts. Offered events wait in a bounded
    buffer until ``start``; ``close`` posts what is left, within a deadline."""

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        window_s: float = 1.0,
        max_batch: int = 20,
        capacity: int = 1000,
        timeout_s: float = 10.0,
        host: str | None = None,
        repeats: Repeats | None = None,
    ) -> None:
        if not targets:
            raise ValueError("a notifier needs at least one target")
        self.targets = tuple(targets)
        for t in self.targets:
            register_secret(t.url)
        self.window_s = window_s
        self.max_batch = max_batch
        self.capacity = capacity
        self.timeout_s = timeout_s
        self.host = host or socket.gethostname()
        self._sent = 0  # notices delivered to every target
        self._dropped = 0  # notices lost to a full buffer or a failed post
        self._held = 0  # repeats held back (counted in the next one sent)
        self.repeats = repeats or Repeats()
        # more than one target: a lane each, its own buffer and poster (one posting its batches
        # in turn to all of them, a Discord that stopped answering held every later batch of
        # the webhook behind its timeout and retries, and at close lost ``daemon.stopped``)
        r = self.repeats
        self._lanes = [
            Notifier([t], window_s=window_s, max_batch=max_batch, capacity=capacity,
                     timeout_s=timeout_s, host=self.host,
                     repeats=Repeats(r.limit, r.window_s, r._clock))
            for t in self.targets
        ] if len(self.targets) > 1 else []  # fmt: skip
        self._buffer: collections.deque[Notice] = collections.deque()
        self._unreported = 0  # dropped since the last message said so
        # re-entered when this thread logs a wanted event while it holds it: the garbage
        # collector, run by an allocation there, finalizes a future whose lost exception
        # asyncio logs at error (a plain lock hung the thread: the daemon's event loop).
        # ``_busy`` says so, and the nested notice is counted dropped rather than waited for.
        self._lock = threading.RLock()
        self._busy = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def sent(self) -> int:
        """Notices delivered to every target."""
        return min(lane.sent for lane in self._lanes) if self._lanes else self._sent

    @property
    def dropped(self) -> int:
        """Notices lost (a full buffer, a failed post) on some target."""
        return max(lane.dropped for lane in self._lanes) if self._lanes else self._dropped

    @property
    def held(self) -> int:
        """Repeats held back (counted in the next one sent)."""
        return self._lanes[0].held if self._lanes else self._held

    @classmethod
    def from_settings(cls, settings: NotifySettings) -> Notifier | None:
        """None when no URL is set: notifications are off."""
        targets: list[Target] = []
        if url := settings.discord_webhook_url.get_secret_value():
            targets.append(Target("discord", url))
        if url := settings.webhook_url.get_secret_value():
            targets.append(Target("webhook", url))
        return cls(targets) if targets else None

    # --- the sink --------------------------------------------------------------------------

    def processor(
        self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor, placed after the redaction: copies a wanted event, passes the
        event on unchanged."""
        event = event_dict.get("event")
        if isinstance(event, str) and wanted(event, str(event_dict.get("level", ""))):
            self.offer(Notice.from_event(event_dict))
        return event_dict

    def offer(self, notice: Notice) -> None:
        """Queue a notice; from any thread, never blocks."""
        for lane in self._lanes:
            lane.offer(notice)
        if self._lanes:
            return
        with self._lock:
            if self._busy:  # re-entered by this thread, which holds the buffer: dropped
                self._dropped += 1
                self._unreported += 1
                return
            if not self._queue(notice):
                return
        loop = self._loop
        if loop is None:
            return
        if threading.get_ident() == self._thread:
            self._wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                loop.call_soon_threadsafe(self._wake.set)

    def _queue(self, notice: Notice) -> bool:
        """Admit ``notice`` into the buffer (the lock held); False when held back or dropped."""
        self._busy = True
        try:
            admitted = self.repeats.admit(notice)
            if admitted is None:
                self._held += 1
                return False
            if len(self._buffer) >= self.capacity:
                self._dropped += 1
                self._unreported += 1
                return False
            self._buffer.append(admitted)
            return True
        finally:
            self._busy = False

    def _take(self) -> tuple[list[Notice], int]:
        with self._lock:
            self._busy = True
            try:
                count = min(self.max_batch, len(self._buffer))
                batch = [self._buffer.popleft() for _ in range(count)]
                dropped, self._unreported = self._unreported, 0
            finally:
                self._busy = False
        return batch, dropped

    # --- the poster ------------------------------------------------------------------------

    async def start(self) -> None:
        if self._lanes:
            await asyncio.gather(*(lane.start() for lane in self._lanes))
            return
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.timeout_s), json_serialize=_dumps
        )
        self._task = asyncio.create_task(self._run(), name="notify.post")
        if self._buffer:
            self._wake.set()

    async def close(self, deadline_s: float = 5.0) -> None:
        """Post what is buffered (within ``deadline_s``; what is left then is dropped), then stop."""
        if self._lanes:  # each lane within the same deadline, at once
            await asyncio.gather(*(lane.close(deadline_s) for lane in self._lanes))
            return
        task, self._task = self._task, None
        if task is not None:
            self._closing.set()
            self._wake.set()
            try:
                await within(asyncio.shield(task), deadline_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                with self._lock:
                    self._dropped += len(self._buffer)
                    self._buffer.clear()
        self._loop = None
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _pause(self) -> None:
        """Wait out the window, or less when closing."""
        with contextlib.suppress(TimeoutError):
            await within(self._closing.wait(), self.window_s)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            await self._pause()  # a burst becomes one message
            self._wake.clear()
            while True:
                batch, dropped = self._take()
                if not batch and not dropped:
                    break
                await self._post_batch(batch, dropped)
                if self._buffer:
                    # a full window even when closing: a backlog at shutdown went out back to
                    # back, past "at most one per second" (Discord answers 429 past 5 in 2 s);
                    # what the close deadline does not reach is dropped, and counted
                    await asyncio.sleep(self.window_s)
            if self._closing.is_set():
                return

    async def _post_batch(self, batch: list[Notice], dropped: int) -> None:
        # to every target at once: one after another, a Discord that stopped answering held
        # the webhook's copy behind its timeout and retries, and at close past the deadline
        posts = [
            self._post(t, (discord_body if t.kind == "discord" else webhook_body)(
                batch, self.host, dropped))
            for t in self.targets
        ]  # fmt: skip
        ok = all(await asyncio.gather(*posts))
        if ok:
            self._sent += len(batch)
        else:
            self._dropped += len(batch)

    async def _post(self, target: Target, body: dict[str, Any]) -> bool:
        try:
            await retry.call_with(POLICY, self._post_once, target, body)
        except (NotifyFailed, _Refused) as exc:
            log.warning("notify.failed", target=target.kind, reason=str(exc))
            return False
        except Exception as exc:  # a notification must never take the daemon down
            log.warning("notify.failed", target=target.kind, reason=type(exc).__name__)
            return False
        return True

    async def _post_once(self, target: Target, body: dict[str, Any]) -> None:
        assert self._http is not None
        try:
            async with self._http.post(target.url, json=body) as r:
                if r.status < 300:
                    return
                text = await r.text()
                if r.status == 429:
                    await asyncio.sleep(_retry_after(r.headers.get("Retry-After"), text))
                if r.status == 429 or r.status >= 500:
                    raise NotifyFailed(f"{target.kind} answered {r.status}")
                # any other 4xx: a retry will not help (a deleted Discord webhook answers 404)
                raise _Refused(f"{target.kind} refused the message ({r.status})")
        except (aiohttp.ClientError, TimeoutError) as exc:
            # the exception's text can hold the URL: only its type is kept
            raise NotifyFailed(f"{target.kind} unreachable ({type(exc).__name__})") from None


class _Refused(JtradesError):
    """A 4xx other than 429: the target will not take the message, now or later."""


def _retry_after(header: str | None, body: str) -> float:
    """Seconds to wait from Discord's JSON ``retry_after`` or a Retry-After header."""
    seconds: Any = None
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        seconds = orjson.loads(body).get("retry_after")
    if seconds is None and header:
        with contextlib.suppress(ValueError):
            seconds = float(header)
    try:
        return max(0.0, min(float(seconds), MAX_RETRY_AFTER_S))
    except (TypeError, ValueError):
        return 1.0


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def describe(targets: Iterable[Target]) -> str:
    """For the start-up log line: which kinds of target, never their URLs."""
    return ",".join(t.kind for t in targets)
