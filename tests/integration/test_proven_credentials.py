"""Found by review: a stored password made its row "hold a credential" of its Tradovate login
whatever the password was. `accounts set-password` stores any password (with a warning), so
mallory's row naming alice's login with a *guessed* password was keyed as alice's account at
the broker (her `halt --account` halted alice's link, her `--flatten` liquidated alice's
position through alice's session), `accounts add-sub` verified alice's account ids for it, and
``login_credential`` then refused alice's own login because the passwords differed.

A password now proves its login only once Tradovate accepted it (``password_proven_at``: set
when a session or `accounts sync` with it succeeded, or when a proven row of the login holds
the same one; kept by later password writes). An unproven row is keyed by its own row, vouches
for nothing, and is compared with nothing."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.security import load_secret_box
from jtrades.store import login_proofs as proofs
from tests.integration.test_cli_accounts import PASSWORD, Cli
from tests.integration.test_engine import wait_for
from tests.integration.test_flatten import flatten_flag, request_flatten
from tests.integration.test_typed_username_isolation import _world
from tests.login_rows import hold_password
from tests.simutil import SimHandle, running_sim


@pytest.fixture
async def cli(db_url: str, data_dir: Path) -> Cli:
    c = Cli(db_url, data_dir, {})
    await c.ok("users", "register", "alice", "--email", "alice@example.com")
    await c.ok("users", "register", "mallory", "--email", "mallory@example.com")
    return c


@pytest.fixture
async def sim():
    async with running_sim() as handle:
        yield handle


async def _proven(pool: asyncpg.Pool, label: str) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT password_proven_at IS NOT NULL FROM accounts WHERE label = $1", label
        )
    )


async def _mallory_guesses(cli: Cli, sim: SimHandle) -> None:
    """alice adds and syncs her login (her password proven); mallory, who knows the login's
    name but not its password, adds a row naming it (any case) and sets a guessed password."""
    sim.add_login("alice_tv", PASSWORD, ["DEMO-A1", "DEMO-A2"])
    cli.env = dict(sim.tradovate_env())
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    await cli.ok("accounts", "sync", "alice-demo")
    await cli.ok(
        "accounts", "add", "mallory-demo", "--user", "mallory", "--env", "demo",
        "--username", "ALICE_TV",
    )  # fmt: skip
    r = await cli(
        "accounts", "set-password", "mallory-demo", "--password-stdin", input="guess-123\n"
    )
    assert r.exit_code == 0, r.stderr  # stored, with a warning


async def test_a_sync_proves_the_password_and_set_password_keeps_the_proof(
    cli: Cli, sim: SimHandle, pool: asyncpg.Pool
) -> None:
    """The proof is the row's: a later password write keeps it (cleared, the rows of a shared
    login changed while the daemon ran were never proven again: test_proven_credentials_live)."""
    sim.add_login("alice_tv", PASSWORD, ["DEMO-A1"])
    cli.env = dict(sim.tradovate_env())
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    assert not await _proven(pool, "alice-demo")  # stored, not tried yet
    await cli.ok("accounts", "sync", "alice-demo")
    assert await _proven(pool, "alice-demo")
    await cli.ok("accounts", "set-password", "alice-demo", "--password-stdin",
                 input="a-new-one-456\n")  # fmt: skip
    assert await _proven(pool, "alice-demo"), "a password write cleared the row's proof"


async def test_add_and_set_password_are_proven_by_a_proven_row_holding_the_same(
    cli: Cli, sim: SimHandle, pool: asyncpg.Pool
) -> None:
    """alice's row is proven (synced); a row of the login stored with her password is proven
    at once (no login), one with a guess is not."""
    await _mallory_guesses(cli, sim)
    assert not await _proven(pool, "mallory-demo")
    logins = sim.stats()["access_token_requests"]
    await cli.ok(
        "accounts", "add", "alice-demo2", "--user", "alice", "--env", "demo",
        "--username", "ALICE_TV", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    assert await _proven(pool, "alice-demo2")
    await cli.ok("accounts", "set-password", "mallory-demo", "--password-stdin",
                 input=PASSWORD + "\n")  # fmt: skip
    assert await _proven(pool, "mallory-demo")
    assert sim.stats()["access_token_requests"] == logins


async def test_a_failed_sync_proves_nothing(cli: Cli, sim: SimHandle, pool: asyncpg.Pool) -> None:
    sim.add_login("alice_tv", PASSWORD, ["DEMO-A1"])
    cli.env = dict(sim.tradovate_env())
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input="not-the-password\n",
    )  # fmt: skip
    r = await cli("accounts", "sync", "alice-demo")
    assert r.exit_code != 0
    assert not await _proven(pool, "alice-demo")


async def test_set_password_with_a_guess_gets_alices_account_id_verified(
    cli: Cli, sim: SimHandle
) -> None:
    await _mallory_guesses(cli, sim)
    alices = str(sim.account_id("DEMO-A1"))
    r = await cli("accounts", "add-sub", "mallory-demo", "--id", alices, "--name", "A1", "--json")
    out = r.json() if r.exit_code == 0 else {}
    assert out.get("verified") is not True, (
        "a row holding only a made-up password was handed alice's account id as verified"
        f" (alice's sub-account now keyed as mallory's too): {out}"
    )


async def test_set_password_with_a_guess_breaks_alices_own_login(
    cli: Cli, sim: SimHandle, pool: asyncpg.Pool, settings: Settings
) -> None:
    """`accounts add` refuses a password differing from a proven one; `add` without a
    password, then `set-password` stored one anyway, and made ``login_credential`` refuse
    alice's own login (after the next restart: no session). Now mallory's is the refused one."""
    await _mallory_guesses(cli, sim)
    box = load_secret_box(settings, create=False)
    aid = int(await pool.fetchval("SELECT id FROM accounts WHERE label = 'alice-demo'"))
    refusal = await proofs.daemon_refusal(pool, box, aid)
    assert refusal is None, (
        f"another user's set-password made the daemon refuse alice's own login: {refusal}"
    )
    mid = int(await pool.fetchval("SELECT id FROM accounts WHERE label = 'mallory-demo'"))
    refusal = await proofs.daemon_refusal(pool, box, mid)
    assert refusal is not None
    assert "is not the one alice-demo holds" in refusal
    assert PASSWORD not in refusal
    assert "guess-123" not in refusal


async def test_an_unproven_password_does_not_block_a_new_row_of_the_owner(
    cli: Cli, sim: SimHandle
) -> None:
    """`accounts add` with the login's real password is not refused because mallory's
    unproven row holds another (only a proven password is compared with)."""
    await _mallory_guesses(cli, sim)
    out = await cli.ok(
        "accounts", "add", "alice-demo2", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    assert out["usable"] is True, out


async def test_flatten_of_a_row_holding_a_guessed_password_liquidates_alices_account(
    database: Database, settings: Settings
) -> None:
    async with _world(database, settings) as (engine, w):
        # mallory-demo (username ALICE_TV, sub-account with AL1's id) now holds a password:
        # a wrong one, as `accounts set-password` lets her store (never proven)
        await hold_password(database.pool, w["m_aid"], "guess-123", proven=False)
        await engine.config.refresh()
        await request_flatten(engine, database.pool, account="mallory-demo")

        async def passed() -> bool:
            flag = await flatten_flag(database.pool)
            return "done_at" in flag or bool(flag.get("progress", {}).get("left"))

        await wait_for(passed, "a pass of mallory's flatten", 15)
        net = sum(p.net_pos for p in w["a_broker"].positions(w["al1"]))
        liq = await database.pool.fetch(
            "SELECT cl_ord_id, sub_account_id, state FROM order_intents WHERE kind='liquidate'"
        )
        assert net == 1, (
            "mallory's `halt --account mallory-demo --flatten` liquidated alice's AL1 through"
            f" alice's session: {[dict(r) for r in liq]}"
        )
        assert liq == [], "a liquidation was written through another row's session"


async def test_halt_of_a_row_holding_a_guessed_password_stops_alices_entries(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with _world(database, settings) as (engine, w):
        await hold_password(pool, w["m_aid"], "guess-123", proven=False)
        await pool.execute("UPDATE accounts SET halted = true WHERE label = 'mallory-demo'")
        await engine.config.refresh()
        assert engine.config.snapshot.subs[w["typo"]].halted
        assert engine.config.snapshot.links_by_sub[w["a_sub"]].halted is False, (
            "alice's link is halted by mallory's `halt --account mallory-demo`"
        )
        assert not engine.config.snapshot.subs[w["typo"]].has_credential
