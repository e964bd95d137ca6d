"""``jtrades recorder`` through the real Typer app on a real Postgres.

Users, accounts and sub-accounts are seeded with plain SQL (``seed_*``), so these tests depend only
on the schema, not on the users/accounts commands.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jtrades.db import _init_connection
from jtrades.store import recorders as store
from tests.cli import Result, invoke

# --- seeding (shared with test_cli_trader) ----------------------------------------------------


def sql(db_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def go() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(db_url)
        try:
            await _init_connection(conn)
            return await conn.fetch(query, *args)
        finally:
            await conn.close()

    return asyncio.run(go())


def seed_user(db_url: str, name: str, status: str = "approved") -> int:
    rows = sql(
        db_url,
        "INSERT INTO users (name, email, status) VALUES ($1, $2, $3) RETURNING id",
        name,
        f"{name}@example.com",
        status,
    )
    return int(rows[0]["id"])


def seed_account(db_url: str, user_id: int, label: str, subs: list[str]) -> list[int]:
    acc = sql(
        db_url,
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, $2, 'paper') RETURNING id",
        user_id,
        label,
    )[0]["id"]
    ids = []
    for i, name in enumerate(subs):
        rows = sql(
            db_url,
            "INSERT INTO sub_accounts (account_id, broker_account_id, name) "
            "VALUES ($1, $2, $3) RETURNING id",
            acc,
            1000 * acc + i,
            name,
        )
        ids.append(int(rows[0]["id"]))
    return ids


def audit_actions(db_url: str) -> list[str]:
    return [r["action"] for r in sql(db_url, "SELECT action FROM audit_log ORDER BY id")]


class Cli:
    """``jtrades`` bound to one test database."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir

    def __call__(self, *args: str) -> Result:
        return invoke(list(args), db_url=self.db_url, data_dir=self.data_dir)

    def ok(self, *args: str) -> Any:
        r = self(*args, "--json")
        assert r.exit_code == 0, r.stderr
        return r.json()

    def fails(self, *args: str) -> str:
        r = self(*args)
        assert r.exit_code == 1, (r.exit_code, r.stdout, r.stderr)
        return r.error_line()


@pytest.fixture
def cli(db_url: str, data_dir: Path) -> Cli:
    seed_user(db_url, "alice")
    seed_user(db_url, "bob")
    seed_user(db_url, "carol", status="pending")
    return Cli(db_url, data_dir)


def token_of(url: str) -> str:
    return url.rsplit("/webhook/", 1)[1]


def stored_hash(db_url: str, name: str) -> bytes:
    return bytes(sql(db_url, "SELECT token_hash FROM recorders WHERE name = $1", name)[0][0])


# --- create -----------------------------------------------------------------------------------


def test_create_shows_the_url_once_and_stores_only_the_hash(cli: Cli) -> None:
    r = cli("recorder", "create", "nq", "--user", "alice", "--symbol", "mnq1!", "--size", "2")
    assert r.exit_code == 0, r.stderr
    url = next(line.strip() for line in r.stdout.splitlines() if "/webhook/" in line)
    assert url.startswith("http://127.0.0.1:8080/webhook/")
    token = token_of(url)
    assert len(token) == 43
    assert "{{strategy.order.action}}" in r.stdout
    assert stored_hash(cli.db_url, "nq") == hashlib.sha256(token.encode()).digest()
    # never again: show/list do not reveal it
    for args in (
        ("recorder", "show", "nq"),
        ("recorder", "list"),
        ("recorder", "show", "nq", "--json"),
    ):
        shown = cli(*args)
        assert token not in shown.stdout + shown.stderr
    rec = cli.ok("recorder", "show", "nq")
    assert rec["symbol"] == "MNQ1!"
    assert rec["private"] is True
    assert rec["settings"]["size"] == 2
    assert audit_actions(cli.db_url) == ["recorders.create"]


def test_create_uses_the_public_url(cli: Cli) -> None:
    r = invoke(
        ["recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--json"],
        db_url=cli.db_url,
        data_dir=cli.data_dir,
        env={"JTRADES_SERVER__PUBLIC_URL": "https://trade.example.com/"},
    )
    assert r.exit_code == 0, r.stderr
    assert r.json()["webhook_url"].startswith("https://trade.example.com/webhook/")


def test_every_risk_option_is_stored(cli: Cli) -> None:
    rec = cli.ok(
        "recorder", "create", "full", "--user", "alice", "--symbol", "MES1!", "--public",
        "--size", "3", "--add-size", "2", "--tp", "10:1,20:1,30", "--tp-units", "points",
        "--sl", "12.5", "--sl-units", "points", "--sl-type", "trailing",
        "--trail-trigger", "5", "--trail-freq", "0.25", "--breakeven", "8:1", "--dca",
        "--direction", "long", "--window", "08:30-11:00", "--window", "22:00-02:00",
        "--cooldown", "5m", "--max-signals", "10", "--every-nth", "2",
        "--max-daily-loss", "500", "--max-contracts", "6", "--auto-flat-after", "15:55",
        "--same-direction", "add", "--inverse",
    )["recorder"]  # fmt: skip
    s = rec["settings"]
    assert rec["private"] is False
    assert s == {
        "size": 3, "add_size": 2,
        "tp": [{"target": "10", "qty": 1}, {"target": "20", "qty": 1}, {"target": "30"}],
        "tp_units": "points", "sl": "12.5", "sl_units": "points", "sl_type": "trailing",
        "trail_trigger": "5", "trail_freq": "0.25", "breakeven_trigger": "8",
        "breakeven_offset": "1", "dca": True, "direction": "long",
        "windows": ["08:30-11:00", "22:00-02:00"], "cooldown_s": 300, "max_signals": 10,
        "every_nth": 2, "max_daily_loss": "500", "max_contracts": 6,
        "auto_flat_after": "15:55:00", "same_direction": "add", "inverse": True,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tp", "10:2,20:2"], "more than --size"),
        (["--size", "-1"], "--size"),
        (["--size", "two"], "not a whole number"),
        (["--window", "25:00-26:00"], "HH:MM"),
        (["--window", "01:00-02:00", "--window", "03:00-04:00", "--window", "05:00-06:00"], "two"),
        (["--tp-units", "furlongs"], "ticks|points|percent"),
        (["--sl-units", "miles"], "dollars"),
        (["--sl-type", "trailing"], "--sl"),
        (["--direction", "up"], "both|long|short"),
        (["--cooldown", "-5"], "--cooldown"),
        (["--max-daily-loss", "-100"], "--max-daily-loss"),
        (["--auto-flat-after", "24:00"], "HH:MM"),
        (["--tp", "20:1,10"], "increasing"),
        (["--size", "99999999999"], "out of range"),
        (["--size", "3", "--tp", "20:\u00b2,40"], "--tp leg 1"),  # passed str.isdigit, not int()
    ],
)
def test_bad_options_are_one_line_errors_and_write_nothing(
    cli: Cli, args: list[str], message: str
) -> None:
    line = cli.fails("recorder", "create", "bad", "--user", "alice", "--symbol", "MNQ1!", *args)
    assert message in line
    assert sql(cli.db_url, "SELECT count(*) FROM recorders")[0][0] == 0
    assert audit_actions(cli.db_url) == []


def test_bad_names_users_and_duplicates(cli: Cli) -> None:
    assert "recorder name" in cli.fails(
        "recorder", "create", "a b", "--user", "alice", "--symbol", "X"
    )
    assert "--symbol" in cli.fails("recorder", "create", "ab", "--user", "alice", "--symbol", "M N")
    assert "no user" in cli.fails("recorder", "create", "ab", "--user", "zed", "--symbol", "MNQ1!")
    cli.ok("recorder", "create", "ab", "--user", "alice", "--symbol", "MNQ1!")
    assert "already exists" in cli.fails(
        "recorder", "create", "AB", "--user", "bob", "--symbol", "MNQ1!"
    )


# --- visibility -------------------------------------------------------------------------------


@pytest.fixture
def three_recorders(cli: Cli) -> Cli:
    cli.ok("recorder", "create", "alice-private", "--user", "alice", "--symbol", "MNQ1!")
    cli.ok("recorder", "create", "alice-public", "--user", "alice", "--symbol", "MNQ1!", "--public")
    cli.ok("recorder", "create", "bob-private", "--user", "bob", "--symbol", "MES1!")
    return cli


def test_list_as_a_user_hides_other_users_private_recorders(three_recorders: Cli) -> None:
    cli = three_recorders
    names = lambda rows: sorted(r["name"] for r in rows)  # noqa: E731
    assert names(cli.ok("recorder", "list")) == ["alice-private", "alice-public", "bob-private"]
    assert names(cli.ok("recorder", "list", "--as", "alice")) == ["alice-private", "alice-public"]
    assert names(cli.ok("recorder", "list", "--as", "bob")) == ["alice-public", "bob-private"]
    assert names(cli.ok("recorder", "list", "--as", "carol")) == ["alice-public"]
    table = cli("recorder", "list", "--as", "bob").stdout
    assert "alice-public" in table
    assert "alice-private" not in table
    assert "no user" in cli.fails("recorder", "list", "--as", "nobody")


def test_show_as_a_user_follows_the_same_rule(three_recorders: Cli) -> None:
    cli = three_recorders
    assert cli.ok("recorder", "show", "alice-private")["user"] == "alice"
    assert cli.ok("recorder", "show", "alice-private", "--as", "alice")["name"] == "alice-private"
    assert cli.ok("recorder", "show", "alice-public", "--as", "bob")["name"] == "alice-public"
    line = cli.fails("recorder", "show", "alice-private", "--as", "bob")
    assert "no recorder named 'alice-private'" in line


# --- edit -------------------------------------------------------------------------------------


def test_edit_merges_and_validates_the_whole(cli: Cli) -> None:
    cli.ok("recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--size", "3",
           "--tp", "10:1,20:1,30")  # fmt: skip
    edited = cli.ok("recorder", "edit", "nq", "--sl", "8", "--window", "09:30-16:00")["recorder"]
    assert edited["settings"]["size"] == 3  # untouched settings stay
    assert edited["settings"]["sl"] == "8"
    assert edited["settings"]["windows"] == ["09:30-16:00"]
    # lowering the size below the ladder's fixed legs is refused: the merged result is checked
    assert "more than --size 1" in cli.fails("recorder", "edit", "nq", "--size", "1")
    assert cli.ok("recorder", "show", "nq")["settings"]["size"] == 3
    # both at once is fine
    cli.ok("recorder", "edit", "nq", "--size", "1", "--tp", "10")
    cleared = cli.ok("recorder", "edit", "nq", "--window", "none", "--tp", "none")["recorder"]
    assert cleared["settings"]["windows"] == []
    assert cleared["settings"]["tp"] == []
    assert "nothing to change" in cli.fails("recorder", "edit", "nq")
    assert cli.ok("recorder", "edit", "nq", "--symbol", "mesz6")["recorder"]["symbol"] == "MESZ6"
    assert "no recorder" in cli.fails("recorder", "edit", "zz", "--size", "1")
    assert audit_actions(cli.db_url).count("recorders.edit") == 4
    detail = sql(
        cli.db_url, "SELECT detail FROM audit_log WHERE action = 'recorders.edit' ORDER BY id"
    )[0]["detail"]
    assert detail["sl"] == {"from": "0", "to": "8"}


def test_edit_refuses_what_would_break_a_follower(cli: Cli) -> None:
    cli.ok("recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--size", "4")
    seed_account(cli.db_url, 2, "bob-acc", ["B1"])
    cli.ok("recorder", "private", "nq", "off")
    cli.ok("trader", "create", "--user", "bob", "--recorder", "nq", "--account", "bob-acc",
           "--tp", "10:2,20:2")  # fmt: skip
    line = cli.fails("recorder", "edit", "nq", "--size", "3")
    assert "trader" in line
    assert "more than --size 3" in line
    assert cli.ok("recorder", "show", "nq")["settings"]["size"] == 4


# --- private, token, recording, delete ---------------------------------------------------------


def test_private_on_is_refused_while_other_users_follow(cli: Cli) -> None:
    cli.ok("recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--public")
    seed_account(cli.db_url, 1, "alice-acc", ["A1"])
    seed_account(cli.db_url, 2, "bob-acc", ["B1"])
    own = cli.ok(
        "trader", "create", "--user", "alice", "--recorder", "nq", "--account", "alice-acc"
    )
    cli.ok("recorder", "private", "nq", "on")  # the owner's own trader does not block it
    cli.ok("recorder", "private", "nq", "off")
    bobs = cli.ok("trader", "create", "--user", "bob", "--recorder", "nq", "--account", "bob-acc")
    line = cli.fails("recorder", "private", "nq", "on")
    assert line.endswith(
        "1 trader(s) of other users follow 'nq': it cannot be made private until they are deleted"
    )
    assert cli.ok("recorder", "show", "nq")["private"] is False
    cli.ok("trader", "delete", str(bobs["trader"]["id"]))
    assert cli.ok("recorder", "private", "nq", "on")["recorder"]["private"] is True
    assert own["trader"]["id"]
    assert "on or off" in cli.fails("recorder", "private", "nq", "maybe")


async def test_rotate_token_changes_the_stored_hash(cli: Cli, pool: asyncpg.Pool) -> None:
    from tests.cli import ainvoke

    r = await ainvoke(
        ["recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--json"],
        db_url=cli.db_url,
        data_dir=cli.data_dir,
    )
    old = token_of(r.json()["webhook_url"])
    old_hash = hashlib.sha256(old.encode()).digest()
    assert (await store.load_recorder_for_token(pool, old_hash)) is not None
    r = await ainvoke(
        ["recorder", "rotate-token", "nq", "--json"], db_url=cli.db_url, data_dir=cli.data_dir
    )
    assert r.exit_code == 0, r.stderr
    new = token_of(r.json()["webhook_url"])
    new_hash = hashlib.sha256(new.encode()).digest()
    assert new != old
    assert await store.load_recorder_for_token(pool, old_hash) is None
    rec = await store.load_recorder_for_token(pool, new_hash)
    assert rec is not None
    assert rec.name == "nq"
    assert rec.owner_approved
    assert await store.all_token_hashes(pool) == {new_hash: rec.id}
    actions = [r["action"] for r in await pool.fetch("SELECT action FROM audit_log ORDER BY id")]
    assert actions == ["recorders.create", "recorders.rotate_token"]
    details = await pool.fetch("SELECT detail::text AS d FROM audit_log")
    assert all(new not in (d["d"] or "") and old not in (d["d"] or "") for d in details)


def test_recording_switch_and_delete(cli: Cli) -> None:
    cli.ok("recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!")
    assert cli.ok("recorder", "disable-recording", "nq")["recorder"]["recording_enabled"] is False
    assert cli.ok("recorder", "show", "nq")["recording_enabled"] is False
    assert cli.ok("recorder", "enable-recording", "nq")["recorder"]["recording_enabled"] is True
    seed_account(cli.db_url, 1, "alice-acc", ["A1"])
    cli.ok("trader", "create", "--user", "alice", "--recorder", "nq", "--account", "alice-acc")
    assert cli.ok("recorder", "delete", "nq") == {"ok": True, "name": "nq", "traders_deleted": 1}
    assert cli.ok("recorder", "list") == []
    assert sql(cli.db_url, "SELECT count(*) FROM traders")[0][0] == 0
    assert "no recorder" in cli.fails("recorder", "delete", "nq")
    assert audit_actions(cli.db_url)[-1] == "recorders.delete"


def test_help_has_an_example(cli: Cli) -> None:
    for cmd in ("create", "list", "show", "edit", "private", "rotate-token", "delete",
                "enable-recording", "disable-recording"):  # fmt: skip
        r = cli("recorder", cmd, "--help")
        assert r.exit_code == 0
        assert "Example: jtrades recorder" in r.stdout, cmd


async def test_the_database_refuses_private_with_followers_even_past_the_check(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    """The trigger is the last word: a stale view of the recorder (public, no followers seen)
    still cannot make it private once another user follows it."""
    from jtrades.errors import Conflict

    await asyncio.to_thread(
        cli.ok, "recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--public"
    )
    rec = await store.get(pool, "nq")
    bob = await pool.fetchval("SELECT id FROM users WHERE name = 'bob'")
    await pool.execute("INSERT INTO traders (user_id, recorder_id) VALUES ($1, $2)", bob, rec.id)
    stale = dataclasses.replace(rec, is_private=True)  # skips the friendly pre-check
    with pytest.raises(Conflict, match="other users' traders follow this recorder"):
        async with pool.acquire() as conn, conn.transaction():
            await store.set_private(conn, stale, True, actor="test")
    assert (await store.get(pool, "nq")).is_private is False


def test_exit_options_its_stop_never_uses_are_said(cli: Cli) -> None:
    """`--breakeven` with no stop (`--sl 0`, the default), and trail values on a fixed stop,
    were stored and shown as settings while planning dropped them without a word: a user read
    protection that was never placed. Kept (an alert's own stop uses them), with a warning."""
    r = cli("recorder", "create", "be", "--user", "alice", "--symbol", "MNQ1!", "--tp", "40",
            "--breakeven", "10")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "warning: --breakeven moves a stop, and --sl is 0" in r.stderr
    r = cli("recorder", "edit", "be", "--sl", "20", "--trail-trigger", "8")
    assert r.exit_code == 0, r.stderr
    assert "--breakeven" not in r.stderr  # a stop now
    assert "warning: --trail-trigger/--trail-freq move a trailing stop" in r.stderr
    # a trader's own settings are said as they take effect (the recorder's with its overrides)
    cli.ok("accounts", "add", "bp", "--user", "bob", "--env", "paper")
    cli.ok("recorder", "private", "be", "off")
    r = cli("trader", "create", "--user", "bob", "--recorder", "be", "--account", "bp",
            "--sl", "0", "--sl-type", "fixed")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "warning: --breakeven moves a stop, and --sl is 0" in r.stderr


def test_a_units_change_leaves_a_followers_own_distances_in_their_units(cli: Cli) -> None:
    """A follower's --sl 40 and --tp 20:1,40 were stored as bare numbers read in the recorder's
    units: the owner's switch to percent made them a 40 % stop (no stop at all on MNQ) and
    20 % / 40 % targets, without a word. The follower keeps the units they were given in; the
    owner is told; a follower who set no distance of its own follows the new units."""
    alice = sql(cli.db_url, "SELECT id FROM users WHERE name = 'alice'")[0][0]
    bob = sql(cli.db_url, "SELECT id FROM users WHERE name = 'bob'")[0][0]
    seed_account(cli.db_url, alice, "alice-acc", ["A1"])
    seed_account(cli.db_url, bob, "bob-acc", ["B1"])
    cli.ok("recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--size", "2",
           "--sl", "30", "--sl-units", "ticks", "--tp", "10:1,30", "--tp-units", "ticks",
           "--public")  # fmt: skip
    own = cli.ok("trader", "create", "--user", "bob", "--recorder", "nq", "--account", "bob-acc",
                 "--sl", "40", "--tp", "20:1,40")["trader"]  # fmt: skip
    plain = cli.ok("trader", "create", "--user", "alice", "--recorder", "nq", "--account",
                   "alice-acc")["trader"]  # fmt: skip
    r = cli("recorder", "edit", "nq", "--sl", "0.5", "--sl-units", "percent",
            "--tp", "0.2:1,0.5", "--tp-units", "percent")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert f"trader {own['id']} (bob) keeps its own --tp-units ticks, --sl-units ticks" in r.stderr
    kept = cli.ok("trader", "show", str(own["id"]))["effective"]
    assert (kept["sl"], kept["sl_units"], kept["tp_units"]) == ("40", "ticks", "ticks")
    follows = cli.ok("trader", "show", str(plain["id"]))["effective"]
    assert (follows["sl"], follows["sl_units"], follows["tp_units"]) == (
        "0.5",
        "percent",
        "percent",
    )
