"""Found by the second review of proven passwords (``accounts.password_proven_at``):

- `accounts set-password` on the rows of a shared login while the daemon ran cleared their
  proofs, and the live session (renewed, never needing the password) never proved them again:
  two users' rows of one account at the broker came apart (a halt of one no longer stopped
  the other, two alerts at once on the one account opened 2 instead of 1).
- After the upgrade (every row unproven), alice's row holding both an OAuth connection and the
  password opened the session with OAuth, so nothing ever proved her password, and bob's row
  with the same, right, password was refused for good ("connect it with OAuth too"); and once
  proven, bob was refused the session alice had opened with OAuth.

Now a proof is sticky (it says the row once proved it holds a credential of its login), a row
whose password equals one a proven row of the login stores (a proven password, or one stored
beside an OAuth connection) is proven by it (``proofs.vouch_password``: on every registry pass
for the wanted unproven rows, and by `accounts add`, `set-password`, `sync`), and a password
equal to the one the opener of an OAuth session stored joins that session.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.auth import TradovateAuth
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.config_cache import LinkConfig, link_account
from jtrades.engine.engine import Engine
from jtrades.errors import InvalidInput
from jtrades.security import SecretBox, load_secret_box
from jtrades.store import accounts as account_store
from jtrades.store import login_proofs as proofs
from tests.integration.test_cli_accounts import Cli
from tests.integration.test_engine import buy, make_recorder, make_trader, make_user, send, wait_for
from tests.sim_worlds import FAST_RECONNECT, sim_tradovate
from tests.simutil import SimHandle, running_sim

PW = "px-pw-real-123"
NEW_PW = "px-pw-NEW-456"


def sim_settings(settings: Settings, sim: SimHandle) -> Settings:
    tv = sim_tradovate(settings, sim, **FAST_RECONNECT)
    tr = settings.trading.model_copy(update={"reconcile_interval_s": 0.5})
    return settings.model_copy(update={"tradovate": tv, "trading": tr})


async def add_row(database: Database, st: Settings, name: str, password: str | None) -> int:
    """A user ``name`` and their row ``{name}-demo`` naming the login px_tv (as `accounts add`
    stores it: the password sealed, unproven)."""
    box = load_secret_box(st, create=True)
    uid = await make_user(database.pool, name)
    sealed = None
    if password is not None:
        sealed = box.seal(password, account_store.password_context("demo", "px_tv"))
    acct = await account_store.create(
        database.pool, user_id=uid, label=f"{name}-demo", env="demo", username="px_tv",
        password=sealed,
    )  # fmt: skip
    return acct.id


async def proven(pool: asyncpg.Pool, label: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT password_proven_at IS NOT NULL FROM accounts WHERE label = $1", label
        )
    )


async def _both_proven(pool: asyncpg.Pool) -> bool:
    return await proven(pool, "alice-demo") and await proven(pool, "bob-demo")


async def set_password(database: Database, st: Settings, label: str, password: str) -> None:
    """What `jtrades accounts set-password LABEL --password-stdin` stores."""
    box = load_secret_box(st, create=False)
    acct = await account_store.get(database.pool, label)
    await account_store.set_password(
        database.pool, acct, box.seal(password, account_store.new_password_context(acct))
    )


@asynccontextmanager
async def shared_world(
    database: Database, settings: Settings, *, same_direction: str = "add"
) -> AsyncIterator[tuple[SimHandle, Engine, dict[str, Any]]]:
    """alice and bob each added px_tv (one account PX1) with its right password and trade it,
    by a real Engine whose registry opens the sessions itself; both rows proven at start."""
    pool = database.pool
    async with running_sim() as sim:
        login = sim.add_login("px_tv", PW, ["PX1"])
        await sim.set_price("MNQ", "21500")
        st = sim_settings(settings, sim)
        bid = sim.account_id("PX1")
        w: dict[str, Any] = {"st": st, "login": login, "sub": {}, "rec": {}}
        for name in ("alice", "bob"):
            aid = await add_row(database, st, name, PW)
            uid = int(await pool.fetchval("SELECT user_id FROM accounts WHERE id=$1", aid))
            rec = await make_recorder(
                pool, uid, f"{name}-rec", size=1, add_size=1, same_direction=same_direction
            )
            sub = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'PX1') RETURNING id",
                aid,
                bid,
            )
            await make_trader(pool, uid, rec, [(sub, 1)])
            w["sub"][name], w["rec"][name] = sub, rec
        engine = Engine(database, st)
        await engine.start()
        try:
            await wait_for(lambda: _both_proven(pool), "both rows proven at start", 15)
            yield sim, engine, w
        finally:
            await engine.close()


def _keys(engine: Engine, w: dict[str, Any]) -> tuple[Any, Any]:
    snap = engine.config.snapshot
    links = snap.links_by_sub
    return link_account(links[w["sub"]["alice"]]), link_account(links[w["sub"]["bob"]])


# --- a password change with the daemon running ----------------------------------------------


async def test_a_password_change_with_the_daemon_running_keeps_the_rows_one_account(
    database: Database, settings: Settings
) -> None:
    async with shared_world(database, settings) as (_sim, engine, w):
        await engine.config.refresh()
        alice, bob = _keys(engine, w)
        assert alice == bob  # one account at the broker
        w["login"].password = NEW_PW  # the owner changes it at Tradovate
        for label in ("alice-demo", "bob-demo"):
            await set_password(database, w["st"], label, NEW_PW)
        await asyncio.sleep(3)  # several reconciliation passes (0.5 s each)
        await engine.config.refresh()
        alice, bob = _keys(engine, w)
        state = (await proven(database.pool, "alice-demo"), await proven(database.pool, "bob-demo"))
        assert state == (True, True), f"(alice proven, bob proven) = {state}"
        assert alice == bob, f"no longer one account at the broker: {alice} vs {bob}"


async def test_a_halt_still_reaches_the_other_row_after_set_password(
    database: Database, settings: Settings
) -> None:
    async with shared_world(database, settings) as (_sim, engine, w):
        for label in ("alice-demo", "bob-demo"):
            await set_password(database, w["st"], label, PW)
        await asyncio.sleep(2)
        await database.pool.execute("UPDATE accounts SET halted = true WHERE label='alice-demo'")
        await engine.config.refresh()
        assert engine.config.snapshot.links_by_sub[w["sub"]["bob"]].halted, (
            "alice halted her row of PX1; bob's link to the same account at the broker is not"
        )


@pytest.mark.parametrize("reenter", [False, True], ids=["as-added", "after-set-password"])
async def test_two_alerts_at_once_on_the_shared_account_open_one(
    database: Database, settings: Settings, reenter: bool
) -> None:
    async with shared_world(database, settings, same_direction="ignore") as (sim, engine, w):
        if reenter:  # the same, right, password stored again on both rows, daemon running
            for label in ("alice-demo", "bob-demo"):
                await set_password(database, w["st"], label, PW)
            await asyncio.sleep(2)
        await engine.config.refresh()
        # alice's and bob's recorders each say "buy" at once (same_direction=ignore): one
        # account at the broker, so one long 1
        await asyncio.gather(
            send(engine, database.pool, w["rec"]["alice"], buy("21500")),
            send(engine, database.pool, w["rec"]["bob"], buy("21500")),
        )
        await asyncio.sleep(2)
        await sim.flush()
        net = sum(sim.positions("PX1").values())
        assert net == 1, f"two users' alerts on the one account were not serialised: long {net}"


# --- a row holding both an OAuth connection and the password ------------------------------


async def _connect_oauth(database: Database, st: Settings, aid: int) -> None:
    """What the /oauth/callback stores on a row (a fresh token of the login)."""
    box = load_secret_box(st, create=True)
    async with aiohttp.ClientSession() as http:  # stands in for the OAuth exchange
        token = await TradovateAuth(st.tradovate, http).request_token("demo", "px_tv", PW)
    sealed = box.seal(token.token, account_store.oauth_context("demo", "px_tv"))
    await database.pool.execute(
        "UPDATE accounts SET oauth_token_enc=$1, oauth_key_id=$2, oauth_expires_at=$3,"
        " oauth_connected_at=now() WHERE id=$4",
        sealed.ciphertext, sealed.key_id, token.expires_at, aid,
    )  # fmt: skip


async def _links(pool: asyncpg.Pool, bid: int, *aids: int) -> list[LinkConfig]:
    out = []
    for aid in aids:
        uid, label = await pool.fetchrow("SELECT user_id, label FROM accounts WHERE id=$1", aid)
        out.append(LinkConfig(0, 0, Decimal(1), aid, "demo", bid, "PX1", label, uid, False))
    return out


async def test_after_the_upgrade_bobs_right_password_is_vouched_for_by_alices_oauth_row(
    database: Database, settings: Settings, db_url: str, data_dir: Path
) -> None:
    """Upgrade: every password unproven. alice's row (OAuth and the password) opens the
    session with OAuth; bob's row with the same password is proven by hers and traded."""
    async with running_sim() as sim:
        sim.add_login("px_tv", PW, ["PX1"])
        st = sim_settings(settings, sim)
        a = await add_row(database, st, "alice", PW)
        b = await add_row(database, st, "bob", PW)
        await _connect_oauth(database, st, a)
        reg = BrokerRegistry(database, st)
        try:
            for _ in range(3):  # three reconciliation passes
                await reg.reach(await _links(database.pool, sim.account_id("PX1"), a, b))
            assert reg._failures.get(b) is None, reg._failures.get(b)
            assert await proven(database.pool, "bob-demo")
            r = await Cli(db_url, data_dir, dict(sim.tradovate_env()))(
                "accounts", "sync", "bob-demo"
            )
            assert r.exit_code == 0, r.stderr
            assert PW not in r.stdout + r.stderr
        finally:
            await reg.close()


async def test_a_proven_password_joins_the_session_alice_opened_with_oauth(
    database: Database, settings: Settings
) -> None:
    async with running_sim() as sim:
        sim.add_login("px_tv", PW, ["PX1"])
        st = sim_settings(settings, sim)
        a = await add_row(database, st, "alice", PW)
        b = await add_row(database, st, "bob", PW)
        await database.pool.execute("UPDATE accounts SET password_proven_at = now()")
        await _connect_oauth(database, st, a)  # then alice connects with OAuth
        reg = BrokerRegistry(database, st)
        try:
            links = await _links(database.pool, sim.account_id("PX1"), a, b)
            await reg.reach(links[:1])  # alice's session first: opened with OAuth
            await reg.reach(links)
            assert reg._failures.get(a) is None
            assert reg._failures.get(b) is None, reg._failures.get(b)
            assert reg.broker_for(links[1]) is reg.broker_for(links[0])
        finally:
            await reg.close()


# --- what vouches for a password ------------------------------------------------------------


async def _row(
    pool: asyncpg.Pool, box: SecretBox, name: str, password: str | None, username: str = "vx_tv"
) -> int:
    """A user ``name`` and their row ``name`` naming the login vx_tv (unproven)."""
    uid = await make_user(pool, name)
    sealed = None
    if password is not None:
        sealed = box.seal(password, account_store.password_context("demo", username))
    acct = await account_store.create(
        pool, user_id=uid, label=name, env="demo", username=username, password=sealed
    )
    return acct.id


async def _oauth(pool: asyncpg.Pool, box: SecretBox, aid: int) -> None:
    sealed = box.seal("an-oauth-token", account_store.oauth_context("demo", "vx_tv"))
    await pool.execute(
        "UPDATE accounts SET oauth_token_enc=$1, oauth_key_id=$2, oauth_expires_at=now()"
        " + interval '1 hour', oauth_connected_at=now() WHERE id=$3",
        sealed.ciphertext, sealed.key_id, aid,
    )  # fmt: skip


@pytest.fixture
def box() -> SecretBox:
    return SecretBox([b"k" * 32], "tests.vouch")


async def test_a_proven_row_vouches_for_its_password_and_only_for_it(
    pool: asyncpg.Pool, box: SecretBox
) -> None:
    owner = await _row(pool, box, "owner", PW)
    await pool.execute("UPDATE accounts SET password_proven_at = now() WHERE id = $1", owner)
    same = await _row(pool, box, "same", PW, "VX_TV")  # another spelling of the login
    guess = await _row(pool, box, "guess", "guess-123")
    assert await proofs.vouch_password(pool, box, same)
    assert await proven(pool, "same")
    assert not await proofs.vouch_password(pool, box, guess)
    assert not await proven(pool, "guess")
    assert not await proofs.vouch_password(pool, box, same)  # proven already


async def test_two_unproven_rows_agreeing_prove_nothing(pool: asyncpg.Pool, box: SecretBox) -> None:
    one, two = await _row(pool, box, "m1", "made-up"), await _row(pool, box, "m2", "made-up")
    oauth_only = await _row(pool, box, "alice", None)
    await _oauth(pool, box, oauth_only)  # an OAuth-only row vouches for no password
    for aid in (one, two):
        assert not await proofs.vouch_password(pool, box, aid)
    assert not await proven(pool, "m1")
    assert not await proven(pool, "m2")


async def test_a_password_stored_beside_an_oauth_connection_vouches_for_it(
    pool: asyncpg.Pool, box: SecretBox
) -> None:
    alice = await _row(pool, box, "alice", PW)
    await _oauth(pool, box, alice)  # her password itself unproven: the OAuth proves the row
    bob = await _row(pool, box, "bob", PW)
    guess = await _row(pool, box, "guess", "guess-123")
    assert (await proofs.login_credential(pool, box, bob)).password == PW
    with pytest.raises(InvalidInput, match="connect it with OAuth too") as exc:
        await proofs.login_credential(pool, box, guess)
    assert PW not in str(exc.value)
    assert "guess-123" not in str(exc.value)
    assert await proofs.vouch_password(pool, box, bob)
    assert not await proofs.vouch_password(pool, box, guess)
    assert (await proven(pool, "bob"), await proven(pool, "guess")) == (True, False)


async def test_set_password_keeps_the_proof(pool: asyncpg.Pool, box: SecretBox) -> None:
    alice = await _row(pool, box, "alice", PW)
    await pool.execute("UPDATE accounts SET password_proven_at = now() WHERE id = $1", alice)
    acct = await account_store.get(pool, "alice")
    sealed = box.seal(NEW_PW, account_store.new_password_context(acct))
    await account_store.set_password(pool, acct, sealed)
    assert await proven(pool, "alice"), "a password write cleared the row's proof"


async def test_a_pass_proves_an_attached_row_again_from_the_sessions_token(
    database: Database, settings: Settings
) -> None:
    """A row attached to the login's live session whose proof was not recorded (a failed
    write at connect) is proven on a later pass from the session's token, with no login."""
    async with running_sim() as sim:
        sim.add_login("px_tv", PW, ["PX1"])
        st = sim_settings(settings, sim)
        a = await add_row(database, st, "alice", PW)
        reg = BrokerRegistry(database, st)
        try:
            links = await _links(database.pool, sim.account_id("PX1"), a)
            await reg.reach(links)
            assert await proven(database.pool, "alice-demo")
            await database.pool.execute("UPDATE accounts SET password_proven_at = NULL")
            logins = sim.stats()["access_token_requests"]
            await reg.reach(links)
            assert await proven(database.pool, "alice-demo")
            assert sim.stats()["access_token_requests"] == logins
        finally:
            await reg.close()
