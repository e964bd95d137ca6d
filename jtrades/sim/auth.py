"""Access tokens, sessions, the login budget and penalty tickets, as Tradovate enforces them.

Rules simulated (TRADOVATE.md "Authentication"; figures configurable in ``SimConfig``):
- every ``accesstokenrequest`` opens a session; a login holds at most ``max_sessions`` (2, the
  partner docs' figure; one source says 1 without an add-on); the next one revokes the oldest, whose
  WebSockets the caller then closes with a ``shutdown`` event;
- ``renewaccesstoken`` issues a new token on the same session (no new session); the old token keeps
  its own expiry — Tradovate does not document whether renewal ends it early, we chose not to;
- a penalised renewal (fault ``renew_penalty``) answers a ticket like a login does; Tradovate does
  not document how a renewal is repeated, so we take TRADOVATE.md's general rule: the same request
  (bearer and all) with a JSON body ``{"p-ticket": …}`` once ``p-time`` has passed. Until then any
  renewal of that login gets another ticket; the login's password logins are not blocked by it;
- a budget of ``logins_per_hour`` requests per login per sliding hour; beyond it, or after
  ``failures_before_ticket`` failed logins in a row, the answer is a penalty ticket (``p-ticket``,
  ``p-time``), and after ``failures_before_captcha`` failures one with ``p-captcha: true`` — a captcha
  ticket never clears by waiting (retrying only extends the lock);
- failures are HTTP 200 bodies with ``errorText``; the failure just before the captcha lock is an
  HTTP 423; while a login is blocked even the right password gets a ticket; a captcha lock lasts an
  hour and every try restarts it.
"""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from jtrades.sim.config import LoginSpec, SimConfig

BAD_CREDENTIALS = "Incorrect username or password. Please try again."


@dataclass(eq=False)
class Session:
    id: int
    login: LoginSpec
    created: float
    revoked: bool = False
    sockets: set[Any] = field(default_factory=set)  # the ws handlers authorized with its tokens


@dataclass(slots=True)
class Token:
    value: str
    session: Session
    expires: float


@dataclass(slots=True)
class Ticket:
    login: str
    not_before: float
    captcha: bool
    renewal: bool = False  # a renewal's ticket clears renewals only, a login's logins only


@dataclass(slots=True)
class PenaltyFault:
    seconds: float
    captcha: bool


def expiration_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Auth:
    def __init__(self, config: SimConfig, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.clock = clock
        self.tokens: dict[str, Token] = {}
        self.sessions: dict[str, list[Session]] = {}  # login name → live sessions, oldest first
        self.requests: dict[str, deque[float]] = {}
        self.failures: dict[str, int] = {}
        self.tickets: dict[str, Ticket] = {}
        self.blocked: dict[str, tuple[float, bool]] = {}  # login → (until, captcha)
        self.oauth_codes: dict[str, str] = {}
        self.renew_blocked: dict[str, tuple[float, bool]] = {}  # login → (until, captcha)
        self.penalties: list[PenaltyFault] = []  # the next accesstokenrequests get these tickets
        self.renew_penalties: list[PenaltyFault] = []  # the next renewaccesstokens get these
        self.malformed_renewals = 0  # renewals still to answer with an unreadable userId
        self.token_requests = 0
        self.renewals = 0
        # every request as (clock, carried a p-ticket): tests check the waits and the tickets
        self.token_request_log: list[tuple[float, bool]] = []
        self.renewal_log: list[tuple[float, bool]] = []
        self._session_ids = 0

    # --- lookups -------------------------------------------------------------------------------

    def login(self, name: str) -> LoginSpec | None:
        for lg in self.config.logins:
            if lg.name == name:
                return lg
        return None

    def token(self, value: str) -> Token | None:
        """The token if it is live: known, not expired, its session not revoked."""
        tok = self.tokens.get(value)
        if tok is None or tok.session.revoked or tok.expires <= self.clock():
            return None
        return tok

    def live_sessions(self, login: str) -> list[Session]:
        return [s for s in self.sessions.get(login, []) if not s.revoked]

    # --- accesstokenrequest --------------------------------------------------------------------

    def access_token_request(self, body: Any) -> tuple[int, dict[str, Any], list[Session]]:
        """HTTP status, answer body, and the sessions this login knocked off (to shut down)."""
        self.token_requests += 1
        self.token_request_log.append(
            (self.clock(), isinstance(body, dict) and body.get("p-ticket") is not None)
        )
        if not isinstance(body, dict):
            return 200, {"errorText": "Invalid or missed parameters"}, []
        name, password = body.get("name"), body.get("password")
        if not isinstance(name, str) or not isinstance(password, str):
            return 200, {"errorText": "Invalid or missed parameters: name, password"}, []
        cid = body.get("cid")
        if cid is not None and (isinstance(cid, bool) or not isinstance(cid, str | int)):
            return 200, {"errorText": "Invalid or missed parameters: cid"}, []
        now = self.clock()
        if self.penalties:
            fault = self.penalties.pop(0)
            return 200, self._ticket(name, fault.seconds, fault.captcha), []
        ticketed = False
        raw_ticket = body.get("p-ticket")
        if raw_ticket is not None:
            ticket = self.tickets.pop(str(raw_ticket), None)
            if ticket is None or ticket.login != name or ticket.renewal:
                return 200, {"errorText": "Invalid p-ticket"}, []
            if ticket.captcha:  # only a human clears a captcha; retrying extends the lock
                return 200, self._ticket(name, 3600.0, True), []
            if now < ticket.not_before:
                return 200, self._ticket(name, ticket.not_before - now, False), []
            ticketed = True
            self.blocked.pop(name, None)
        block = self.blocked.get(name)
        if block is not None and not ticketed:
            until, captcha = block
            if now < until:  # a captcha lock is extended by every try, a plain one is not
                return 200, self._ticket(name, 3600.0 if captcha else until - now, captcha), []
            del self.blocked[name]
            self.failures.pop(name, None)
        window = self.requests.setdefault(name, deque())
        while window and window[0] <= now - 3600:
            window.popleft()
        if not ticketed and len(window) >= self.config.logins_per_hour:
            return 200, self._ticket(name, self.config.penalty_s, False), []
        window.append(now)
        if not self._app_ok(body):
            return 200, {"errorText": "The app is not registered or the API key is invalid"}, []
        login = self.login(name)
        if login is None or login.password != password:
            fails = self.failures[name] = self.failures.get(name, 0) + 1
            if fails >= self.config.failures_before_captcha:
                return 200, self._ticket(name, 3600.0, True), []
            if fails == self.config.failures_before_captcha - 1:
                # TRADOVATE.md / partner docs: a 423 comes before the captcha lock.
                return (
                    423,
                    {"errorText": "Too many failed logins: the next one locks the login"},
                    [],
                )
            if fails >= self.config.failures_before_ticket:
                return 200, self._ticket(name, self.config.penalty_s, False), []
            return 200, {"errorText": BAD_CREDENTIALS}, []
        self.failures.pop(name, None)
        session, revoked = self._open_session(login)
        return 200, self._token_body(self._issue(session), login), revoked

    def _app_ok(self, body: dict[str, Any]) -> bool:
        cfg = self.config
        if cfg.app_id and body.get("appId") != cfg.app_id:
            return False
        if cfg.cid and str(body.get("cid", "")) != cfg.cid:
            return False
        return not (cfg.sec and body.get("sec") != cfg.sec)

    def _ticket(
        self, name: str, seconds: float, captcha: bool, renewal: bool = False
    ) -> dict[str, Any]:
        """A penalty: the login (``renewal``: its renewals) is blocked until ``seconds`` pass
        (captcha: until a human acts)."""
        value = secrets.token_hex(16)
        until = self.clock() + seconds
        self.tickets[value] = Ticket(name, until, captcha, renewal)
        (self.renew_blocked if renewal else self.blocked)[name] = (until, captcha)
        body: dict[str, Any] = {"p-ticket": value, "p-time": max(1, round(seconds))}
        if captcha:
            body["p-captcha"] = True
        return body

    def _open_session(self, login: LoginSpec) -> tuple[Session, list[Session]]:
        self._session_ids += 1
        session = Session(self._session_ids, login, self.clock())
        live = self.live_sessions(login.name)
        live.append(session)
        revoked: list[Session] = []
        while len(live) > self.config.max_sessions:
            old = live.pop(0)
            old.revoked = True
            revoked.append(old)
        self.sessions[login.name] = live
        return session, revoked

    def _issue(self, session: Session) -> Token:
        tok = Token(secrets.token_urlsafe(32), session, self.clock() + self.config.token_lifetime_s)
        self.tokens[tok.value] = tok
        return tok

    def _token_body(self, tok: Token, login: LoginSpec) -> dict[str, Any]:
        return {
            "accessToken": tok.value,
            "mdAccessToken": "md" + tok.value,
            "expirationTime": expiration_iso(tok.expires),
            "userStatus": "Active",
            "userId": login.user_id,
            "name": login.name,
            "hasLive": False,
            "hasFunded": False,
            "hasMarketData": True,
            "outdatedTaC": False,
            "outdatedLiquidationPolicy": False,
        }

    # --- renewal, OAuth ------------------------------------------------------------------------

    def renew(self, value: str, body: Any = None) -> dict[str, Any] | None:
        """A new token on the token's session, a penalty ticket, or ``None`` (a dead token: 401)."""
        tok = self.token(value)
        if tok is None:
            return None
        name = tok.session.login.name
        now = self.clock()
        raw_ticket = body.get("p-ticket") if isinstance(body, dict) else None
        self.renewal_log.append((now, raw_ticket is not None))
        if self.renew_penalties:
            fault = self.renew_penalties.pop(0)
            return self._ticket(name, fault.seconds, fault.captcha, renewal=True)
        if raw_ticket is not None:
            ticket = self.tickets.pop(str(raw_ticket), None)
            if ticket is None or ticket.login != name or not ticket.renewal:
                return {"errorText": "Invalid p-ticket"}
            if ticket.captcha:
                return self._ticket(name, 3600.0, True, renewal=True)
            if now < ticket.not_before:
                return self._ticket(name, ticket.not_before - now, False, renewal=True)
            self.renew_blocked.pop(name, None)
        elif (block := self.renew_blocked.get(name)) is not None:
            until, captcha = block
            if now < until:
                return self._ticket(name, 3600.0 if captcha else until - now, captcha, renewal=True)
            del self.renew_blocked[name]
        self.renewals += 1
        answer = self._token_body(self._issue(tok.session), tok.session.login)
        if self.malformed_renewals:
            self.malformed_renewals -= 1
            answer["userId"] = "not-a-number"
        return answer

    def oauth_code(self, login_name: str) -> str | None:
        if self.login(login_name) is None:
            return None
        code = secrets.token_urlsafe(16)
        self.oauth_codes[code] = login_name
        return code

    def oauth_token(self, params: dict[str, Any]) -> tuple[dict[str, Any], list[Session]]:
        if params.get("grant_type") != "authorization_code":
            return {"error": "unsupported_grant_type", "error_description": "grant_type"}, []
        login_name = self.oauth_codes.pop(str(params.get("code", "")), None)
        login = self.login(login_name) if login_name else None
        if login is None:
            return {"error": "invalid_grant", "error_description": "unknown or used code"}, []
        self.token_requests += 1
        session, revoked = self._open_session(login)
        tok = self._issue(session)
        body = {
            "access_token": tok.value,
            "token_type": "bearer",
            "expires_in": int(self.config.token_lifetime_s),
        }
        return body, revoked
