"""One Tradovate WebSocket per login: authorize, sync, heartbeat, dead-peer detection, reconnect.

Lifecycle of a connection (TRADOVATE.md "WebSocket"): the server says ``o``; we send
``authorize`` with the access token; then ``user/syncrequest`` for the login's user, whose answer is
the snapshot the view starts from, followed by ``props`` events. We send ``[]`` every 2.5 s; a
connection that has sent us nothing for 10 s, or left a request unanswered past its timeout, is
dead: we drop it, mark the view unsynced ("missing is not flat"), and reconnect with jittered
exponential backoff capped at ``reconnect_max_s``, then sync again. The backoff starts over once a
connection has stayed READY for ``reconnect_max_s``: an isolated drop reconnects after about
``reconnect_initial_s``, a flapping connection still backs off.

Nothing but cancellation and a failed login ends the connection loop: a refused sync, a ``props``
event the view cannot read (the view is then not trusted: the connection is cut and synced again
from a fresh snapshot), or a bug is logged as an error and retried like a drop — a session that
silently stopped reconnecting would leave positions without exits.

Sync body: partner docs ask for ``{"accounts": [...], "splitResponses": true, "entityTypes": …}``,
retail examples send ``{"users": [userId]}`` and receive everything in one answer. We send the
``users`` form (one answer, all entity types, every account of the login) and, when the token does
not carry a user id, the ``accounts`` form without ``splitResponses``.

A ``shutdown`` event (another session or connection took our place, e.g. ``ConnectionQuotaReached``
or a person logging in elsewhere) revokes the token: it is reported as a ``session`` event with
the reason, logged as an error, the token is dropped, and the session comes back after
``reconnect_max_s`` with a new login from the budget — never faster, so two parties knocking each
other off cannot turn into a login storm.

A penalty ticket (TRADOVATE.md: over the WebSocket ``{"s":200,"i":n,"d":{"p-ticket":…}}``, on any
request, ``authorize`` included) holds the session: until its ``p-time`` has passed every request
is refused here, before anything is sent (``BrokerPenalty``, a ``TransientBrokerError``: "not
sent"), and the connection loop does not connect sooner; heartbeats go on. Each early request
lengthened the lock. TRADOVATE.md says how a ticket is presented on a JSON request, not on
``authorize`` (its body is the bare token), so none is presented there: the wait is what we honour.
With ``p-captcha`` the hold is at least an hour (waiting does not clear it), and on ``authorize``
the session fails as a login does (``CaptchaRequired``): a human has to act. A 429 or a ticket on
``authorize`` pauses every connect of the pool, as one on any request does.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from jtrades.aio import end_tasks
from jtrades.broker.base import BrokerEvent
from jtrades.broker.tradovate.auth import AccessToken
from jtrades.broker.tradovate.codec import Event, FrameError, Response, parse_server_frame
from jtrades.broker.tradovate.feed import StreamBroken, ViewFeed
from jtrades.broker.tradovate.hub import EventHub
from jtrades.broker.tradovate.lifecycle import (
    State,
    Timing,
    TokenSource,
    backoff_delay,
    raised_at,
)
from jtrades.broker.tradovate.liveness import send_heartbeats, watch_silence
from jtrades.broker.tradovate.naming import ContractNamer
from jtrades.broker.tradovate.outcomes import CaptchaPenalty, PendingRequests, check_response
from jtrades.broker.tradovate.renewal import renew_loop
from jtrades.broker.tradovate.view import AccountView
from jtrades.errors import (
    BrokerAuthError,
    BrokerPenalty,
    BrokerRejected,
    CaptchaRequired,
    OutcomeUnknown,
    TransientBrokerError,
)

log = structlog.get_logger(__name__)

MAX_FRAME_BYTES = 16 * 1024 * 1024  # a busy login's sync can exceed 1 MB
CLOSE_WITHIN_S = 10.0  # close gives the session's tasks this long to end, then leaves them


class _ConnectionDead(Exception):
    pass


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
        self._hold_until = 0.0  # loop time before which nothing is sent (a penalty ticket)
        self._hold_reason = ""
        self._namer = ContractNamer(self.view, self.hub, self.request, self._stopped, label)
        self._feed = ViewFeed(self.view, self.hub, self._namer, self._cut, label)

    # --- public ------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.state is State.READY

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
        """Send one request and return its ``d`` (see ``outcomes`` for the three failure kinds)."""
        left = self._hold_until - asyncio.get_running_loop().time()
        if left > 0:
            raise BrokerPenalty(
                f"{endpoint}: not sent: Tradovate asked session {self.label} to wait, "
                f"{left:.0f} s left ({self._hold_reason})",
                left,
            )
        if not self._ready.is_set() or self._ws is None:
            raise TransientBrokerError(
                f"Tradovate session {self.label} is {self.state}: {self.last_error or 'not ready'}"
            )
        response = await self._call(endpoint, body, query, within_s)
        try:
            return check_response(endpoint, response, self._on_rate_limited)
        except BrokerPenalty as exc:
            self._hold(exc)
            raise

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

    def _hold(self, exc: BrokerPenalty) -> None:
        """Nothing more on this login before ``exc.wait_s`` has passed (see the module doc): a
        retry, the next order or a reconnect sooner would each lengthen the lock."""
        until = asyncio.get_running_loop().time() + exc.wait_s
        if until > self._hold_until:
            self._hold_until, self._hold_reason = until, str(exc)
        captcha = isinstance(exc, CaptchaPenalty)
        (log.error if captcha else log.warning)(
            "tradovate.session.penalty",
            session=self.label,
            wait_s=round(exc.wait_s, 1),
            captcha=captcha,
            reason=str(exc),
        )

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
            delay_floor = 0.0
            self._ready_at = None
            try:
                if self._gate is not None:
                    await self._gate()
                await self._connect_once()  # returns only by raising: the connection ended
            except BrokerAuthError as exc:
                self.state = State.FAILED
                self.last_error = str(exc)
                log.error("tradovate.session.auth_failed", session=self.label, reason=str(exc))
                self._stopped.set()
                break
            except BrokerPenalty as exc:
                # a penalised authorize or sync: the next one not before its p-time (the
                # reconnect backoff alone sent it a second later, and each early one lengthens
                # the lock); the floor below is the hold
                self._hold(exc)
                self.last_error = str(exc)
            except InvalidStatus as exc:
                failures += 1
                self.last_error = f"WebSocket upgrade refused: HTTP {exc.response.status_code}"
                if exc.response.status_code == 429 and self._on_rate_limited is not None:
                    self._on_rate_limited()
            except (
                OSError,
                TimeoutError,
                InvalidHandshake,
                InvalidURI,
                ConnectionClosed,
                FrameError,
                TransientBrokerError,
                OutcomeUnknown,
                _ConnectionDead,
                StreamBroken,
            ) as exc:
                self.last_error = str(exc) or type(exc).__name__
            except BrokerRejected as exc:
                # The sync (or account/list) answered 4xx on a socket whose authorize the same
                # token just passed. A 401 here is Tradovate's answer for an API key without
                # permissions, which a new login would not fix: the token is kept (a login costs
                # budget), and should it really be dead, the next authorize says 401 and drops it.
                self.last_error = str(exc)
                log.error(
                    "tradovate.session.failed",
                    session=self.label,
                    error=type(exc).__name__,
                    reason=str(exc),
                    hint="Tradovate refused the sync; a 401 may mean the API key lacks permissions",
                )
            except Exception as exc:
                # A bug or an answer nobody foresaw must not end the loop for good (no exits,
                # no stops until a restart): log it and reconnect like after a drop.
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.error(
                    "tradovate.session.failed",
                    session=self.label,
                    error=type(exc).__name__,
                    reason=str(exc),
                    at=raised_at(exc),
                )
            finally:
                self._ws = None
                self._ready.clear()
                self._requests.fail_all(self.last_error or "disconnected")
                self.hub.publish(self.view.mark_unsynced(self.last_error or "disconnected"))
            if self._stopped.is_set():
                break
            # A connection that stayed READY for reconnect_max_s starts the backoff over, so an
            # isolated drop hours after the last one waits ~reconnect_initial_s, not the cap.
            # One that drops sooner keeps counting: a connection that syncs and dies each time
            # still backs off to the cap, and reconnects (each a user/syncrequest, a few hundred
            # allowed per hour) stay at most about one per reconnect_max_s.
            ready_at = self._ready_at
            if ready_at is not None and loop.time() - ready_at >= self.timing.reconnect_max_s:
                failures = 0
            failures += 1
            # a penalty, heard now or on a request of the connection that ended, holds connects
            delay_floor = max(delay_floor, self._hold_until - loop.time())
            if self.shutdown_reason is not None:
                # honoured here, and only here: cleared when the connection got READY, a
                # shutdown heard with the sync's answer reconnected at once
                delay_floor = max(delay_floor, self.timing.reconnect_max_s)
                self.shutdown_reason = None
            self.state = State.RECONNECTING
            delay = max(
                delay_floor,
                backoff_delay(
                    failures,
                    self.timing.reconnect_initial_s,
                    self.timing.reconnect_max_s,
                    random.random(),
                ),
            )
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
            raise _ConnectionDead(self.last_error or "session stopped")

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
                await self._authorize_and_sync(token)
                self._raise_if_stopped()
                self.connects += 1
                self._ready_at = loop.time()
                self.state = State.READY
                self.last_error = None
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
        raise _ConnectionDead(self._dead_reason or self.last_error or "connection closed")

    async def _authorize_and_sync(self, token: AccessToken) -> None:
        auth = await self._call("authorize", token.token)
        if auth.status == 401:
            await self._tokens.invalidate(token.token)
            raise TransientBrokerError("Tradovate refused the token on authorize (401)")
        try:
            # a penalty comes as a 200 (its ticket in ``d``); a 429 pauses every connect
            check_response("authorize", auth, self._on_rate_limited)
        except CaptchaPenalty:
            raise CaptchaRequired(
                f"Tradovate wants a captcha for session {self.label}: log in once on the "
                "Tradovate website, or connect the account with OAuth; retrying extends the lock"
            ) from None
        except (BrokerRejected, OutcomeUnknown):
            raise TransientBrokerError(f"authorize answered {auth.status}") from None
        if token.user_id is not None:
            body: dict[str, Any] = {"users": [token.user_id]}
        else:  # a token of unknown user (an old stored row): name its accounts instead
            listed = check_response(
                "account/list", await self._call("account/list", None), self._on_rate_limited
            )
            body = {"accounts": [int(a["id"]) for a in listed or () if isinstance(a, dict)]}
        sync = await self._call("user/syncrequest", body)
        data = check_response("user/syncrequest", sync, self._on_rate_limited)
        if not isinstance(data, dict):
            raise TransientBrokerError("user/syncrequest answered without a snapshot")
        self._feed.snapshot(data)

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
                frame = parse_server_frame(raw)
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
                for msg in frame.messages:
                    if isinstance(msg, Response):
                        self._requests.answer(msg)
                    else:
                        await self._on_event(ws, msg)
        except ConnectionClosed as exc:
            self.last_error = (
                self._dead_reason
                or f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
            )
        except StreamBroken:
            return  # cut and logged; what else this socket had buffered is not to be trusted

    async def _on_event(self, ws: ClientConnection, event: Event) -> None:
        if event.name == "props" and isinstance(event.data, dict):
            self._feed.props(event.data)
        elif event.name == "shutdown":
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
