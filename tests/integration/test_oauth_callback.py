"""``/oauth/callback`` finishing an OAuth connect against the Tradovate simulator."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest

from jtrades.config import Settings, TradovateSettings
from jtrades.db import Database
from jtrades.errors import InvalidInput
from jtrades.metrics import Metrics
from jtrades.oauth import authorize_url, make_state, read_state
from jtrades.security import SecretBox
from jtrades.server import OAuthCallback, Webhooks, build_app, start_http
from jtrades.store.accounts import load_credentials
from tests.simutil import LOGIN, SimHandle, running_sim

NOW = datetime.now(UTC)


class IdleEngine:
    async def on_signal(self, **_kw: object) -> object:
        raise AssertionError("no signals in these tests")

    def ready(self) -> bool:
        return True

    def config_version(self) -> str | None:
        return None


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([os.urandom(32)], "test")


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
async def site(
    settings: Settings, pool: asyncpg.Pool, sim: SimHandle, box: SecretBox
) -> AsyncIterator[tuple[aiohttp.ClientSession, int]]:
    tv = settings.tradovate.model_copy(
        update={
            "demo_rest_url": sim.rest_url,
            "oauth_client_id": "cid",
            "oauth_redirect_url": "https://example.com/oauth/callback",
        }
    )
    cfg = settings.model_copy(update={"tradovate": tv})
    db = Database(pool, "test")
    from jtrades.engine.tokens import TokenCache

    async def no_tokens() -> dict[bytes, int]:
        return {}

    hooks = Webhooks(db, cfg, TokenCache(no_tokens), IdleEngine(), Metrics())  # type: ignore[arg-type]
    runner, port = await start_http(build_app(hooks, OAuthCallback(db, cfg, box)), "127.0.0.1", 0)
    uid = await pool.fetchval(
        "INSERT INTO users (name, email, status) VALUES ('carol', 'c@x.io', 'approved') RETURNING id"
    )
    account_id = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username) VALUES ($1, 'tv-1', 'demo', $2) "
        "RETURNING id",
        uid,
        LOGIN,
    )
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{port}") as client:
            yield client, account_id
    finally:
        await runner.cleanup()


async def sim_code(sim: SimHandle, login: str = LOGIN) -> str:
    url = f"{sim.base_url}/sim/oauth/code"
    async with aiohttp.ClientSession() as http, http.post(url, json={"login": login}) as r:
        code: str = (await r.json())["code"]
    return code


async def test_callback_stores_the_token_encrypted(
    site: tuple[aiohttp.ClientSession, int], sim: SimHandle, pool: asyncpg.Pool, box: SecretBox
) -> None:
    client, account_id = site
    code = await sim_code(sim)
    state = make_state(box, account_id, datetime.now(UTC))
    async with client.get("/oauth/callback", params={"code": code, "state": state}) as r:
        assert r.status == 200, await r.text()
        assert "tv-1 is connected" in await r.text()
    creds = await load_credentials(pool, box, account_id)
    assert creds.oauth_token
    assert creds.oauth_expires_at is not None
    enc = await pool.fetchval("SELECT oauth_token_enc FROM accounts WHERE id = $1", account_id)
    assert creds.oauth_token.encode() not in enc
    # the code is spent: a replayed link is refused with a reason, never a 5xx
    async with client.get("/oauth/callback", params={"code": code, "state": state}) as r:
        assert r.status == 400
        assert "not connected" in await r.text()


async def test_a_sign_in_link_works_once(
    site: tuple[aiohttp.ClientSession, int], sim: SimHandle, pool: asyncpg.Pool, box: SecretBox
) -> None:
    """Used again with a code of its own (whoever saw the URL: history, chat, a referrer), a
    link stored that token over the first for its 15 minutes. A link issued later works."""
    client, account_id = site
    state = make_state(box, account_id, datetime.now(UTC) - timedelta(seconds=2))
    async with client.get(
        "/oauth/callback", params={"code": await sim_code(sim), "state": state}
    ) as r:
        assert r.status == 200, await r.text()
    first = await pool.fetchval("SELECT oauth_token_enc FROM accounts WHERE id = $1", account_id)
    async with client.get(
        "/oauth/callback", params={"code": await sim_code(sim), "state": state}
    ) as r:
        assert r.status == 400
        assert "used already" in await r.text()
    assert await pool.fetchval("SELECT oauth_token_enc FROM accounts") == first
    later = make_state(box, account_id, datetime.now(UTC) + timedelta(seconds=2))
    async with client.get(
        "/oauth/callback", params={"code": await sim_code(sim), "state": later}
    ) as r:
        assert r.status == 200, await r.text()


async def test_a_sign_in_as_another_login_is_refused(
    site: tuple[aiohttp.ClientSession, int], sim: SimHandle, pool: asyncpg.Pool, box: SecretBox
) -> None:
    """The account names login ``sim``; the person signs in at Tradovate as ``mallory``. The
    token was stored all the same, and the session every account of ``sim`` shares would have
    run on mallory's Tradovate user."""
    client, account_id = site
    sim.add_login("mallory", "mallory-pw", ["MAL1"])
    state = make_state(box, account_id, datetime.now(UTC))
    code = await sim_code(sim, "mallory")
    async with client.get("/oauth/callback", params={"code": code, "state": state}) as r:
        assert r.status == 400
        assert "another Tradovate login" in await r.text()
    assert await pool.fetchval("SELECT oauth_token_enc FROM accounts") is None


async def test_forged_expired_and_incomplete_links_are_refused(
    site: tuple[aiohttp.ClientSession, int], sim: SimHandle, box: SecretBox, pool: asyncpg.Pool
) -> None:
    client, account_id = site
    code = await sim_code(sim)
    other_box = SecretBox([os.urandom(32)], "other")
    forged = make_state(other_box, account_id, datetime.now(UTC))
    expired = make_state(box, account_id, datetime.now(UTC) - timedelta(hours=1))
    for params in (
        {"code": code, "state": forged},
        {"code": code, "state": expired},
        {"code": code, "state": "garbage.@@@"},
        {"code": code},
        {"error": "access_denied", "error_description": "<script>x</script>"},
    ):
        async with client.get("/oauth/callback", params=params) as r:
            assert r.status == 400, params
            assert "<script>" not in await r.text()
    assert await pool.fetchval("SELECT oauth_token_enc FROM accounts") is None


def test_state_round_trip_and_authorize_url(box: SecretBox) -> None:
    state = make_state(box, 42, NOW)
    assert read_state(box, state, NOW + timedelta(minutes=14)) == 42
    with pytest.raises(InvalidInput, match="expired"):
        read_state(box, state, NOW + timedelta(minutes=16))
    tampered = state[:-2] + ("A" if state[-2] != "A" else "B") + state[-1]
    with pytest.raises(InvalidInput, match="not valid"):
        read_state(box, tampered, NOW)
    with pytest.raises(InvalidInput, match="oauth_client_id"):
        authorize_url(TradovateSettings(), box, 42, NOW)
    url = authorize_url(
        TradovateSettings(oauth_client_id="cid", oauth_redirect_url="https://x.io/oauth/callback"),
        box,
        42,
        NOW,
    )
    assert "response_type=code" in url
    assert "state=" in url
