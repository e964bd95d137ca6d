"""Tradovate REST authentication: password login, renewal, OAuth code exchange, login budget.

Quirks this module exists for (TRADOVATE.md "Authentication"; checked against tradovate/example-api-js
and third-party clients):

- Failures arrive as **HTTP 200** with ``errorText``: the body is always inspected.
- A **penalty ticket** (``p-ticket``, ``p-time``) means: wait ``p-time`` seconds and repeat the same
  request once with ``"p-ticket"`` added. We retry exactly once; a second ticket is reported as a
  transient error carrying the wait, and ``p-captcha`` is reported as ``CaptchaRequired`` at once —
  retrying a captcha only extends the lock (about an hour). Never a loop. The second ticket is
  kept: the next login of that login first waits out its ``p-time`` and then sends it (a retry
  without it, sooner, only lengthened the lock).
- A penalised **renewal** raises ``PenaltyTicket`` (``penalties``: a transient error carrying the
  ticket and the wait); the token cache keeps using the current token meanwhile. Tradovate does
  not document how a renewal is repeated; we apply the general rule: the same request (same
  bearer) with the JSON body ``{"p-ticket": …}``.
- HTTP 423 follows repeated failed logins (a lock before the captcha): reported as an auth error,
  not retried, for the same reason.
- Only a definite refusal is final (``BrokerAuthError``: a session fails for good and the pool
  keeps refusing the login until its credentials change): ``errorText`` in the body, HTTP
  401/403, 423, a captcha. The body of a 4xx is read first: ``errorText`` or a ticket there
  means what it means in a 200 (a refused password retried as transient heads for a 423 and a
  captcha lock). Any other 4xx (a 408, a gateway's 404 or 400 during maintenance) and an answer
  that cannot be read say nothing about the credentials: ``TransientBrokerError``, retried
  under the login budget and the reconnect backoff.
- Few logins per hour are allowed per login (partner docs: about 5). ``LoginBudget`` counts every
  ``accesstokenrequest`` we send (a p-ticket retry included) and refuses to send one over
  ``settings.tradovate.logins_per_hour`` in any rolling hour, process-wide.
- ``expirationTime`` is the truth about a token's lifetime (sources say 80 or 90 minutes), read
  against Tradovate's clock (the answer's ``Date``), not ours: a token's expiry is kept as our
  time of receipt plus that lifetime (``token_clock``), so a clock ahead of Tradovate's
  neither makes fresh tokens look expired (a login storm) nor due for renewal (a renewal storm).
- OAuth: the official tutorial posts form-encoded to ``…/auth/oauthtoken`` without ``/v1``; the
  OpenAPI spec says JSON to ``/v1/auth/oauthtoken``. We send JSON to the ``/v1`` path (the spec).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
import orjson
import structlog

from jtrades.broker.tradovate.penalties import Penalty, PenaltyTicket, ticket_from
from jtrades.broker.tradovate.token_clock import (
    CLOCK_SKEW_WARN_S,
    TOKEN_LIFETIME_MIN_S,
    expiration_time,
    server_time,
    token_lifetime_s,
)
from jtrades.config import TradovateSettings
from jtrades.errors import (
    BrokerAuthError,
    ConfigError,
    LoginCaptcha,
    LoginRefused,
    TransientBrokerError,
)
from jtrades.logging import register_secret

log = structlog.get_logger(__name__)

Env = Literal["demo", "live"]
OAUTH_AUTHORIZE_URL = "https://trader.tradovate.com/oauth"


@dataclass(frozen=True, slots=True)
class AccessToken:
    """A bearer token for one login in one environment."""

    token: str
    expires_at: datetime
    user_id: int | None = None
    name: str = ""
    md_token: str | None = None

    def __repr__(self) -> str:  # never print the token itself
        return f"AccessToken(user_id={self.user_id}, expires_at={self.expires_at.isoformat()})"

    def seconds_left(self, now: datetime) -> float:
        return (self.expires_at - now).total_seconds()


class LoginBudget:
    """At most ``per_hour`` access-token requests per (env, login) in any rolling hour."""

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self._clock = clock
        self._sent: dict[tuple[str, str], deque[float]] = {}

    def _window(self, key: tuple[str, str]) -> deque[float]:
        q = self._sent.setdefault(key, deque())
        horizon = self._clock() - 3600
        while q and q[0] <= horizon:
            q.popleft()
        return q

    def remaining(self, env: str, username: str) -> int:
        return self.per_hour - len(self._window((env, username)))

    def take(self, env: str, username: str) -> None:
        """Spend one login or raise ``TransientBrokerError`` saying when one is free again."""
        q = self._window((env, username))
        if len(q) >= self.per_hour:
            wait = q[0] + 3600 - self._clock()
            raise TransientBrokerError(
                f"login budget for {username} ({env}) spent: {self.per_hour} per hour; "
                f"next login possible in {int(wait) + 1} s"
            )
        q.append(self._clock())


def token_slot(env: str, username: str) -> tuple[str, str, str]:
    """The ``register_secret`` slot of a login's access token (see there)."""
    return ("tradovate-token", env, username)


def _token_from(
    body: dict[str, Any], env: str, fallback_name: str, expiry: Callable[[Any], datetime]
) -> AccessToken:
    """The token of a login or renewal answer; ``expiry`` reads its ``expirationTime``."""
    token = body.get("accessToken")
    if not isinstance(token, str) or not token:
        raise TransientBrokerError("Tradovate answered without an access token")
    # a login's tokens replace each other at every renewal: masked as one slot, not forever
    register_secret(token, slot=token_slot(env, fallback_name))
    md = body.get("mdAccessToken")
    if isinstance(md, str):
        register_secret(md, slot=(*token_slot(env, fallback_name), "md"))
    user_id = body.get("userId")
    return AccessToken(
        token=token,
        expires_at=expiry(body.get("expirationTime")),
        user_id=int(user_id) if user_id is not None else None,
        name=str(body.get("name") or fallback_name),
        md_token=md if isinstance(md, str) else None,
    )


class TradovateAuth:
    """The REST auth calls, over one shared ``aiohttp.ClientSession``."""

    def __init__(
        self,
        settings: TradovateSettings,
        http: aiohttp.ClientSession,
        budget: LoginBudget | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.http = http
        # the API key's secret and the OAuth client secret go out in request bodies: any error
        # quoting one is scrubbed, as the passwords and tokens are
        register_secret(settings.sec.get_secret_value())
        register_secret(settings.oauth_client_secret.get_secret_value())
        self.budget = budget or LoginBudget(settings.logins_per_hour)
        self._sleep = sleep
        self._now = now
        # told of a 429 on any auth request: the pool pauses every connect (and so every
        # login) for its cooldown, as it does for a 429 on a socket
        self.on_rate_limited: Callable[[], None] | None = None
        # the last ticket of a login penalised twice, for its next login (see the module doc)
        self._login_penalties: dict[tuple[str, str], Penalty] = {}
        self._clock_warned = False

    def rest_url(self, env: str) -> str:
        if env == "demo":
            return self.settings.demo_rest_url
        if env == "live":
            return self.settings.live_rest_url
        raise ConfigError(f"no Tradovate environment {env!r} (demo or live)")

    async def _post(
        self, url: str, body: dict[str, Any] | None, bearer: str | None = None
    ) -> tuple[dict[str, Any], datetime | None]:
        """The answer's body and Tradovate's time of it (its ``Date``, if readable)."""
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        data = orjson.dumps(body) if body is not None else None
        if data is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.http.post(url, data=data, headers=headers, timeout=timeout) as resp:
                raw = await resp.read()
                status = resp.status
                server_now = server_time(resp.headers.get("Date"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientBrokerError(
                f"Tradovate unreachable ({type(exc).__name__}): {url}"
            ) from None
        if status == 429:
            if self.on_rate_limited is not None:
                self.on_rate_limited()
            raise TransientBrokerError("Tradovate rate limit (HTTP 429): back off")
        if status >= 500:
            raise TransientBrokerError(f"Tradovate server error (HTTP {status})")
        if status >= 400:
            return self._refusal(status, raw), server_now
        try:
            parsed = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise TransientBrokerError(
                "Tradovate answered with something that is not JSON"
            ) from None
        if not isinstance(parsed, dict):
            raise TransientBrokerError("Tradovate answered with an unexpected shape")
        return parsed, server_now

    def _expiry(self, server_now: datetime | None) -> Callable[[Any], datetime]:
        """Our time at which a token just received runs out, from its ``expirationTime``."""
        return lambda value: self._local_expiry(expiration_time(value), server_now)

    def _local_expiry(self, expires: datetime, server_now: datetime | None) -> datetime:
        """See ``token_lifetime_s``; a clock that disagrees with Tradovate's is said once."""
        local_now = self._now()
        life = token_lifetime_s(expires, server_now, local_now)
        skew = (local_now - server_now).total_seconds() if server_now is not None else None
        looked = (expires - local_now).total_seconds()
        if not self._clock_warned and (
            (skew is not None and abs(skew) > CLOCK_SKEW_WARN_S) or looked <= TOKEN_LIFETIME_MIN_S
        ):
            self._clock_warned = True
            log.warning(
                "tradovate.clock_skew",
                ahead_of_tradovate_s=None if skew is None else round(skew),
                token_left_by_our_clock_s=round(looked),
                token_lifetime_s=round(life),
                hint="set the machine's clock right (NTP); token expiry is read against "
                "Tradovate's time meanwhile",
            )
        return local_now + timedelta(seconds=life)

    @staticmethod
    def _refusal(status: int, raw: bytes) -> dict[str, Any]:
        """A 4xx (not 429): the body is read before the status decides anything.

        A wrong password or a captcha may come with a 400 as well as with a 200; taken for a
        gateway's hiccup, it was retried with the same password into a 423 and a captcha lock.
        The body is returned, for the caller to read as a 200 body, when it carries
        Tradovate's own word: ``errorText``, a captcha ticket, or a ticket on a status that
        is not already final. A final status (401/403/423) with a plain ticket stays final:
        another login there is one more failed attempt on a locked login."""
        try:
            parsed = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            parsed = None
        body: dict[str, Any] = parsed if isinstance(parsed, dict) else {}
        final = status in (401, 403, 423)
        if "p-ticket" in body and (body.get("p-captcha") or not final):
            return body
        why = f": {body['errorText']}" if body.get("errorText") else ""
        if status == 423:
            raise BrokerAuthError(
                "Tradovate locked this login after failed attempts (HTTP 423): wait about an "
                f"hour, then check the password{why}"
            )
        if final:
            raise BrokerAuthError(f"Tradovate refused the credentials (HTTP {status}){why}")
        if why:
            return body
        raise TransientBrokerError(
            f"Tradovate answered HTTP {status} (no refusal of the login: tried again)"
        )

    async def request_token(self, env: str, username: str, password: str) -> AccessToken:
        """Log in with a password: one ``accesstokenrequest`` (two if a p-ticket asks us to wait).

        A ticket kept from an earlier call is waited out and sent first."""
        register_secret(password)
        s = self.settings
        key = (env, username)
        body: dict[str, Any] = {
            "name": username,
            "password": password,
            "appId": s.app_id,
            "appVersion": s.app_version,
            "cid": s.cid,
            "sec": s.sec.get_secret_value(),
            "deviceId": s.device_id or f"jtrades-{s.app_id}",
        }
        kept = self._login_penalties.get(key)
        if kept is not None:
            left = (kept.not_before - self._now()).total_seconds()
            if left > 0:
                log.warning(
                    "tradovate.login.penalty_wait", username=username, wait_s=round(left, 1)
                )
                await self._sleep(left)
            body["p-ticket"] = kept.ticket
        url = f"{self.rest_url(env)}/auth/accesstokenrequest"
        for attempt in (1, 2):
            self.budget.take(env, username)
            log.info(
                "tradovate.login",
                env=env,
                username=username,
                attempt=attempt,
                with_ticket="p-ticket" in body,
            )
            try:
                answer, server_now = await self._post(url, body)
            except BrokerAuthError as exc:
                # HTTP 401/403/423: the login itself refused, final. Taken for a passing
                # auth error, the renewal loop logged in again with the same password, into
                # the captcha lock (a 423 says the next failure locks the login).
                self._login_penalties.pop(key, None)  # the ticket is spent
                raise LoginRefused(str(exc)) from None
            if "p-ticket" in answer:
                ticket, wait, captcha = ticket_from(answer, env, username)
                if captcha:
                    self._login_penalties.pop(key, None)
                    raise LoginCaptcha(
                        f"Tradovate wants a captcha for {username} ({env}): log in once on the "
                        "Tradovate website, or connect the account with OAuth; retrying extends "
                        "the lock"
                    )
                self._login_penalties[key] = Penalty(ticket, self._now() + timedelta(seconds=wait))
                if attempt == 2:
                    raise TransientBrokerError(
                        f"Tradovate penalised the login of {username} again: wait {int(wait)} s"
                    )
                log.warning("tradovate.login.penalty", username=username, wait_s=wait)
                await self._sleep(wait)
                body = {**body, "p-ticket": ticket}
                continue
            self._login_penalties.pop(key, None)  # the ticket is spent, whatever the answer
            if answer.get("errorText"):
                raise LoginRefused(f"Tradovate login failed: {answer['errorText']}")
            return _token_from(answer, env, username, self._expiry(server_now))
        raise AssertionError("unreachable")  # pragma: no cover

    async def renew(self, env: str, token: AccessToken, ticket: str | None = None) -> AccessToken:
        """``renewaccesstoken``: a new token (same session) without spending a login.

        ``ticket``: the p-ticket of a penalised renewal, once its ``p-time`` has passed. A new
        penalty raises ``PenaltyTicket``."""
        answer, server_now = await self._post(
            f"{self.rest_url(env)}/auth/renewaccesstoken",
            {"p-ticket": ticket} if ticket else None,
            token.token,
        )
        if "p-ticket" in answer:
            new_ticket, wait, captcha = ticket_from(answer, env, token.name)
            raise PenaltyTicket(
                f"Tradovate penalised the token renewal of {token.name} ({env}): "
                + ("it wants a captcha" if captcha else f"wait {int(wait)} s"),
                ticket=new_ticket,
                wait_s=wait,
                captcha=captcha,
            )
        if answer.get("errorText"):
            raise BrokerAuthError(f"Tradovate token renewal failed: {answer['errorText']}")
        renewed = _token_from(answer, env, token.name, self._expiry(server_now))
        if renewed.user_id is None and token.user_id is not None:
            renewed = AccessToken(
                renewed.token, renewed.expires_at, token.user_id, token.name, renewed.md_token
            )
        log.info(
            "tradovate.token.renewed", env=env, user_id=renewed.user_id, with_ticket=bool(ticket)
        )
        return renewed

    async def me(self, env: str, token: str) -> dict[str, Any]:
        """``auth/me``: the token's user (an OAuth token does not say its user id)."""
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        timeout = aiohttp.ClientTimeout(total=self.settings.request_timeout_s)
        try:
            async with self.http.get(
                f"{self.rest_url(env)}/auth/me", headers=headers, timeout=timeout
            ) as resp:
                if resp.status == 401:
                    raise BrokerAuthError("Tradovate rejected the token (HTTP 401)")
                if resp.status >= 400:
                    raise TransientBrokerError(f"auth/me failed (HTTP {resp.status})")
                raw = await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransientBrokerError(f"Tradovate unreachable ({type(exc).__name__})") from None
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:  # a 200 from a proxy (a maintenance page), as in _post
            raise TransientBrokerError("auth/me answered with something that is not JSON") from None
        if not isinstance(parsed, dict):
            raise BrokerAuthError("auth/me answered with an unexpected shape")
        return parsed

    async def oauth_exchange(self, env: str, code: str, redirect_uri: str = "") -> AccessToken:
        """Trade an OAuth ``code`` for a bearer token (JSON to ``/v1/auth/oauthtoken``, the spec)."""
        s = self.settings
        register_secret(code)
        body = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or s.oauth_redirect_url,
            "client_id": s.oauth_client_id,
            "client_secret": s.oauth_client_secret.get_secret_value(),
        }
        answer, _ = await self._post(f"{self.rest_url(env)}/auth/oauthtoken", body)
        if answer.get("error") or answer.get("errorText"):
            why = answer.get("error_description") or answer.get("error") or answer["errorText"]
            raise BrokerAuthError(f"Tradovate OAuth exchange failed: {why}")
        token = answer.get("access_token")
        if not isinstance(token, str) or not token:
            raise BrokerAuthError("Tradovate OAuth answered without an access token")
        register_secret(token)
        refresh = answer.get("refresh_token")
        if isinstance(refresh, str):
            register_secret(refresh)
        expires_in = float(answer.get("expires_in") or 0) or 80 * 60
        me = await self.me(env, token)
        user_id = me.get("userId")
        return AccessToken(
            token=token,
            expires_at=self._now() + timedelta(seconds=expires_in),
            user_id=int(user_id) if user_id is not None else None,
            name=str(me.get("name") or ""),
        )


def oauth_authorize_url(settings: TradovateSettings, state: str) -> str:
    """Where to send a person to connect their account; ``state`` must be random and checked."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": settings.oauth_client_id,
            "redirect_uri": settings.oauth_redirect_url,
            "state": state,
        }
    )
    return f"{OAUTH_AUTHORIZE_URL}?{query}"
