"""Input at the edges, as a user meets it (real Postgres, the real Typer app).

1. A name, label or email ending in a newline: Python's ``$`` matched before it, the schema's
   CHECK (Postgres' ``$``) did not, so the refusal was the driver's "a value is out of range
   (users_name_check)" instead of the naming rule.
2. ``accounts add … --env paper --username X`` stored a username no paper order uses, where a
   password is refused.
3. ``--size 2147483647`` and a ×2 follower: every entry was 4,294,967,294 contracts, refused
   only by the database, as "the database could not record the orders". The CLI now refuses
   a size, or a size × multiplier, past the contracts an order may hold; an entry sized past
   it (an alert's own quantity × multiplier, or a row made before) is left out for that
   account with the reason, not failed as a storage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jtrades.db import Database
from tests.cli import Result, ainvoke, invoke
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
)
from tests.integration.test_engine import engine_factory as engine_factory  # the fixture

LIMIT = "more than the 100000"


def run(args: list[str], db_url: str, data_dir: Path) -> Result:
    return invoke(args, db_url=db_url, data_dir=data_dir)


def ok(args: list[str], db_url: str, data_dir: Path) -> None:
    r = run(args, db_url, data_dir)
    assert r.exit_code == 0, (args, r.stderr)


def refused(args: list[str], db_url: str, data_dir: Path) -> str:
    r = run(args, db_url, data_dir)
    assert r.exit_code == 1, (args, r.stdout, r.stderr)
    return r.error_line()


def count(db_url: str, data_dir: Path, what: str) -> int:
    r = run([what, "list", "--json"], db_url, data_dir)
    assert r.exit_code == 0, r.stderr
    return len(r.json())


@pytest.fixture
def alice(db_url: str, data_dir: Path) -> None:
    """An approved user with a paper login ``ap`` (its one sub-account is ``ap`` too)."""
    for step in (
        ["users", "register", "alice", "--email", "alice@x.io"],
        ["users", "approve", "alice"],
        ["accounts", "add", "ap", "--user", "alice", "--env", "paper"],
    ):
        ok(step, db_url, data_dir)


# --- 1. names ending in a newline --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "rule"),
    [
        (["users", "register", "bob\n", "--email", "bob@x.io"], "letters, digits"),
        (["users", "register", "carol", "--email", "carol@x.io\n"], "not an email address"),
        (["accounts", "add", "ap2\n", "--user", "alice", "--env", "paper"], "letters, digits"),
        (["recorder", "create", "r1\n", "--user", "alice", "--symbol", "MNQ1!"], "letters, digits"),
    ],
)
def test_a_name_ending_in_a_newline_is_refused_by_the_naming_rule(
    alice: None, db_url: str, data_dir: Path, args: list[str], rule: str
) -> None:
    line = refused(args, db_url, data_dir)
    assert rule in line, line
    assert "out of range" not in line, line
    assert (count(db_url, data_dir, "users"), count(db_url, data_dir, "accounts")) == (1, 1)
    assert count(db_url, data_dir, "recorder") == 0


# --- 2. a paper login and a username --------------------------------------------------------------


async def test_a_paper_login_refuses_a_username_and_stores_nothing(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    first = await ainvoke(
        ["users", "register", "alice", "--email", "alice@x.io"], db_url=db_url, data_dir=data_dir
    )
    assert first.exit_code == 0, first.stderr
    r = await ainvoke(
        ["accounts", "add", "pp", "--user", "alice", "--env", "paper", "--username", "alice_tv"],
        db_url=db_url, data_dir=data_dir,
    )  # fmt: skip
    assert r.exit_code == 1, r.stderr
    assert r.error_line() == (
        "error: paper accounts need no --username (nothing is sent to a broker)"
    )
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0


# --- 3. sizes past what an order may hold -------------------------------------------------------


@pytest.mark.parametrize("option", ["--size", "--add-size"])
def test_a_recorder_size_past_the_order_limit_is_refused(
    alice: None, db_url: str, data_dir: Path, option: str
) -> None:
    create = ["recorder", "create", "big", "--user", "alice", "--symbol", "MNQ1!"]
    line = refused([*create, option, "2147483647"], db_url, data_dir)
    assert line == f"error: {option}: '2147483647' is {LIMIT} contracts an order may hold"
    assert count(db_url, data_dir, "recorder") == 0
    ok([*create, option, "100000"], db_url, data_dir)
    line = refused(["recorder", "edit", "big", option, "100001"], db_url, data_dir)
    assert LIMIT in line


def test_a_multiplier_whose_entries_no_order_can_hold_is_refused(
    alice: None, db_url: str, data_dir: Path
) -> None:
    ok(["recorder", "create", "big", "--user", "alice", "--symbol", "MNQ1!", "--size", "60000"],
       db_url, data_dir)  # fmt: skip
    trader = ["trader", "create", "--user", "alice", "--recorder", "big", "--enabled"]
    line = refused([*trader, "--account", "ap*2"], db_url, data_dir)
    assert line == (
        f"error: --account ap: --size 60000 × 2 makes an entry of 120000 contracts, {LIMIT}"
        " an order may hold"
    )
    assert count(db_url, data_dir, "trader") == 0
    # --max-contracts caps every entry: those orders fit
    ok([*trader, "--account", "ap*2", "--max-contracts", "50"], db_url, data_dir)


def test_an_edit_making_a_followers_entries_too_large_is_refused_and_changes_nothing(
    alice: None, db_url: str, data_dir: Path
) -> None:
    ok(["recorder", "create", "big", "--user", "alice", "--symbol", "MNQ1!", "--size", "40000"],
       db_url, data_dir)  # fmt: skip
    ok(["trader", "create", "--user", "alice", "--recorder", "big", "--account", "ap*2"],
       db_url, data_dir)  # fmt: skip
    line = refused(["recorder", "edit", "big", "--size", "60000"], db_url, data_dir)
    assert line.startswith("error: trader 1 (alice) would be invalid: ap:ap: --size 60000 × 2")
    assert LIMIT in refused(["trader", "edit", "1", "--size", "60000"], db_url, data_dir)
    assert LIMIT in refused(["trader", "edit", "1", "--account", "ap*3"], db_url, data_dir)
    rec = run(["recorder", "show", "big", "--json"], db_url, data_dir).json()
    trader = run(["trader", "show", "1", "--json"], db_url, data_dir).json()
    assert rec["settings"]["size"] == 40000
    assert trader["overrides"] == {}
    assert [float(a["multiplier"]) for a in trader["accounts"]] == [2]


async def _intents(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM order_intents"))


async def test_an_entry_no_order_can_hold_is_left_out_with_why_not_as_a_storage_failure(
    database: Database, engine_factory: Any
) -> None:
    """A recorder stored before the CLI refused such a size: each entry is 4,294,967,294
    contracts. Failed as "the database could not record the orders"; now planned as nothing,
    the reason on the signal."""
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "big", size=2_147_483_647)
    (sub,) = await make_paper_account(pool, u, "ap")
    await make_trader(pool, u, rec, [(sub, 2)])
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy())

    assert out.filter != "storage", (out.verdict, out.filter, out.reason)
    assert "size 4294967294 exceeds the 100000 contracts an order may hold" in str(out), out
    assert (out.orders, await _intents(pool)) == (0, 0)


async def test_an_alerts_quantity_times_a_multiplier_past_the_limit_skips_that_account_only(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "rec")
    small, large = await make_paper_account(pool, u, "ap", subs=2)
    await make_trader(pool, u, rec, [(small, 1), (large, 2)])
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy(quantity=60_000))

    assert (out.verdict, out.orders) == ("accepted", 1), (out.filter, out.reason)
    assert await net_pos(engine, pool, small) == 60_000
    assert await net_pos(engine, pool, large) == 0
    assert "size 120000 exceeds the 100000 contracts an order may hold" in str(out.detail), out


async def test_an_add_no_order_can_hold_is_left_out_on_that_account_only(
    database: Database, engine_factory: Any
) -> None:
    """The same limit on a DCA add (``resize.plan_add``): an add alert for 60000 on a ×2
    follower is not sent there, and says why; the ×1 follower adds."""
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "rec", same_direction="add")
    small, large = await make_paper_account(pool, u, "ap", subs=2)
    await make_trader(pool, u, rec, [(small, 1), (large, 2)])
    engine = await engine_factory()
    await send(engine, pool, rec, buy(quantity=1))
    assert (await net_pos(engine, pool, small), await net_pos(engine, pool, large)) == (1, 2)

    out = await send(engine, pool, rec, buy(quantity=60_000))

    assert await net_pos(engine, pool, small) == 60_001
    assert await net_pos(engine, pool, large) == 2
    assert "size 120000 exceeds the 100000 contracts an order may hold" in str(out.detail), out
