"""Connecting a Tradovate account with OAuth: ``accounts connect`` prints an authorize URL, the
person approves at Tradovate, and Tradovate redirects to the daemon's ``/oauth/callback``.

The ``state`` in the URL is the account id and an expiry sealed with the master key (AES-GCM),
so the callback needs no table of pending requests and a forged or expired state is refused; it
works once (a state issued before the account's last connect is refused). The code is exchanged
once; the token is stored encrypted beside the account, and only when its user (``auth/me``) is
the account's login.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog

from jtrades.broker.tradovate.auth import TradovateAuth, oauth_authorize_url
from jtrades.config import TradovateSettings
from jtrades.errors import InvalidInput, NotFound, SecretKeyMissing
from jtrades.logging import register_secret
from jtrades.queries import q
from jtrades.security import SecretBox
from jtrades.store import Executor, translate_errors
from jtrades.store.accounts import oauth_context

log = structlog.get_logger(__name__)

STATE_CONTEXT = "jtrades.oauth.state"
STATE_TTL = timedelta(minutes=15)


def make_state(box: SecretBox, account_id: int, now: datetime) -> str:
    """A sealed ``account_id:expiry``: ``<key id>.<base64url ciphertext>``."""
    expires = int((now + STATE_TTL).timestamp())
    sealed = box.seal(f"{account_id}:{expires}", STATE_CONTEXT)
    blob = base64.urlsafe_b64encode(sealed.ciphertext).rstrip(b"=").decode("ascii")
    return f"{sealed.key_id}.{blob}"


def read_state(box: SecretBox, state: str, now: datetime) -> int:
    """The account id a state names; ``InvalidInput`` when it is forged, garbled or expired."""
    return _read_state(box, state, now)[0]


def _read_state(box: SecretBox, state: str, now: datetime) -> tuple[int, datetime]:
    """(account id, when the state was issued); ``InvalidInput`` as ``read_state``."""
    key_id, _, blob = state.partition(".")
    try:
        raw = base64.urlsafe_b64decode(blob + "=" * (-len(blob) % 4))
        plain = box.open(raw, key_id, STATE_CONTEXT)
        account, _, expires = plain.partition(":")
        account_id, expiry = int(account), int(expires)
    except (ValueError, binascii.Error, SecretKeyMissing):
        raise InvalidInput(
            "this sign-in link is not valid; run `jtrades accounts connect` again"
        ) from None
    if now.timestamp() > expiry:
        raise InvalidInput("this sign-in link has expired; run `jtrades accounts connect` again")
    return account_id, datetime.fromtimestamp(expiry, UTC) - STATE_TTL


_USED = "this sign-in link was used already; run `jtrades accounts connect` again"


def _used(connected_at: datetime | None, issued_at: datetime) -> bool:
    """A link works once: one issued before the account's last connect is a replay (whoever
    saw the URL could otherwise attach a token of their own for its 15 minutes)."""
    return connected_at is not None and connected_at >= issued_at


def authorize_url(
    settings: TradovateSettings, box: SecretBox, account_id: int, now: datetime
) -> str:
    """Where to send the person (``accounts connect`` prints it)."""
    if not settings.oauth_client_id or not settings.oauth_redirect_url:
        raise InvalidInput("set tradovate.oauth_client_id and tradovate.oauth_redirect_url first")
    return oauth_authorize_url(settings, make_state(box, account_id, now))


async def complete(
    ex: Executor,
    box: SecretBox,
    settings: TradovateSettings,
    *,
    state: str,
    code: str,
    now: datetime,
) -> str:
    """Finish a connect: check the state, exchange the code, store the token; returns the label.

    The code becomes a log secret only once the state is known good (``oauth_exchange``): the
    route is public, and anyone could otherwise mask any text in the logs (their own address)
    and grow the secret set without bound, each new value rescanned on the event loop."""
    account_id, issued_at = _read_state(box, state, now)
    with translate_errors():
        row = await ex.fetchrow(q("oauth.account"), account_id)
    if row is None:
        raise NotFound("the account being connected no longer exists")
    if row["env"] not in ("demo", "live"):
        raise InvalidInput(f"a {row['env']} account does not connect to Tradovate")
    if _used(row["oauth_connected_at"], issued_at):
        raise InvalidInput(_USED)
    async with aiohttp.ClientSession() as http:
        token = await TradovateAuth(settings, http).oauth_exchange(row["env"], code)
    register_secret(token.token)
    if token.name.casefold() != str(row["username"]).casefold():
        # the session of a login is shared by every account naming it: a token of another
        # login stored here would put all of them on someone else's Tradovate user
        log.warning("oauth.wrong_login", account=row["label"], env=row["env"])
        raise InvalidInput(
            f"that sign-in was for another Tradovate login than {row['username']!r}; sign in"
            " as that login, or add an account for the other one"
        )
    sealed = box.seal(token.token, oauth_context(row["env"], row["username"]))
    with translate_errors():
        stored = await ex.fetchval(
            q("oauth.set_token"),
            account_id,
            sealed.ciphertext,
            sealed.key_id,
            token.expires_at,
            issued_at,
        )
    if stored is None:  # another callback with this link stored first
        raise InvalidInput(_USED)
    log.info("oauth.connected", account=row["label"], env=row["env"])
    return str(row["label"])
