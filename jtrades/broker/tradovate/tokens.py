"""One access token per login, shared, cached in memory and stored encrypted in ``broker_tokens``.

Tradovate allows few logins per hour and a small number of sessions per login (a new login closes
the oldest session), so the order of preference is always: the token in memory → the token in the
database (a restart) → renew a still-valid token → a new login (spends the budget). Concurrent
callers for one login wait on one lock and share one outcome: never two logins for one token.

A renewal answered with a penalty ticket is never a reason to log in (that would spend the hourly
login budget and open a second session while Tradovate asked us to wait): the current token is
handed out until ``p-time`` has passed, then the renewal is repeated with the ticket. Only a token
that runs out meanwhile leads to a login, and not before ``p-time`` (a captcha: not at all — a
human has to log in, or connect with OAuth).

A renewal that fails without refusing the token (a 429 — about 15 renewals an hour are allowed —
a 5xx, a timeout, an answer nobody can read) is no reason either: the current token is handed
out while it is usable, and renewal is tried again after a growing pause. A reconnect inside the
margin that insisted on renewing first stayed down for as long as the endpoint refused, with a
token the socket would have accepted, and asked the rate-limited endpoint again at each try.

A token is the login's, not any caller's: it remembers how it was obtained (its proof, kept
beside it in memory and sealed with it in ``broker_tokens``): a keyed digest of the password a
login used (``password_proof``), or ``oauth``; a renewal keeps it. A caller with a password is
handed a held token only when its password is the one that token's login used
(``may_hand_out``); otherwise it logs in with that password, Tradovate decides, and on success
the new token replaces the held one. Handed out to any password, the token served a row another
user had typed with the owner's username and a made-up password: its `accounts sync` listed,
and its session traded, the owner's sub-accounts. A token stored before proofs existed is
unproven. A caller that proved the login with an OAuth connection takes any held token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import structlog

from jtrades.broker.tradovate.auth import AccessToken, TradovateAuth, token_slot
from jtrades.broker.tradovate.penalties import Penalty, PenaltyTicket
from jtrades.errors import (
    BrokerAuthError,
    CaptchaRequired,
    JtradesError,
    SecretKeyMissing,
    StorageUnavailable,
    TransientBrokerError,
)
from jtrades.logging import register_secret
from jtrades.security import SecretBox
from jtrades.store import Executor
from jtrades.store import broker_tokens as store

log = structlog.get_logger(__name__)

# A token this close to expiry is not worth renewing: log in instead (renewal could race expiry).
MIN_RENEWABLE_S = 5.0
# After a renewal that failed in passing, the pause before the next try doubles up to this.
RENEW_PAUSE_MAX_S = 300.0


# The proof of a token handed in from an OAuth connection (``offer``).
OAUTH_PROOF = "oauth"
_DIGEST_PROOF = "pw1"  # the proof of a password login (a salted keyed digest)


def password_proof(password: str) -> str:
    """The proof of a token a login with ``password`` obtained: a random salt and the
    HMAC-SHA256 of the password keyed with it, never the password; stored only sealed with the
    token (``broker_tokens.sealed_text``), under the secret key."""
    salt = secrets.token_bytes(16)
    digest = hmac.new(salt, password.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"{_DIGEST_PROOF}:{salt.hex()}:{digest}"


def proven_by(proof: str | None, password: str) -> bool:
    """Whether ``proof`` says a login with ``password`` obtained the token (constant time)."""
    kind, _, rest = (proof or "").partition(":")
    salt_hex, _, digest = rest.partition(":")
    if kind != _DIGEST_PROOF or not digest:
        return False
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    mine = hmac.new(salt, password.encode("utf-8"), hashlib.sha256).hexdigest()
    return hmac.compare_digest(mine.encode("ascii"), digest.encode("ascii", "replace"))


def may_hand_out(proof: str | None, password: str | None, *, oauth: bool) -> bool:
    """Whether a held token may serve a caller: one that proved the login with an OAuth
    connection (checked when it was stored) takes any; one with a password only a token a
    login with that very password obtained. Anyone else logs in (Tradovate decides)."""
    if oauth:
        return True
    return password is not None and proven_by(proof, password)


def needs_renewal(token: AccessToken, now: datetime, margin_s: float) -> bool:
    """Whether to renew now: inside the margin before ``expirationTime`` (or past it)."""
    return token.seconds_left(now) <= margin_s


def adopt_offered(
    offered: AccessToken, held: AccessToken | None, now: datetime, *, over_held: bool = False
) -> bool:
    """Whether a token handed in from elsewhere (OAuth) replaces the one held: never an expired
    (or about to expire) one; over a held one only if it runs out later, or ``over_held`` (the
    person connected again after the session failed: the held token may be the dead one)."""
    if offered.seconds_left(now) <= MIN_RENEWABLE_S:
        return False
    return over_held or held is None or offered.expires_at > held.expires_at


class TokenCache:
    """Tokens by (env, login). ``db``/``cipher`` may be None: memory only (a CLI one-shot)."""

    def __init__(
        self,
        auth: TradovateAuth,
        db: Executor | None = None,
        cipher: SecretBox | None = None,
        *,
        renew_margin_s: float | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.auth = auth
        self.db = db
        self.cipher = cipher
        self.renew_margin_s = (
            auth.settings.renew_margin_s if renew_margin_s is None else renew_margin_s
        )
        self._now = now
        self._mem: dict[tuple[str, str], AccessToken] = {}
        self._proofs: dict[tuple[str, str], str | None] = {}  # how each held token was obtained
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._renew_penalties: dict[tuple[str, str], Penalty] = {}
        # renewals that failed in passing: (failures in a row, no new try before)
        self._renew_paused: dict[tuple[str, str], tuple[int, datetime]] = {}
        self._renew_pause_s = max(1.0, min(30.0, self.renew_margin_s / 4))

    def _lock(self, key: tuple[str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def peek(self, env: str, username: str) -> AccessToken | None:
        return self._mem.get((env, username))

    def proves(self, env: str, username: str, password: str) -> bool:
        """Whether the token held for the login was obtained by a login with ``password``
        (Tradovate accepted it): what makes an account's stored password a proven one."""
        key = (env, username)
        return key in self._mem and proven_by(self._proofs.get(key), password)

    async def get(
        self, env: str, username: str, password: str | None, *, oauth: bool = False
    ) -> AccessToken:
        """A usable token: cached, stored, renewed, or (last resort) a new login. Held or
        stored, only one ``may_hand_out`` lets this caller have (``oauth``: it proved the
        login with an OAuth connection); any other caller logs in with its password, and the
        held token stays until that login succeeds."""
        key = (env, username)
        async with self._lock(key):
            held = await self._held(env, username)
            token, proof = held if held is not None else (None, None)
            if token is not None and not may_hand_out(proof, password, oauth=oauth):
                return await self._login(env, username, password)
            now = self._now()
            if token is not None and not needs_renewal(token, now, self.renew_margin_s):
                self._hold(key, token, proof)
                return token
            usable = token is not None and token.seconds_left(now) > MIN_RENEWABLE_S
            penalty = self._renew_penalties.get(key)
            if penalty is not None and penalty.waiting(now):
                if token is not None and usable:
                    self._hold(key, token, proof)
                    return token
                if penalty.captcha:
                    raise CaptchaRequired(
                        f"Tradovate wants a captcha for {username} ({env}) and the token has run "
                        "out: log in once on the Tradovate website, or connect the account with "
                        "OAuth (jtrades accounts connect)"
                    )
                left = (penalty.not_before - now).total_seconds()
                raise TransientBrokerError(
                    f"the Tradovate token of {username} ({env}) ran out while its renewal was "
                    f"penalised: next try in {int(left) + 1} s"
                )
            paused = self._renew_paused.get(key)
            if token is not None and usable and paused is not None and now < paused[1]:
                self._hold(key, token, proof)
                return token
            if token is not None and usable:
                try:
                    renewed = await self.auth.renew(
                        env, token, penalty.ticket if penalty is not None else None
                    )
                except PenaltyTicket as exc:
                    self._renew_penalties[key] = Penalty(
                        exc.ticket, now + timedelta(seconds=exc.wait_s), exc.captcha
                    )
                    (log.error if exc.captcha else log.warning)(
                        "tradovate.token.renew_penalised",
                        username=username,
                        wait_s=exc.wait_s,
                        captcha=exc.captcha,
                        token_left_s=int(token.seconds_left(now)),
                    )
                    self._hold(key, token, proof)
                    return token
                except TransientBrokerError as exc:
                    self._pause_renewal(key, token, now, username, exc)
                    self._hold(key, token, proof)
                    return token
                except BrokerAuthError as exc:
                    if password is None:
                        # no login can follow (an OAuth login): the token is kept while it
                        # lasts, renewal paced as for a passing error (a 401 may be one), and
                        # the authorized socket trades on; forgotten, one 401 ended the session
                        self._pause_renewal(
                            key, token, now, username, TransientBrokerError(str(exc))
                        )
                        self._hold(key, token, proof)
                        return token
                    # The token is dead: forgotten here and in broker_tokens before the login.
                    # Kept, it was renewed again at every reconnect and renewal pass whenever
                    # no login could follow (the budget spent): a 401 each time, until the
                    # ~15 renewals an hour were used up and 429s paused every connect.
                    self._renew_penalties.pop(key, None)
                    self._renew_paused.pop(key, None)
                    log.warning("tradovate.token.renew_refused", username=username, reason=str(exc))
                    await self._forget(env, username)
                else:
                    await self._save(env, username, renewed, proof)  # a renewal keeps the proof
                    return renewed
            return await self._login(env, username, password)

    async def _login(self, env: str, username: str, password: str | None) -> AccessToken:
        """A new login with ``password`` (the caller holds the login's lock); its token, with
        the password's proof, replaces the one held only once Tradovate accepted it."""
        if password is None:
            raise BrokerAuthError(
                f"the Tradovate token of {username} ({env}) expired or is not this account's,"
                " and there is no password: connect the account again (jtrades accounts connect)"
            )
        fresh = await self.auth.request_token(env, username, password)
        await self._save(env, username, fresh, password_proof(password))
        return fresh

    def _pause_renewal(
        self,
        key: tuple[str, str],
        token: AccessToken,
        now: datetime,
        username: str,
        exc: TransientBrokerError,
    ) -> None:
        """No renewal of ``key`` for a while: doubling from a quarter of the margin (at most
        30 s) up to ``RENEW_PAUSE_MAX_S``, and never more than half the token's usable time
        left, so a few more tries still come before it runs out."""
        failures = self._renew_paused.get(key, (0, now))[0] + 1
        pause = min(RENEW_PAUSE_MAX_S, self._renew_pause_s * 2 ** min(failures - 1, 16))
        pause = max(1.0, min(pause, (token.seconds_left(now) - MIN_RENEWABLE_S) / 2))
        self._renew_paused[key] = (failures, now + timedelta(seconds=pause))
        log.warning(
            "tradovate.token.renew_deferred",
            username=username,
            reason=str(exc),
            retry_in_s=round(pause, 1),
            token_left_s=int(token.seconds_left(now)),
        )

    async def offer(
        self, env: str, username: str, token: AccessToken, *, over_held: bool = False
    ) -> bool:
        """Adopt a token obtained elsewhere (OAuth) if ``adopt_offered`` says so, the one held
        read from memory or broker_tokens; whether it was adopted.

        The token a person connected with stays beside the account as it was, while the daemon
        renews the login's token and stores each new one: put over the stored one at a restart
        after it had expired, it left the session with a dead token and no password."""
        key = (env, username)
        async with self._lock(key):
            held = await self._held(env, username)
            if not adopt_offered(
                token, held[0] if held else None, self._now(), over_held=over_held
            ):
                if held is not None:
                    self._hold(key, *held)
                log.info(
                    "tradovate.token.offer_declined",
                    username=username,
                    offered_left_s=int(token.seconds_left(self._now())),
                )
                return False
            await self._save(env, username, token, OAUTH_PROOF)
            return True

    async def invalidate(self, env: str, username: str, token: str | None = None) -> None:
        """Forget a token the broker refused (only if it is still the current one)."""
        key = (env, username)
        async with self._lock(key):
            current = self._mem.get(key)
            if token is not None and current is not None and current.token != token:
                return
            await self._forget(env, username)

    async def _forget(self, env: str, username: str) -> None:
        """Drop the token of a login from memory and from broker_tokens (the caller holds the
        login's lock)."""
        self._mem.pop((env, username), None)
        self._proofs.pop((env, username), None)
        if self.db is not None:
            try:
                await store.delete(self.db, env, username)
            except StorageUnavailable as exc:
                log.warning("tradovate.token.delete_failed", username=username, reason=str(exc))

    def _hold(self, key: tuple[str, str], token: AccessToken, proof: str | None) -> None:
        self._mem[key] = token
        self._proofs[key] = proof

    async def _held(self, env: str, username: str) -> tuple[AccessToken, str | None] | None:
        """The token held for the login and its proof: in memory, else in broker_tokens."""
        key = (env, username)
        token = self._mem.get(key)
        if token is not None:
            return token, self._proofs.get(key)
        return await self._load(env, username)

    async def _load(self, env: str, username: str) -> tuple[AccessToken, str | None] | None:
        if self.db is None or self.cipher is None:
            return None
        try:
            row = await store.get(self.db, env, username)
            if row is None:
                return None
            opened = self.cipher.open(row.token_enc, row.key_id, store.token_context(env, username))
        except (StorageUnavailable, SecretKeyMissing) as exc:
            log.warning("tradovate.token.load_failed", username=username, reason=str(exc))
            return None
        except (JtradesError, ValueError) as exc:
            log.warning("tradovate.token.unreadable", username=username, reason=str(exc))
            return None
        plain, proof = store.opened_text(opened)
        register_secret(plain, slot=token_slot(env, username))
        log.info("tradovate.token.reused", env=env, username=username, proven=proof is not None)
        return AccessToken(plain, row.expires_at, row.broker_user_id, username), proof

    async def _save(self, env: str, username: str, token: AccessToken, proof: str | None) -> None:
        self._hold((env, username), token, proof)
        self._renew_penalties.pop((env, username), None)  # a new token: the old one's is moot
        self._renew_paused.pop((env, username), None)
        if self.db is None or self.cipher is None:
            return
        sealed = self.cipher.seal(
            store.sealed_text(token.token, proof), store.token_context(env, username)
        )
        try:
            await store.upsert(
                self.db,
                env,
                username,
                sealed.ciphertext,
                sealed.key_id,
                token.expires_at,
                token.user_id,
            )
        except StorageUnavailable as exc:
            # The token still works from memory; only a restart would have to log in again.
            log.warning("tradovate.token.store_failed", username=username, reason=str(exc))
