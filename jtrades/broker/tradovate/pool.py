"""Sessions keyed by (env, login): created on first use and kept, one WebSocket per login.

Tradovate counts logins per hour per login, sessions per login, and requests per token and IP
(TRADOVATE.md "Rate limits"). A daemon with many logins that all reconnect at once — after a
network blip, or at start — is the classic way to get locked out. So every connect, first or not,
passes one gate: connects are spaced ``connect_stagger_s`` apart across the whole process, and a
429 from anywhere pauses every connect for ``rate_limit_cooldown_s``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from dataclasses import dataclass

import aiohttp
import structlog

from jtrades.broker.tradovate.auth import AccessToken, LoginBudget, TradovateAuth
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.lifecycle import State, Timing
from jtrades.broker.tradovate.session import Session
from jtrades.broker.tradovate.tokens import TokenCache
from jtrades.config import TradovateSettings
from jtrades.errors import BrokerAuthError, ConfigError
from jtrades.logging import register_secret
from jtrades.security import SecretBox
from jtrades.store import Executor

log = structlog.get_logger(__name__)


class ConnectGate:
    """Process-wide pacing of WebSocket connects: a stagger, and a cooldown after a 429."""

    def __init__(self, stagger_s: float, cooldown_s: float) -> None:
        self.stagger_s = stagger_s
        self.cooldown_s = cooldown_s
        self._lock = asyncio.Lock()
        self._next_at = 0.0
        self._cooldown_until = 0.0

    def rate_limited(self) -> None:
        until = time.monotonic() + self.cooldown_s
        if until > self._cooldown_until:
            self._cooldown_until = until
            log.warning("tradovate.pool.cooldown", seconds=self.cooldown_s)

    async def __call__(self) -> None:
        async with self._lock:
            # a 429 heard while waiting out the stagger extends the wait: looked at once, the
            # next connect went out 0.3 s after a 429 instead of after the cooldown
            while (wait := max(self._next_at, self._cooldown_until) - time.monotonic()) > 0:  # noqa: ASYNC110 (a deadline a 429 may move)
                await asyncio.sleep(wait)
            self._next_at = time.monotonic() + self.stagger_s


@dataclass
class _LoginTokens:
    """The pool's token cache bound to one login (the session's ``TokenSource``)."""

    cache: TokenCache
    env: str
    username: str
    password: str | None
    oauth: str | None = None  # the OAuth token the session was opened with, if one was given

    async def get(self) -> AccessToken:
        """The login's token for this session: any held one when the session was opened with
        an OAuth connection (proof of the login), else only one its password obtained
        (``tokens.may_hand_out``: another is replaced by a login with the password)."""
        return await self.cache.get(
            self.env, self.username, self.password, oauth=self.oauth is not None
        )

    def proves(self, password: str) -> bool:
        """Whether Tradovate accepted ``password`` for the token this session holds."""
        return self.cache.proves(self.env, self.username, password)

    async def invalidate(self, token: str) -> None:
        await self.cache.invalidate(self.env, self.username, token)


def login_key(env: str, username: str) -> tuple[str, str]:
    """The key of a login's session: its username in any case names one login (as
    ``accounts.same_login`` and ``password_context`` read it), so two accounts spelling it
    ``Bob`` and ``bob`` share one session instead of opening two (each closing the other's
    oldest at Tradovate). The session logs in with the username as first given."""
    return env, username.lower()


def may_join(source: _LoginTokens, password: str | None, oauth: AccessToken | None) -> bool:
    """Whether a caller may be handed the live session ``source`` feeds: with an OAuth token
    (proof of the login, checked when it was stored), or with the very password the session
    logged in with. The session's token needs no password any more, so without this check an
    account naming the login with any password, or none, traded the owner's sub-accounts.

    A session opened with OAuth by a row that stores a password beside its connection is
    joined with that password too (the opener's row vouches for it, as
    ``store.login_proofs.vouches``): required to be the password its token was obtained with,
    another user's row holding the login's right password was refused the login's only
    session for as long as the daemon ran."""
    if oauth is not None:
        return True
    if password is None or source.password is None:
        return False
    return hmac.compare_digest(password.encode(), source.password.encode())


def _digest(password: str | None) -> bytes | None:
    """What the pool keeps of a password a failed session logged in with: enough to know it
    again, for every refused one (two rows of one login with two wrong passwords, each handed
    back on every registry pass, were each logged in again when only the last was kept)."""
    return None if password is None else hashlib.sha256(password.encode()).digest()


class TradovatePool:
    """All Tradovate sessions of the process; ``broker(env, login, …)`` is the way in."""

    def __init__(
        self,
        settings: TradovateSettings,
        db: Executor | None = None,
        cipher: SecretBox | None = None,
        *,
        http: aiohttp.ClientSession | None = None,
        budget: LoginBudget | None = None,
    ) -> None:
        self.settings = settings
        self._own_http = http is None
        self.http = http or aiohttp.ClientSession()
        self.auth = TradovateAuth(settings, self.http, budget)
        self.tokens = TokenCache(self.auth, db, cipher)
        self.gate = ConnectGate(settings.connect_stagger_s, settings.rate_limit_cooldown_s)
        self.auth.on_rate_limited = self.gate.rate_limited
        self.timing = Timing.from_settings(settings)
        self._sessions: dict[tuple[str, str], Session] = {}
        self._brokers: dict[tuple[str, str], TradovateBroker] = {}
        self._creating: dict[tuple[str, str], asyncio.Lock] = {}
        self._sources: dict[tuple[str, str], _LoginTokens] = {}
        # per login: the credentials its failed sessions were opened with (``_refused``)
        self._refused: dict[tuple[str, str], set[tuple[bytes | None, str | None]]] = {}

    def ws_url(self, env: str) -> str:
        if env == "demo":
            return self.settings.demo_ws_url
        if env == "live":
            return self.settings.live_ws_url
        raise ConfigError(f"no Tradovate environment {env!r} (demo or live)")

    async def broker(
        self,
        env: str,
        username: str,
        password: str | None = None,
        *,
        oauth_token: AccessToken | None = None,
        wait_s: float | None = None,
    ) -> TradovateBroker:
        """The broker of one login, connecting it on first use (shared by all its sub-accounts).

        Raises until the session is READY (``TransientBrokerError`` while it connects or
        reconnects, ``BrokerAuthError`` when the login was refused for good); the session keeps
        trying in the background, so calling again later is the way to wait."""
        key = login_key(env, username)
        async with self._creating.setdefault(key, asyncio.Lock()):
            existing = self._brokers.get(key)
            reconnected = False  # a failed session's login connected again with OAuth
            live = existing is not None and existing.session.state is not State.FAILED
            if live and not may_join(self._sources[key], password, oauth_token):
                source = self._sources[key]
                raise BrokerAuthError(
                    f"the Tradovate session of {source.username} ({env}) was opened with"
                    + (" OAuth" if source.password is None else " another password")
                    + ": an account of the login must hold the password it logged in with, or"
                    " be connected with OAuth (accounts set-password, accounts connect); after"
                    " a password change, restart the daemon"
                )
            if existing is not None and existing.session.state is State.FAILED:
                # A login refused for good stays refused (retrying a bad password walks into
                # Tradovate's captcha lock) unless the credentials have changed since.
                source = self._sources[key]
                refused = self._refused.setdefault(key, set())
                refused.add((_digest(source.password), source.oauth))
                if any(
                    _digest(password) == tried
                    and (oauth_token is None or oauth_token.token == oauth)
                    for tried, oauth in refused
                ):
                    raise BrokerAuthError(existing.session.last_error or "Tradovate login failed")
                await existing.session.close()
                existing = None
                reconnected = not (oauth_token is None or oauth_token.token == source.oauth)
            if existing is not None:
                if not existing.session.ready:
                    await existing.session.wait_ready(wait_s)
                return existing
            if password:
                register_secret(password)
            if oauth_token is not None:
                # Only if it outlives the login's token held or stored (the daemon renews that
                # one; the account's stays as the person connected with it), or the person
                # connected again after the session failed (see ``offer``).
                await self.tokens.offer(env, username, oauth_token, over_held=reconnected)
            source = _LoginTokens(
                self.tokens, env, username, password, oauth_token.token if oauth_token else None
            )
            self._sources[key] = source
            session = Session(
                self.ws_url(env),
                source,
                self.timing,
                label=f"{env}:{username}",
                gate=self.gate,
                on_rate_limited=self.gate.rate_limited,
            )
            self._sessions[key] = session
            broker = TradovateBroker(session)
            self._brokers[key] = broker
        await session.start(wait_s)
        return broker

    def password_proven(self, env: str, username: str, password: str) -> bool:
        """Whether the login's session holds a token a login with ``password`` obtained
        (Tradovate accepted that very password): an account holding it has a proven password.
        A session opened or joined with OAuth proves nothing of a password held beside it."""
        source = self._sources.get(login_key(env, username))
        return source is not None and source.proves(password)

    def sessions(self) -> dict[tuple[str, str], Session]:
        return dict(self._sessions)

    async def release(self, broker: object) -> bool:
        """Close and forget the session behind ``broker`` (its login's accounts were all
        removed): its WebSocket held one of the login's Tradovate sessions, and its token kept
        being renewed, until the daemon restarted. False when the pool has no such session."""
        key = next((k for k, b in self._brokers.items() if b is broker), None)
        if key is None:
            return False
        async with self._creating.setdefault(key, asyncio.Lock()):
            if self._brokers.get(key) is not broker:
                return False
            del self._brokers[key]
            session = self._sessions.pop(key)
            self._sources.pop(key, None)
            self._refused.pop(key, None)
        await session.close()
        return True

    async def close(self) -> None:
        """Close every session (concurrently; each close is bounded), then the HTTP client if
        we made it. A session whose close failed is logged, not left to pass in silence."""
        sessions = list(self._sessions.values())
        self._sessions.clear()
        self._brokers.clear()
        results = await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        for session, result in zip(sessions, results, strict=True):
            if isinstance(result, BaseException):
                log.error(
                    "tradovate.pool.close_failed",
                    session=session.label,
                    error=type(result).__name__,
                    reason=str(result),
                )
        if self._own_http:
            await self.http.close()
