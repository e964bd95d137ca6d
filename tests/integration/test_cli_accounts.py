"""``jtrades accounts`` through the real Typer app, and credential storage on a real Postgres."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from jtrades.config import Settings
from jtrades.errors import SecretKeyMissing
from jtrades.security import SecretBox, key_id, load_secret_box, new_secret_key, parse_keys
from jtrades.store import accounts as store
from jtrades.store import broker_tokens as token_store
from tests.cli import Result, ainvoke
from tests.simutil import SimHandle, running_sim

PASSWORD = "tv-Pa55word-for-tests"
OAUTH_TOKEN = "oauth-canary-token-6f1e"
ACCESS_TOKEN = "access-canary-token-2b9c"


class Cli:
    def __init__(self, db_url: str, data_dir: Path, env: dict[str, str | None]) -> None:
        self.db_url = db_url
        self.data_dir = data_dir
        self.env = env

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        return await ainvoke(
            list(args), db_url=self.db_url, data_dir=self.data_dir, input=input, env=self.env
        )

    async def ok(self, *args: str, input: str | None = None) -> Any:
        r = await self(*args, "--json", input=input)
        assert r.exit_code == 0, r.stderr
        return r.json()


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


def _settings(db_url: str, data_dir: Path, key_file: Path | None = None) -> Settings:
    return Settings(
        data_dir=data_dir,
        database={"url": db_url},  # type: ignore[arg-type]
        secrets={"key_file": str(key_file or "")},  # type: ignore[arg-type]
    )


async def test_add_demo_account_encrypts_password_and_generates_key(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    key_path = data_dir / "secret.key"
    assert not key_path.exists()
    r = await cli(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    # First use made a key: private to the owner, and the operator is told where it is.
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert "secrets.key_created" in r.stderr
    assert str(key_path) in r.stderr
    assert "back this file up" in r.stderr
    assert PASSWORD not in r.stdout + r.stderr

    row = await pool.fetchrow("SELECT * FROM accounts WHERE label = 'alice-demo'")
    assert row["env"] == "demo"
    assert row["username"] == "alice_tv"
    assert PASSWORD.encode() not in row["password_enc"]
    box = load_secret_box(_settings(db_url, data_dir), create=False)
    assert row["password_key_id"] == box.current_key_id
    creds = await store.load_credentials(pool, box, row["id"])
    assert creds.password == PASSWORD
    assert PASSWORD not in repr(creds)

    # The second account reuses the key, without a new warning.
    r = await cli(
        "accounts", "add", "alice-live", "--user", "alice", "--env", "live",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "secrets.key_created" not in r.stderr
    audit = await pool.fetch("SELECT action, target, detail FROM audit_log "
                             "WHERE action = 'accounts.add' ORDER BY id")  # fmt: skip
    assert [a["target"] for a in audit] == ["alice-demo", "alice-live"]
    assert audit[0]["detail"]["password_set"] is True
    assert PASSWORD not in str(audit[0]["detail"])


async def test_paper_account_needs_no_credentials_and_gets_a_sub_account(
    cli: Cli, pool: asyncpg.Pool, data_dir: Path
) -> None:
    out = await cli.ok("accounts", "add", "bob-paper", "--user", "bob", "--env", "paper")
    acc = out["account"]
    assert acc["env"] == "paper"
    assert acc["has_password"] is False
    assert [s["name"] for s in acc["sub_accounts"]] == ["bob-paper"]
    assert not (data_dir / "secret.key").exists()  # no secret, no key needed
    r = await cli(
        "accounts", "add", "bob-paper2", "--user", "bob", "--env", "paper", "--password-stdin",
        input="x\n",
    )  # fmt: skip
    assert r.exit_code == 1
    assert "paper accounts need no password" in r.error_line()


async def test_live_account_without_username_is_refused(cli: Cli, pool: asyncpg.Pool) -> None:
    r = await cli("accounts", "add", "a1", "--user", "alice", "--env", "live")
    assert r.exit_code == 1
    assert "needs --username" in r.error_line()
    r = await cli("accounts", "add", "a1", "--user", "alice", "--env", "moon", "--username", "u")
    assert r.exit_code == 2  # not one of the choices: a usage error
    r = await cli("accounts", "add", "a1", "--user", "nobody", "--env", "paper")
    assert r.exit_code == 1
    assert "no user named 'nobody'" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0


async def test_a_key_file_of_raw_bytes_is_one_line(
    db_url: str, data_dir: Path, tmp_path: Path, pool: asyncpg.Pool
) -> None:
    """A secrets.key_file holding raw key bytes (``head -c32 /dev/urandom``) made the command
    crash with a UnicodeDecodeError traceback."""
    key = tmp_path / "raw.key"
    key.write_bytes(bytes(range(200, 232)))
    key.chmod(0o600)
    cli = Cli(db_url, data_dir, {"JTRADES_SECRETS__KEY_FILE": str(key)})
    await cli.ok("users", "register", "alice", "--email", "alice@example.com")
    r = await cli("accounts", "add", "a1", "--user", "alice", "--env", "demo",
                  "--username", "u1", "--password-stdin", input=PASSWORD + "\n")  # fmt: skip
    assert r.exit_code == 1
    assert str(key) in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0


async def test_duplicate_label_any_case(cli: Cli, pool: asyncpg.Pool) -> None:
    await cli.ok("accounts", "add", "shared", "--user", "alice", "--env", "paper")
    r = await cli("accounts", "add", "SHARED", "--user", "bob", "--env", "paper")
    assert r.exit_code == 1
    assert "an account with that label already exists" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 1


async def test_list_shows_sub_accounts_never_secrets(cli: Cli) -> None:
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    await cli.ok("accounts", "add-sub", "alice-demo", "--id", "123456", "--name", "DEMO123456")
    await cli.ok("accounts", "add-sub", "alice-demo", "--id", "123457", "--name", "DEMO123457")
    await cli.ok("accounts", "add", "bob-paper", "--user", "bob", "--env", "paper")

    everyone = await cli.ok("accounts", "list")
    assert [a["label"] for a in everyone] == ["alice-demo", "bob-paper"]
    demo = everyone[0]
    assert demo["has_password"] is True
    assert [(s["broker_account_id"], s["name"]) for s in demo["sub_accounts"]] == [
        (123456, "DEMO123456"),
        (123457, "DEMO123457"),
    ]
    assert "password_enc" not in demo
    assert [a["label"] for a in await cli.ok("accounts", "list", "--user", "BOB")] == ["bob-paper"]
    table = await cli("accounts", "list")
    assert table.exit_code == 0
    assert "DEMO123456 (123456)" in table.stdout
    assert PASSWORD not in table.stdout + table.stderr

    dup = await cli("accounts", "add-sub", "alice-demo", "--id", "123456", "--name", "OTHER")
    assert dup.exit_code == 1
    assert "already exists" in dup.error_line()
    missing = await cli("accounts", "add-sub", "nope", "--id", "1", "--name", "X")
    assert missing.exit_code == 1
    assert "no account labelled 'nope'" in missing.error_line()


async def test_a_broker_name_is_shown_as_given_not_read_as_markup(cli: Cli) -> None:
    await cli.ok("accounts", "add", "bob-paper", "--user", "bob", "--env", "paper")
    r = await cli("accounts", "add-sub", "bob-paper", "--id", "7", "--name", "[b]PA:x:[/b]")
    assert r.exit_code == 0, r.stderr
    assert "added sub-account [b]PA:x:[/b] (7)" in r.stderr
    r = await cli("accounts", "add-sub", "bob-paper", "--id", "8", "--name", "[/x]")
    assert r.exit_code == 0, r.stderr
    table = await cli("accounts", "list")
    assert table.exit_code == 0, table.stderr
    assert "[b]PA:x:[/b] (7)" in table.stdout
    assert "[/x] (8)" in table.stdout


async def test_remove_deletes_account_and_sub_accounts_unless_trading(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    await cli.ok("users", "approve", "alice")
    await cli.ok("accounts", "add", "alice-paper", "--user", "alice", "--env", "paper")
    uid = await pool.fetchval("SELECT id FROM users WHERE name = 'alice'")
    sub = await pool.fetchval("SELECT id FROM sub_accounts")
    rec = await pool.fetchval(
        "INSERT INTO recorders (user_id, name, symbol, token_hash) "
        "VALUES ($1, 'r', 'MNQ1!', $2) RETURNING id",
        uid,
        b"\x01" * 32,
    )
    trader = await pool.fetchval(
        "INSERT INTO traders (user_id, recorder_id, enabled) VALUES ($1, $2, true) RETURNING id",
        uid,
        rec,
    )
    await pool.execute(
        "INSERT INTO trader_accounts (trader_id, sub_account_id) VALUES ($1, $2)", trader, sub
    )
    r = await cli("accounts", "remove", "alice-paper")
    assert r.exit_code == 1
    assert f"enabled trader(s) {trader}" in r.error_line()
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 1

    await pool.execute("UPDATE traders SET enabled = false")
    await cli.ok("accounts", "remove", "ALICE-paper")
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0
    assert await pool.fetchval("SELECT count(*) FROM sub_accounts") == 0
    assert await pool.fetchval("SELECT count(*) FROM trader_accounts") == 0
    assert await pool.fetchval("SELECT count(*) FROM traders") == 1  # the trader stays
    assert (
        await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'accounts.remove'") == 1
    )


async def test_ciphertext_whose_key_is_gone_raises_secret_key_missing(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    account_id = await pool.fetchval("SELECT id FROM accounts")
    old_id = await pool.fetchval("SELECT password_key_id FROM accounts")
    (data_dir / "secret.key").unlink()  # the operator lost the key file
    other = SecretBox(parse_keys(new_secret_key(), "replacement"), "replacement")
    with pytest.raises(SecretKeyMissing) as exc:
        await store.load_credentials(pool, other, account_id)
    assert old_id in str(exc.value)
    assert PASSWORD not in str(exc.value)


async def test_rotation_old_key_still_decrypts_then_reseal(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path, tmp_path: Path
) -> None:
    old_key, new_key = new_secret_key(), new_secret_key()
    key_file = tmp_path / "keys"
    key_file.write_text(old_key + "\n")
    key_file.chmod(0o600)
    cli.env = {"JTRADES_SECRETS__KEY_FILE": str(key_file)}
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    old_id = key_id(parse_keys(old_key, "k")[0])
    assert await pool.fetchval("SELECT password_key_id FROM accounts") == old_id
    assert not (data_dir / "secret.key").exists()

    key_file.write_text(f"{new_key}\n{old_key}\n")  # rotate: new key first, old kept
    box = load_secret_box(_settings(db_url, data_dir, key_file), create=False)
    account_id = await pool.fetchval("SELECT id FROM accounts")
    assert (await store.load_credentials(pool, box, account_id)).password == PASSWORD
    # New accounts are written under the new key.
    await cli.ok(
        "accounts", "add", "alice-live", "--user", "alice", "--env", "live",
        "--username", "alice_tv", "--password-stdin", input="another-pass-123\n",
    )  # fmt: skip
    new_id = key_id(parse_keys(new_key, "k")[0])
    assert (
        await pool.fetchval("SELECT password_key_id FROM accounts WHERE label = 'alice-live'")
        == new_id
    )
    # An OAuth token and a cached broker access token, both under the old key too.
    old_box = SecretBox(parse_keys(old_key, "k"), "old")
    oauth = old_box.seal(OAUTH_TOKEN, store.oauth_context("demo", "alice_tv"))
    await pool.execute(
        "UPDATE accounts SET oauth_token_enc = $1, oauth_key_id = $2 WHERE id = $3",
        oauth.ciphertext, oauth.key_id, account_id,
    )  # fmt: skip
    cached = old_box.seal(ACCESS_TOKEN, token_store.token_context("demo", "alice_tv"))
    expires = datetime.now(UTC) + timedelta(hours=1)
    await token_store.upsert(pool, "demo", "alice_tv", cached.ciphertext, cached.key_id, expires, 7)

    # Re-sealing moves all three; then the old key can go.
    r = await cli("accounts", "reseal")
    assert r.exit_code == 0, r.stderr
    assert f"re-sealed 1 password, 1 OAuth token, 1 access token under key {new_id}" in r.stderr
    assert "other keys in" in r.stderr
    assert "can be removed" in r.stderr
    again = await cli.ok("accounts", "reseal")
    assert again["reseal"]["passwords"] == again["reseal"]["access_tokens"] == 0
    assert again["reseal"]["keys_in_use"] == {new_id: 4}
    for secret in (PASSWORD, OAUTH_TOKEN, ACCESS_TOKEN, old_key, new_key):
        assert secret not in r.stdout + r.stderr
    audit = await pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'accounts.reseal' ORDER BY id LIMIT 1"
    )
    assert (audit["passwords"], audit["oauth_tokens"], audit["access_tokens"]) == (1, 1, 1)

    key_file.write_text(new_key + "\n")
    only_new = load_secret_box(_settings(db_url, data_dir, key_file), create=False)
    creds = await store.load_credentials(pool, only_new, account_id)
    assert (creds.password, creds.oauth_token) == (PASSWORD, OAUTH_TOKEN)
    row = await token_store.get(pool, "demo", "alice_tv")
    assert row is not None
    assert row.expires_at == expires  # the token moved, its life did not change
    context = token_store.token_context("demo", "alice_tv")
    assert only_new.open(row.token_enc, row.key_id, context) == ACCESS_TOKEN


async def test_reseal_is_all_or_nothing_when_a_credential_does_not_open(
    cli: Cli, pool: asyncpg.Pool, tmp_path: Path
) -> None:
    lost_key, old_key, new_key = new_secret_key(), new_secret_key(), new_secret_key()
    key_file = tmp_path / "keys"
    key_file.write_text(old_key + "\n")
    key_file.chmod(0o600)
    cli.env = {"JTRADES_SECRETS__KEY_FILE": str(key_file)}
    for label, login in (("a-demo", "alice_tv"), ("b-demo", "bob_tv")):
        await cli.ok(
            "accounts", "add", label, "--user", "alice", "--env", "demo",
            "--username", login, "--password-stdin", input=f"pw-of-{login}\n",
        )  # fmt: skip
    # b-demo's password was sealed under a key the file no longer holds
    lost = SecretBox(parse_keys(lost_key, "k"), "lost")
    gone = lost.seal("pw-of-bob_tv", store.password_context("demo", "bob_tv"))
    await pool.execute(
        "UPDATE accounts SET password_enc = $1, password_key_id = $2 WHERE label = 'b-demo'",
        gone.ciphertext, gone.key_id,
    )  # fmt: skip
    # a cached access token under the lost key (of a login that stays) is only a cache:
    # dropped, not an error
    cached = lost.seal(ACCESS_TOKEN, token_store.token_context("demo", "alice_tv"))
    expires = datetime.now(UTC) + timedelta(hours=1)
    await token_store.upsert(pool, "demo", "alice_tv", cached.ciphertext, cached.key_id, expires, 8)
    before = await pool.fetch("SELECT * FROM accounts ORDER BY id")
    key_file.write_text(f"{new_key}\n{old_key}\n")

    r = await cli("accounts", "reseal")
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1, r.stderr
    assert "the password of account b-demo" in r.stderr
    assert gone.key_id in r.stderr
    assert "nothing was re-sealed" in r.stderr
    assert "pw-of-" not in r.stdout + r.stderr
    assert await pool.fetch("SELECT * FROM accounts ORDER BY id") == before  # a-demo not moved

    await cli.ok("accounts", "remove", "b-demo")  # the operator gives that login up
    report = (await cli.ok("accounts", "reseal"))["reseal"]
    assert (report["passwords"], report["access_tokens_dropped"]) == (1, 1)
    assert await token_store.get(pool, "demo", "alice_tv") is None
    assert report["keys_in_use"] == {key_id(parse_keys(new_key, "k")[0]): 1}


async def test_ciphertext_moved_to_another_login_does_not_decrypt(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    for label, login in (("a-demo", "alice_tv"), ("b-demo", "bob_tv")):
        await cli.ok(
            "accounts", "add", label, "--user", "alice", "--env", "demo",
            "--username", login, "--password-stdin", input=f"pw-of-{login}\n",
        )  # fmt: skip
    await pool.execute(
        "UPDATE accounts SET password_enc = (SELECT password_enc FROM accounts "
        "WHERE label = 'a-demo') WHERE label = 'b-demo'"
    )
    box = load_secret_box(_settings(db_url, data_dir), create=False)
    b_id = await pool.fetchval("SELECT id FROM accounts WHERE label = 'b-demo'")
    with pytest.raises(SecretKeyMissing, match="does not decrypt"):
        await store.load_credentials(pool, box, b_id)


async def test_help_has_an_example_for_every_command(cli: Cli) -> None:
    for cmd in ("add", "list", "remove", "add-sub", "sync", "connect"):
        r = await cli("accounts", cmd, "--help")
        assert r.exit_code == 0
        assert "Example: jtrades accounts " + cmd in r.stdout


async def test_sync_stores_the_logins_sub_accounts_from_the_simulator(
    cli: Cli, pool: asyncpg.Pool, sim: SimHandle
) -> None:
    sim.add_login("alice_tv", PASSWORD, ["DEMO-A1", "DEMO-A2"])
    cli.env = dict(sim.tradovate_env())
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n",
    )  # fmt: skip
    # A sub-account recorded by hand that the broker does not list becomes inactive.
    await cli.ok("accounts", "add-sub", "alice-demo", "--id", "999", "--name", "OLD")
    out = await cli.ok("accounts", "sync", "alice-demo")
    assert sorted(s["name"] for s in out["added"]) == ["DEMO-A1", "DEMO-A2"]
    assert [s["name"] for s in out["deactivated"]] == ["OLD"]
    rows = await pool.fetch(
        "SELECT broker_account_id, name, active FROM sub_accounts ORDER BY name"
    )
    assert [(r["name"], r["active"]) for r in rows] == [
        ("DEMO-A1", True),
        ("DEMO-A2", True),
        ("OLD", False),
    ]
    assert {r["broker_account_id"] for r in rows if r["active"]} == {
        sim.account_id("DEMO-A1"),
        sim.account_id("DEMO-A2"),
    }
    assert await pool.fetchval("SELECT synced_at IS NOT NULL FROM accounts")
    # Again: nothing new, the token stored by the first sync is reused.
    token_requests = sim.stats()["access_token_requests"]
    assert token_requests == 1
    again = await cli.ok("accounts", "sync", "ALICE-DEMO")
    assert again["added"] == []
    assert sorted(s["name"] for s in again["kept"]) == ["DEMO-A1", "DEMO-A2"]
    assert sim.stats()["access_token_requests"] == token_requests
    assert await pool.fetchval("SELECT count(*) FROM audit_log WHERE action = 'accounts.sync'") == 2


async def test_sync_wrong_password_and_paper_are_one_line_errors(
    cli: Cli, pool: asyncpg.Pool, sim: SimHandle
) -> None:
    sim.add_login("bob_tv", "the-right-password", ["DEMO-B1"])
    cli.env = dict(sim.tradovate_env())
    await cli.ok(
        "accounts", "add", "bob-demo", "--user", "bob", "--env", "demo",
        "--username", "bob_tv", "--password-stdin", input="a-wrong-password\n",
    )  # fmt: skip
    r = await cli("accounts", "sync", "bob-demo")
    assert r.exit_code == 1
    line = r.error_line()
    assert "a-wrong-password" not in r.stdout + r.stderr
    assert line.startswith("error: Tradovate login failed")
    assert await pool.fetchval("SELECT count(*) FROM sub_accounts") == 0
    await cli.ok("accounts", "add", "bob-paper", "--user", "bob", "--env", "paper")
    r = await cli("accounts", "sync", "bob-paper")
    assert r.exit_code == 1
    assert "paper account" in r.error_line()


async def test_connect_prints_a_sealed_sign_in_link_for_that_account(
    cli: Cli, pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    from datetime import UTC, datetime
    from urllib.parse import parse_qs, urlsplit

    from jtrades.oauth import read_state

    await cli.ok("accounts", "add", "alice-live", "--user", "alice", "--env", "live",
                 "--username", "alice_tv")  # fmt: skip
    await cli.ok("accounts", "add", "alice-paper", "--user", "alice", "--env", "paper")
    r = await cli("accounts", "connect", "alice-live")
    assert r.exit_code == 1
    assert "oauth_client_id" in r.error_line()

    cli.env = {
        "JTRADES_TRADOVATE__OAUTH_CLIENT_ID": "client-1",
        "JTRADES_TRADOVATE__OAUTH_REDIRECT_URL": "https://example.com/oauth/callback",
    }
    out = await cli.ok("accounts", "connect", "alice-live")
    query = parse_qs(urlsplit(out["url"]).query)
    assert query["client_id"] == ["client-1"]
    assert query["redirect_uri"] == ["https://example.com/oauth/callback"]
    box = load_secret_box(_settings(db_url, data_dir), create=False)
    account_id = await pool.fetchval("SELECT id FROM accounts WHERE label = 'alice-live'")
    assert read_state(box, query["state"][0], datetime.now(UTC)) == account_id

    r = await cli("accounts", "connect", "alice-paper")
    assert r.exit_code == 1
    assert "paper account" in r.error_line()


@pytest.mark.parametrize("bobs_password", [None, "a-wrong-password"])
async def test_another_users_account_of_the_login_must_hold_its_password(
    cli: Cli, pool: asyncpg.Pool, sim: SimHandle, bobs_password: str | None
) -> None:
    """A login's token is shared by the accounts naming it: bob's account of alice's login,
    with no password or a wrong one, synced with alice's stored token and took her
    sub-accounts (which his traders could then trade)."""
    sim.add_login("alice_tv", PASSWORD, ["DEMO-A1", "DEMO-A2"])
    cli.env = dict(sim.tradovate_env())
    add = ["accounts", "add", "alice-demo", "--user", "alice", "--env", "demo"]
    await cli.ok(*add, "--username", "alice_tv", "--password-stdin", input=PASSWORD + "\n")
    await cli.ok("accounts", "sync", "alice-demo")  # stores the login's token
    bob = [
        "accounts",
        "add",
        "bob-demo",
        "--user",
        "bob",
        "--env",
        "demo",
        "--username",
        "alice_tv",
    ]
    if bobs_password:
        # refused at the add now (a login is one password); set-password only warns
        r = await cli(*bob, "--password-stdin", input=bobs_password + "\n")
        assert r.exit_code == 1
        assert "another password" in r.error_line()
        await cli.ok(*bob)
        await cli.ok("accounts", "set-password", "bob-demo", "--password-stdin",
                     input=bobs_password + "\n")  # fmt: skip
    else:
        await cli.ok(*bob)
    r = await cli("accounts", "sync", "bob-demo")
    assert r.exit_code == 1
    assert "password" in r.error_line()
    bobs = await pool.fetchval(
        "SELECT count(*) FROM sub_accounts s JOIN accounts a ON a.id = s.account_id"
        " WHERE a.label = 'bob-demo'"
    )
    assert bobs == 0


async def test_remove_refuses_a_login_that_still_holds_positions_or_orders(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    """Removing the rows took the login out of reach of halt --flatten, protection and
    reconciliation while its position went on at the broker, with no word said."""
    await cli.ok("users", "approve", "alice")
    await cli.ok("accounts", "add", "alice-paper", "--user", "alice", "--env", "paper")
    sub = await pool.fetchval("SELECT id FROM sub_accounts")
    await pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, 'MNQZ6', -2, 21500)",
        sub,
    )
    await pool.execute(
        "INSERT INTO orders (sub_account_id, broker_order_id, symbol, side, qty, order_type,"
        " stop_price, status) VALUES ($1, 9, 'MNQZ6', 'Buy', 2, 'Stop', 21540, 'Working')",
        sub,
    )
    r = await cli("accounts", "remove", "alice-paper")
    assert r.exit_code == 1, r.stdout
    line = r.error_line()
    assert "position MNQZ6 -2" in line, line
    assert "working order MNQZ6 2" in line, line
    assert "jtrades halt --account alice-paper --flatten" in line
    assert "--force" in line
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 1

    await pool.execute("UPDATE positions SET net_pos = 0")
    await pool.execute("UPDATE orders SET status = 'Filled'")
    await cli.ok("accounts", "remove", "alice-paper")  # flat, nothing working: removed
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0


async def test_remove_force_deletes_a_login_that_still_holds_a_position(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    await cli.ok("users", "approve", "alice")
    await cli.ok("accounts", "add", "alice-paper", "--user", "alice", "--env", "paper")
    sub = await pool.fetchval("SELECT id FROM sub_accounts")
    await pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, 'MNQZ6', 1, 21500)",
        sub,
    )
    await cli.ok("accounts", "remove", "alice-paper", "--force")
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0


async def test_remove_does_not_refuse_for_a_sub_account_the_broker_dropped(
    cli: Cli, pool: asyncpg.Pool
) -> None:
    """A sub-account the broker no longer lists (a closed evaluation account) keeps its last
    mirrored rows for good: nothing reaches them again, so "flatten first" could never clear
    the refusal, and --force (which skips the check for the live ones too) became routine."""
    await cli.ok("users", "approve", "alice")
    await cli.ok("accounts", "add", "alice-paper", "--user", "alice", "--env", "paper")
    sub = await pool.fetchval("SELECT id FROM sub_accounts")
    await pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, 'MNQZ6', 1, 21500)",
        sub,
    )
    await pool.execute("UPDATE sub_accounts SET active = false WHERE id = $1", sub)
    await cli.ok("accounts", "remove", "alice-paper")
    assert await pool.fetchval("SELECT count(*) FROM accounts") == 0
