"""``jtrades users``: register, approve, reject, disable, list, set-timezone.

Every change is written with its audit row in one transaction.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import structlog
import typer

from jtrades.cli.common import (
    SECRET_READER,
    JsonOpt,
    actor,
    done,
    emit,
    read_secret_stdin,
    refuse_stray_args,
    run,
    run_plain,
    settings,
    transaction,
    zoned,
)
from jtrades.db import Database
from jtrades.security import hash_password
from jtrades.store import audit
from jtrades.store import users as store
from jtrades.store.users import User

log = structlog.get_logger(__name__)

app = typer.Typer(
    help="Users: register (pending), approve or reject, disable, list.", no_args_is_help=True
)

NameArg = Annotated[str, typer.Argument(help="User name (letters, digits, _ . -).")]

COLUMNS = ["name", "email", "status", "admin", "timezone", "created", "approved"]


def _row(u: User) -> list[Any]:
    return [u.name, u.email, u.status, u.is_admin, u.timezone, u.created_at, u.approved_at]


@app.command("register", context_settings=SECRET_READER)
def register(
    ctx: typer.Context,
    name: NameArg,
    email: Annotated[str, typer.Option("--email", help="Contact email (unique).")],
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read a login password from standard input."),
    ] = False,
    admin: Annotated[bool, typer.Option("--admin", help="An administrator (approved).")] = False,
    timezone: Annotated[
        str | None,
        typer.Option(
            "--timezone",
            help="IANA zone for trading windows (default: the config's [trading] timezone).",
        ),
    ] = None,
    json: JsonOpt = False,
) -> None:
    """Register a user (pending until approved; an --admin user is approved at once).

    Example: jtrades users register alice --email alice@example.com --timezone America/New_York
    """
    refuse_stray_args(ctx)
    # jtrades.toml.example documents [trading] timezone as the new users' zone: it was ignored
    zone = timezone if timezone is not None else run_plain(lambda: settings().trading.timezone)
    # Validate before reading secrets or touching the database: a bad value writes nothing.
    run_plain(
        lambda: (store.check_name(name), store.check_email(email), store.check_timezone(zone))
    )
    password = read_secret_stdin("password") if password_stdin else None

    async def go(db: Database) -> User:
        pw_hash = hash_password(password) if password is not None else None
        log.debug(
            "users.register", name=name, email=email, admin=admin, password_set=password is not None
        )
        async with transaction(db) as c:
            user = await store.create(
                c, name=name, email=email, password_hash=pw_hash, is_admin=admin, timezone=zone
            )
            await audit.record(
                c,
                actor(),
                "users.register",
                user.name,
                {"admin": admin, "status": user.status, "timezone": zone},
            )
        return user

    user = run(go)
    done(json, f"registered {user.name} ({user.status})", {"user": user})


def _status_change(name: str, status: store.Status, verb: str, json: bool) -> None:
    async def go(db: Database) -> User:
        async with transaction(db) as c:
            before, after = await store.set_status(c, name, status)
            await audit.record(
                c, actor(), f"users.{verb}", after.name, {"from": before.status, "to": status}
            )
        return after

    user = run(go)
    done(json, f"{user.name}: {user.status}", {"user": user})


@app.command("approve")
def approve(name: NameArg, json: JsonOpt = False) -> None:
    """Approve a user: their traders may then be enabled and trade.

    Example: jtrades users approve alice
    """
    _status_change(name, "approved", "approve", json)


@app.command("disable")
def disable(name: NameArg, json: JsonOpt = False) -> None:
    """Disable a user: all their traders are switched off at once and stay off.

    Example: jtrades users disable alice
    """
    _status_change(name, "disabled", "disable", json)


@app.command("reject")
def reject(
    name: NameArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete them even while their accounts hold positions or orders at the broker"
            " (they stay there, out of jtrades' reach).",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Reject a pending or disabled user: delete them and everything they own.

    Deletes their accounts, sub-accounts, recorders, traders, signals and order history.
    An approved user must be disabled first, so nothing of theirs is trading; refused while
    their accounts hold positions or working orders as last seen at the broker (or --force).

    Example: jtrades users reject mallory
    """

    async def go(db: Database) -> tuple[User, store.Owned]:
        async with transaction(db) as c:
            user, owned = await store.reject(c, name, force=force)
            await audit.record(
                c,
                actor(),
                "users.reject",
                user.name,
                {"email": user.email, "deleted": asdict(owned)},
            )
        return user, owned

    user, owned = run(go)
    done(
        json,
        f"rejected {user.name}: deleted {owned.accounts} account(s), {owned.recorders} "
        f"recorder(s), {owned.traders} trader(s)",
        {"user": user.name, "deleted": owned},
    )


@app.command("list")
def list_cmd(
    pending: Annotated[
        bool, typer.Option("--pending", help="Only users awaiting approval.")
    ] = False,
    json: JsonOpt = False,
) -> None:
    """List users (or only pending registrations).

    Example: jtrades users list --pending
    """

    async def go(db: Database) -> list[User]:
        return await store.list_users(db.pool, pending_only=pending)

    found = run(go)
    # each user's times in their own zone, named (the JSON keeps them as stored, with offset)
    title, columns, cells = zoned(
        [{"timezone": u.timezone} for u in found],
        "pending users" if pending else "users",
        COLUMNS,
        [_row(u) for u in found],
        times=[],
    )
    emit(
        json,
        found,
        title,
        columns,
        cells,
        empty="no pending users" if pending else "no users",
    )


@app.command("set-timezone")
def set_timezone(
    name: NameArg,
    tz: Annotated[str, typer.Argument(help="IANA time zone, e.g. Europe/London.")],
    json: JsonOpt = False,
) -> None:
    """Set the time zone a user's trading windows and cut-off times are read in.

    Example: jtrades users set-timezone alice America/New_York
    """
    run_plain(lambda: store.check_timezone(tz))

    async def go(db: Database) -> tuple[str, User]:
        async with transaction(db) as c:
            before = await store.get(c, name)
            user = await store.set_timezone(c, name, tz)
            await audit.record(
                c, actor(), "users.set_timezone", user.name, {"from": before.timezone, "to": tz}
            )
        return before.timezone, user

    old, user = run(go)
    done(json, f"{user.name}: time zone {old} -> {user.timezone}", {"user": user})
