"""``translate_errors`` turns the driver's "the database could not do it now" errors into
``StorageUnavailable`` (the CLI's one line, the webhook's 503 before anything is stored), and
leaves the rest as they were."""

from __future__ import annotations

import asyncpg
import pytest

from jtrades.errors import NotFound, StorageUnavailable
from jtrades.store import translate_errors


@pytest.mark.parametrize(
    ("exc", "says"),
    [
        (asyncpg.QueryCanceledError("canceling statement due to statement timeout"), "timeout"),
        (asyncpg.AdminShutdownError("terminating connection due to administrator command"), ""),
        (asyncpg.CrashShutdownError("terminating connection because of crash"), ""),
        (asyncpg.CannotConnectNowError("the database system is starting up"), ""),
        (asyncpg.IdleSessionTimeoutError("terminating connection due to idle-session"), ""),
        (asyncpg.IdleInTransactionSessionTimeoutError("idle-in-transaction timeout"), ""),
        (asyncpg.LockNotAvailableError("canceling statement due to lock timeout"), "lock"),
        (asyncpg.DeadlockDetectedError("deadlock detected"), "deadlock"),
        (asyncpg.SerializationError("could not serialize access"), "serialize"),
        (asyncpg.ReadOnlySQLTransactionError("cannot execute UPDATE in a read-only"), "read-only"),
        (asyncpg.DiskFullError("could not extend file"), ""),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), ""),
        (asyncpg.PostgresIOError("could not read block"), ""),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), ""),
        (asyncpg.InterfaceError("the underlying connection is closed"), ""),
        (ConnectionResetError("reset by peer"), ""),
        (TimeoutError(), ""),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_unavailable_database_errors_become_storage_unavailable(
    exc: BaseException, says: str
) -> None:
    with pytest.raises(StorageUnavailable) as caught, translate_errors():
        raise exc
    message = str(caught.value)
    assert message.startswith(f"database unavailable: {type(exc).__name__}"), message
    assert says in message
    assert "\n" not in message


def test_the_server_message_is_one_line() -> None:
    with pytest.raises(StorageUnavailable) as caught, translate_errors():
        raise asyncpg.DeadlockDetectedError("deadlock detected\nProcess 1 waits for …")
    assert str(caught.value) == "database unavailable: DeadlockDetectedError (deadlock detected)"


@pytest.mark.parametrize(
    "exc",
    [asyncpg.UndefinedTableError("relation does not exist"), ValueError("x"), NotFound("y")],
    ids=lambda v: type(v).__name__,
)
def test_other_errors_are_not_storage_unavailable(exc: Exception) -> None:
    with pytest.raises(type(exc)), translate_errors():
        raise exc
