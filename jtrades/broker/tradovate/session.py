"""One Tradovate WebSocket per login: connect, go READY, notice a dead peer, reconnect, close.

Lifecycle of a connection (TRADOVATE.md "WebSocket"): the server says ``o``; we authorize and sync
(``handshake``), the snapshot's answer followed by ``props`` events (``feed``). We send ``[]``
every 2.5 s; a connection that has sent us nothing for 10 s, or left a request unanswered past its
timeout, is dead (``liveness``, ``outcomes``): we drop it, mark the view unsynced ("missing is not
flat"), and reconnect after a backoff, then sync again. Nothing but cancellation and a failed
login ends the connection loop (``reconnect``: what ends a connection, when the next is tried).

A ``shutdown`` event (another session or connection took our place, e.g. ``ConnectionQuotaReached``
or a person logging in elsewhere) revokes the token: it is reported as a ``session`` event with
the reason, logged as an error, the token is dropped, and the session comes back after
``reconnect_max_s`` with a new login from the budget. A penalty ticket or a 429 on any request
holds the whole session, its connects included (``penalty_hold``); a held session is not "up"
(``held``), though its socket stays READY and its view synced.

This module is the session's face (start, request, events, close) and the loop that keeps its
socket; the decisions they take on the way live in the modules named.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from jtrades.aio import end_tasks
from jtrades.broker.base import BrokerEvent
from jtrades.broker.tradovate.auth import AccessToken
from jtrades.broker.tradovate.codec import Event, Response, parse_server_frame
from jtrades.broker.tradovate.feed import StreamBroken, ViewFeed
from jtrades.broker.tradovate.handshake import authorize_and_sync
from jtrades.broker.tradovate.hub import EventHub
from jtrades.broker.tradovate.lifecycle import State, Timing, TokenSource
from jtrades.broker.tradovate.liveness import send_heartbeats, watch_silence
from jtrades.broker.tradovate.naming import ContractNamer
from jtrades.broker.tradovate.outcomes import PendingRequests, check_response
from jtrades.broker.tradovate.penalty_hold import Held, PenaltyHold
from jtrades.broker.tradovate.reconnect import ConnectionEnded, ending_of, next_connect
from jtrades.broker.tradovate.renewal import renew_loop
from jtrades.broker.tradovate.view import AccountView
from jtrades.errors import (
    BrokerAuthError,
    BrokerPenalty,
    TransientBrokerError,
)

log = structlog.get_logger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024  # a busy login's sync can exceed 1 MB
CLOSE_WITHIN_S = 10.0  # close gives the session's tasks this long to end, then leaves them


class Session:
    """The connection of one login, shared by all its sub-accounts and traders."""

    def __init__(
        self,
        url: str,
        tokens: TokenSource,
        timing: Timing,
        *,
        label: str = "",
        gate: Callable[[], Awaitable[None]] | None = None,
        on_rate_limited: Callable[[], None] | None = None,
    ) -> None:
        self.url = url
        self.label = label
        self.timing = timing
        self.view = AccountView()
        self.hub = EventHub()
        self.state = State.IDLE
        self.last_error: str | None = None
        self.shutdown_reason: str | None = None
        self.connects = 0  # connections that reached READY (1 + reconnects)
        self._tokens = tokens
        self._gate = gate
        self._on_rate_limited = on_rate_limited
        self._ws: ClientConnection | None = None
        self._requests = PendingRequests()
        self._ready = asyncio.Event()
        self._stopped = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._last_rx = 0.0
        self._dead_reason: str | None = None
        self._token: AccessToken | None = None
        self._ready_at: float | None = None  # loop time the current connection became READY
        self._penalty = PenaltyHold(label)
        self._namer = ContractNamer(self.view, self.hub, self.request, self._stopped, label)
        self._feed = ViewFeed(self.view, self.hub, self._namer, self._cut, label)

    # --- public ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is State.READY

    def held(self) -> Held | None:
        """What holds every request of the session now (a penalty ticket, a captcha, a 429),
        or None: while held nothing is sent, so the session cannot trade though READY."""
        return self._penalty.held()

    async def start(self, within_s: float | None = None) -> None:
        """Connect and sync; returns when READY. Auth failures raise; the loop keeps retrying
        transient ones in the background (``TransientBrokerError`` here after ``within_s``)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"tradovate-session-{self.label}")
            self._renewer = asyncio.create_task(
                renew_loop(
                    self._tokens,
                    self.timing,
                    self._stopped,
                    lambda: self._token,
                    self._adopt_token,
                    self._refused,
                    label=self.label,
                ),
                name=f"renew-{self.label}",
            )
        await self.wait_ready(within_s)

    async def wait_ready(self, within_s: float | None = None) -> None:
        limit = within_s if within_s is not None else self.timing.request_timeout_s * 3
        ready = asyncio.ensure_future(self._ready.wait())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({ready, stopped}, timeout=limit, return_when="FIRST_COMPLETED")
        finally:
            ready.cancel()
            stopped.cancel()
        if self._ready.is_set():
            return
        if self.state is State.FAILED:
            raise BrokerAuthError(self.last_error or "Tradovate login failed")
        raise TransientBrokerError(
            f"Tradovate session {self.label} not ready ({self.state}): {self.last_error or 'connecting'}"
        )

    async def request(
        self, endpoint: str, body: Any = None, *, query: str = "", within_s: float | None = None
    ) -> Any:
        """Send one request and return its ``d`` (see ``outcomes`` for the three failure kinds).

        Refused before sending while the session is held (``penalty_hold``); a penalty ticket
        or a 429 in the answer holds it, an answered request ends a 429 streak."""
        self._penalty.refuse(endpoint)
        if not self._ready.is_set() or self._ws is None:
            raise TransientBrokerError(
                f"Tradovate session {self.label} is {self.state}: {self.last_error or 'not ready'}"
            )
        sent_at = asyncio.get_running_loop().time()
        response = await self._call(endpoint, body, query, within_s)
        try:
            data = check_response(endpoint, response, self._on_rate_limited)
        except BrokerPenalty as exc:
            self._penalty.hold(exc, sent_at)
            raise
        self._penalty.answered(sent_at)
        return data

    def publish(self, events: list[BrokerEvent]) -> None:
        """Publish what the view learnt from a request's answer (an order looked up, say) as
        its stream events are published (``ViewFeed.publish``): a fill the answer attributed
        to its account reaches subscribers only through here."""
        self._feed.publish(events)

    def events(self) -> Any:
        return self.hub.subscribe()

    async def close(self) -> None:
        """Graceful and bounded: stop reconnecting, close the socket, end the session's tasks,
        fail pending requests as unknown. A task that outlives ``CLOSE_WITHIN_S`` is left
        behind, logged, and its socket cut; the session is CLOSED either way."""
        self.state = State.CLOSED
        self._stopped.set()
        ws = self._ws
        if ws is not None:
            # the handshake has its own bound (close_timeout), this one is a backstop; a
            # timeout, unlike wait_for, never drops a cancellation of close itself
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await ws.close()
        mine = asyncio.current_task()
        tasks = [self._task, self._renewer, self._namer.stop()]
        left = await end_tasks((t for t in tasks if t is not mine), CLOSE_WITHIN_S)
        if left:
            log.error(
                "tradovate.session.close_abandoned",
                session=self.label,
                tasks=[t.get_name() for t in left],
                within_s=CLOSE_WITHIN_S,
                hint="a task ignored its cancellation; it cannot connect or trade any more",
            )
            self._abort_socket()
        self.state = State.CLOSED  # whatever a stray step of the loop set meanwhile
        self._requests.fail_all("session closed")
        self.hub.publish(self.view.mark_unsynced("closed"))
        self.hub.close()

    # --- request plumbing ----------------------------------------------------------------------

    async def _call(
        self, endpoint: str, body: Any, query: str = "", within_s: float | None = None
    ) -> Response:
        ws = self._ws
        if ws is None:
            raise TransientBrokerError(f"Tradovate session {self.label} has no connection")
        limit = within_s if within_s is not None else self.timing.request_timeout_s
        return await self._requests.call(ws, endpoint, body, query, limit, self._kill)

    def _lost(self, reason: str) -> None:
        """From this moment the view is unknown: readers get ``TransientBrokerError``, not a
        stale "flat", even before the connection loop has noticed the socket is gone."""
        self._ready.clear()
        if self.state is State.READY:
            self.state = State.RECONNECTING
        self.hub.publish(self.view.mark_unsynced(reason))

    def _kill(self, reason: str) -> None:
        """Treat the connection as dead now (no closing handshake with a zombie)."""
        if self._ws is not None and self._dead_reason is None:
            log.warning("tradovate.session.dead_peer", session=self.label, reason=reason)
            self._cut(reason)

    def _abort_socket(self) -> None:
        ws = self._ws
        if ws is not None:
            ws.transport.abort()

    def _cut(self, reason: str) -> None:
        ws = self._ws
        if ws is None or self._dead_reason is not None:
            return
        self._dead_reason = reason
        self._lost(reason)
        ws.transport.abort()

    # --- the connection loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while not self._stopped.is_set():
            self._ready_at = None
            try:
                if self._gate is not None:
                    await self._gate()
                await self._connect_once()  # returns only by raising: the connection ended
            except Exception as exc:  # what it means is ``reconnect``'s to say
                end = ending_of(exc)
                self.last_error = end.reason
                if end.for_good:
                    self.state = State.FAILED
                    log.error(
                        "tradovate.session.auth_failed", session=self.label, reason=end.reason
                    )
                    self._stopped.set()
                    break
                if end.penalty is not None:
                    self._penalty.hold(end.penalty)  # the next connect waits for it too
                if end.refused_upgrade is not None:
                    failures += 1
                    if end.refused_upgrade == 429 and self._on_rate_limited is not None:
                        self._on_rate_limited()
                if end.error is not None:
                    log.error("tradovate.session.failed", session=self.label, **end.error)
            finally:
                self._ws = None
                self._ready.clear()
                self._requests.fail_all(self.last_error or "disconnected")
                self.hub.publish(self.view.mark_unsynced(self.last_error or "disconnected"))
            if self._stopped.is_set():
                break
            ready_at = self._ready_at
            failures, delay = next_connect(
                failures,
                None if ready_at is None else loop.time() - ready_at,
                self._penalty.left_s(),
                # honoured here, and only here: cleared when the connection got READY, a
                # shutdown heard with the sync's answer reconnected at once
                self.shutdown_reason is not None,
                self.timing,
                random.random(),
            )
            self.shutdown_reason = None
            self.state = State.RECONNECTING
            log.warning(
                "tradovate.session.reconnecting",
                session=self.label,
                delay_s=round(delay, 2),
                reason=self.last_error,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._stopped.wait()

    def _raise_if_stopped(self) -> None:
        """A closed (or failed) session does not connect, nor go READY: should a cancellation
        have been lost on the way, the loop still ends here instead of trading on."""
        if self._stopped.is_set():
            raise ConnectionEnded(self.last_error or "session stopped")

    async def _connect_once(self) -> None:
        self._raise_if_stopped()
        self.state = State.CONNECTING if self.connects == 0 else State.RECONNECTING
        self._dead_reason = None
        self._feed.restart()
        token = await self._tokens.get()
        self._token = token
        async with connect(
            self.url,
            max_size=MAX_FRAME_BYTES,
            ping_interval=None,  # Tradovate's own heartbeats (h / []) carry liveness
            open_timeout=self.timing.request_timeout_s,
            close_timeout=1,
            compression=None,
            proxy=None,
        ) as ws:
            # asyncio.timeout, not wait_for: on 3.11 wait_for dropped a close's cancellation
            # that came with the 'o', and the loop synced a closed session (see end_tasks)
            async with asyncio.timeout(self.timing.request_timeout_s):
                first = await ws.recv()
            if parse_server_frame(first).kind != "open":
                raise TransientBrokerError("Tradovate did not open the session with 'o'")
            self._ws = ws
            loop = asyncio.get_running_loop()
            self._last_rx = loop.time()
            reader = asyncio.create_task(self._reader(ws))
            beats = asyncio.create_task(send_heartbeats(ws, self.timing.heartbeat_s))
            watchdog = asyncio.create_task(
                watch_silence(lambda: self._last_rx, self.timing.dead_after_s, self._kill)
            )
            try:
                snapshot = await authorize_and_sync(
                    self._call, self._tokens, token, self._on_rate_limited, self.label
                )
                self._feed.snapshot(snapshot)
                self._raise_if_stopped()
                self.connects += 1
                self._ready_at = loop.time()
                self.state = State.READY
                self.last_error = None
                self._penalty.answered()  # authorize and sync went through: no 429 lock
                self._ready.set()
                log.info(
                    "tradovate.session.ready",
                    session=self.label,
                    accounts=len(self.view.account_ids),
                    connects=self.connects,
                )
                await reader
            finally:
                for t in (reader, beats, watchdog):
                    t.cancel()
                await asyncio.gather(reader, beats, watchdog, return_exceptions=True)
        raise ConnectionEnded(self._dead_reason or self.last_error or "connection closed")

    async def _reader(self, ws: ClientConnection) -> None:
        """Read the socket until it ends; then every request still waiting on it fails at once
        (``OutcomeUnknown``): an authorize or sync pending when a socket was cut waited out
        its own timer, ten seconds more of an untradeable login per reconnect. A step that
        already has its answer finishes as it would (a refused token is still forgotten)."""
        try:
            await self._read(ws)
        finally:
            self._requests.fail_all(self._dead_reason or self.last_error or "connection closed")

    async def _read(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        try:
            async for raw in ws:
                self._last_rx = loop.time()
                try:
                    frame = parse_server_frame(raw)
                except ValueError as exc:  # FrameError, or bytes that are not UTF-8
                    # what it carried is lost (an order's fill, say): the view is not to be
                    # trusted from here, not for the close handshake's second either
                    reason = f"unreadable frame from Tradovate ({exc})"
                    log.error("tradovate.session.bad_frame", session=self.label, reason=str(exc))
                    self.last_error = reason
                    self._cut(reason)
                    return
                if frame.kind == "close":
                    self.last_error = f"server closed: {frame.close_code} {frame.close_reason}"
                    self._lost(self.last_error)
                    log.warning(
                        "tradovate.session.server_close",
                        session=self.label,
                        code=frame.close_code,
                        reason=frame.close_reason,
                    )
                    await ws.close()
                    return
                props: list[dict[str, Any]] = []  # those in a row go to the view at once
                for msg in frame.messages:
                    if isinstance(msg, Event) and msg.name == "props":
                        if isinstance(msg.data, dict):
                            props.append(msg.data)
                        continue
                    if props:
                        self._feed.props_all(props)
                        props = []
                    if isinstance(msg, Response):
                        self._requests.answer(msg)
                    else:
                        await self._on_event(ws, msg)
                if props:
                    self._feed.props_all(props)
        except ConnectionClosed as exc:
            self.last_error = (
                self._dead_reason
                or f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            )
        except StreamBroken:
            return  # cut and logged; what else this socket had buffered is not to be trusted

    async def _on_event(self, ws: ClientConnection, event: Event) -> None:
        if event.name == "shutdown":
            d = event.data if isinstance(event.data, dict) else {}
            reason = str(d.get("reasonCode") or d.get("reason") or "unspecified")
            self.shutdown_reason = reason
            self.last_error = f"Tradovate shut the session down: {reason}"
            self._lost(self.last_error)
            log.error(
                "tradovate.session.shutdown",
                session=self.label,
                reason=reason,
                text=d.get("text") or d.get("reason"),
                hint="another session or a person's login took this one's place",
            )
            if self._token is not None:
                await self._tokens.invalidate(self._token.token)
            self.hub.publish(
                [BrokerEvent("session", None, None, detail={"state": "shutdown", "reason": reason})]
            )
            await ws.close()

    def _adopt_token(self, token: AccessToken) -> None:
        """The renewal loop's way back: the token the next connect (or 401 drop) refers to."""
        self._token = token

    async def _refused(self, reason: str) -> None:
        """The renewal loop's login was refused for good: the session fails as a refused
        connect does (the socket closed, pending requests unknown, FAILED with the reason),
        so that the registry opens it again with the stored credentials once they change.
        Left READY, it kept trading on a token nobody could renew and was never replaced."""
        self._stopped.set()
        loop_task = [self._task] if self._task is not asyncio.current_task() else []
        # its end, not its outcome (a close cancels us here); bounded as close is
        if await end_tasks(loop_task, CLOSE_WITHIN_S):
            log.error("tradovate.session.loop_abandoned", session=self.label)
            self._abort_socket()
        if self.state is State.CLOSED:
            return
        self.state = State.FAILED
        self.last_error = reason
        log.error("tradovate.session.auth_failed", session=self.label, reason=reason)
