"""The store layer: the only place SQL runs. Rows become frozen dataclasses, and asyncpg errors
become domain errors here (a unique violation on ``recorders_name_key`` becomes ``NameTaken``).

Store functions take an ``Executor`` (a pool or a connection) first, so callers choose the
transaction: ``async with pool.acquire() as c, c.transaction(): await users.approve(c, ...)``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from jtrades.errors import (
    ConfigChanged,
    Conflict,
    InvalidInput,
    NameTaken,
    NotFound,
    PermissionDenied,
    StorageUnavailable,
)

Executor: TypeAlias = "asyncpg.Pool[Any] | asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

# constraint name -> (error class, message). Messages never include values that could be secret.
_CONSTRAINTS: dict[str, tuple[type[Exception], str]] = {
    "users_name_key": (NameTaken, "a user with that name already exists"),
    "users_email_key": (NameTaken, "a user with that email already exists"),
    "accounts_label_key": (NameTaken, "an account with that label already exists"),
    "recorders_name_key": (NameTaken, "a recorder with that name already exists"),
    "recorders_token_key": (Conflict, "token collision; try again"),
    "sub_accounts_account_id_name_key": (NameTaken, "that sub-account already exists"),
    "sub_accounts_account_id_broker_account_id_key": (NameTaken, "that sub-account already exists"),
    "trader_accounts_pkey": (NameTaken, "that sub-account is already linked to the trader"),
    "trader_accounts_same_owner": (
        PermissionDenied,
        "a trader can only use its own user's broker sub-accounts",
    ),
    "traders_enabled_requires_approved": (
        PermissionDenied,
        "the user is not approved: their traders must stay disabled",
    ),
    "traders_recorder_visible": (PermissionDenied, "that recorder is private to another user"),
    # The intents' own foreign keys: the daemon planned against a configuration snapshot that a
    # deletion overtook between the plan and the claim (the claim fails whole: nothing is sent).
    "order_intents_sub_account_id_fkey": (
        ConfigChanged,
        "a sub-account of this signal was removed while it was handled; nothing was sent",
    ),
    "order_intents_trader_id_fkey": (
        ConfigChanged,
        "a trader of this signal was removed while it was handled; nothing was sent",
    ),
    "recorders_followed": (
        Conflict,
        "other users' traders follow this recorder; it cannot be made private",
    ),
}


# Errors that say nothing about the request, only that the database could not carry it out
# now: it is unreachable or went away, an operator or a timeout (a role's ``statement_timeout``
# or ``lock_timeout``) cancelled the statement, the transaction lost a deadlock or a
# serialization race, the server is a read-only standby (a failover) or out of disk, memory or
# connections. Each ends the statement, and its transaction, without effect (a connection lost
# after a commit was sent may still have committed: the claim asks ``signals.claim_fate``).
# They become ``StorageUnavailable``: the CLI's one line, the webhook's 503 when nothing is
# stored yet (the claim's fate decides after it), a background loop's warning.
_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # TimeoutError too: the pool's command_timeout
    asyncpg.InterfaceError,  # the connection is closed (a transaction's exit on a dead one)
    asyncpg.PostgresConnectionError,  # the connection died under a statement
    asyncpg.OperatorInterventionError,  # statement_timeout/cancel, shutdown, crash, dropped DB
    asyncpg.IdleInTransactionSessionTimeoutError,  # the server ended the session
    asyncpg.LockNotAvailableError,  # lock_timeout
    asyncpg.TransactionRollbackError,  # deadlock, serialization failure
    asyncpg.ReadOnlySQLTransactionError,  # a standby (a failover) or a read-only role
    asyncpg.InsufficientResourcesError,  # disk full, out of memory, too many connections
    asyncpg.PostgresSystemError,  # an I/O error on the server
)


def _unavailable(exc: BaseException) -> str:
    """``database unavailable: <class>``, with the server's own words for a server error
    ("canceling statement due to statement timeout"): its message names no value (those are
    in the detail, which is left out); any secret the process knows is cut where it is shown."""
    text = f"database unavailable: {type(exc).__name__}"
    if isinstance(exc, asyncpg.PostgresError):
        said = str(exc).strip().splitlines()
        if said:
            text += f" ({said[0]})"
    return text


@contextmanager
def translate_errors() -> Iterator[None]:
    """Turn driver errors into the project's exceptions at the storage boundary."""
    try:
        yield
    except asyncpg.UniqueViolationError as exc:
        raise _by_constraint(exc, NameTaken, "already exists") from None
    except asyncpg.CheckViolationError as exc:
        raise _by_constraint(exc, InvalidInput, "a value is out of range") from None
    except asyncpg.ForeignKeyViolationError as exc:
        raise _by_constraint(exc, NotFound, "a referenced record does not exist") from None
    except asyncpg.RaiseError as exc:
        raise _by_constraint(exc, Conflict, str(exc)) from None
    except asyncpg.DataError as exc:
        # a value Postgres cannot hold (a numeric past its places, a NUL in text) that a
        # parser let through; the driver's message quotes the value, so it is not repeated
        raise _by_constraint(exc, InvalidInput, "a value cannot be stored") from None
    except _UNAVAILABLE as exc:
        raise StorageUnavailable(_unavailable(exc)) from None


def _by_constraint(exc: asyncpg.PostgresError, default: type[Exception], msg: str) -> Exception:
    name = getattr(exc, "constraint_name", None) or ""
    cls, text = _CONSTRAINTS.get(name, (default, f"{msg} ({name or exc.sqlstate})"))
    return cls(text)
