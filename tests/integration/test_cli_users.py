"""``jtrades users`` through the real Typer app on a real Postgres."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jtrades.security import hash_token, verify_password
from tests.cli import Result, ainvoke, cli_env


class Cli:
    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        return await ainvoke(list(args), db_url=self.db_url, data_dir=self.data_dir, input=input)

    async def ok(self, *args: str, input: str | None = None) -> Any:
        r = await self(*args, "--json", input=input)
        assert r.exit_code == 0, r.stderr
        return r.json()


@pytest.fixture
def cli(db_url: str, data_dir: Path) -> Cli:
    return Cli(db_url, data_dir)


async def test_register_approve_list(cli: Cli, pool: asyncpg.Pool) -> None:
    reg = await cli.ok("users", "register", "alice", "--email", "alice@example.com")
    assert reg["user"]["status"] == "pending"
    assert reg["user"]["timezone"] == "America/Chicago"
    pending = await cli.ok("users", "list", "--pending")
    assert [u["name"] for u in pending] == ["alice"]

    approved = await cli.ok("users", "approve", "ALICE")  # names match regardless of case
    assert approved["user"]["status"] == "approved"
    assert approved["user"]["approved_at"]
    assert await cli.ok("users", "list", "--pending") == []
    everyone = await cli.ok("users", "list")
    assert [(u["name"], u["status"]) for u in everyone] == [("alice", "approved")]

    audit = await pool.fetch("SELECT actor, action, target FROM audit_log ORDER BY id")
    assert [(a["action"], a["target"]) for a in audit] == [
        ("users.register", "alice"),
        ("users.approve", "alice"),
    ]
    assert all(a["actor"].startswith("cli") for a in audit)


async def test_human_output_is_a_table_and_status_lines(cli: Cli) -> None:
    r = await cli("users", "register", "bob", "--email", "bob@example.com")
    assert r.exit_code == 0
    assert "registered bob (pending)" in r.stderr
    r = await cli("users", "list")
    assert r.exit_code == 0
    assert "bob" in r.stdout
    assert "pending" in r.stdout


async def test_admin_is_approved_and_password_hashed(cli: Cli, pool: asyncpg.Pool) -> None:
    reg = await cli.ok(
        "users", "register", "root", "--email", "r@x.io", "--admin", "--password-stdin",
        input="s3cret-admin-pw\n",
    )  # fmt: skip
    assert reg["user"]["status"] == "approved"
    assert reg["user"]["is_admin"] is True
    stored = await pool.fetchval("SELECT password_hash FROM users WHERE name = 'root'")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "s3cret-admin-pw")


async def test_empty_password_on_stdin_is_refused(cli: Cli, pool: asyncpg.Pool) -> None:
    r = await cli("users", "register", "eve", "--email", "e@x.io", "--password-stdin", input="")
    assert r.exit_code == 1
    assert "no password" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize(
    "env",
    [{"LC_ALL": "C.UTF-8"}, {"PYTHONIOENCODING": "utf-8:strict"}],
    ids=["surrogateescape", "strict"],
)
async def test_a_password_on_stdin_that_is_not_utf8_is_refused(
    db_url: str, data_dir: Path, pool: asyncpg.Pool, env: dict[str, str]
) -> None:
    """A password file in Latin-1 ("passwörd" as 0xF6): stdin decoded it with surrogates (a
    UnicodeEncodeError inside argon2) or not at all (a UnicodeDecodeError): a traceback."""
    full = dict(os.environ)
    for key, value in {**cli_env(db_url=db_url, data_dir=data_dir), **env}.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    register = ["users", "register", "eve", "--email", "e@x.io", "--password-stdin"]
    p = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "jtrades.cli", *register],
        input="passw\xf6rd-long\n".encode("latin-1"),
        capture_output=True,
        env=full,
        timeout=60,
        check=False,
    )
    err = p.stderr.decode()
    assert "Traceback" not in err, err[-600:]
    assert p.returncode == 1
    assert err.strip().endswith("is not UTF-8"), err
    assert await pool.fetchval("SELECT count(*) FROM users") == 0


@pytest.mark.parametrize(
    ("second", "email"),
    [("Alice", "other@example.com"), ("carol", "ALICE@example.com")],
)
async def test_duplicate_name_or_email_any_case_exits_1_one_line(
    cli: Cli, pool: asyncpg.Pool, second: str, email: str
) -> None:
    await cli.ok("users", "register", "alice", "--email", "alice@example.com")
    r = await cli("users", "register", second, "--email", email)
    assert r.exit_code == 1
    line = r.error_line()
    assert "already exists" in line
    assert "Traceback" not in r.stderr
    assert await pool.fetchval("SELECT count(*) FROM users") == 1
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_bad_timezone_exits_1_and_writes_nothing(cli: Cli, pool: asyncpg.Pool) -> None:
    r = await cli("users", "register", "dave", "--email", "d@x.io", "--timezone", "Mars/Olympus")
    assert r.exit_code == 1
    assert "unknown time zone" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM users") == 0

    await cli.ok("users", "register", "dave", "--email", "d@x.io")
    r = await cli("users", "set-timezone", "dave", "Not/AZone")
    assert r.exit_code == 1
    assert "unknown time zone" in r.error_line()
    assert await pool.fetchval("SELECT timezone FROM users") == "America/Chicago"
    assert await pool.fetchval("SELECT count(*) FROM audit_log") == 1

    changed = await cli.ok("users", "set-timezone", "dave", "Europe/London")
    assert changed["user"]["timezone"] == "Europe/London"
    assert await pool.fetchval("SELECT timezone FROM users") == "Europe/London"


@pytest.mark.parametrize("zone", ["America", "Europe", "x" * 300])
async def test_a_zone_folder_or_an_overlong_name_is_an_unknown_time_zone(
    cli: Cli, pool: asyncpg.Pool, zone: str
) -> None:
    """ZoneInfo raises IsADirectoryError for a tzdata folder and OSError for a name too long
    for a path, which check_timezone let through: a traceback."""
    r = await cli("users", "register", "dave", "--email", "d@x.io", "--timezone", zone)
    assert r.exit_code == 1
    assert "unknown time zone" in r.error_line()
    await cli.ok("users", "register", "dave", "--email", "d@x.io")
    r = await cli("users", "set-timezone", "dave", zone)
    assert r.exit_code == 1
    assert "unknown time zone" in r.error_line()
    assert await pool.fetchval("SELECT timezone FROM users") == "America/Chicago"


@pytest.mark.parametrize(
    "args",
    [
        ["users", "register", "bad name", "--email", "a@b.c"],
        ["users", "register", "-lead", "--email", "a@b.c"],
        ["users", "register", "ok", "--email", "not-an-email"],
    ],
)
async def test_invalid_names_and_emails(cli: Cli, pool: asyncpg.Pool, args: list[str]) -> None:
    r = await cli(*args)
    assert r.exit_code in (1, 2)  # "-lead" looks like an option to the parser: usage error
    assert await pool.fetchval("SELECT count(*) FROM users") == 0


async def test_unknown_user_exits_1(cli: Cli) -> None:
    for cmd in ("approve", "disable", "reject"):
        r = await cli("users", cmd, "nobody")
        assert r.exit_code == 1
        assert "no user named 'nobody'" in r.error_line()


async def test_names_in_errors_are_shown_as_typed(cli: Cli) -> None:
    """Errors quote what was typed; rich read it as markup: "[bold]bob" was shown as "bob",
    and "[/x]" crashed the command with a traceback."""
    for name in ("[bold]bob", "[/x]"):
        r = await cli("users", "approve", name)
        assert r.exit_code == 1
        assert f"no user named '{name}'" in r.error_line()


async def _seed_owned_rows(pool: asyncpg.Pool, user: str) -> None:
    """Accounts, sub-accounts, a recorder, a trader, a signal and an intent for ``user``."""
    uid = await pool.fetchval("SELECT id FROM users WHERE name = $1", user)
    acc = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, $2, 'paper') RETURNING id",
        uid,
        f"{user}-paper",
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name) VALUES ($1, 1, $2) "
        "RETURNING id",
        acc,
        f"{user}-sub",
    )
    rec = await pool.fetchval(
        "INSERT INTO recorders (user_id, name, symbol, token_hash) VALUES ($1, $2, 'MNQ1!', $3) "
        "RETURNING id",
        uid,
        f"{user}-rec",
        hash_token(f"tok-{user}"),
    )
    trader = await pool.fetchval(
        "INSERT INTO traders (user_id, recorder_id) VALUES ($1, $2) RETURNING id", uid, rec
    )
    await pool.execute(
        "INSERT INTO trader_accounts (trader_id, sub_account_id) VALUES ($1, $2)", trader, sub
    )
    sig = await pool.fetchval(
        "INSERT INTO signals (recorder_id, raw_body, verdict) VALUES ($1, 'buy', 'accepted') "
        "RETURNING id",
        rec,
    )
    await pool.execute(
        "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step, kind,"
        " symbol, request, expires_at, state)"
        " VALUES ($1, $2, $3, $4, 0, 'order', 'MNQZ6', '{}', now(), 'filled')",
        sig,
        trader,
        sub,
        f"cl-{user}",
    )


OWNED_TABLES = ("accounts", "sub_accounts", "recorders", "traders", "trader_accounts",
                "signals", "order_intents")  # fmt: skip


async def _counts(pool: asyncpg.Pool) -> dict[str, int]:
    return {t: await pool.fetchval(f"SELECT count(*) FROM {t}") for t in OWNED_TABLES}


async def test_reject_deletes_the_user_and_everything_they_own(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    await cli.ok("users", "register", "mallory", "--email", "m@x.io")
    await cli.ok("users", "register", "keeper", "--email", "k@x.io")
    await _seed_owned_rows(pool, "mallory")
    await _seed_owned_rows(pool, "keeper")
    assert set((await _counts(pool)).values()) == {2}

    out = await cli.ok("users", "reject", "mallory")
    assert out["deleted"] == {"accounts": 1, "sub_accounts": 1, "recorders": 1, "traders": 1}
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = 'mallory'") == 0
    # Every owned row is gone; the other user's rows are untouched.
    assert set((await _counts(pool)).values()) == {1}
    assert await pool.fetchval("SELECT count(*) FROM accounts WHERE label = 'keeper-paper'") == 1
    entry = await pool.fetchrow("SELECT action, target, detail FROM audit_log ORDER BY id DESC")
    assert (entry["action"], entry["target"]) == ("users.reject", "mallory")
    assert entry["detail"]["deleted"]["recorders"] == 1


async def test_reject_refuses_an_approved_user_until_disabled(cli: Cli, pool: asyncpg.Pool) -> None:
    await cli.ok("users", "register", "trader1", "--email", "t@x.io")
    await cli.ok("users", "approve", "trader1")
    r = await cli("users", "reject", "trader1")
    assert r.exit_code == 1
    assert "disable them first" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM users") == 1
    await cli.ok("users", "disable", "trader1")
    await cli.ok("users", "reject", "trader1")
    assert await pool.fetchval("SELECT count(*) FROM users") == 0


async def test_reject_refuses_while_other_users_follow_the_users_recorders(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    """Rejecting alice deleted, by cascade from her public recorder, bob's enabled trader and
    his working order intent on his own sub-account, and reported 0 traders deleted."""
    for name in ("alice", "bob"):
        await cli.ok("users", "register", name, "--email", f"{name}@x.io")
        await cli.ok("users", "approve", name)
    alice, bob = [
        await pool.fetchval("SELECT id FROM users WHERE name = $1", n) for n in ("alice", "bob")
    ]
    rec = await pool.fetchval(
        "INSERT INTO recorders (user_id, name, symbol, token_hash, is_private)"
        " VALUES ($1, 'alice-pub', 'MNQ1!', $2, false) RETURNING id",
        alice,
        hash_token("t-alice"),
    )
    trader = await pool.fetchval(
        "INSERT INTO traders (user_id, recorder_id, enabled) VALUES ($1, $2, true) RETURNING id",
        bob,
        rec,
    )
    await cli.ok("users", "disable", "alice")
    r = await cli("users", "reject", "alice")
    assert r.exit_code == 1
    assert "followed by" in r.error_line()
    assert f"bob (trader {trader})" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM traders WHERE user_id = $1", bob) == 1
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = 'alice'") == 1


async def _bob_traded_alices_recorder_and_left(cli: Cli, pool: asyncpg.Pool) -> int:
    """bob followed alice's public recorder, traded on his own sub-account, then deleted his
    trader ("its order history stays"): the id of his working order intent."""
    for name in ("alice", "bob"):
        await cli.ok("users", "register", name, "--email", f"{name}@x.io")
        await cli.ok("users", "approve", name)
    await cli.ok("accounts", "add", "bob-paper", "--user", "bob", "--env", "paper")
    await cli.ok("recorder", "create", "trend", "--user", "alice", "--symbol", "MNQ1!", "--public")
    created = await cli.ok("trader", "create", "--user", "bob", "--recorder", "trend",
                           "--account", "bob-paper", "--enabled")  # fmt: skip
    tid = created["trader"]["id"]
    sig = await pool.fetchval(
        "INSERT INTO signals (recorder_id, raw_body, verdict)"
        " SELECT id, 'buy', 'accepted' FROM recorders WHERE name = 'trend' RETURNING id"
    )
    intent = await pool.fetchval(
        "INSERT INTO order_intents (signal_id, trader_id, sub_account_id, cl_ord_id, step, kind,"
        " symbol, side, qty, request, state, expires_at)"
        " SELECT $1, $2, id, 'jt-1-1-0', 0, 'strategy', 'MNQZ6', 'Buy', 1, '{}', 'working',"
        " now() + interval '30 s' FROM sub_accounts RETURNING id",
        sig,
        tid,
    )
    await cli.ok("trader", "disable", str(tid))
    await cli.ok("trader", "delete", str(tid))
    return int(intent)


@pytest.mark.parametrize(
    "delete",
    [
        [["users", "disable", "alice"], ["users", "reject", "alice"]],
        [["recorder", "delete", "trend"]],
    ],
    ids=["users reject", "recorder delete"],
)
async def test_deleting_a_recorder_keeps_other_users_order_intents(
    cli: Cli, pool: asyncpg.Pool, delete: list[list[str]]
) -> None:
    """The cascade recorders -> signals -> order_intents deleted bob's working intent on his
    own sub-account (the record reconciliation and paper restore read) once his trader was
    gone: the guard against other users' followers sees current traders only."""
    intent = await _bob_traded_alices_recorder_and_left(cli, pool)
    for args in delete:
        await cli.ok(*args)
    assert await pool.fetchval("SELECT count(*) FROM signals") == 0
    kept = await pool.fetchrow("SELECT signal_id, state FROM order_intents WHERE id = $1", intent)
    assert kept is not None, "bob's order intent went with alice's signals"
    assert (kept["signal_id"], kept["state"]) == (None, "working")


async def test_unapproved_user_cannot_own_an_enabled_trader(cli: Cli, pool: asyncpg.Pool) -> None:
    await cli.ok("users", "register", "newbie", "--email", "n@x.io")
    uid = await pool.fetchval("SELECT id FROM users WHERE name = 'newbie'")
    rec = await pool.fetchval(
        "INSERT INTO recorders (user_id, name, symbol, token_hash) VALUES ($1, 'r1', 'MNQ1!', $2)"
        " RETURNING id",
        uid,
        hash_token("t-newbie"),
    )
    insert = "INSERT INTO traders (user_id, recorder_id, enabled) VALUES ($1, $2, $3) RETURNING id"
    with pytest.raises(asyncpg.CheckViolationError) as exc:
        await pool.fetchval(insert, uid, rec, True)
    assert exc.value.constraint_name == "traders_enabled_requires_approved"
    tid = await pool.fetchval(insert, uid, rec, False)  # a disabled trader is fine

    await cli.ok("users", "approve", "newbie")
    await pool.execute("UPDATE traders SET enabled = true WHERE id = $1", tid)
    # Disabling the user switches their traders off in the same transaction.
    await cli.ok("users", "disable", "newbie")
    assert await pool.fetchval("SELECT enabled FROM traders WHERE id = $1", tid) is False
    with pytest.raises(asyncpg.CheckViolationError):
        await pool.execute("UPDATE traders SET enabled = true WHERE id = $1", tid)


async def test_help_has_an_example_for_every_command(cli: Cli) -> None:
    for cmd in ("register", "approve", "reject", "disable", "list", "set-timezone"):
        r = await cli("users", cmd, "--help")
        assert r.exit_code == 0
        assert "Example: jtrades users " + cmd in r.stdout


async def test_audit_detail_never_keeps_secret_named_values(pool: asyncpg.Pool) -> None:
    from jtrades.store import audit

    await audit.record(
        pool,
        "test",
        "x.y",
        "target",
        {"password": "hunter2-long", "nested": {"token": "abc123xyz"}, "cooldown_s": "5",
         "label": "kept"},
    )  # fmt: skip
    [entry] = await audit.recent(pool, 1)
    assert entry.detail == {
        "password": "***",
        "nested": {"token": "***"},
        "cooldown_s": "5",
        "label": "kept",
    }
    assert (entry.actor, entry.action, entry.target) == ("test", "x.y", "target")


async def test_reject_refuses_a_user_whose_login_still_holds_a_position(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    """The cascade took the login with it: its position stayed at the broker, out of reach."""
    await cli.ok("users", "register", "mallory", "--email", "m@x.io")
    await _seed_owned_rows(pool, "mallory")
    sub = await pool.fetchval(
        "SELECT s.id FROM sub_accounts s JOIN accounts a ON a.id = s.account_id"
        " JOIN users u ON u.id = a.user_id WHERE u.name = 'mallory'"
    )
    await pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, 'MESZ6', 3, 6000)",
        sub,
    )
    r = await cli("users", "reject", "mallory")
    assert r.exit_code == 1, r.stdout
    assert "position MESZ6 3" in r.error_line()
    assert "--force" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = 'mallory'") == 1

    await cli.ok("users", "reject", "mallory", "--force")
    assert await pool.fetchval("SELECT count(*) FROM users WHERE name = 'mallory'") == 0


async def test_a_new_user_gets_the_configured_zone_unless_one_is_given(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    """jtrades.toml's ``[trading] timezone`` is the new users' zone, as its example says: it
    was ignored, and an operator in New York got Chicago users whose 09:30 window opened at
    10:30 New York time."""
    (data_dir / "jtrades.toml").write_text('[trading]\ntimezone = "America/New_York"\n')

    async def register(*args: str) -> Result:
        return await ainvoke(["users", "register", *args], db_url=db_url, data_dir=data_dir)

    assert (await register("nyc", "--email", "nyc@example.com")).exit_code == 0
    assert (await register("ldn", "--email", "l@example.com", "--timezone", "Europe/London")).ok
    zones = dict(await pool.fetch("SELECT name, timezone FROM users"))
    assert zones == {"nyc": "America/New_York", "ldn": "Europe/London"}
