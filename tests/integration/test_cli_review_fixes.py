"""Fixes of the CLI review: a removed login's token, a broker answer that is not JSON, a
password typed as an argument, and ``jtrades sim`` options out of range."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import asyncpg
import pytest

from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings, TradovateSettings
from jtrades.errors import BrokerAuthError
from jtrades.migrations import sql_dir
from jtrades.security import SecretBox, load_secret_box
from jtrades.sim.config import default_config
from tests.cli import Result, ainvoke, invoke
from tests.integration.test_cli_bad_input import SETUP
from tests.integration.test_tradovate_session import tv
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import SimHandle, running_sim

SECRET = "Hunter2-secret-pw"
ALICES = "tv-Pa55word-for-tests"
LOGIN, PASSWORD = "px_tv", "px-Pa55word-canary"


def _setup(db_url: str, data_dir: Path) -> None:
    for step in SETUP:
        r = invoke(step, db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 0, r.stderr


# --- a removed login's stored token ------------------------------------------------------------


class _Cli:
    def __init__(self, db_url: str, data_dir: Path, env: dict[str, str | None]) -> None:
        self.db_url, self.data_dir, self.env = db_url, data_dir, env

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        return await ainvoke(
            list(args), db_url=self.db_url, data_dir=self.data_dir, input=input, env=self.env
        )

    async def ok(self, *args: str, input: str | None = None) -> Result:
        r = await self(*args, input=input)
        assert r.exit_code == 0, r.stderr
        return r


async def _alice_synced(sim: SimHandle, cli: _Cli, username: str = "alice_tv") -> None:
    """alice (pending) and bob (approved); alice's account of her login, synced: the login's
    token is stored in broker_tokens."""
    await cli.ok("users", "register", "alice", "--email", "a@x.io")
    await cli.ok("users", "register", "bob", "--email", "b@x.io")
    await cli.ok("users", "approve", "bob")
    await cli.ok(
        "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo",
        "--username", username, "--password-stdin", input=ALICES + "\n",
    )  # fmt: skip
    await cli.ok("accounts", "sync", "alice-demo")


async def _tokens(pool: asyncpg.Pool) -> list[str]:
    return [r["username"] for r in await pool.fetch("SELECT username FROM broker_tokens")]


@pytest.mark.parametrize("how", ["accounts remove", "users reject"])
async def test_a_removed_logins_token_is_not_handed_to_the_next_account_of_the_login(
    db_url: str, data_dir: Path, pool: asyncpg.Pool, how: str
) -> None:
    """Once the last account naming a login was gone (removed, or its user rejected),
    broker_tokens still held the login's token, and bob's new account of the login with a
    wrong password synced with it: bob got alice's sub-accounts (his traders could trade
    them). The token now goes with the last account of its login."""
    async with running_sim() as sim:
        sim.add_login("alice_tv", ALICES, ["DEMO-A1", "DEMO-A2"])
        cli = _Cli(db_url, data_dir, dict(sim.tradovate_env()))
        await _alice_synced(sim, cli)
        assert await _tokens(pool) == ["alice_tv"]
        if how == "accounts remove":
            await cli.ok("accounts", "remove", "alice-demo")
        else:
            await cli.ok("users", "reject", "alice")
        assert await _tokens(pool) == []

        await cli.ok(
            "accounts", "add", "bob-demo", "--user", "bob", "--env", "demo",
            "--username", "alice_tv", "--password-stdin", input="not-alices-password\n",
        )  # fmt: skip
        r = await cli("accounts", "sync", "bob-demo")
        assert r.exit_code == 1
        r.error_line()
        bobs = await pool.fetchval(
            "SELECT count(*) FROM sub_accounts s JOIN accounts a ON a.id = s.account_id"
            " WHERE a.label = 'bob-demo'"
        )
        assert bobs == 0
        assert "not-alices-password" not in r.stdout + r.stderr


async def test_a_login_still_named_by_another_account_keeps_its_token(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    """The token is the login's, not the account's: removing one of its accounts leaves it to
    the others (the login named in another case is the same login, as same_login says)."""
    async with running_sim() as sim:
        sim.add_login("alice_tv", ALICES, ["DEMO-A1"])
        cli = _Cli(db_url, data_dir, dict(sim.tradovate_env()))
        await _alice_synced(sim, cli)
        await cli.ok(
            "accounts", "add", "alice-live", "--user", "alice", "--env", "demo",
            "--username", "Alice_TV", "--password-stdin", input=ALICES + "\n",
        )  # fmt: skip
        await cli.ok("accounts", "remove", "alice-demo")
        assert await _tokens(pool) == ["alice_tv"]
        await cli.ok("accounts", "remove", "alice-live")
        assert await _tokens(pool) == []


async def test_the_migration_forgets_the_tokens_no_account_names(pool: asyncpg.Pool) -> None:
    """Installs whose accounts were removed before the fix hold their logins' tokens still:
    migration 0008 deletes every token no account names (compared as same_login does)."""
    user = await pool.fetchval(
        "INSERT INTO users (name, email, status) VALUES ('u', 'u@x.io', 'pending') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO accounts (user_id, label, env, username) VALUES ($1, 'kept', 'demo', 'Kept')",
        user,
    )
    expires = datetime.now(UTC) + timedelta(hours=1)
    for env, username in (("demo", "kept"), ("demo", "gone"), ("live", "Kept")):
        await pool.execute(
            "INSERT INTO broker_tokens (env, username, token_enc, key_id, expires_at)"
            " VALUES ($1, $2, '\\x00', 'k', $3)",
            env, username, expires,
        )  # fmt: skip
    [migration] = (sql_dir() / "migrations").glob("0008_*.sql")
    await pool.execute(migration.read_text())
    rows = await pool.fetch("SELECT env, username FROM broker_tokens")
    assert [tuple(r) for r in rows] == [("demo", "kept")]


# --- the daemon's path: a live session of the login ----------------------------------------


def _tv(sim: SimHandle) -> TradovateSettings:
    return sim_tradovate_defaults(sim, connect_stagger_s=0.01, request_timeout_s=5)


async def test_the_pool_does_not_hand_a_live_session_to_another_password(
    pool: asyncpg.Pool,
) -> None:
    """The pool returned the session of (env, login) to any caller naming the login, whatever
    password it held: a daemon account of the login with a wrong password traded on the
    owner's session. Now only the password the session logged in with (or an OAuth token)
    joins it; the refusal does not show the password."""
    async with running_sim() as sim:
        sim.add_login(LOGIN, PASSWORD, ["PX1"])
        tv = TradovatePool(_tv(sim), pool, SecretBox([os.urandom(32)], "test"))
        try:
            broker = await tv.broker("demo", LOGIN, PASSWORD)
            with pytest.raises(BrokerAuthError) as refused:
                await tv.broker("demo", LOGIN, "a-wrong-password")
            assert "a-wrong-password" not in str(refused.value)
            assert PASSWORD not in str(refused.value)
            with pytest.raises(BrokerAuthError):
                await tv.broker("demo", LOGIN, None)
            assert await tv.broker("demo", LOGIN, PASSWORD) is broker
            # one login, one session, however its accounts spell it
            assert await tv.broker("demo", LOGIN.upper(), PASSWORD) is broker
            with pytest.raises(BrokerAuthError):
                await tv.broker("demo", LOGIN.upper(), "a-wrong-password")
            assert len(tv.sessions()) == 1
            assert sim.stats()["access_token_requests"] == 1
        finally:
            await tv.close()


# --- accounts sync: a broker answer that is not JSON ----------------------------------------


class _FakeTradovate(BaseHTTPRequestHandler):
    """Logs in; answers account/list with ``server.account_list`` (bytes, content type)."""

    def log_message(self, *a: object) -> None:
        pass

    def _send(self, body: bytes, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        token = {"accessToken": "tok-abc", "expirationTime": "2099-01-01T00:00:00Z",
                 "userId": 7, "name": "u"}  # fmt: skip
        self._send(json.dumps(token).encode(), "application/json")

    def do_GET(self) -> None:
        self._send(*self.server.account_list)  # type: ignore[attr-defined]


@pytest.fixture
def fake_tradovate() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _FakeTradovate)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ((b"<html><body>Down for maintenance</body></html>", "text/html"), "not JSON"),
        ((b'[{"name": "DEMO1", "active": true}]', "application/json"), "account/list"),
        ((b'[{"id": "x1", "name": "DEMO1"}]', "application/json"), "account/list"),
    ],
)
def test_sync_with_a_non_json_account_list_is_one_line_not_a_traceback(
    db_url: str,
    data_dir: Path,
    fake_tradovate: ThreadingHTTPServer,
    answer: tuple[bytes, str],
    says: str,
) -> None:
    """A 200 whose body is not JSON (a proxy's maintenance page) raised orjson's
    JSONDecodeError, and a row without a usable id a KeyError/ValueError: tracebacks."""
    fake_tradovate.account_list = answer  # type: ignore[attr-defined]
    _setup(db_url, data_dir)
    env = {"JTRADES_TRADOVATE__DEMO_REST_URL": f"http://127.0.0.1:{fake_tradovate.server_port}/v1"}
    r = invoke(
        ["accounts", "add", "dd", "--user", "alice", "--env", "demo", "--username", "u",
         "--password-stdin"],
        db_url=db_url, data_dir=data_dir, input="pw\n", env=env,
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    r = invoke(["accounts", "sync", "dd"], db_url=db_url, data_dir=data_dir, env=env)
    assert r.exit_code == 1
    assert says in r.error_line()


# --- a password typed as an argument ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["accounts", "add", "dd", "--user", "alice", "--env", "demo", "--username", "u",
         "--password-stdin", SECRET],
        ["users", "register", "bob", "--email", "b@x.io", "--password-stdin", SECRET],
        ["accounts", "set-password", "ap", "--password-stdin", SECRET],
    ],
)  # fmt: skip
def test_a_password_given_as_an_argument_is_not_echoed(
    db_url: str, data_dir: Path, args: list[str]
) -> None:
    """`accounts add` and `users register` printed a stray argument back in Click's usage
    error ("Got unexpected extra argument(s) (…)"): a password typed on the command line
    (money rule 8). Only `accounts set-password` kept it out."""
    _setup(db_url, data_dir)
    r = invoke(args, db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 2
    assert SECRET not in r.stdout + r.stderr
    assert "not shown" in r.error_line()


# --- jtrades sim: options out of range ---------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--port", "99999"], ["--port", "-1"], ["--token-lifetime", "nan"],
     ["--token-lifetime", "inf"], ["--price", "MNQ=1e400"]],
)  # fmt: skip
def test_sim_refuses_a_port_past_65535(args: list[str]) -> None:
    """`--port 99999` served on 34463 (99999 - 65536), and a lifetime of nan or inf, or a
    price no double holds, were taken as given: each is now refused before serving."""
    p = subprocess.Popen(
        [sys.executable, "-m", "jtrades.cli", "sim", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = p.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        p.terminate()
        out, err = p.communicate(timeout=10)
        pytest.fail(f"sim {' '.join(args)} kept running: {out.strip().splitlines()[:1]}")
    assert p.returncode in (1, 2), err


# A daemon's session of a removed login renews its token: it is not written back (a second
# review: the next account naming the login was handed it).


async def test_a_removed_logins_token_stays_forgotten_while_the_daemon_runs(
    db_url: str, data_dir: Path, pool: asyncpg.Pool, settings: Settings
) -> None:
    """alice's login has a live daemon session (her traders trade it). She removes the
    account (``accounts remove``): the token row goes, but the session lives on in the daemon
    and its renewal loop writes the login's token back into broker_tokens. bob then adds an
    account naming alice's login with a wrong password and ``accounts sync`` hands him the
    stored token: he gets alice's sub-accounts (the very hole the fix closed)."""
    cfg = default_config()
    cfg.token_lifetime_s = 20
    async with running_sim(cfg) as sim:
        sim.add_login("alice_tv", ALICES, ["DEMO-A1", "DEMO-A2"])
        cli = _Cli(db_url, data_dir, dict(sim.tradovate_env()))
        await _alice_synced(sim, cli)
        daemon = TradovatePool(
            tv(sim, renew_margin_s=17), pool, load_secret_box(settings, create=False)
        )
        try:
            await daemon.broker("demo", "alice_tv", ALICES, wait_s=10)
            await cli.ok("accounts", "remove", "alice-demo")
            assert await _tokens(pool) == []
            renewals = sim.stats()["renewals"]
            await until(lambda: sim.stats()["renewals"] > renewals, within_s=15)

            await cli.ok(
                "accounts", "add", "bob-demo", "--user", "bob", "--env", "demo",
                "--username", "alice_tv", "--password-stdin", input="not-alices-password\n",
            )  # fmt: skip
            await cli("accounts", "sync", "bob-demo")
            bobs = await pool.fetchval(
                "SELECT count(*) FROM sub_accounts s JOIN accounts a ON a.id = s.account_id"
                " WHERE a.label = 'bob-demo'"
            )
            assert (await _tokens(pool), bobs) == ([], 0), "bob synced alice's sub-accounts"
        finally:
            await daemon.close()
