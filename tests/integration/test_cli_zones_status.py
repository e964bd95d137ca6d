"""Every time the CLI prints names its zone (DESIGN §4). A user's rows (``users list``
``created``, ``accounts list`` ``synced``) are shown in that user's zone, named as the listings
name it; a time of no user's (the daemon's ``started_at`` in ``status``, a flatten request's
time, ``db status``) is shown in UTC with "UTC" after it. Before, they were in the machine's zone
with no zone named: on a UTC VPS, for a New York user, ``status`` said the daemon started at
07:21 right above "open positions (times in America/New_York)" at 02:21, and a flatten request
was a raw ISO string. ``--json`` keeps ISO-8601 with the offset, as it was.

The reviewer's tests (test_unlabelled_machine_times.py) are the first two, run on a machine in
Tokyo (``TZ``), whose clock the times were shown on."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from jtrades.store import status as status_store
from tests.cli import ainvoke, invoke_process

TOKYO = {"TZ": "Asia/Tokyo"}
STARTED = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # 10:00 in New York, 00:00 next day in Tokyo
REQUESTED = "2026-11-27T15:00:00.547191+00:00"
PROGRESS_AT = "2026-11-27T15:00:05.123456+00:00"
UTC_CLOCK = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


async def _ok(args: list[str], db_url: str, data_dir: Path) -> str:
    r = await ainvoke(args, db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    return r.stdout


def _tokyo(args: list[str], db_url: str, data_dir: Path) -> str:
    """``jtrades <args>`` on a machine whose clock is Tokyo's: stdout and stderr."""
    r = invoke_process(args, db_url=db_url, data_dir=data_dir, env=TOKYO)
    assert r.exit_code == 0, r.stderr
    return r.stdout + r.stderr


async def _register(db_url: str, data_dir: Path, name: str, zone: str) -> None:
    await _ok(
        ["users", "register", name, "--email", f"{name}@x.com", "--timezone", zone],
        db_url,
        data_dir,
    )


async def _sql(db_url: str, sql: str, *args: Any) -> None:
    c = await asyncpg.connect(db_url)
    try:
        await c.execute(sql, *args)
    finally:
        await c.close()


def _line(out: str, word: str) -> str:
    return next(ln for ln in out.splitlines() if word in ln)


# --- a user's rows: in that user's zone, named ------------------------------------------------


async def test_users_list_shows_created_in_the_users_zone_and_names_it(
    db_url: str, data_dir: Path
) -> None:
    await _register(db_url, data_dir, "alice", "America/New_York")
    await _sql(db_url, "UPDATE users SET created_at = $1", STARTED)
    out = _tokyo(["users", "list"], db_url, data_dir)
    assert "users (times in America/New_York)" in out, out
    assert "2026-11-27 10:00:00" in _line(out, "alice"), out
    assert "2026-11-28" not in out  # Tokyo's clock


async def test_users_in_several_zones_each_have_their_own(db_url: str, data_dir: Path) -> None:
    await _register(db_url, data_dir, "alice", "America/New_York")
    await _register(db_url, data_dir, "bob", "Europe/London")
    await _sql(db_url, "UPDATE users SET created_at = $1, approved_at = $1", STARTED)
    out = _tokyo(["users", "list"], db_url, data_dir)
    assert "users (times in each user's zone)" in out, out
    assert "2026-11-27 10:00:00" in _line(out, "alice"), out
    assert "2026-11-27 15:00:00" in _line(out, "bob"), out
    assert "2026-11-28" not in out


async def test_accounts_list_shows_synced_in_the_owners_zone_and_names_it(
    db_url: str, data_dir: Path
) -> None:
    await _register(db_url, data_dir, "alice", "America/New_York")
    await _register(db_url, data_dir, "bob", "Europe/London")
    await _ok(["accounts", "add", "ap", "--user", "alice", "--env", "paper"], db_url, data_dir)
    await _sql(db_url, "UPDATE accounts SET synced_at = $1", STARTED)
    out = _tokyo(["accounts", "list"], db_url, data_dir)
    assert "accounts (times in America/New_York)" in out, out
    assert "2026-11-27 10:00:00" in _line(out, "ap "), out
    assert "2026-11-28" not in out
    # bob's login too: each in its owner's zone, the zones named
    await _ok(["accounts", "add", "bp", "--user", "bob", "--env", "paper"], db_url, data_dir)
    await _sql(db_url, "UPDATE accounts SET synced_at = $1", STARTED)
    out = _tokyo(["accounts", "list"], db_url, data_dir)
    assert "accounts (times in each user's zone)" in out, out
    assert "2026-11-27 10:00:00" in _line(out, "ap "), out
    assert "America/New_York" in _line(out, "ap "), out
    assert "2026-11-27 15:00:00" in _line(out, "bp "), out
    assert "Europe/London" in _line(out, "bp "), out


# --- no user's times: UTC, said -----------------------------------------------------------------


async def _beat(pool: asyncpg.Pool) -> None:
    await status_store.heartbeat(
        pool, pid=4242, started_at=STARTED, detail={"state": "running", "ready": True}
    )


async def test_status_daemon_started_at_is_utc_and_says_so(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await _beat(pool)
    out = _tokyo(["status"], db_url, data_dir)
    assert "2026-11-27 15:00:00 UTC" in _line(out, "started_at"), out
    assert "2026-11-28" not in out


async def test_status_flatten_request_is_utc_and_says_so(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """It printed ``requested 2026-11-30T07:24:34.547191+00:00``."""
    request = {
        "requested_at": REQUESTED,
        "account": None,
        "by": "cli:test",
        "progress": {"at": PROGRESS_AT, "closed": 1, "cancelled": 0, "left": [], "refused": []},
    }
    await status_store.set_halted(pool, {"halted": True, "flattens": {REQUESTED: request}})
    out = _tokyo(["status"], db_url, data_dir)
    line = _line(out, "requested")
    assert "requested 2026-11-27 15:00:00 UTC: pending" in line, out
    assert "as of 2026-11-27 15:00:05 UTC" in line, out
    assert "+00:00" not in line, line
    assert "T15:00" not in line, line
    # the JSON keeps the stored ISO string, the request's key
    r = await ainvoke(["status", "--json"], db_url=db_url, data_dir=data_dir)
    (flatten,) = r.json()["flattens"]
    assert flatten["requested_at"] == REQUESTED
    assert flatten["progress"]["at"] == PROGRESS_AT


async def test_halt_flatten_says_when_in_utc(db_url: str, data_dir: Path) -> None:
    out = _tokyo(["halt", "--flatten"], db_url, data_dir)
    assert re.search(rf"flatten requested at {UTC_CLOCK}, queued", out), out
    assert "+00:00" not in out
    again = _tokyo(["halt", "--flatten"], db_url, data_dir)
    assert re.search(rf"flatten already requested at {UTC_CLOCK}, queued", again), again
    status = _tokyo(["status"], db_url, data_dir)
    assert re.search(rf"everything, requested {UTC_CLOCK}: pending", status), status


async def test_db_status_times_are_utc_and_say_so(db_url: str, data_dir: Path) -> None:
    c = await asyncpg.connect(db_url)
    try:
        applied = await c.fetch("SELECT version, applied_at FROM schema_migrations ORDER BY 1")
    finally:
        await c.close()
    out = _tokyo(["db", "status"], db_url, data_dir)
    for row in applied:
        want = row["applied_at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert want in _line(out, f" {row['version']} "), out


# --- --json: ISO-8601 with the offset, as before ------------------------------------------------


async def test_json_keeps_iso_times_with_their_offset(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await _register(db_url, data_dir, "alice", "America/New_York")
    await _ok(["accounts", "add", "ap", "--user", "alice", "--env", "paper"], db_url, data_dir)
    await _sql(db_url, "UPDATE users SET created_at = $1", STARTED)
    await _sql(db_url, "UPDATE accounts SET synced_at = $1", STARTED + timedelta(minutes=1))
    await _beat(pool)
    iso = "2026-11-27T15:00:00+00:00"

    def run(args: list[str]) -> Any:
        r = invoke_process([*args, "--json"], db_url=db_url, data_dir=data_dir, env=TOKYO)
        assert r.exit_code == 0, r.stderr
        return r.json()

    assert run(["users", "list"])[0]["created_at"] == iso
    assert run(["accounts", "list"])[0]["synced_at"] == "2026-11-27T15:01:00+00:00"
    assert run(["status"])["daemon"]["started_at"] == iso
    for m in run(["db", "status"]):
        assert datetime.fromisoformat(m["applied_at"]).utcoffset() is not None
