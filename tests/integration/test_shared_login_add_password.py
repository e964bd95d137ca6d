"""`jtrades accounts add` accepted, silently, a password for a Tradovate login that differs from
the one the login's existing (synced, trading) account holds -- even for another user. From
then on `login_credential` (what the daemon calls to open the login's session) refused the
*existing* account too, so after the next `jtrades serve` restart the working account had no
session: its alerts answered 200 "not traded: no Tradovate session" (TradingView does not
re-send) and `jtrades status` listed no session for it at all.

Now `accounts add` refuses such a password (one line naming the accounts that hold another,
nothing written, no password printed), as ``login_mismatches`` (what `set-password` warns with)
finds them. The first test is the reviewer's (/tmp/review_readme).
"""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson

from jtrades.config import Settings
from jtrades.errors import InvalidInput
from jtrades.security import load_secret_box
from jtrades.store import accounts as store
from jtrades.store import login_proofs as proofs
from tests.integration.test_cli_set_password import (  # noqa: F401  (cli is a fixture)
    NEW_PW,
    OLD_PW,
    Cli,
    _account_id,
    _box,
    _state,
    cli,
)


async def test_adding_a_typoed_password_for_a_shared_login_breaks_the_working_account(
    cli: Cli,  # noqa: F811
    pool: asyncpg.Pool,
    db_url: str,
    data_dir: Path,
) -> None:
    await cli.add_demo("alice-live", "alice", "shared_tv", OLD_PW)
    box = _box(db_url, data_dir)
    alice = await _account_id(pool, "alice-live")
    assert (await proofs.login_credential(pool, box, alice)).password == OLD_PW  # trading fine

    # someone adds the same login again with a typo (here: another user, bob)
    r = await cli("accounts", "add", "bob-typo", "--user", "bob", "--env", "demo",
                  "--username", "shared_tv", "--password-stdin", input="typo-pw\n")  # fmt: skip
    added_silently = r.exit_code == 0 and "password" not in r.stderr.lower()

    try:
        await proofs.login_credential(pool, box, alice)
        broken = False
    except InvalidInput:
        broken = True
    assert not (added_silently and broken), (
        "`accounts add bob-typo` exited 0 without a word, and alice-live's login is now refused "
        f"to the daemon (stderr of add: {r.stderr!r})"
    )


async def test_a_different_password_is_refused_in_one_line_and_nothing_is_written(
    cli: Cli,  # noqa: F811
    pool: asyncpg.Pool,
    db_url: str,
    data_dir: Path,
) -> None:
    """Any case of the username names the same login (as ``accounts.same_login`` compares);
    the refusal names the accounts holding another password Tradovate accepted, never a
    password."""
    await cli.add_demo("alice-live", "alice", "shared_tv", OLD_PW)
    await cli.add_demo("alice-other", "alice", "other_tv", OLD_PW)  # another login
    # the daemon's sessions used them: Tradovate accepted both passwords
    await pool.execute("UPDATE accounts SET password_proven_at = now()")
    before = await _state(pool)
    for fmt in ([], ["--json"]):
        r = await cli("accounts", "add", "bob-typo", "--user", "bob", "--env", "demo",
                      "--username", "Shared_TV", "--password-stdin", *fmt,
                      input=NEW_PW + "\n")  # fmt: skip
        assert r.exit_code == 1, r.stderr
        assert r.stdout == ""
        line = r.error_line()
        assert line.startswith("error:"), line
        assert "alice-live" in line, line
        assert "alice-other" not in line, line
        assert "Shared_TV" in line or "shared_tv" in line, line
        assert "set-password" in line, line
        for pw in (OLD_PW, NEW_PW):
            assert pw not in r.stdout + r.stderr
    assert await _state(pool) == before  # no row, no audit entry
    box = _box(db_url, data_dir)
    alice = await _account_id(pool, "alice-live")
    assert (await proofs.login_credential(pool, box, alice)).password == OLD_PW


async def test_the_same_password_is_added_and_both_accounts_log_in(
    cli: Cli,  # noqa: F811
    pool: asyncpg.Pool,
    db_url: str,
    data_dir: Path,
) -> None:
    await cli.add_demo("alice-live", "alice", "shared_tv", OLD_PW)
    out = await cli.ok("accounts", "add", "bob-shared", "--user", "bob", "--env", "demo",
                       "--username", "SHARED_tv", "--password-stdin",
                       input=OLD_PW + "\n")  # fmt: skip
    assert out["account"]["label"] == "bob-shared"
    assert OLD_PW not in orjson.dumps(out).decode()
    box = _box(db_url, data_dir)
    for label in ("alice-live", "bob-shared"):
        aid = await _account_id(pool, label)
        assert (await proofs.login_credential(pool, box, aid)).password == OLD_PW


async def test_without_a_password_the_add_is_not_checked(
    cli: Cli,  # noqa: F811
    pool: asyncpg.Pool,
    db_url: str,
    data_dir: Path,
) -> None:
    """An account added to be connected with OAuth holds no password: nothing to compare, and
    the login's existing account goes on logging in."""
    await cli.add_demo("alice-live", "alice", "shared_tv", OLD_PW)
    await cli.add_demo("bob-oauth", "bob", "shared_tv", None)
    box = _box(db_url, data_dir)
    alice = await _account_id(pool, "alice-live")
    assert (await proofs.login_credential(pool, box, alice)).password == OLD_PW


async def test_next_to_oauth_only_accounts_it_is_added_and_said_unusable(
    cli: Cli,  # noqa: F811
    pool: asyncpg.Pool,
    db_url: str,
    data_dir: Path,
) -> None:
    """As `set-password` does: the login's other accounts connected with OAuth only hold no
    password to compare with, so it is stored (their sessions are not refused by it), and the
    command says the daemon will not use it (``login_credential``)."""
    await cli.add_demo("bob-oauth", "bob", "shared_tv", None)
    cfg = Settings(data_dir=data_dir, database={"url": db_url})  # type: ignore[arg-type]
    box = load_secret_box(cfg, create=True)  # no password stored yet: no key either
    bob = await _account_id(pool, "bob-oauth")
    sealed = box.seal("oauth-token-xyz-123456", store.oauth_context("demo", "shared_tv"))
    await pool.execute(
        "UPDATE accounts SET oauth_token_enc=$1, oauth_key_id=$2,"
        " oauth_expires_at=now() + interval '1 hour' WHERE id=$3",
        sealed.ciphertext, sealed.key_id, bob,
    )  # fmt: skip
    args = ["accounts", "add", "alice-pw", "--user", "alice", "--env", "demo",
            "--username", "shared_tv", "--password-stdin"]  # fmt: skip
    r = await cli(*args, input=NEW_PW + "\n")
    assert r.exit_code == 0, r.stderr
    assert "will not use it yet" in r.error_line()
    assert "connected with OAuth" in r.stderr
    assert NEW_PW not in r.stdout + r.stderr
    assert (await proofs.login_credential(pool, box, bob)).oauth_token is not None

    await cli.ok("accounts", "remove", "alice-pw")
    out = await cli.ok(*args, input=NEW_PW + "\n")
    assert out["usable"] is False
    assert "connected with OAuth" in out["refusal"]
    assert NEW_PW not in orjson.dumps(out).decode()
