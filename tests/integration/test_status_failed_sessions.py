"""A login the daemon could not open a session of was shown nowhere: ``registry.sessions()``
lists the sessions that opened, so after a restart in which the login was refused (its stored
password not the one another account of the login holds, a password changed at Tradovate) its
sub-accounts' alerts answered "not traded: no Tradovate session", ``jtrades status`` listed no
session for it and ``status --check`` exited 0.

The heartbeat now carries the configured logins with no session (``failed_sessions``, each
with its error, never a secret); ``status`` shows them, ``--json`` has them, and ``--check``
exits 1 naming them (its help: alive and ready, with a session for every login it trades)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson

from jtrades.broker.tradovate.lifecycle import State
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.session_health import session_detail
from jtrades.store import accounts as account_store
from jtrades.store import status as status_store
from tests.cli import ainvoke
from tests.conftest import *  # noqa: F403
from tests.polling import until
from tests.registry_world import registry_world
from tests.simutil import running_sim

LOGIN, GOOD_PW, OTHER_PW = "sf_tv", "canary-good-pw-Zq81", "canary-other-pw-Yk27"


async def test_a_login_refused_at_the_start_is_listed_with_its_error(
    database: Database, settings: Settings
) -> None:
    """Two accounts of one login hold different passwords, the other one's proven (Tradovate
    accepted it once): ``login_credential`` refuses the login to the configured one, no
    session opens, and the heartbeat says so."""
    async with running_sim() as sim:
        sim.add_login(LOGIN, GOOD_PW, ["SF1"])
        w = await registry_world(database, settings, sim, "sf", LOGIN, GOOD_PW, "SF1")
        other = await account_store.create(
            database.pool, user_id=w.user_id, label="sf-typo", env="demo", username=LOGIN,
            password=w.box.seal(OTHER_PW, account_store.password_context("demo", LOGIN)),
        )  # fmt: skip
        await database.pool.execute(
            "UPDATE accounts SET password_proven_at = now() WHERE id = $1", other.id
        )
        registry = w.registry
        registry._wanted = {w.account_id}  # what the configuration sync sets
        try:
            await registry.reach([w.link])
            assert registry.connected() == {w.account_id: False}
            assert registry.sessions() == []  # what status used to show: nothing

            detail = session_detail(registry)
            assert detail["sessions"] == []
            (failed,) = detail["failed_sessions"]
            assert failed["account_id"] == w.account_id
            assert failed["account"] == "sf-demo"
            assert failed["env"] == "demo"
            assert "sf-typo" in failed["error"], failed
            text = orjson.dumps(detail).decode()
            for pw in (GOOD_PW, OTHER_PW):
                assert pw not in text

            # the other account gets the login's password (unproven, as set-password leaves
            # it): the next pass opens the session
            await database.pool.execute(
                "UPDATE accounts SET password_enc = a.password_enc,"
                " password_key_id = a.password_key_id, password_proven_at = NULL FROM accounts a"
                " WHERE accounts.id = $1 AND a.id = $2",
                other.id, w.account_id,
            )  # fmt: skip
            await registry.reach([w.link])
            assert registry.connected() == {w.account_id: True}
            detail = session_detail(registry)
            assert detail["failed_sessions"] == []
            assert [s["account_id"] for s in detail["sessions"]] == [w.account_id]
        finally:
            await registry.close()


async def test_a_password_tradovate_refuses_is_listed_too(
    database: Database, settings: Settings
) -> None:
    async with running_sim() as sim:
        sim.add_login(LOGIN, GOOD_PW, ["SF2"])
        w = await registry_world(database, settings, sim, "sg", LOGIN, OTHER_PW, "SF2")
        registry = w.registry
        registry._wanted = {w.account_id}
        try:
            await registry.reach([w.link])
            (failed,) = session_detail(registry)["failed_sessions"]
            assert failed["account"] == "sg-demo"
            assert failed["error"]
            for pw in (GOOD_PW, OTHER_PW):
                assert pw not in failed["error"]
        finally:
            await registry.close()


async def test_a_session_that_failed_after_it_opened_is_listed_as_failed_not_down(
    database: Database, settings: Settings
) -> None:
    """The password changed at Tradovate: the open session fails for good. Until the next
    pass it is still attached: listed with its error, not as a session "reconnecting"."""
    async with running_sim() as sim:
        spec = sim.add_login(LOGIN, GOOD_PW, ["SF3"])
        w = await registry_world(database, settings, sim, "sh", LOGIN, GOOD_PW, "SF3")
        registry = w.registry
        registry._wanted = {w.account_id}
        try:
            await registry.reach([w.link])
            session = registry.broker_for(w.link).session  # type: ignore[attr-defined]
            assert session.ready
            assert session_detail(registry)["failed_sessions"] == []

            spec.password = OTHER_PW
            sim.fault("unauthorized", token=session._token.token)
            sim.fault("drop", after=0)
            await until(lambda: session.state is State.FAILED, within_s=10)
            detail = session_detail(registry)
            assert detail["sessions"] == []
            (failed,) = detail["failed_sessions"]
            assert failed["account"] == "sh-demo"
            assert failed["error"]
            for pw in (GOOD_PW, OTHER_PW):
                assert pw not in failed["error"]
        finally:
            await registry.close()


FAILED = {
    "account_id": 7,
    "account": "alice-demo",
    "env": "demo",
    "error": "alice-demo's password for sim (demo) is not the one bob-demo holds for that login",
}


async def _beat(pool: asyncpg.Pool, failed: list[dict[str, object]]) -> None:
    detail = {
        "state": "running", "ready": True, "host": "127.0.0.1", "port": 8080,
        "sessions": [{"account_id": 3, "env": "demo", "up": True}], "failed_sessions": failed,
    }  # fmt: skip
    await status_store.heartbeat(pool, pid=4242, started_at=datetime.now(UTC),
                                 detail=detail)  # fmt: skip


async def test_status_shows_the_login_without_a_session_and_check_fails(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await _beat(pool, [FAILED])
    r = await ainvoke(["status", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert r.json()["daemon"]["failed_sessions"] == [FAILED]

    r = await ainvoke(["status"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    shown = r.stdout + r.stderr
    assert "logins without a session" in shown
    assert "no session (alice-demo)" in shown
    assert "up" in shown  # the session that opened is still listed

    r = await ainvoke(["status", "--check"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 1
    line = r.error_line()
    assert "1 login(s) have no broker session" in line
    assert "alice-demo" in line
    assert "bob-demo" in line  # the error says why

    await _beat(pool, [])
    r = await ainvoke(["status", "--check"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr


async def test_a_heartbeat_from_before_the_field_reads_as_none(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    await status_store.heartbeat(
        pool, pid=4242, started_at=datetime.now(UTC),
        detail={"state": "running", "ready": True, "sessions": []},
    )  # fmt: skip
    r = await ainvoke(["status", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.json()["daemon"]["failed_sessions"] == []
    r = await ainvoke(["status", "--check"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
