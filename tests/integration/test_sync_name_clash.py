"""`accounts add-sub` on a never-synced login takes any id, "unverified (sync it to check)".
A sub-account typed with the right name but a wrong id makes every later `accounts sync`
fail: the broker's row (real id, same name) hits UNIQUE (account_id, name), and there is no
command to remove the typed row. Same for a broker account that reappears under a new id
with the name of one the sync deactivated."""

from __future__ import annotations

import asyncpg

from tests.integration.test_cli_accounts import PASSWORD, Cli
from tests.integration.test_cli_accounts import cli as cli
from tests.simutil import running_sim


async def test_sync_after_a_mistyped_add_sub_id(cli: Cli, pool: asyncpg.Pool) -> None:
    async with running_sim() as sim:
        sim.add_login("alice_tv", PASSWORD, ["DEMO-A1", "DEMO-A2"])
        cli.env = dict(sim.tradovate_env())
        await cli.ok(
            "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
            "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
        )  # fmt: skip
        real = sim.account_id("DEMO-A1")
        typo = real + 1000
        out = await cli.ok(
            "accounts", "add-sub", "alice-demo", "--id", str(typo), "--name", "DEMO-A1"
        )
        assert out["verified"] is False  # "unverified: ... run accounts sync to check it"
        r = await cli("accounts", "sync", "alice-demo", "--json")
        assert r.exit_code == 0, (
            f"sync must check/correct the typed row, not fail: {r.stderr.strip()}"
        )
        active = await pool.fetch(
            "SELECT broker_account_id, name FROM sub_accounts WHERE active ORDER BY name"
        )
        assert [(x["name"], x["broker_account_id"]) for x in active] == [
            ("DEMO-A1", real),
            ("DEMO-A2", sim.account_id("DEMO-A2")),
        ]


async def test_sync_of_swapped_names_and_an_account_re_created_under_a_new_id(
    pool: asyncpg.Pool,
) -> None:
    from jtrades.store.accounts import store_synced_subs
    from tests.integration.test_engine import make_user

    u = await make_user(pool, "swap")
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username)"
        " VALUES ($1, 'swap-demo', 'demo', 'swap_tv') RETURNING id",
        u,
    )

    async def sync(found: list[tuple[int, str]]) -> list[tuple[int, str, bool]]:
        async with pool.acquire() as c, c.transaction():
            await store_synced_subs(c, aid, found)
        rows = await pool.fetch(
            "SELECT broker_account_id, name, active FROM sub_accounts WHERE account_id = $1"
            " ORDER BY broker_account_id",
            aid,
        )
        return [(r["broker_account_id"], r["name"], r["active"]) for r in rows]

    assert await sync([(1, "A"), (2, "B")]) == [(1, "A", True), (2, "B", True)]
    # the broker swapped the two names
    assert await sync([(1, "B"), (2, "A")]) == [(1, "B", True), (2, "A", True)]
    # "A" closed and opened again under a new id; "B" gone
    assert await sync([(3, "A")]) == [(1, "B", False), (2, "A (id 2)", False), (3, "A", True)]
