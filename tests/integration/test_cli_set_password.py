"""``jtrades accounts set-password``: a changed Tradovate password replaces the stored one (the
login's sub-accounts and their traders' links stay), refusals change nothing, the password
shows nowhere, and a daemon's session that failed on the old password comes back with it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import structlog

from jtrades.broker.tradovate.lifecycle import State
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.errors import InvalidInput
from jtrades.security import SecretBox, load_secret_box, new_secret_key
from jtrades.store import accounts as store
from jtrades.store import login_proofs as proofs
from tests.cli import Result, ainvoke, invoke, invoke_process
from tests.polling import until
from tests.registry_world import registry_world
from tests.simutil import running_sim

OLD_PW = "canary-old-tv-pw-Q8r2Zk"
NEW_PW = "canary-new-tv-pw-W4t7Hm"


class Cli:
    def __init__(self, db_url: str, data_dir: Path, env: dict[str, str | None] | None = None):
        self.db_url = db_url
        self.data_dir = data_dir
        self.env = env or {}

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        return await ainvoke(
            list(args), db_url=self.db_url, data_dir=self.data_dir, input=input, env=self.env
        )

    async def ok(self, *args: str, input: str | None = None) -> Any:
        r = await self(*args, "--json", input=input)
        assert r.exit_code == 0, r.stderr
        return r.json()

    async def add_demo(self, label: str, user: str, login: str, password: str | None) -> None:
        extra = ["--password-stdin"] if password is not None else []
        await self.ok(
            "accounts", "add", label, "--user", user, "--env", "demo", "--username", login,
            *extra, input=None if password is None else password + "\n",
        )  # fmt: skip


@pytest.fixture
async def cli(db_url: str, data_dir: Path) -> Cli:
    c = Cli(db_url, data_dir)
    await c.ok("users", "register", "alice", "--email", "alice@example.com")
    await c.ok("users", "register", "bob", "--email", "bob@example.com")
    return c


def _box(db_url: str, data_dir: Path) -> SecretBox:
    cfg = Settings(data_dir=data_dir, database={"url": db_url})  # type: ignore[arg-type]
    return load_secret_box(cfg, create=False)


async def _account_id(pool: asyncpg.Pool, label: str) -> int:
    return int(await pool.fetchval("SELECT id FROM accounts WHERE label = $1", label))


async def _state(pool: asyncpg.Pool) -> list[Any]:
    """Everything a refusal must leave as it was: the accounts (with their ciphertexts), their
    sub-accounts and the audit log."""
    rows = await pool.fetch(
        "SELECT a.*, (SELECT array_agg(s.name ORDER BY s.id) FROM sub_accounts s"
        " WHERE s.account_id = a.id) AS subs FROM accounts a ORDER BY a.id"
    )
    audit = await pool.fetch("SELECT action, target FROM audit_log ORDER BY id")
    return [dict(r) for r in rows] + [tuple(r) for r in audit]


async def test_set_password_replaces_the_stored_one_and_keeps_the_sub_accounts(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await cli.add_demo("alice-demo", "alice", "alice_tv", OLD_PW)
    await cli.ok("accounts", "add-sub", "alice-demo", "--id", "501", "--name", "DEMO501")
    aid = await _account_id(pool, "alice-demo")
    before = await pool.fetchrow("SELECT * FROM accounts WHERE id = $1", aid)

    out = await cli.ok("accounts", "set-password", "alice-demo", "--password-stdin",
                       input=NEW_PW + "\n")  # fmt: skip
    assert out["ok"] is True
    assert out["account"]["label"] == "alice-demo"
    assert out["account"]["has_password"] is True
    assert [s["name"] for s in out["account"]["sub_accounts"]] == ["DEMO501"]  # links stay
    assert out["same_login_differs"] == []
    assert NEW_PW not in orjson.dumps(out).decode()

    box = _box(db_url, data_dir)
    after = await pool.fetchrow("SELECT * FROM accounts WHERE id = $1", aid)
    assert after["password_enc"] != before["password_enc"]
    assert NEW_PW.encode() not in after["password_enc"]
    assert after["password_key_id"] == box.current_key_id
    assert (await store.load_credentials(pool, box, aid)).password == NEW_PW
    assert (await proofs.login_credential(pool, box, aid)).password == NEW_PW
    assert after["id"] == before["id"]
    assert after["created_at"] == before["created_at"]

    audit = await pool.fetch(
        "SELECT actor, target, detail FROM audit_log WHERE action = 'accounts.set_password'"
    )
    assert len(audit) == 1
    detail = audit[0]["detail"]
    assert audit[0]["target"] == "alice-demo"
    assert audit[0]["actor"].startswith("cli")
    assert detail["key_id"] == after["password_key_id"]
    assert detail["had_password"] is True
    assert detail["username"] == "alice_tv"
    assert NEW_PW not in str(detail)
    assert OLD_PW not in str(detail)

    # For people: one line on stderr naming the account (any case of its label finds it).
    r = await cli("accounts", "set-password", "ALICE-DEMO", "--password-stdin",
                  input=OLD_PW + "\n")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert r.stdout == ""
    line = r.error_line()  # the only line written
    assert "alice-demo" in line
    assert "alice_tv" in line
    assert OLD_PW not in r.stderr
    assert (await store.load_credentials(pool, box, aid)).password == OLD_PW


async def test_an_account_added_without_a_password_gets_one(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """No password stored yet, and no secret key either: the first one creates the key."""
    await cli.add_demo("bob-demo", "bob", "bob_tv", None)
    assert not (data_dir / "secret.key").exists()
    aid = await _account_id(pool, "bob-demo")
    out = await cli.ok("accounts", "set-password", "bob-demo", "--password-stdin",
                       input=NEW_PW + "\n")  # fmt: skip
    assert out["account"]["has_password"] is True
    assert (data_dir / "secret.key").exists()
    box = _box(db_url, data_dir)
    assert (await proofs.login_credential(pool, box, aid)).password == NEW_PW
    detail = await pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'accounts.set_password'"
    )
    assert detail["had_password"] is False


async def test_the_logins_other_accounts_are_named_until_they_hold_it_too(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """A login is one password (its token and session are shared): the daemon refuses the login
    to an account whose password is not the one Tradovate accepted for its other accounts, so
    the command says which still hold that other one."""
    await cli.add_demo("alice-shared", "alice", "shared_tv", OLD_PW)
    await cli.add_demo("bob-shared", "bob", "Shared_TV", OLD_PW)
    await cli.add_demo("alice-other", "alice", "other_tv", OLD_PW)  # another login: not named
    # the daemon's session of the login used OLD_PW: both rows' passwords are proven
    await pool.execute("UPDATE accounts SET password_proven_at = now()")
    first = await cli.ok("accounts", "set-password", "alice-shared", "--password-stdin",
                         input=NEW_PW + "\n")  # fmt: skip
    assert first["same_login_differs"] == ["bob-shared"]
    box = _box(db_url, data_dir)
    alice, bob = await _account_id(pool, "alice-shared"), await _account_id(pool, "bob-shared")
    with pytest.raises(InvalidInput, match="is not the one"):
        await proofs.login_credential(pool, box, alice)

    r = await cli("accounts", "set-password", "bob-shared", "--password-stdin",
                  input=NEW_PW + "\n")  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "bob-shared" in r.error_line()
    assert "alice-shared" not in r.error_line()
    for aid in (alice, bob):
        assert (await proofs.login_credential(pool, box, aid)).password == NEW_PW
    detail = await pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'accounts.set_password' ORDER BY id LIMIT 1"
    )
    assert detail["same_login_differs"] == ["bob-shared"]


async def _no_username(pool: asyncpg.Pool, empty: str) -> None:
    """A demo row with no Tradovate username, as only SQL (or an old row) can make one."""
    if empty == "NULL":
        await pool.execute("ALTER TABLE accounts DROP CONSTRAINT accounts_check2")
        await pool.execute("UPDATE accounts SET username = NULL WHERE label = 'alice-demo'")
    else:
        await pool.execute("UPDATE accounts SET username = '' WHERE label = 'alice-demo'")


# (arguments after `accounts set-password`, stdin, exit code, what the error line says)
REFUSALS: dict[str, tuple[list[str], str | None, int, str]] = {
    "unknown label": (["ghost-acc", "--password-stdin"], NEW_PW + "\n", 1,
                      "no account labelled 'ghost-acc'"),
    "paper account": (["alice-paper", "--password-stdin"], NEW_PW + "\n", 1,
                      "alice-paper is a paper account"),
    "no username ''": (["alice-demo", "--password-stdin"], NEW_PW + "\n", 1,
                       "alice-demo has no Tradovate username"),
    "no username NULL": (["alice-demo", "--password-stdin"], NEW_PW + "\n", 1,
                         "alice-demo has no Tradovate username"),
    "no --password-stdin": (["alice-demo"], NEW_PW + "\n", 1, "with --password-stdin"),
    "empty password": (["alice-demo", "--password-stdin"], "\n", 1,
                       "no password on standard input"),
    "nothing on stdin": (["alice-demo", "--password-stdin"], "", 1,
                         "no password on standard input"),
    "password as an argument": (["alice-demo", NEW_PW, "--password-stdin"], None, 2,
                                "the password is read only from standard input"),
    "bad label": (["bad/label", "--password-stdin"], NEW_PW + "\n", 1, "must start with a letter"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_refusals_are_one_line_and_change_nothing(
    cli: Cli, pool: asyncpg.Pool, case: str
) -> None:
    await cli.add_demo("alice-demo", "alice", "alice_tv", OLD_PW)
    await cli.ok("accounts", "add", "alice-paper", "--user", "alice", "--env", "paper")
    if case.startswith("no username"):
        await _no_username(pool, "NULL" if case.endswith("NULL") else "''")
    before = await _state(pool)
    args, stdin, code, says = REFUSALS[case]
    r = await cli("accounts", "set-password", *args, input=stdin)
    assert r.exit_code == code, r.stderr
    line = r.error_line()
    assert line.startswith("error:"), line
    assert says in line, line
    assert NEW_PW not in r.stdout + r.stderr
    assert r.stdout == ""
    assert await _state(pool) == before


async def test_an_unknown_password_option_is_a_usage_error_that_does_not_echo_it(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    await cli.add_demo("alice-demo", "alice", "alice_tv", OLD_PW)
    before = await _state(pool)
    for args in (["--password", NEW_PW], [f"--password={NEW_PW}"]):
        r = await cli("accounts", "set-password", "alice-demo", *args)
        assert r.exit_code == 2, r.stderr
        assert NEW_PW not in r.stdout + r.stderr
    assert await _state(pool) == before


# --- money rule 8: the password in no output and no log, successes and failures ---------------
MASTER_KEY = new_secret_key()
CANARY_ENV: dict[str, str | None] = {
    "JTRADES_LOG__LEVEL": "debug",
    "JTRADES_LOG__FORMAT": "json",
    "JTRADES_SECRET_KEY": MASTER_KEY,
}


def _json_log_lines(stderr: str) -> list[dict[str, object]]:
    return [orjson.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]


async def test_the_password_never_shows_in_output_logs_or_the_database(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    def commands() -> list[tuple[list[str], Result]]:
        seen: list[tuple[list[str], Result]] = []

        def run(*args: str, input: str | None = None, expect: int = 0) -> None:
            r = invoke(list(args), db_url=db_url, data_dir=data_dir, input=input,
                       env=CANARY_ENV)  # fmt: skip
            assert r.exit_code == expect, (args, r.stderr)
            seen.append((list(args), r))

        run("users", "register", "carol", "--email", "c@x.io")
        run("accounts", "add", "carol-demo", "--user", "carol", "--env", "demo", "--username",
            "carol_tv", "--password-stdin", input=OLD_PW + "\n")  # fmt: skip
        run("accounts", "add", "carol-paper", "--user", "carol", "--env", "paper")
        for fmt in (["--json"], []):
            run("accounts", "set-password", "carol-demo", "--password-stdin", *fmt,
                input=NEW_PW + "\n")  # fmt: skip
            run("accounts", "list", *fmt)
            # refusals, each with the password on stdin (or typed where it must not be)
            for label in ("carol-paper", "nobody-acc"):
                run("accounts", "set-password", label, "--password-stdin", *fmt,
                    input=NEW_PW + "\n", expect=1)  # fmt: skip
            run("accounts", "set-password", "carol-demo", *fmt, input=NEW_PW + "\n", expect=1)
            run("accounts", "set-password", "carol-demo", NEW_PW, "--password-stdin", *fmt,
                expect=2)  # fmt: skip
        return seen

    seen = await asyncio.to_thread(commands)
    # Debug logging really was on, in JSON, and logged the command (else the test is hollow).
    events = [line for _, r in seen for line in _json_log_lines(r.stderr)]
    assert any(e["event"] == "accounts.set_password" and e["level"] == "debug" for e in events)
    for args, r in seen:
        for canary in (NEW_PW, OLD_PW, MASTER_KEY):
            assert canary not in r.stdout, (args, "stdout")
            assert canary not in r.stderr, (args, "stderr")

    dump = await pool.fetch(
        "SELECT row_to_json(t)::text AS j FROM (SELECT * FROM accounts) t "
        "UNION ALL SELECT row_to_json(t)::text FROM (SELECT * FROM audit_log) t"
    )
    text = "\n".join(r["j"] for r in dump)
    assert "accounts.set_password" in text  # the dump really holds the audit rows
    for canary in (NEW_PW, OLD_PW, MASTER_KEY):
        assert canary not in text


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_a_real_process_writes_no_password(db_url: str, data_dir: Path, fmt: str) -> None:
    """Every byte a real process writes to fds 1 and 2, not only what goes through sys.*."""
    env = {**CANARY_ENV, "JTRADES_LOG__FORMAT": fmt}

    def run(args: list[str], stdin: str | None = None) -> Result:
        return invoke_process(args, db_url=db_url, data_dir=data_dir, input=stdin, env=env)

    assert run(["users", "register", "dan", "--email", "d@x.io"]).exit_code == 0
    added = run(["accounts", "add", "dan-demo", "--user", "dan", "--env", "demo",
                 "--username", "dan_tv", "--password-stdin"], OLD_PW + "\n")  # fmt: skip
    assert added.exit_code == 0, added.stderr
    done = run(["accounts", "set-password", "dan-demo", "--password-stdin"], NEW_PW + "\n")
    assert done.exit_code == 0, done.stderr
    assert "accounts.set_password" in done.stderr  # debug logging reached the real stderr
    assert "dan-demo" in done.stderr
    refused = run(["accounts", "set-password", "dan-demo", NEW_PW])
    assert refused.exit_code == 2
    for res in (added, done, refused):
        for canary in (NEW_PW, OLD_PW, MASTER_KEY):
            assert canary not in res.stdout + res.stderr


# --- end to end: a daemon's session that failed on the old password ---------------------------
LOGIN = "sp_tv"


async def test_a_failed_session_reconnects_after_set_password(
    database: Database, settings: Settings, db_url: str, data_dir: Path
) -> None:
    """The person changed the Tradovate password, so the daemon's session failed for good; while
    the stored password is the old one the registry spends no login on it (retrying a refused
    password walks into the captcha lock); once `set-password` stores the new one, its next
    pass reconnects the login, in the same process."""
    async with running_sim() as sim:
        spec = sim.add_login(LOGIN, OLD_PW, ["SP1"])
        # its box: data_dir/secret.key, which the CLI reads too
        w = await registry_world(database, settings, sim, "sp", LOGIN, OLD_PW, "SP1")
        aid, bid, registry, link = w.account_id, w.broker_account_id, w.registry, w.link
        registry._wanted = {aid}  # what the daemon's configuration sync sets
        try:
            await registry.reach([link])
            session = registry.broker_for(link).session  # type: ignore[attr-defined]
            assert session.ready

            # The password changes at Tradovate; the daemon's token is revoked with it.
            spec.password = NEW_PW
            sim.fault("unauthorized", token=session._token.token)
            sim.fault("drop", after=0)
            await until(lambda: session.state is State.FAILED, within_s=10)
            sim.fault("clear")

            # Passes before the fix: refused at once, no login spent.
            spent = sim.world.auth.token_requests
            await registry.reach([link])
            assert registry.connected() == {aid: False}
            assert sim.world.auth.token_requests == spent

            r = await ainvoke(
                ["accounts", "set-password", "sp-demo", "--password-stdin"],
                db_url=db_url, data_dir=data_dir, input=NEW_PW + "\n",
            )  # fmt: skip
            assert r.exit_code == 0, r.stderr

            with structlog.testing.capture_logs() as logs:
                await registry.reach([link])  # the next reconciliation pass
            assert registry.connected() == {aid: True}
            b = registry.broker_for(link)
            assert b.session is not session  # type: ignore[attr-defined]
            assert b.is_synced(bid), (
                f"session still {b.session.state}: {b.session.last_error}"  # type: ignore[attr-defined]
            )
            assert NEW_PW not in str(logs)
            assert OLD_PW not in str(logs)
        finally:
            await registry.close()


async def test_a_password_the_daemon_cannot_check_is_said_so(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """The login's only other account is connected with OAuth: there is no password to check
    this one against, and the daemon refuses it (``login_credential``). The command stores
    it, and says the daemon will not use it, where it said "logs in on its next pass"."""
    await cli.add_demo("alice-shared", "alice", "shared_tv", OLD_PW)
    await cli.add_demo("bob-oauth", "bob", "shared_tv", None)
    box = _box(db_url, data_dir)
    bob = await _account_id(pool, "bob-oauth")
    sealed = box.seal("oauth-token-xyz-123456", store.oauth_context("demo", "shared_tv"))
    await pool.execute(
        "UPDATE accounts SET oauth_token_enc=$1, oauth_key_id=$2,"
        " oauth_expires_at=now() + interval '1 hour' WHERE id=$3",
        sealed.ciphertext, sealed.key_id, bob,
    )  # fmt: skip
    out = await cli.ok(
        "accounts", "set-password", "alice-shared", "--password-stdin", input=NEW_PW + "\n"
    )
    assert out["usable"] is False
    assert "connected with OAuth" in out["refusal"]
    creds = await store.load_credentials(pool, box, await _account_id(pool, "alice-shared"))
    assert creds.password == NEW_PW  # stored all the same
