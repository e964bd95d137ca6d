"""``jtrades accounts sync``: the sub-accounts (Tradovate account id + name) under one login.

It logs in through the same auth and token cache as the daemon, so a token the daemon stored is
reused (no login spent) and a token obtained here is stored for the daemon; a stored token only
when the account proves the login (``tokens.may_hand_out``: an OAuth connection, or the password
a login obtained that token with), else it logs in with its password. ``account/list`` answers
every account of the token's user over REST; inactive accounts are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from jtrades.broker.base import SubAccount
from jtrades.broker.tradovate.auth import AccessToken, TradovateAuth
from jtrades.broker.tradovate.tokens import TokenCache
from jtrades.config import Settings
from jtrades.errors import BrokerAuthError, TransientBrokerError
from jtrades.security import SecretBox
from jtrades.store import Executor


@dataclass(frozen=True, slots=True)
class LoginListing:
    """A login's active sub-accounts, and whether the token that listed them was obtained by a
    login with the password given (Tradovate accepted it: the account's password is proven)."""

    subs: list[SubAccount]
    password_proven: bool


async def list_sub_accounts(
    settings: Settings,
    env: str,
    username: str,
    password: str | None,
    *,
    oauth_token: AccessToken | None = None,
    db: Executor | None = None,
    cipher: SecretBox | None = None,
) -> list[SubAccount]:
    """Log in (or reuse the stored token) and list the login's active sub-accounts."""
    listing = await list_login(
        settings, env, username, password, oauth_token=oauth_token, db=db, cipher=cipher
    )
    return listing.subs


async def list_login(
    settings: Settings,
    env: str,
    username: str,
    password: str | None,
    *,
    oauth_token: AccessToken | None = None,
    db: Executor | None = None,
    cipher: SecretBox | None = None,
) -> LoginListing:
    """``list_sub_accounts``, and whether it proved ``password``. ``oauth_token``: the token
    the account was connected with (OAuth), which proves the login: offered to the cache as
    the daemon's pool offers it (the cache keeps a held token that outlives it), so an account
    connected with OAuth alone lists with no daemon session having stored a token first."""
    oauth = oauth_token is not None
    async with aiohttp.ClientSession() as http:
        auth = TradovateAuth(settings.tradovate, http)
        tokens = TokenCache(auth, db, cipher)
        if oauth_token is not None:
            await tokens.offer(env, username, oauth_token)
        token = await tokens.get(env, username, password, oauth=oauth)
        rows = await _get(http, f"{auth.rest_url(env)}/account/list", token.token, settings)
        if rows is None:  # the stored token was revoked meanwhile: one fresh login
            await tokens.invalidate(env, username, token.token)
            token = await tokens.get(env, username, password, oauth=oauth)
            rows = await _get(http, f"{auth.rest_url(env)}/account/list", token.token, settings)
            if rows is None:
                raise BrokerAuthError("Tradovate refused a fresh token for account/list")
        proven = password is not None and tokens.proves(env, username, password)
    return LoginListing(sub_accounts_of(rows), proven)


def sub_accounts_of(rows: list[Any]) -> list[SubAccount]:
    """The active accounts of an ``account/list`` answer. One row without a positive integer
    ``id`` or a ``name`` makes the whole answer suspect (a proxy's, another API version's): it
    is refused rather than half stored (the sync deactivates what the list leaves out)."""
    found: list[SubAccount] = []
    for r in rows:
        if not isinstance(r, dict):
            raise TransientBrokerError("account/list answered rows of an unexpected shape")
        ident, name = r.get("id"), r.get("name")
        if type(ident) is not int or ident < 1 or not isinstance(name, str) or not name:
            raise TransientBrokerError("account/list answered a row without a usable id and name")
        if r.get("active", True):
            found.append(SubAccount(ident, name))
    return found


async def _get(
    http: aiohttp.ClientSession, url: str, token: str, settings: Settings
) -> list[Any] | None:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    timeout = aiohttp.ClientTimeout(total=settings.tradovate.request_timeout_s)
    try:
        async with http.get(url, headers=headers, timeout=timeout) as resp:
            if resp.status == 401:
                return None
            if resp.status == 429 or resp.status >= 500:
                raise TransientBrokerError(f"account/list: HTTP {resp.status}, try again later")
            if resp.status >= 400:
                raise BrokerAuthError(f"account/list refused (HTTP {resp.status})")
            raw = await resp.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise TransientBrokerError(f"Tradovate unreachable ({type(exc).__name__})") from None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:  # a 200 from a proxy: its maintenance page, in HTML
        raise TransientBrokerError(
            "account/list answered with something that is not JSON"
        ) from None
    if not isinstance(data, list):
        raise TransientBrokerError("account/list answered with an unexpected shape")
    return data
