"""``accounts add-sub`` of a demo/live login checks the id against what the login's last sync
stored: a hand-typed id of another login's account (a typo, or on purpose; Tradovate ids are
small sequential integers) made the engine take that account for the login's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from tests.integration.test_cli_accounts import PASSWORD, Cli
from tests.simutil import SimHandle, running_sim


@pytest.fixture
async def cli(db_url: str, data_dir: Path) -> Cli:
    c = Cli(db_url, data_dir, {})
    await c.ok("users", "register", "alice", "--email", "alice@example.com")
    await c.ok("users", "register", "bob", "--email", "bob@example.com")
    return c


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


async def _add(cli: Cli, label: str, user: str, username: str) -> None:
    await cli.ok(
        "accounts", "add", label, "--user", user, "--env", "demo",
        "--username", username, "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip


async def _subs(pool: asyncpg.Pool) -> list[tuple[str, int, str]]:
    rows = await pool.fetch(
        "SELECT a.label, s.broker_account_id, s.name FROM sub_accounts s"
        " JOIN accounts a ON a.id = s.account_id ORDER BY s.id"
    )
    return [(r["label"], r["broker_account_id"], r["name"]) for r in rows]


async def test_an_id_the_synced_login_does_not_list_is_refused(
    cli: Cli, pool: asyncpg.Pool, sim: SimHandle
) -> None:
    sim.add_login("alice_tv", PASSWORD, ["DEMO-A1"])
    sim.add_login("mal_tv", PASSWORD, ["DEMO-M1"])
    cli.env = dict(sim.tradovate_env())
    await _add(cli, "alice-demo", "alice", "alice_tv")
    await _add(cli, "mallory-demo", "bob", "mal_tv")
    await cli.ok("accounts", "sync", "mallory-demo")
    before = await _subs(pool)
    audits = await pool.fetchval("SELECT count(*) FROM audit_log")

    alices = str(sim.account_id("DEMO-A1"))
    r = await cli("accounts", "add-sub", "mallory-demo", "--id", alices, "--name", "TYPO")
    assert r.exit_code == 1
    line = r.error_line()
    assert alices in line, line
    assert "mal_tv" in line, line
    assert "accounts sync mallory-demo" in line, line
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert await _subs(pool) == before  # nothing written
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == audits


async def test_a_login_synced_through_another_users_row_vouches_for_its_ids(
    cli: Cli, pool: asyncpg.Pool, sim: SimHandle
) -> None:
    """Two users add one login: either row's sync tells what the login lists (in any case
    of the username) to a row whose password Tradovate accepted. An id put on a synced row by
    hand, after its sync, vouches for nothing."""
    sim.add_login("px_tv", PASSWORD, ["PX1", "PX2"])
    cli.env = dict(sim.tradovate_env())
    await _add(cli, "alice-demo", "alice", "px_tv")
    await _add(cli, "bob-demo", "bob", "PX_TV")
    await cli.ok("accounts", "sync", "alice-demo")
    # bob's password proven (the daemon's session with it opened), his row never synced
    await pool.execute("UPDATE accounts SET password_proven_at = now() WHERE label = 'bob-demo'")
    px2 = sim.account_id("PX2")
    out = await cli.ok("accounts", "add-sub", "bob-demo", "--id", str(px2), "--name", "PX2")
    assert out["verified"] is True
    r = await cli("accounts", "add-sub", "bob-demo", "--id", str(px2 + 1000), "--name", "Z")
    assert r.exit_code == 1
    assert "px_tv" in r.error_line().lower()

    # what an unchecked add-sub stored on the synced row before: not a listed id
    alice = await pool.fetchval("SELECT id FROM accounts WHERE label = 'alice-demo'")
    await pool.execute(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name) VALUES ($1, 424242, 'X')",
        alice,
    )
    r = await cli("accounts", "add-sub", "bob-demo", "--id", "424242", "--name", "X")
    assert r.exit_code == 1, r.stderr
    assert ("bob-demo", 424242, "X") not in await _subs(pool)


async def test_a_never_synced_login_takes_the_id_and_says_it_is_unverified(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    await _add(cli, "alice-demo", "alice", "alice_tv")
    r = await cli("accounts", "add-sub", "alice-demo", "--id", "123456", "--name", "DEMO123456")
    assert r.exit_code == 0, r.stderr
    assert "added sub-account DEMO123456 (123456) to alice-demo" in r.stderr
    assert "unverified" in r.stderr
    out = await cli.ok("accounts", "add-sub", "alice-demo", "--id", "123457", "--name", "D7")
    assert out["verified"] is False
    await cli.ok("accounts", "add", "bob-paper", "--user", "bob", "--env", "paper")
    r = await cli("accounts", "add-sub", "bob-paper", "--id", "7", "--name", "P7")
    assert r.exit_code == 0, r.stderr
    assert "unverified" not in r.stderr
    assert len(await _subs(pool)) == 4  # alice's two, bob-paper's own and P7
