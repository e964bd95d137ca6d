"""``jtrades trader`` through the real Typer app on a real Postgres, and the daemon's loader."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jtrades.engine.risk import TpLeg
from jtrades.store import traders as store
from tests.integration.test_cli_recorder import Cli, audit_actions, seed_account, seed_user, sql


@pytest.fixture
def cli(db_url: str, data_dir: Path) -> Cli:
    alice = seed_user(db_url, "alice")
    bob = seed_user(db_url, "bob")
    carol = seed_user(db_url, "carol", status="pending")
    seed_account(db_url, alice, "alice-acc", ["A1", "A2"])
    seed_account(db_url, bob, "bob-acc", ["B1"])
    seed_account(db_url, carol, "carol-acc", ["C1"])
    c = Cli(db_url, data_dir)
    c.ok("recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--size", "2",
         "--tp", "20:1,40", "--public")  # fmt: skip
    c.ok("recorder", "create", "alice-secret", "--user", "alice", "--symbol", "MES1!")
    return c


def create(cli: Cli, *args: str) -> dict[str, object]:
    t = cli.ok("trader", "create", *args)["trader"]
    assert isinstance(t, dict)
    return t


def test_traders_are_created_disabled_with_all_sub_accounts(cli: Cli) -> None:
    t = create(cli, "--user", "alice", "--recorder", "nq", "--account", "alice-acc")
    assert t["enabled"] is False
    assert [(a["sub_account"], a["multiplier"]) for a in t["accounts"]] == [
        ("A1", "1"),
        ("A2", "1"),
    ]
    assert t["overrides"] == {}
    shown = cli.ok("trader", "show", str(t["id"]))
    assert shown["effective"]["size"] == 2
    assert cli.ok("trader", "enable", str(t["id"]))["trader"]["enabled"] is True
    assert cli.ok("trader", "disable", str(t["id"]))["trader"]["enabled"] is False
    explicit = create(
        cli, "--user", "alice", "--recorder", "nq", "--account", "alice-acc:a2*0.5", "--enabled"
    )
    assert explicit["enabled"] is True
    assert [(a["sub_account"], a["multiplier"]) for a in explicit["accounts"]] == [("A2", "0.5")]
    assert audit_actions(cli.db_url)[-4:] == [
        "traders.create",
        "traders.enable",
        "traders.disable",
        "traders.create",
    ]


def test_linking_another_users_sub_account_is_refused(cli: Cli) -> None:
    line = cli.fails("trader", "create", "--user", "alice", "--recorder", "nq",
                     "--account", "bob-acc")  # fmt: skip
    assert "only use its own user's broker sub-accounts" in line
    line = cli.fails("trader", "create", "--user", "alice", "--recorder", "nq",
                     "--account", "alice-acc:A1", "--account", "bob-acc:B1")  # fmt: skip
    assert "own user's" in line
    assert sql(cli.db_url, "SELECT count(*) FROM traders")[0][0] == 0
    t = create(cli, "--user", "alice", "--recorder", "nq", "--account", "alice-acc:A1")
    assert "own user's" in cli.fails("trader", "edit", str(t["id"]), "--account", "bob-acc")
    assert cli.ok("trader", "show", str(t["id"]))["accounts"][0]["sub_account"] == "A1"


def test_another_users_private_recorder_cannot_be_followed(cli: Cli) -> None:
    line = cli.fails("trader", "create", "--user", "bob", "--recorder", "alice-secret",
                     "--account", "bob-acc")  # fmt: skip
    assert line.endswith("no recorder named 'alice-secret' visible to user 'bob'")
    assert sql(cli.db_url, "SELECT count(*) FROM traders")[0][0] == 0
    create(cli, "--user", "alice", "--recorder", "alice-secret", "--account", "alice-acc")
    create(cli, "--user", "bob", "--recorder", "nq", "--account", "bob-acc")


def test_unapproved_users_cannot_have_an_enabled_trader(cli: Cli) -> None:
    line = cli.fails("trader", "create", "--user", "carol", "--recorder", "nq",
                     "--account", "carol-acc", "--enabled")  # fmt: skip
    assert "not approved" in line
    t = create(cli, "--user", "carol", "--recorder", "nq", "--account", "carol-acc")
    assert "not approved" in cli.fails("trader", "enable", str(t["id"]))
    assert cli.ok("trader", "show", str(t["id"]))["enabled"] is False


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alice-acc*0", "multiplier"),
        ("alice-acc*-1", "multiplier must be > 0"),
        ("alice-acc*1000.01", "≤ 1000"),
        ("alice-acc*abc", "not a number"),
        ("alice-acc:ZZ", "no sub-account 'ZZ'"),
        ("nobody-acc", "no account labelled"),
        ("bad label", "LABEL[:SUBACCOUNT][*MULT]"),
    ],
)
def test_account_spec_errors(cli: Cli, spec: str, message: str) -> None:
    line = cli.fails("trader", "create", "--user", "alice", "--recorder", "nq", "--account", spec)
    assert message in line
    assert sql(cli.db_url, "SELECT count(*) FROM traders")[0][0] == 0


def test_multiplier_bounds_accept_the_edges(cli: Cli) -> None:
    t = create(cli, "--user", "alice", "--recorder", "nq",
               "--account", "alice-acc:A1*1000", "--account", "alice-acc:A2*0.001")  # fmt: skip
    assert sorted(a["multiplier"] for a in t["accounts"]) == ["0.001", "1000"]
    line = cli.fails("trader", "create", "--user", "alice", "--recorder", "nq",
                     "--account", "alice-acc", "--account", "alice-acc:A1")  # fmt: skip
    assert "named twice" in line
    assert "--account" in cli.fails("trader", "create", "--user", "alice", "--recorder", "nq")


def test_a_sub_account_named_in_another_case_is_one_or_refused(cli: Cli) -> None:
    """Sub-account names are unique per login as written, so 'sim1' and 'SIM1' are two:
    naming one matched both case-insensitively and the trader traded one nobody named."""
    alice = sql(cli.db_url, "SELECT id FROM users WHERE name = 'alice'")[0][0]
    seed_account(cli.db_url, alice, "ap", ["sim1", "SIM1", "Other"])
    for typed, linked in (("SIM1", "SIM1"), ("sim1", "sim1"), ("other", "Other")):
        t = create(cli, "--user", "alice", "--recorder", "nq", "--account", f"ap:{typed}")
        assert [a["sub_account"] for a in t["accounts"]] == [linked], typed
    line = cli.fails("trader", "create", "--user", "alice", "--recorder", "nq",
                     "--account", "ap:Sim1")  # fmt: skip
    assert "'SIM1'" in line
    assert "'sim1'" in line
    assert sql(cli.db_url, "SELECT count(*) FROM traders")[0][0] == 3


def test_overrides_inherit_validate_and_clear(cli: Cli) -> None:
    t = create(cli, "--user", "alice", "--recorder", "nq", "--account", "alice-acc",
               "--size", "4", "--direction", "long")  # fmt: skip
    tid = str(t["id"])
    assert t["overrides"] == {"size": 4, "direction": "long"}
    shown = cli.ok("trader", "show", tid)
    assert shown["effective"]["size"] == 4
    assert shown["effective"]["tp"] == [{"target": "20", "qty": 1}, {"target": "40"}]
    # the merged settings are validated: a ladder bigger than the override size is refused
    assert "more than --size 4" in cli.fails("trader", "edit", tid, "--tp", "10:3,20:2")
    # an override cannot be "none" (NULL means inherit); --clear is the way back
    assert "--clear max-daily-loss" in cli.fails("trader", "edit", tid, "--max-daily-loss", "none")
    edited = cli.ok("trader", "edit", tid, "--clear", "size", "--window", "08:30-15:00")["trader"]
    assert edited["overrides"] == {"direction": "long", "windows": ["08:30-15:00"]}
    assert cli.ok("trader", "show", tid)["effective"]["size"] == 2
    assert "not a risk option" in cli.fails("trader", "edit", tid, "--clear", "colour")
    assert cli.ok("trader", "edit", tid, "--clear", "all")["trader"]["overrides"] == {}
    assert "nothing to change" in cli.fails("trader", "edit", tid)
    # a bad override on create writes nothing
    assert "--size" in cli.fails("trader", "create", "--user", "alice", "--recorder", "nq",
                                 "--account", "alice-acc", "--size", "0")  # fmt: skip
    assert sql(cli.db_url, "SELECT count(*) FROM traders")[0][0] == 1


def test_edit_replaces_accounts(cli: Cli) -> None:
    t = create(cli, "--user", "alice", "--recorder", "nq", "--account", "alice-acc")
    e = cli.ok("trader", "edit", str(t["id"]), "--account", "alice-acc:A2*3")["trader"]
    assert [(a["sub_account"], a["multiplier"]) for a in e["accounts"]] == [("A2", "3")]


def test_list_show_delete(cli: Cli) -> None:
    a = create(cli, "--user", "alice", "--recorder", "nq", "--account", "alice-acc")
    b = create(cli, "--user", "bob", "--recorder", "nq", "--account", "bob-acc")
    assert [t["id"] for t in cli.ok("trader", "list")] == [a["id"], b["id"]]
    assert [t["id"] for t in cli.ok("trader", "list", "--user", "bob")] == [b["id"]]
    table = cli("trader", "show", str(a["id"]))
    assert table.exit_code == 0
    assert "alice-acc:A1" in table.stdout
    assert cli.ok("trader", "delete", str(a["id"])) == {"ok": True, "id": a["id"]}
    assert "no trader with id" in cli.fails("trader", "show", str(a["id"]))
    assert "no trader with id" in cli.fails("trader", "enable", "999")
    assert audit_actions(cli.db_url)[-1] == "traders.delete"


def test_help_has_an_example(cli: Cli) -> None:
    for cmd in ("create", "list", "show", "enable", "disable", "edit", "delete"):
        r = cli("trader", cmd, "--help")
        assert r.exit_code == 0
        assert "Example: jtrades trader" in r.stdout, cmd


async def test_load_active_traders(cli: Cli, pool: asyncpg.Pool) -> None:
    from tests.cli import ainvoke

    async def ok(*args: str) -> Any:
        r = await ainvoke([*args, "--json"], db_url=cli.db_url, data_dir=cli.data_dir)
        assert r.exit_code == 0, r.stderr
        return r.json()

    rid = (await pool.fetchrow("SELECT id FROM recorders WHERE name = 'nq'"))["id"]
    assert await store.load_active_traders(pool, rid) == []  # created disabled
    t1 = (await ok("trader", "create", "--user", "alice", "--recorder", "nq", "--account",
                   "alice-acc:A1*2", "--size", "3", "--enabled"))["trader"]  # fmt: skip
    await ok("trader", "create", "--user", "bob", "--recorder", "nq", "--account", "bob-acc")
    t3 = (await ok("trader", "create", "--user", "bob", "--recorder", "nq", "--account",
                   "bob-acc", "--enabled"))["trader"]  # fmt: skip
    await pool.execute("UPDATE sub_accounts SET halted = true WHERE name = 'B1'")
    active = await store.load_active_traders(pool, rid)
    assert [a.trader_id for a in active] == [t1["id"], t3["id"]]
    first = active[0]
    assert first.settings.size == 3  # the override
    assert first.settings.tp == (TpLeg(Decimal(20), 1), TpLeg(Decimal(40)))  # inherited
    assert len(first.links) == 1
    link = first.links[0]
    assert (link.name, link.multiplier, link.env, link.halted) == ("A1", Decimal(2), "paper", False)
    assert link.account_label == "alice-acc"
    assert active[1].links[0].halted is True  # reported, not filtered
    # leaving 'approved' switches the user's traders off (DB trigger): gone from the list
    await pool.execute("UPDATE users SET status = 'disabled' WHERE name = 'bob'")
    assert [a.trader_id for a in await store.load_active_traders(pool, rid)] == [t1["id"]]
    # a recorder whose owner is not approved never trades, whoever follows it
    await pool.execute("UPDATE users SET status = 'approved' WHERE name = 'bob'")
    await pool.execute("UPDATE traders SET enabled = true WHERE id = $1", t3["id"])
    await pool.execute("UPDATE users SET status = 'pending' WHERE name = 'alice'")
    assert await store.load_active_traders(pool, rid) == []
    await pool.execute("UPDATE users SET status = 'approved' WHERE name = 'alice'")
    # alice's own trader was switched off when she left 'approved'; bob's still follows
    assert [a.trader_id for a in await store.load_active_traders(pool, rid)] == [t3["id"]]
    # an inactive sub-account is not tradable
    await pool.execute("UPDATE sub_accounts SET active = false WHERE name = 'B1'")
    assert await store.load_active_traders(pool, rid) == []


async def test_following_waits_for_a_private_switch_in_progress(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    """A trader create reads the recorder under a share lock: one racing with `private on`
    waits for it, then sees the recorder private (else a private recorder could gain a follower)."""
    from jtrades.errors import NotFound
    from jtrades.store import recorders as recorder_store

    async def follow() -> None:
        async with pool.acquire() as c2, c2.transaction():
            await store.visible_recorder(c2, "bob", "nq")

    async with pool.acquire() as c1:
        tx = c1.transaction()
        await tx.start()
        rec = await recorder_store.lock(c1, "nq")
        task = asyncio.create_task(follow())
        for _ in range(2000):  # until the follower waits on the recorder's row lock
            if await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ):
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the follower never waited for the private switch")
        await recorder_store.set_private(c1, rec, True, actor="test")
        await tx.commit()
    with pytest.raises(NotFound, match="visible to user 'bob'"):
        await task
