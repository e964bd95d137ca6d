"""The token cache hands a login's token only to a caller that proves the login: an OAuth
connection, or the very password a login obtained the token with (its proof, kept beside it in
memory and sealed with it in broker_tokens). Any other password logs in, Tradovate decides, and
the held token stays until a login succeeds. Before, any password (or a stored token of an
OAuth session) was handed the owner's token: `accounts sync` listed, and a session traded, the
owner's sub-accounts for a row with a made-up password."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg
import pytest

from jtrades.broker.tradovate.auth import AccessToken, TradovateAuth
from jtrades.broker.tradovate.tokens import (
    OAUTH_PROOF,
    TokenCache,
    may_hand_out,
    password_proof,
    proven_by,
)
from jtrades.config import TradovateSettings
from jtrades.errors import BrokerAuthError
from jtrades.security import SecretBox
from jtrades.store import broker_tokens
from tests.simutil import LOGIN, PASSWORD, SimHandle, account_naming, running_sim


def _tv(handle: SimHandle) -> TradovateSettings:
    return TradovateSettings(demo_rest_url=handle.rest_url, demo_ws_url=handle.ws_url)


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def _logins(handle: SimHandle, http: aiohttp.ClientSession) -> int:
    async with http.get(f"{handle.base_url}/sim/stats") as resp:
        data: dict[str, Any] = await resp.json()
        return int(data["access_token_requests"])


def test_a_password_proof_matches_only_its_password() -> None:
    proof = password_proof("s3cret-pw")
    assert "s3cret-pw" not in proof
    assert proven_by(proof, "s3cret-pw")
    assert not proven_by(proof, "s3cret-pW")
    assert not proven_by(proof, "")
    assert password_proof("s3cret-pw") != proof  # salted: equal passwords, unequal proofs
    for other in (None, OAUTH_PROOF, "pw1:zz:00", "pw1::", proof.replace("pw1", "pw2")):
        assert not proven_by(other, "s3cret-pw")


def test_who_is_handed_a_held_token() -> None:
    proof = password_proof("right")
    assert may_hand_out(proof, "right", oauth=False)
    assert not may_hand_out(proof, "wrong", oauth=False)
    assert not may_hand_out(proof, None, oauth=False)
    assert not may_hand_out(OAUTH_PROOF, "right", oauth=False)
    assert not may_hand_out(None, "right", oauth=False)  # stored before proofs: unproven
    assert may_hand_out(None, None, oauth=True)
    assert may_hand_out(proof, "wrong", oauth=True)


def test_a_stored_token_keeps_its_proof_and_a_bare_one_has_none() -> None:
    sealed = broker_tokens.sealed_text("tok.en", "pw1:ab:cd")
    assert broker_tokens.opened_text(sealed) == ("tok.en", "pw1:ab:cd")
    assert broker_tokens.opened_text("tok.en") == ("tok.en", None)
    assert broker_tokens.sealed_text("tok.en", None) == "tok.en"


async def test_a_stored_token_is_not_handed_to_another_password(
    sim: SimHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    await account_naming(pool, LOGIN)
    box = SecretBox([os.urandom(32)], "test")
    first = await TokenCache(TradovateAuth(_tv(sim), http), pool, box).get("demo", LOGIN, PASSWORD)
    assert await _logins(sim, http) == 1
    row = await broker_tokens.get(pool, "demo", LOGIN)
    assert row is not None
    assert PASSWORD.encode() not in row.token_enc

    # a "restart", then a caller with a made-up password: a login, which Tradovate refuses
    other = TokenCache(TradovateAuth(_tv(sim), http), pool, box)
    with pytest.raises(BrokerAuthError):
        await other.get("demo", LOGIN, "made-up")
    assert await _logins(sim, http) == 2
    assert not other.proves("demo", LOGIN, "made-up")
    # the owner's token is still stored, and handed to the password that obtained it
    again = await other.get("demo", LOGIN, PASSWORD)
    assert again.token == first.token
    assert await _logins(sim, http) == 2
    assert other.proves("demo", LOGIN, PASSWORD)


async def test_a_token_held_in_memory_is_not_handed_to_another_password(
    sim: SimHandle, http: aiohttp.ClientSession
) -> None:
    cache = TokenCache(TradovateAuth(_tv(sim), http))
    first = await cache.get("demo", LOGIN, PASSWORD)
    with pytest.raises(BrokerAuthError):
        await cache.get("demo", LOGIN, "made-up")
    assert cache.peek("demo", LOGIN) is first  # the held token stays
    assert await cache.get("demo", LOGIN, PASSWORD) is first
    assert await cache.get("demo", LOGIN, None, oauth=True) is first
    with pytest.raises(BrokerAuthError):  # no password and no OAuth connection: nothing
        await cache.get("demo", LOGIN, None)
    assert await _logins(sim, http) == 2


async def test_an_unproven_token_costs_one_login_then_is_the_passwords(
    sim: SimHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    """A token stored before proofs existed (or offered by OAuth) is not a password's: the
    first password caller logs in once, and the new token, with its proof, replaces it."""
    await account_naming(pool, LOGIN)
    box = SecretBox([os.urandom(32)], "test")
    async with aiohttp.ClientSession() as h:
        legacy = await TradovateAuth(_tv(sim), h).request_token("demo", LOGIN, PASSWORD)
    sealed = box.seal(legacy.token, broker_tokens.token_context("demo", LOGIN))
    await broker_tokens.upsert(
        pool, "demo", LOGIN, sealed.ciphertext, sealed.key_id, legacy.expires_at, legacy.user_id
    )
    cache = TokenCache(TradovateAuth(_tv(sim), http), pool, box)
    fresh = await cache.get("demo", LOGIN, PASSWORD)
    assert fresh.token != legacy.token
    assert await _logins(sim, http) == 2
    assert await cache.get("demo", LOGIN, PASSWORD) is fresh
    again = await TokenCache(TradovateAuth(_tv(sim), http), pool, box).get("demo", LOGIN, PASSWORD)
    assert again.token == fresh.token
    assert await _logins(sim, http) == 2

    offered = AccessToken("oauth-tok", datetime.now(UTC) + timedelta(hours=3), legacy.user_id)
    assert await cache.offer("demo", LOGIN, offered)  # outlives the held one: adopted
    assert await cache.get("demo", LOGIN, None, oauth=True) is offered
    assert not cache.proves("demo", LOGIN, PASSWORD)


async def test_a_renewal_keeps_the_proof(
    sim: SimHandle, http: aiohttp.ClientSession, pool: asyncpg.Pool
) -> None:
    await account_naming(pool, LOGIN)
    offset = timedelta(0)
    cache = TokenCache(
        TradovateAuth(_tv(sim), http),
        pool,
        SecretBox([os.urandom(32)], "test"),
        renew_margin_s=900,
        now=lambda: datetime.now(UTC) + offset,
    )
    first = await cache.get("demo", LOGIN, PASSWORD)
    offset = first.expires_at - datetime.now(UTC) - timedelta(seconds=600)  # 10 min left
    renewed = await cache.get("demo", LOGIN, PASSWORD)
    assert renewed.token != first.token
    assert cache.proves("demo", LOGIN, PASSWORD)
    offset = timedelta(0)
    assert await cache.get("demo", LOGIN, PASSWORD) is renewed  # still the password's
    assert await _logins(sim, http) == 1
