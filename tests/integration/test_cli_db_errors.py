"""A database that fails under a CLI command (DESIGN §4): exit 1 with one line, no traceback, no
secret. The backend terminated while the command waits on a row lock (a restart, an operator's
pg_terminate_backend), and a role's statement_timeout or lock_timeout cancelling its statement,
ended in a Python traceback: the store translated neither, and ``run`` caught only
``JtradesError``."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import pytest

from jtrades.store import users as user_store
from tests.cli import Result, ainvoke, invoke_process


async def _register_bob(db_url: str, data_dir: Path) -> None:
    r = await ainvoke(
        ["users", "register", "bob", "--email", "b@x.com"], db_url=db_url, data_dir=data_dir
    )
    assert r.exit_code == 0, r.stderr


async def _approve_while_bob_is_locked(
    db_url: str, data_dir: Path, *, url: str | None = None, terminate: bool = False
) -> Result:
    """``users approve bob`` (a subprocess: everything it writes is seen) while another
    session holds bob's row; with ``terminate``, its backend is ended once it waits."""
    holder = await asyncpg.connect(db_url)
    try:
        tx = holder.transaction()
        await tx.start()
        await holder.execute("SELECT 1 FROM users WHERE name = 'bob' FOR UPDATE")
        task = asyncio.create_task(
            asyncio.to_thread(
                invoke_process, ["users", "approve", "bob"], db_url=url or db_url, data_dir=data_dir
            )
        )
        if terminate:
            pid = None
            for _ in range(400):  # until the command's backend waits on bob's row
                # a new connection each time: pg_stat_activity is a snapshot per transaction
                watcher = await asyncpg.connect(db_url)
                try:
                    pid = await watcher.fetchval(
                        "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database() LIMIT 1"
                    )
                finally:
                    await watcher.close()
                if pid:
                    break
                await asyncio.sleep(0.05)
            assert pid, "the command never waited on the lock"
            await holder.execute("SELECT pg_terminate_backend($1)", pid)
        r = await task
        await tx.rollback()
    finally:
        await holder.close()
    return r


def _one_line(r: Result) -> str:
    assert r.exit_code == 1, (r.exit_code, r.stderr[-800:])
    assert "Traceback" not in r.stderr, r.stderr[-800:]
    return r.error_line()


async def test_backend_terminated_while_waiting_on_a_lock_is_one_line(
    db_url: str, data_dir: Path
) -> None:
    """It printed the InterfaceError of the transaction's exit on the dead connection; the
    error that says what happened is the one shown."""
    await _register_bob(db_url, data_dir)
    r = await _approve_while_bob_is_locked(db_url, data_dir, terminate=True)
    line = _one_line(r)
    # the connection's error, with the server's reason (ConnectionDoesNotExistError, or
    # AdminShutdownError when the notice comes first)
    assert line.startswith("error: database unavailable: "), line
    assert "terminating connection due to administrator command" in line


async def test_statement_timeout_is_one_line(db_url: str, data_dir: Path) -> None:
    """An operator's ``ALTER ROLE … SET statement_timeout`` (here through the URL)."""
    await _register_bob(db_url, data_dir)
    r = await _approve_while_bob_is_locked(
        db_url, data_dir, url=db_url + ("&" if "?" in db_url else "?") + "statement_timeout=500"
    )
    line = _one_line(r)
    assert line.startswith("error: database unavailable: QueryCanceledError"), line
    assert "statement timeout" in line


async def test_lock_timeout_is_one_line(db_url: str, data_dir: Path) -> None:
    await _register_bob(db_url, data_dir)
    r = await _approve_while_bob_is_locked(
        db_url, data_dir, url=db_url + ("&" if "?" in db_url else "?") + "lock_timeout=300"
    )
    line = _one_line(r)
    assert line.startswith("error: database unavailable: LockNotAvailableError"), line


async def test_a_driver_error_no_store_function_translated_is_one_line_without_secrets(
    db_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever still escapes the store (a bug) is one line naming the error, with the URL's
    password (or any secret the process knows) cut out."""
    password = "hunter2-very-secret"
    url = db_url.replace("postgres@", f"postgres:{password}@", 1)
    assert password in url

    async def broken(*_args: object, **_kw: object) -> None:
        raise asyncpg.InterfaceError(f"lost the connection to postgresql://postgres:{password}@db")

    monkeypatch.setattr(user_store, "list_users", broken)
    r = await ainvoke(["users", "list"], db_url=url, data_dir=data_dir)
    line = _one_line(r)
    assert line.startswith("error: database error: InterfaceError: lost the connection"), line
    assert password not in r.stderr + r.stdout
    assert "***" in line
