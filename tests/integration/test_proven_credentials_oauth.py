"""Found by review: ``login_credential`` let two password rows that agree vouch for each other
although the login's own row is OAuth-only (no password to check them against), and the token
cache handed the login's stored token to any caller whatever password it gave. mallory adds
two rows naming alice's OAuth login with one made-up password each: `accounts sync` listed
alice's sub-accounts for them and, after a restart, the daemon opened a session for mallory's
row and traded alice's account.

Now two unproven passwords prove nothing (the row is refused: "connect it with OAuth too"),
and a token is handed to a password caller only when a login with that password obtained it;
and the daemon's session proves the password of the row it was opened for."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.auth import TradovateAuth
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.config_cache import LinkConfig
from jtrades.store import accounts as account_store
from tests.integration.test_cli_accounts import Cli
from tests.polling import until
from tests.registry_world import registry_world
from tests.simutil import SimHandle, running_sim

ALICE_PW = "alice-real-tv-pw-7Hq2"
MADE_UP = "made-up-by-mallory-1"


async def _world(
    database: Database, settings: Settings, sim: SimHandle, db_url: str, data_dir: Path
) -> dict[str, Any]:
    """alice's account connected with OAuth only, its session opened by the daemon (the
    login's token stored in broker_tokens) and synced; mallory's two rows naming the login
    with one made-up password each."""
    pool = database.pool
    sim.add_login("alice_tv", ALICE_PW, ["DEMO-A1", "DEMO-A2"])
    w = await registry_world(database, settings, sim, "alice", "alice_tv", None, "DEMO-A1")
    async with aiohttp.ClientSession() as http:  # stands in for the OAuth exchange
        token = await TradovateAuth(w.settings.tradovate, http).request_token(
            "demo", "alice_tv", ALICE_PW
        )
    sealed = w.box.seal(token.token, account_store.oauth_context("demo", "alice_tv"))
    await pool.execute(
        "UPDATE accounts SET oauth_token_enc=$1, oauth_key_id=$2, oauth_expires_at=$3,"
        " oauth_connected_at=now() WHERE id=$4",
        sealed.ciphertext, sealed.key_id, token.expires_at, w.account_id,
    )  # fmt: skip
    await w.registry.reach([w.link])
    assert w.registry.broker_for(w.link).is_synced(w.broker_account_id)
    assert await pool.fetchval("SELECT count(*) FROM broker_tokens") == 1
    cli = Cli(db_url, data_dir, dict(sim.tradovate_env()))
    await cli.ok("accounts", "sync", "alice-demo")
    await cli.ok("users", "register", "mallory", "--email", "mallory@example.com")
    adds = []
    for label in ("mallory-1", "mallory-2"):
        adds.append(await cli.ok(
            "accounts", "add", label, "--user", "mallory", "--env", "demo",
            "--username", "alice_tv", "--password-stdin", input=MADE_UP + "\n",
        ))  # fmt: skip
    return {"w": w, "cli": cli, "adds": adds}


async def test_two_made_up_passwords_vouch_for_each_other_and_sync_lists_alices_accounts(
    database: Database, settings: Settings, db_url: str, data_dir: Path
) -> None:
    async with running_sim() as sim:
        world = await _world(database, settings, sim, db_url, data_dir)
        try:
            assert world["adds"][1]["usable"] is False
            assert "connect it with OAuth too" in world["adds"][1]["refusal"]
            cli: Cli = world["cli"]
            r = await cli("accounts", "sync", "mallory-1", "--json")
            subs = await database.pool.fetch(
                "SELECT s.name FROM sub_accounts s JOIN accounts a ON a.id = s.account_id"
                " WHERE a.label = 'mallory-1'"
            )
            assert r.exit_code != 0, r.stdout
            assert not subs, (
                "mallory's row (a made-up password, vouched for by her own second row) was"
                f" handed alice's token: `accounts sync` listed alice's accounts {r.stdout!r}"
            )
            assert ALICE_PW not in r.stdout + r.stderr
        finally:
            await world["w"].registry.close()


async def test_after_a_restart_mallorys_row_gets_a_session_and_trades_alices_account(
    database: Database, settings: Settings, db_url: str, data_dir: Path
) -> None:
    pool = database.pool
    async with running_sim() as sim:
        world = await _world(database, settings, sim, db_url, data_dir)
        w = world["w"]
        await w.registry.close()  # a restart (alice's trader not enabled at the moment, say)
        cli: Cli = world["cli"]
        a1 = sim.account_id("DEMO-A1")
        out = await cli.ok("accounts", "add-sub", "mallory-1", "--id", str(a1), "--name", "DEMO-A1")
        assert out["verified"] is False  # her row proves nothing of the login
        m_aid = int(await pool.fetchval("SELECT id FROM accounts WHERE label='mallory-1'"))
        uid = int(await pool.fetchval("SELECT user_id FROM accounts WHERE id=$1", m_aid))
        # the link as if her row were taken for one of the login's (has_credential=True)
        link = LinkConfig(0, out["sub"]["id"], Decimal(1), m_aid, "demo", a1, "DEMO-A1", "mallory-1",
                          uid, False, username="alice_tv", has_credential=True)  # fmt: skip
        registry = BrokerRegistry(database, w.settings)
        try:
            await registry.reach([link])
            try:
                broker = registry.broker_for(link)
            except Exception:
                broker = None
            if broker is not None:
                await until(lambda: broker.is_synced(a1), within_s=10)
                sym = (await broker.find_contract("MNQ1!")).symbol
                await sim.set_price("MNQ", "21500")
                await broker.place_order(OrderRequest(SubAccount(a1, "DEMO-A1"), sym, Side.BUY, 1))
                await until(lambda: sum(p.net_pos for p in broker.positions(a1)) == 1, within_s=10)
            assert broker is None, (
                "mallory's row got a session of alice's login with a made-up password and"
                f" bought 1 on alice's DEMO-A1: {sim.positions('DEMO-A1')}"
            )
            assert not await pool.fetchval(
                "SELECT password_proven_at IS NOT NULL FROM accounts WHERE id = $1", m_aid
            )
        finally:
            await registry.close()


async def test_the_daemons_session_proves_the_password_it_opened_with(
    database: Database, settings: Settings
) -> None:
    """A password the session logged in with is proven; a row of the login holding another
    one is refused and stays unproven (Tradovate never accepted it)."""
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("alice_tv", ALICE_PW, ["DEMO-A1"])
        w = await registry_world(database, settings, sim, "alice", "alice_tv", ALICE_PW, "DEMO-A1")
        proven = "SELECT password_proven_at IS NOT NULL FROM accounts WHERE id = $1"
        assert not await pool.fetchval(proven, w.account_id)
        try:
            await w.registry.reach([w.link])
            assert w.registry.broker_for(w.link).is_synced(w.broker_account_id)
            assert await pool.fetchval(proven, w.account_id)
            other = await account_store.create(
                pool, user_id=w.user_id, label="alice-typo", env="demo", username="ALICE_TV",
                password=w.box.seal(MADE_UP, account_store.password_context("demo", "alice_tv")),
            )  # fmt: skip
            link = LinkConfig(0, 0, Decimal(1), other.id, "demo", w.broker_account_id, "DEMO-A1",
                              "alice-typo", w.user_id, False)  # fmt: skip
            await w.registry.reach([link])
            assert "is not the one alice-demo holds" in w.registry._failures[other.id]
            assert not await pool.fetchval(proven, other.id)
        finally:
            await w.registry.close()
