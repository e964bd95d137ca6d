"""Fault switches a test flips through ``POST /sim/fault`` (or ``sim.faults`` in-process).

Kinds (JSON body ``{"kind": …}``):
- ``drop``: ``{"after": N, "login"?: name, "sticky"?: bool}`` — each open WebSocket (of that login)
  is cut without a close frame after it has sent N more frames (0 = now); ``sticky``: every socket
  opened later too, until ``clear``.
- ``refuse_ws``: ``{"count"?: N}`` — the next N WebSocket upgrades are refused with HTTP 503.
- ``zombie``: ``{"login"?: name}`` — open sockets stop answering and stop heartbeats, but stay open.
- ``deaf``: ``{"login"?: name}`` — open sockets stop reading (heartbeats go on): what the client
  writes backs up in its socket until its sends stall.
- ``delay``: ``{"ms": X}`` — every answer (REST and WebSocket) waits X ms; ``0`` turns it off.
- ``reject_order``: ``{"text"?: str, "reason"?: str, "after_accept"?: bool, "endpoint"?: name,
  "order_type"?: type, "count"?: N}`` — the next order command (of that ``orderType`` only, if
  named: a risk check on stops) fails with it (N of them: default 1); with
  ``after_accept`` a placeorder is answered with an ``orderId`` and the order then goes
  ``Rejected`` through its events (a ``commandReport`` carries the reason), the way a risk check
  rejects after acceptance. With ``endpoint`` only that command fails (``liquidateposition``
  too, which the default leaves alone: a refused liquidation, as a risk check or a busy venue
  answers ``halt --flatten``).
- ``unauthorized``: ``{"token"?: str}`` — that token answers 401 from now on; without a token, the
  next authenticated request does.
- ``penalty``: ``{"p_time"?: s, "captcha"?: bool, "count"?: N}`` — the next N (default 1)
  accesstokenrequests get a p-ticket, even one that carries a valid ticket; flipped again, the
  tickets queue up (two flips: a login and its ticketed retry are both penalised).
- ``renew_penalty``: ``{"p_time"?: s, "captcha"?: bool, "count"?: N}`` — the same for the next N
  renewaccesstokens; until ``p_time`` has passed every renewal of that login gets a ticket, after
  it one carrying the ticket (a JSON body ``{"p-ticket": …}``) succeeds.
- ``malformed_renewal``: ``{"count"?: N}`` — the next N renewaccesstokens issue a token but
  answer it with a ``userId`` that is not a number (an answer nobody foresaw).
- ``rate_limit``: ``{"count"?: N, "endpoint"?: name}`` — the next N requests (any endpoint) answer
  429; with ``endpoint``, only requests to it (``authorize`` on the WebSocket included), in turn
  with ``request_penalty``.
- ``request_penalty``: ``{"endpoint"?: name, "p_time"?: s, "captcha"?: bool, "count"?: N}`` — the
  next N requests (to ``endpoint`` only if named; the WebSocket's ``authorize`` included) are not
  carried out but answered 200 with a penalty ticket in the body (TRADOVATE.md: over the WebSocket
  ``{"s":200,"i":n,"d":{"p-ticket":…}}``). A penalised ``authorize`` leaves the socket
  unauthorized and closes it, as a refused one does.
- ``sync_error``: ``{"status"?: S, "count"?: N}`` — the next N ``user/syncrequest`` answer S
  (default 401 "Access is denied", as for an API key without permissions; else an error text).
- ``malformed``: ``{"login"?: name}`` — one ``position`` props event the client cannot read (an
  ``id`` that is not a number, no ``accountId``) per login (only that one if named); it goes
  out with the next flush, like ``replay``.
- ``garbage_frame``: ``{"login"?: name}`` — each open WebSocket (of that login) sends one frame
  that is no Tradovate frame at all (``a[{``: an array cut short), as a broken proxy might.
- ``replay``: ``{"login"?: name}`` — the fills of that login's accounts (all logins without one) are
  sent again as ``fill`` Created events, as Tradovate may do around the daily session change.
- ``events_after``: ``{"on"?: bool, "ms"?: X}`` — WebSocket answers go out before the events they
  caused (the default is events first; Tradovate does either), the events X ms later if given
  (a fill that shows after its order was acknowledged).
- ``partial_fills``: ``{"lot": N, "ms"?: X}`` — orders fill in lots of at most N contracts, each
  its own fill (``0`` fills at once again), as a thin market fills a large order; with ``ms``
  the stream shows each lot after the first X ms after the one before (the book is whole at
  once: only its events come late).
- ``lost_answer``: ``{"endpoint"?: name, "count"?: N}`` — the next N commands (to ``endpoint``
  only if named) are carried out, their events sent, but answered 500 (a Tradovate server
  error after the order went through: the client cannot know it is at the broker).
- ``clear``: everything back to normal, login locks lifted (socket faults already applied stay).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jtrades.sim.auth import PenaltyFault

if TYPE_CHECKING:
    from jtrades.sim.world import Simulator


@dataclass(frozen=True, slots=True)
class Refusal:
    """One request to answer with ``status``/``data`` instead of carrying it out."""

    endpoint: str | None  # lower case, no slashes; None: whatever request comes next
    status: int
    data: Any = None


@dataclass
class Faults:
    delay_ms: float = 0.0
    reject_next: tuple[str, str] | None = None  # (failureReason, failureText)
    reject_after_accept: bool = False
    reject_endpoint: str | None = None  # None: any order command but liquidateposition
    reject_order_type: str | None = None  # None: an order of any type
    reject_count: int = 1  # commands still to fail with ``reject_next``
    unauthorized_tokens: set[str] = field(default_factory=set)
    unauthorized_next: int = 0
    too_many: int = 0  # requests still to answer 429
    sync_status: int = 401
    sync_errors: int = 0  # user/syncrequests still to answer ``sync_status``
    events_after_answer: bool = False
    events_after_ms: float = 0.0
    drop_new_after: int | None = None  # sticky drop for sockets opened later
    refuse_ws: int = 0
    lot_ms: float = 0.0  # partial fills: each lot's events this long after the one before
    refusals: list[Refusal] = field(default_factory=list)  # rate_limit/request_penalty by endpoint
    lost_answers: list[str | None] = field(default_factory=list)  # lost_answer by endpoint

    def clear(self) -> None:
        self.delay_ms = 0.0
        self.reject_next = None
        self.reject_after_accept = False
        self.reject_endpoint = None
        self.reject_order_type = None
        self.reject_count = 1
        self.unauthorized_tokens.clear()
        self.unauthorized_next = 0
        self.too_many = 0
        self.sync_errors = 0
        self.events_after_answer = False
        self.events_after_ms = 0.0
        self.lot_ms = 0.0
        self.drop_new_after = None
        self.refuse_ws = 0
        self.refusals.clear()
        self.lost_answers.clear()

    def take_refusal(self, endpoint: str) -> tuple[int, Any] | None:
        """The answer this request gets instead of being carried out, if one is queued for it."""
        key = endpoint.strip("/").lower()
        for i, r in enumerate(self.refusals):
            if r.endpoint is None or r.endpoint == key:
                del self.refusals[i]
                return r.status, r.data
        return None

    def take_lost_answer(self, endpoint: str) -> bool:
        """Whether this command, carried out, is answered 500 (consumes one ``lost_answer``)."""
        key = endpoint.strip("/").lower()
        names = (key, key.rpartition("/")[2])  # "order/placeorder" or "placeorder"
        for i, only in enumerate(self.lost_answers):
            if only is None or only in names:
                del self.lost_answers[i]
                return True
        return False

    def take_unauthorized(self, token: str) -> bool:
        """Whether this authenticated request must answer 401 (consumes a one-shot fault)."""
        if self.unauthorized_next:
            self.unauthorized_next -= 1
            return True
        return bool(self.unauthorized_tokens) and token in self.unauthorized_tokens

    def take_sync_error(self) -> int | None:
        """The status this ``user/syncrequest`` must answer instead of a snapshot, if any."""
        if not self.sync_errors:
            return None
        self.sync_errors -= 1
        return self.sync_status

    def take_reject(
        self, can_accept: bool = False, endpoint: str | None = None, order_type: Any = None
    ) -> tuple[str, str] | None:
        """The injected rejection to answer now to the command ``endpoint`` (an order of
        ``order_type``); ``None`` also when it is to come after acceptance (``can_accept``
        callers then use ``take_late_reject``), or is for another command or order type."""
        if self.reject_next is None or (self.reject_after_accept and can_accept):
            return None
        if self.reject_order_type is not None and order_type != self.reject_order_type:
            return None
        if self.reject_endpoint is None:
            if endpoint == "liquidateposition":
                return None
        elif endpoint != self.reject_endpoint:
            return None
        return self._consume_reject()

    def take_late_reject(self, order_type: Any = None) -> tuple[str, str] | None:
        if not self.reject_after_accept or self.reject_endpoint not in (None, "placeorder"):
            return None
        if self.reject_order_type is not None and order_type != self.reject_order_type:
            return None
        return self._consume_reject()

    def _consume_reject(self) -> tuple[str, str] | None:
        reject = self.reject_next
        self.reject_count -= 1
        if self.reject_count <= 0:
            self.reject_next, self.reject_after_accept = None, False
            self.reject_endpoint, self.reject_count = None, 1
            self.reject_order_type = None
        return reject


def apply_fault(world: Simulator, body: dict[str, Any]) -> dict[str, Any]:
    """Flip one switch (see the module doc); ``ValueError`` for a malformed request."""
    kind = body.get("kind")
    faults = world.faults
    login = body.get("login")
    targets = [s for s in world.sockets if login is None or (s.login and s.login.name == login)]
    if kind == "drop":
        after = int(body.get("after", 0))
        for sock in targets:
            sock.drop_after(after)
        if body.get("sticky"):
            faults.drop_new_after = after
        return {"sockets": len(targets)}
    if kind == "garbage_frame":
        for sock in targets:
            world.send_later(sock, "a[{")
        return {"sockets": len(targets)}
    if kind == "zombie":
        for sock in targets:
            sock.zombie = True
        return {"sockets": len(targets)}
    if kind == "deaf":
        for sock in targets:
            sock.deaf = True
        return {"sockets": len(targets)}
    if kind == "delay":
        faults.delay_ms = float(body.get("ms", 0))
    elif kind == "reject_order":
        faults.reject_next = (
            str(body.get("reason", "UnknownReason")),
            str(body.get("text", "Rejected by the simulator")),
        )
        faults.reject_after_accept = bool(body.get("after_accept", False))
        endpoint = body.get("endpoint")
        faults.reject_endpoint = str(endpoint).strip("/").lower() if endpoint else None
        order_type = body.get("order_type")
        faults.reject_order_type = str(order_type) if order_type else None
        faults.reject_count = int(body.get("count", 1))
        if faults.reject_count < 1:
            raise ValueError("reject_order: count must be at least 1")
    elif kind == "unauthorized":
        if body.get("token"):
            faults.unauthorized_tokens.add(str(body["token"]))
        else:
            faults.unauthorized_next += 1
    elif kind == "replay":
        ex = world.exchange
        replayed = 0
        for account_id, (_, owner) in world.accounts.items():
            if login is None or owner.name == login:
                fills = ex.fills_by_account.get(account_id, [])
                world.queue([(account_id, "fill", "Created", f.json()) for f in fills])
                replayed += len(fills)
        return {"fills": replayed}
    elif kind == "malformed":
        sent = 0
        for found in world.config.logins:
            if (login is None or found.name == login) and found.accounts:
                garbage = {"id": "not-a-number", "netPos": 1}
                world.queue([(found.accounts[0].id, "position", "Updated", garbage)])
                sent += 1
        return {"events": sent}
    elif kind == "sync_error":
        faults.sync_status = int(body.get("status", 401))
        faults.sync_errors += int(body.get("count", 1))
    elif kind == "refuse_ws":
        faults.refuse_ws += int(body.get("count", 1))
    elif kind == "events_after":
        faults.events_after_answer = bool(body.get("on", True))
        faults.events_after_ms = float(body.get("ms", 0))
    elif kind == "rate_limit" and body.get("endpoint"):
        key = str(body["endpoint"]).strip("/").lower()
        faults.refusals.extend([Refusal(key, 429)] * int(body.get("count", 1)))
    elif kind == "rate_limit":
        faults.too_many += int(body.get("count", 1))
    elif kind == "request_penalty":
        only = str(body["endpoint"]).strip("/").lower() if body.get("endpoint") else None
        p_time = float(body.get("p_time", world.config.penalty_s))
        for _ in range(int(body.get("count", 1))):
            ticket: dict[str, Any] = {"p-ticket": secrets.token_hex(16), "p-time": p_time}
            if body.get("captcha"):
                ticket["p-captcha"] = True
            faults.refusals.append(Refusal(only, 200, ticket))
    elif kind in ("penalty", "renew_penalty"):
        fault = PenaltyFault(
            float(body.get("p_time", world.config.penalty_s)), bool(body.get("captcha", False))
        )
        queue = world.auth.penalties if kind == "penalty" else world.auth.renew_penalties
        queue.extend([fault] * int(body.get("count", 1)))
    elif kind == "malformed_renewal":
        world.auth.malformed_renewals += int(body.get("count", 1))
    elif kind == "partial_fills":
        lot = int(body.get("lot", 0))
        if lot < 0:
            raise ValueError(f"partial_fills: lot must be ≥ 0, got {lot}")
        ms = float(body.get("ms", 0))
        if ms < 0:
            raise ValueError(f"partial_fills: ms must be ≥ 0, got {ms}")
        world.exchange.fill_lot = lot or None
        faults.lot_ms = ms if lot else 0.0
    elif kind == "lost_answer":
        only = str(body["endpoint"]).strip("/").lower() if body.get("endpoint") else None
        count = int(body.get("count", 1))
        if count < 1:
            raise ValueError("lost_answer: count must be at least 1")
        faults.lost_answers.extend([only] * count)
    elif kind == "clear":
        faults.clear()
        world.exchange.fill_lot = None
        world.auth.penalties.clear()
        world.auth.renew_penalties.clear()
        world.auth.malformed_renewals = 0
        world.auth.blocked.clear()
        world.auth.renew_blocked.clear()
        world.auth.failures.clear()
    else:
        raise ValueError(f"unknown fault kind {kind!r}")
    return {"ok": True}
