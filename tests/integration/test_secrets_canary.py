"""Money rule 8: secrets never appear in logs, errors or CLI output after creation.

Canary values (a broker password, a user password, the operator's API secret, the master key,
a webhook token) are pushed through every users/accounts command — successes and failures —
with debug logging in JSON, and every byte each command writes is searched for them. The one
allowed appearance is the webhook URL printed once by ``recorder create``.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import orjson
import pytest

from jtrades.config import DatabaseSettings, Settings
from jtrades.logging import known_secrets
from jtrades.security import new_secret_key
from tests.cli import Result, invoke, invoke_process
from tests.simutil import running_sim

BROKER_PW = "canary-broker-pw-7Fq2xZ"
USER_PW = "canary-user-pw-Lm93kQ"
API_SEC = "canary-api-sec-0d9e8c7b"
MASTER_KEY = new_secret_key()


class Recorder:
    """Runs commands with the canary environment and keeps everything they wrote."""

    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir
        self.env: dict[str, str | None] = {
            "JTRADES_LOG__LEVEL": "debug",
            "JTRADES_LOG__FORMAT": "json",
            "JTRADES_TRADOVATE__SEC": API_SEC,
            "JTRADES_SECRET_KEY": MASTER_KEY,
        }
        self.outputs: list[tuple[list[str], Result]] = []

    def __call__(self, *args: str, input: str | None = None, expect: int = 0) -> Result:
        r = invoke(
            list(args), db_url=self.db_url, data_dir=self.data_dir, input=input, env=self.env
        )
        assert r.exit_code == expect, (args, r.stderr)
        self.outputs.append((list(args), r))
        return r

    def assert_clean(self, canaries: list[str]) -> None:
        assert self.outputs
        for args, r in self.outputs:
            for canary in canaries:
                assert canary not in r.stdout, (args, canary, "stdout")
                assert canary not in r.stderr, (args, canary, "stderr")


def _json_log_lines(stderr: str) -> list[dict[str, object]]:
    return [orjson.loads(ln) for ln in stderr.splitlines() if ln.startswith("{")]


def test_users_and_accounts_commands_never_show_secrets(db_url: str, data_dir: Path) -> None:
    run = Recorder(db_url, data_dir)
    both = ("--json", "")
    for i, fmt in enumerate(both):
        extra = [fmt] if fmt else []
        name, label = f"alice{i}", f"alice{i}-demo"
        run("users", "register", name, "--email", f"{name}@x.io", "--password-stdin", *extra,
            input=USER_PW + "\n")  # fmt: skip
        run("users", "approve", name, *extra)
        run("users", "set-timezone", name, "Europe/London", *extra)
        run("users", "list", *extra)
        run("users", "list", "--pending", *extra)
        run("accounts", "add", label, "--user", name, "--env", "demo", "--username",
                f"{name}_tv", "--password-stdin", *extra, input=BROKER_PW + "\n")  # fmt: skip
        run("accounts", "add-sub", label, "--id", str(100 + i), "--name", f"DEMO{i}", *extra)
        run("accounts", "add", f"{name}-paper", "--user", name, "--env", "paper", *extra)
        run("accounts", "list", *extra)
        run("accounts", "list", "--user", name, *extra)
        # Failures carry the secret on stdin too: the error line must not echo it.
        run("accounts", "add", label.upper(), "--user", name, "--env", "live", "--username",
            "x", "--password-stdin", *extra, input=BROKER_PW + "\n", expect=1)  # fmt: skip
        run("accounts", "add", "nouser-acc", "--user", "ghost", "--env", "live", "--username",
            "x", "--password-stdin", *extra, input=BROKER_PW + "\n", expect=1)  # fmt: skip
        run("users", "register", name, "--email", "dup@x.io", "--password-stdin", *extra,
            input=USER_PW + "\n", expect=1)  # fmt: skip
        run("accounts", "remove", f"{name}-paper", *extra)
        run("users", "disable", name, *extra)
        run("users", "reject", name, *extra)

    # Debug logging really was on and in JSON (the test would be hollow otherwise).
    logs = [line for _, r in run.outputs for line in _json_log_lines(r.stderr)]
    events = {str(line["event"]) for line in logs}
    assert {"users.register", "accounts.add"} <= events
    assert any(line["level"] == "debug" for line in logs)
    run.assert_clean([BROKER_PW, USER_PW, API_SEC, MASTER_KEY])


async def test_secrets_are_not_stored_in_clear(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    import asyncio

    def commands() -> None:
        run = Recorder(db_url, data_dir)
        run("users", "register", "bob", "--email", "b@x.io", "--password-stdin",
            input=USER_PW + "\n")  # fmt: skip
        run("accounts", "add", "bob-demo", "--user", "bob", "--env", "demo", "--username",
            "bob_tv", "--password-stdin", input=BROKER_PW + "\n")  # fmt: skip
        run.assert_clean([BROKER_PW, USER_PW, API_SEC, MASTER_KEY])

    await asyncio.to_thread(commands)
    dump = await pool.fetch(
        "SELECT row_to_json(t)::text AS j FROM (SELECT * FROM users) t "
        "UNION ALL SELECT row_to_json(t)::text FROM (SELECT * FROM accounts) t "
        "UNION ALL SELECT row_to_json(t)::text FROM (SELECT * FROM audit_log) t"
    )
    text = "\n".join(r["j"] for r in dump)
    assert "bob_tv" in text  # the dump really holds the rows
    for canary in (BROKER_PW, USER_PW, MASTER_KEY):
        assert canary not in text
    raw = await pool.fetchval("SELECT password_enc FROM accounts")
    assert BROKER_PW.encode() not in raw


def test_webhook_token_shown_once_at_creation_only(db_url: str, data_dir: Path) -> None:
    run = Recorder(db_url, data_dir)
    run("users", "register", "carol", "--email", "c@x.io")
    run("users", "approve", "carol")
    created = run("recorder", "create", "nq", "--user", "carol", "--symbol", "MNQ1!", "--json")
    url = created.json()["webhook_url"]
    token = url.rstrip("/").rsplit("/", 1)[1]
    assert len(token) >= 40
    run.outputs.clear()  # the one place the token may appear
    run("recorder", "list")
    run("recorder", "list", "--json")
    run("recorder", "show", "nq")
    run("recorder", "show", "nq", "--json")
    run("users", "list", "--json")
    run("accounts", "add", "carol-paper", "--user", "carol", "--env", "paper")
    run("accounts", "list")
    rotated = run("recorder", "rotate-token", "nq", "--json")
    new_token = rotated.json()["webhook_url"].rstrip("/").rsplit("/", 1)[1]
    assert new_token != token
    run.outputs.pop()  # rotate-token shows the new one, once
    run("recorder", "show", "nq", "--json")
    run("users", "disable", "carol")
    run("users", "reject", "carol", "--json")
    run.assert_clean([token, new_token, API_SEC, MASTER_KEY])


async def test_sync_never_shows_the_password_or_broker_token(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    before = set(known_secrets())
    async with running_sim() as sim:
        sim.add_login("erin_tv", BROKER_PW, ["DEMO-E1"])

        def commands() -> Recorder:
            run = Recorder(db_url, data_dir)
            run.env.update(sim.tradovate_env())
            run("users", "register", "erin", "--email", "e@x.io")
            run("accounts", "add", "erin-demo", "--user", "erin", "--env", "demo", "--username",
                "erin_tv", "--password-stdin", input=BROKER_PW + "\n")  # fmt: skip
            run("accounts", "sync", "erin-demo")
            run("accounts", "sync", "erin-demo", "--json")
            run("accounts", "list", "--json")
            return run

        run = await asyncio.to_thread(commands)
    assert any(
        line["event"] == "accounts.sync.login"
        for _, r in run.outputs
        for line in _json_log_lines(r.stderr)
    )
    # Secrets first seen during the sync: the access token Tradovate (the simulator) issued.
    tokens = [t for t in set(known_secrets()) - before if len(t) >= 20 and t != BROKER_PW]
    assert tokens
    stored = await pool.fetchval("SELECT count(*) FROM broker_tokens")
    assert stored == 1  # the sync's token was kept (encrypted) for the daemon
    run.assert_clean([BROKER_PW, API_SEC, MASTER_KEY, *tokens])


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_real_process_output_has_no_secrets(db_url: str, data_dir: Path, fmt: str) -> None:
    """One full process per format: everything written to fds 1 and 2, not only via sys.*."""
    env: dict[str, str | None] = {
        "JTRADES_LOG__LEVEL": "debug",
        "JTRADES_LOG__FORMAT": fmt,
        "JTRADES_TRADOVATE__SEC": API_SEC,
        "JTRADES_SECRET_KEY": MASTER_KEY,
    }
    reg = invoke_process(["users", "register", "dan", "--email", "d@x.io"], db_url=db_url,
                         data_dir=data_dir, env=env)  # fmt: skip
    assert reg.exit_code == 0, reg.stderr
    r = invoke_process(
        ["accounts", "add", "dan-demo", "--user", "dan", "--env", "demo", "--username", "dan_tv",
         "--password-stdin"],
        db_url=db_url, data_dir=data_dir, input=BROKER_PW + "\n", env=env,
    )  # fmt: skip
    assert r.exit_code == 0, r.stderr
    assert "accounts.add" in r.stderr  # debug logging reached the real stderr
    dup = invoke_process(
        ["accounts", "add", "dan-demo", "--user", "dan", "--env", "demo", "--username", "dan_tv",
         "--password-stdin"],
        db_url=db_url, data_dir=data_dir, input=BROKER_PW + "\n", env=env,
    )  # fmt: skip
    assert dup.exit_code == 1
    for res in (reg, r, dup):
        for canary in (BROKER_PW, API_SEC, MASTER_KEY):
            assert canary not in res.stdout
            assert canary not in res.stderr


# --- the database password (money rule 8): in a URL's userinfo or in its query ---------------
DB_PW = "canary-db-pw-Hunter2Secret"


def _db_url_variants(db_url: str) -> dict[str, str]:
    """The test database's URL with DB_PW where people put it (trust auth ignores it)."""
    scheme, rest = db_url.split("://", 1)
    user, _, hosts = rest.partition("@")
    joiner = "&" if "?" in db_url else "?"
    return {
        "userinfo": f"{scheme}://{user}:{DB_PW}@{hosts}",
        "empty_user": f"{scheme}://:{DB_PW}@{hosts}",  # the user comes from PGUSER
        "query": f"{db_url}{joiner}password={DB_PW}",
        "sslpassword": f"{db_url}{joiner}sslpassword={DB_PW}&sslmode=disable",
    }


@pytest.mark.parametrize("where", ["userinfo", "empty_user", "query", "sslpassword"])
def test_database_password_never_in_cli_output(db_url: str, data_dir: Path, where: str) -> None:
    run = Recorder(_db_url_variants(db_url)[where], data_dir)
    run.env["PGUSER"] = "postgres"
    status = run("status", "--json")
    assert "database" in status.json()
    run("status")
    run("db", "migrate")
    run("db", "migrate", "--json")
    run("db", "status")
    run("orders", "list", "--json")
    run("users", "register", "zed", "--email", "z@x.io")
    run("users", "register", "zed", "--email", "z@x.io", expect=1)
    run.assert_clean([DB_PW])


@pytest.mark.parametrize(
    "url",
    [
        f"postgress://jt:{DB_PW}@127.0.0.1:5432/jt",  # a mistyped scheme
        f"mysql://:{DB_PW}@127.0.0.1/jt",
        f"postgresql://jt:{DB_PW}@127.0.0.1:1/jt",  # nothing listens there
        f"postgresql://jt@127.0.0.1:1/jt?password={DB_PW}",
        f"postgresql://jt:{DB_PW}@127.0.0.1:notaport/jt",
    ],
)
def test_database_password_never_in_cli_errors(data_dir: Path, url: str) -> None:
    run = Recorder(url, data_dir)
    for args in (["status", "--json"], ["db", "migrate"], ["users", "list"]):
        r = run(*args, expect=1)
        # one line, no traceback (the other lines are the debug log, in JSON)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip() and not ln.startswith("{")]
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith("error:"), r.stderr
    run.assert_clean([DB_PW])


def test_database_password_never_in_daemon_logs(
    tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.test_serve_lifecycle import run_daemon

    env: dict[str, str | None] = {"JTRADES_LOG__FORMAT": "json", "JTRADES_LOG__LEVEL": "debug"}
    monkeypatch.setenv("PGUSER", "postgres")
    for i, where in enumerate(("userinfo", "query")):
        url = _db_url_variants(db_url)[where]
        (tmp_path / str(i)).mkdir()
        with run_daemon(tmp_path / str(i), env, db_url=url) as d:
            d.wait_ready()
            code = d.stop(signal.SIGTERM)
            out = d.output()
        assert code == 0, out
        assert '"daemon.database"' in out  # the line that used to carry it
        assert DB_PW not in out, where


async def test_database_password_is_registered_with_the_log_scrubber(settings: Settings) -> None:
    from jtrades.db import connect
    from jtrades.logging import MASK, scrub

    url = _db_url_variants(settings.database.url)["query"]
    db = await connect(settings.model_copy(update={"database": DatabaseSettings(url=url)}))
    try:
        # A library's message that quotes it (say, a DSN in a driver's error) is masked too.
        assert scrub(f"could not use password {DB_PW}") == f"could not use password {MASK}"
        assert DB_PW in known_secrets()
    finally:
        await db.close()


async def test_debug_log_of_a_session_never_shows_a_piece_of_the_access_token(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The daemon's WebSocket at debug level: the websockets library logged every frame it
    sent, ``authorize`` with the token included, elided to its first and last characters for
    a long payload; the pieces (about 50 characters of a Tradovate token, a few hundred long)
    are not the registered value, and the scrubber let them through."""
    import io
    import secrets as real_secrets
    import types

    import jtrades.sim.auth as sim_auth
    from jtrades.broker.tradovate.pool import TradovatePool
    from jtrades.logging import configure
    from tests.integration.test_tradovate_session import tv
    from tests.simutil import LOGIN, PASSWORD

    # Tradovate's tokens are a few hundred characters long; the simulator's are 43
    long_tokens = types.SimpleNamespace(
        token_urlsafe=lambda n=32: real_secrets.token_urlsafe(150), token_hex=real_secrets.token_hex
    )
    monkeypatch.setattr(sim_auth, "secrets", long_tokens)
    out = io.StringIO()
    configure("json", "debug", stream=out)
    try:
        async with running_sim() as sim:
            pool = TradovatePool(tv(sim))
            try:
                await pool.broker("demo", LOGIN, PASSWORD)
                token = pool.tokens.peek("demo", LOGIN)
                assert token is not None
                assert len(token.token) > 100
            finally:
                await pool.close()
    finally:
        configure("console", "info")
    text = out.getvalue()
    assert '"tradovate.session.ready"' in text  # debug logging of the session was on
    pieces = [token.token[i : i + 16] for i in range(0, len(token.token) - 16, 8)]
    leaked = [ln for ln in text.splitlines() if any(p in ln for p in pieces)]
    assert not leaked, leaked[0][:300]
