"""Users: register (pending), approve, reject (delete with everything they own), disable.

Status rules live here and in the schema: an approved user's traders may be enabled; leaving
'approved' switches them off in the same transaction (trigger ``users_disable_traders``). A
rejection deletes by cascade (accounts, sub-accounts, recorders, traders, signals, the intents
on the user's own sub-accounts…), so it is refused for an approved user: disable first, so
nothing is trading while rows vanish.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jtrades.errors import Conflict, InvalidInput, NotFound
from jtrades.queries import q
from jtrades.store import Executor, translate_errors
from jtrades.store import accounts as account_store
from jtrades.store import flatten as flatten_store
from jtrades.store import recorders as recorder_store

Status = Literal["pending", "approved", "disabled"]
DEFAULT_TIMEZONE = "America/Chicago"


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    email: str
    status: str
    is_admin: bool
    timezone: str
    created_at: datetime
    approved_at: datetime | None

    @property
    def approved(self) -> bool:
        return self.status == "approved"


@dataclass(frozen=True, slots=True)
class Owned:
    """What a user owns: shown before and after a rejection."""

    accounts: int
    sub_accounts: int
    recorders: int
    traders: int


# Checked with fullmatch: Python's "$" also matches before a final newline and the schema's
# CHECK (Postgres' "$") does not, so "bob\n" passed here and met the driver's refusal
# ("a value is out of range (users_name_check)") instead of the rule below.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def check_name(name: str, what: str = "user name") -> str:
    """Names people type on the command line: letters, digits, ``_ . -``; 1 to 64 characters."""
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"{what} {name!r} must start with a letter or digit and use only letters, digits, "
            "'_', '.', '-' (at most 64 characters)"
        )
    return name


def check_email(email: str) -> str:
    if not _EMAIL.fullmatch(email):
        raise InvalidInput(f"{email!r} is not an email address")
    return email


def check_timezone(tz: str) -> str:
    """An IANA zone name, validated against the system's zone database.

    ZoneInfo raises OSError for a folder of that database ("America") and for a name too
    long for a path: a user's mistake like any unknown name, not a crash."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(
            f"unknown time zone {tz!r} (use an IANA name like America/Chicago)"
        ) from None
    return tz


def _user(row: Any) -> User:
    return User(**dict(row))


async def create(
    ex: Executor,
    *,
    name: str,
    email: str,
    password_hash: str | None = None,
    is_admin: bool = False,
    timezone: str = DEFAULT_TIMEZONE,
) -> User:
    """Register a user: pending, except an admin (approved at once: someone must approve)."""
    check_name(name)
    check_email(email)
    check_timezone(timezone)
    status: Status = "approved" if is_admin else "pending"
    with translate_errors():
        row = await ex.fetchrow(
            q("users.insert"), name, email, password_hash, status, is_admin, timezone
        )
    return _user(row)


async def get(ex: Executor, name: str) -> User:
    """The user by name (any case); ``NotFound`` otherwise."""
    with translate_errors():
        row = await ex.fetchrow(q("users.by_name"), name)
    if row is None:
        raise NotFound(f"no user named {name!r}")
    return _user(row)


async def get_by_id(ex: Executor, user_id: int) -> User:
    with translate_errors():
        row = await ex.fetchrow(q("users.by_id"), user_id)
    if row is None:
        raise NotFound(f"no user with id {user_id}")
    return _user(row)


async def list_users(ex: Executor, *, pending_only: bool = False) -> list[User]:
    with translate_errors():
        rows = await ex.fetch(q("users.list"), pending_only)
    return [_user(r) for r in rows]


async def set_status(ex: Executor, name: str, status: Status) -> tuple[User, User]:
    """Move a user to ``status``; returns (before, after). Same status twice is harmless."""
    before = await get(ex, name)
    with translate_errors():
        row = await ex.fetchrow(q("users.set_status"), before.id, status)
    if row is None:
        raise NotFound(f"no user named {name!r}")
    return before, _user(row)


async def set_timezone(ex: Executor, name: str, tz: str) -> User:
    check_timezone(tz)
    user = await get(ex, name)
    with translate_errors():
        row = await ex.fetchrow(q("users.set_timezone"), user.id, tz)
    return _user(row)


async def owned(ex: Executor, user_id: int) -> Owned:
    with translate_errors():
        row: Any = await ex.fetchrow(q("users.owned_counts"), user_id)
    return Owned(**dict(row))


async def reject(ex: Executor, name: str, *, force: bool = False) -> tuple[User, Owned]:
    """Delete a pending or disabled user and, by cascade, everything they own; refused
    (unless ``force``) while their logins hold positions or orders at the broker.

    Run it in a transaction: the counts returned are what the delete removed.
    """
    user = await get(ex, name)
    if user.approved:
        raise Conflict(
            f"user {user.name} is approved; disable them first (jtrades users disable {user.name})"
        )
    if not force:
        logins = await account_store.list_accounts(ex, user_id=user.id)
        account_store.refuse_exposure(
            await account_store.open_exposure(ex, [a.id for a in logins]),
            f"user {user.name}",
            f"jtrades halt --account LABEL --flatten for each of {user.name}'s accounts",
        )
    with translate_errors():
        others = await ex.fetch(q("users.followed_by_others"), user.id)
    if others:
        # the delete cascades from the recorders to the traders following them (their order
        # intents stay, as they do when a trader is deleted: migration 0006)
        raise Conflict(
            f"{user.name}'s recorders are followed by other users' traders:"
            f" {recorder_store.name_followers(others)}; they would be deleted with them, so the"
            " user stays (disabled) until those are deleted"
        )
    counts = await owned(ex, user.id)
    labels = [a.label for a in await account_store.list_accounts(ex, user_id=user.id)]
    with translate_errors():
        await ex.fetchval(q("users.delete"), user.id)
    await account_store.forget_unnamed_tokens(ex)  # the tokens of the logins gone with them
    if labels:  # their flattens, keyed by label, would reach the next logins given them
        await flatten_store.cancel_for_labels(
            ex, labels, datetime.now(UTC), f"user {user.name} rejected"
        )
    return user, counts


async def password_hash(ex: Executor, user_id: int) -> str | None:
    with translate_errors():
        value: str | None = await ex.fetchval(q("users.password_hash"), user_id)
    return value
