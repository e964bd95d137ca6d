"""What ``halt --flatten`` and ``resume --account`` tell the operator about what still
happens: that nothing closes without a running daemon, and that a login resumed under the
global kill switch still has its entries refused."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from jtrades.engine.config_cache import build_snapshot
from jtrades.store import status as status_store
from jtrades.store import trading as trading_store
from tests.cli import ainvoke, invoke
from tests.integration.test_engine import make_recorder, make_trader, make_user
from tests.login_rows import hold_password


def _ok(r: object) -> str:
    assert getattr(r, "exit_code", 1) == 0, getattr(r, "stderr", r)
    return f"{r.stdout}{r.stderr}"  # type: ignore[attr-defined]


def test_halt_flatten_without_a_daemon_says_nothing_closes_until_it_starts(
    db_url: str, data_dir: Path
) -> None:
    """It said "the daemon closes these positions" with no daemon running: nothing was closing.
    The request is queued all the same (the daemon carries it out when it starts), so the
    command succeeds, and says so unmistakably."""
    out = _ok(invoke(["halt", "--flatten"], db_url=db_url, data_dir=data_dir))
    assert "the daemon closes these positions" not in out
    assert "daemon not running: nothing is closed until `jtrades serve` starts" in out
    s = invoke(["status", "--json"], db_url=db_url, data_dir=data_dir).json()
    assert s["daemon"]["alive"] is False
    (request,) = s["flattens"]
    assert request["state"] == "pending"  # still queued for the daemon

    r = invoke(["halt", "--flatten", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0
    assert r.json()["daemon_alive"] is False
    assert r.json()["flatten_pending_already"] is True


async def test_halt_flatten_with_a_daemon_running_says_it_closes_them(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    detail = {"state": "running", "ready": True}
    await status_store.heartbeat(pool, pid=os.getpid(), started_at=datetime.now(UTC), detail=detail)
    r = await ainvoke(["halt", "--flatten"], db_url=db_url, data_dir=data_dir)
    out = _ok(r)
    assert "the daemon closes these positions" in out
    assert "not running" not in out


async def test_resume_of_a_login_under_the_global_switch_says_its_entries_stay_refused(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """It said only "resumed: account:X" while the global switch still refused every entry."""
    u = await pool.fetchval(
        "INSERT INTO users (name, email, password_hash, status) "
        "VALUES ('alice', 'a@example.com', 'x', 'approved') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, 'alice-paper', 'paper')", u
    )
    _ok(await ainvoke(["halt"], db_url=db_url, data_dir=data_dir))
    _ok(await ainvoke(["halt", "--account", "alice-paper"], db_url=db_url, data_dir=data_dir))
    r = await ainvoke(["resume", "--account", "alice-paper"], db_url=db_url, data_dir=data_dir)
    assert "resumed: account:alice-paper" in _ok(r)
    assert "the global kill switch is still on: entries stay refused (`jtrades resume`)" in r.stderr
    r = await ainvoke(
        ["resume", "--account", "alice-paper", "--json"], db_url=db_url, data_dir=data_dir
    )
    assert r.json()["global_halted"] is True

    _ok(await ainvoke(["resume"], db_url=db_url, data_dir=data_dir))
    r = await ainvoke(["resume", "--account", "alice-paper"], db_url=db_url, data_dir=data_dir)
    assert "global kill switch" not in _ok(r)


async def test_resume_of_one_row_of_a_halted_shared_account_says_its_entries_stay_refused(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    """alice and bob each added the Tradovate login px_tv (account PX1). alice's halt stops
    PX1 for both rows (the engine's snapshot). bob's `resume --account bob-demo` lifts his
    row's switch only: it said "resumed" and nothing else while his entries stayed refused."""
    subs = {}
    for name in ("alice", "bob"):
        u = await make_user(pool, name)
        rec = await make_recorder(pool, u, f"{name}-rec", size=1)
        aid = await pool.fetchval(
            "INSERT INTO accounts (user_id, label, env, username)"
            " VALUES ($1, $2, 'demo', 'px_tv') RETURNING id",
            u,
            f"{name}-demo",
        )
        await hold_password(pool, aid, "px-pw", proven=True)
        subs[name] = await pool.fetchval(
            "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
            " VALUES ($1, 4242, 'PX1') RETURNING id",
            aid,
        )
        await make_trader(pool, u, rec, [(subs[name], 1)])
    r = await ainvoke(["halt", "--account", "alice-demo"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    r = await ainvoke(
        ["resume", "--account", "bob-demo", "--json"], db_url=db_url, data_dir=data_dir
    )
    assert r.exit_code == 0, r.stderr
    assert r.json()["halted_by_others"] == ["alice-demo"]
    snap = build_snapshot(await trading_store.load_config(pool))
    assert snap.links_by_sub[subs["bob"]].halted  # what the message is about
    r = await ainvoke(["resume", "--account", "bob-demo"], db_url=db_url, data_dir=data_dir)
    assert "alice-demo (the same account at the broker) is still halted" in r.stdout + r.stderr
    r = await ainvoke(["resume", "--account", "alice-demo"], db_url=db_url, data_dir=data_dir)
    assert "still halted" not in r.stdout + r.stderr


async def _pending_flattens(db_url: str, data_dir: Path) -> list[dict[str, object]]:
    r = await ainvoke(["status", "--json"], db_url=db_url, data_dir=data_dir)
    return [f for f in r.json()["flattens"] if f["state"] == "pending"]


async def test_a_deleted_logins_flatten_ends_with_it(db_url: str, data_dir: Path) -> None:
    """A flatten is keyed by the login's label: left pending once the login was removed (or
    its user rejected), nothing could cancel it, and the daemon liquidated the next login
    given that label, another user's. The delete ends it, and `resume --account` ends one a
    delete left behind (a flag written before)."""
    for args in (
        ["users", "register", "alice", "--email", "a@x.io"],
        ["users", "approve", "alice"],
        ["accounts", "add", "desk", "--user", "alice", "--env", "paper"],
        ["halt", "--account", "desk", "--flatten"],  # no daemon: queued
    ):
        r = await ainvoke(args, db_url=db_url, data_dir=data_dir, input="pw-alice-1\n")
        assert r.exit_code == 0, (args, r.stderr)
    assert [f["account"] for f in await _pending_flattens(db_url, data_dir)] == ["desk"]
    r = await ainvoke(["accounts", "remove", "desk"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert await _pending_flattens(db_url, data_dir) == []

    # a request some earlier version left behind for a label no login has
    pool = await asyncpg.connect(db_url)
    try:
        await pool.execute(
            "UPDATE system_flags SET value = jsonb_set(value, '{flattens,old}',"
            """ '{"requested_at": "old", "account": "desk", "by": "cli:x"}') WHERE name = 'halted'"""
        )
    finally:
        await pool.close()
    assert [f["account"] for f in await _pending_flattens(db_url, data_dir)] == ["desk"]
    r = await ainvoke(["resume", "--account", "desk"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert "flatten cancelled: old" in r.stdout + r.stderr
    assert await _pending_flattens(db_url, data_dir) == []
    r = await ainvoke(["resume", "--account", "desk"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 1  # nothing left to end: no such login
    assert "no account labelled" in r.stderr


async def test_a_rejected_users_flattens_end_with_them(db_url: str, data_dir: Path) -> None:
    for args in (
        ["users", "register", "alice", "--email", "a@x.io", "--password-stdin"],
        ["users", "approve", "alice"],
        ["accounts", "add", "desk", "--user", "alice", "--env", "paper"],
        ["halt", "--account", "desk", "--flatten"],
        ["users", "disable", "alice"],
        ["users", "reject", "alice"],
    ):
        r = await ainvoke(args, db_url=db_url, data_dir=data_dir, input="pw-alice-1\n")
        assert r.exit_code == 0, (args, r.stderr)
    assert await _pending_flattens(db_url, data_dir) == []


async def test_resume_of_deleted_label_reports_global_switch_truthfully(
    db_url: str, data_dir: Path
) -> None:
    """`resume --account` of a deleted login's leftover flatten answered a fixed
    "global_halted": false (and no halted login) while the global kill switch was on."""
    for args in (
        ["users", "register", "alice", "--email", "a@x.io"],
        ["users", "approve", "alice"],
        ["accounts", "add", "other", "--user", "alice", "--env", "paper"],
        ["halt"],  # the global kill switch: on
        ["halt", "--account", "other"],  # and one login halted on its own
    ):
        r = await ainvoke(args, db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 0, (args, r.stderr)
    conn = await asyncpg.connect(db_url)
    try:  # a request an earlier version left behind for a login since deleted
        await conn.execute(
            "UPDATE system_flags SET value = jsonb_set(value, '{flattens}',"
            """ '{"old": {"requested_at": "old", "account": "desk", "by": "cli:x"}}')"""
            " WHERE name = 'halted'"
        )
    finally:
        await conn.close()
    r = await ainvoke(["resume", "--account", "desk", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    out = r.json()
    assert out["cancelled_flattens"] == ["old"]
    assert (out["global_halted"], out["still_halted"]) == (True, ["other"])
    said = await ainvoke(["resume", "--account", "desk"], db_url=db_url, data_dir=data_dir)
    assert said.exit_code == 1  # nothing left of it: no such login
