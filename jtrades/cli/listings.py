"""``jtrades signals|orders|positions|trades list``: what the daemon received and did.

Read-only. Tables for people, ``--json`` for scripts; newest first. A signal's row says which
filter refused it and why (money rule 9); its raw body is never printed (it may hold a token).
Times are in each row's owner's time zone (DESIGN §4; ``users set-timezone``), which the table's
title (or, when the rows span several, a column) and each JSON row's ``timezone`` name; the
JSON keeps ISO-8601 with the offset. A ``--since`` time without an offset (one copied from a
table) is read in that same zone: the one the listing's rows are shown in (``listing_zone``);
where that is not one zone, an offset is required rather than guessed.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo

import typer

from jtrades.cli.common import (
    JsonOpt,
    emit_zoned,
    fail,
    money,
    operator_zone,
    owner_zone,
    price,
    run,
)
from jtrades.db import Database
from jtrades.errors import InvalidInput
from jtrades.store import Executor, listings
from jtrades.store import accounts as account_store
from jtrades.store import recorders as recorder_store
from jtrades.store import signals as signal_store
from jtrades.store import users as user_store

signals_app = typer.Typer(help="Signals received, with verdicts.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders sent to brokers.", no_args_is_help=True)
positions_app = typer.Typer(help="Open positions per sub-account.", no_args_is_help=True)
trades_app = typer.Typer(help="Closed trades with P&L.", no_args_is_help=True)


class Verdict(StrEnum):
    received = "received"
    accepted = "accepted"
    rejected = "rejected"
    invalid = "invalid"
    duplicate = "duplicate"
    expired = "expired"


_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Since:
    """A ``--since`` cutoff (in UTC, where the database compares it) and, for a time given
    without an offset, the zone it was read in (the listing must show its rows there)."""

    at: datetime | None
    read_in: ZoneInfo | None = None


def parse_since(text: str | None, now: datetime, zone: ZoneInfo | None = None) -> Since:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` before ``now``, or an ISO date/time: with an
    offset as it says, without one in ``zone`` (a time copied from a listing, in the zone the
    listing shows it in). ``InvalidInput`` for a time without an offset and no ``zone``, and
    for a local time the clocks skipped or passed twice (a DST change): never a guess."""
    if text is None or not text.strip():
        return Since(None)
    m = _SPAN.match(text)
    try:
        if m:
            return Since(now - timedelta(**{_UNIT[m.group(2).lower()]: float(m.group(1))}))
        at = datetime.fromisoformat(text.strip())
        if at.tzinfo is not None:
            # in UTC, where the database compares it: a zone can take it past year 1 or 9999
            return Since(at.astimezone(UTC))
        if zone is None:
            raise InvalidInput(f"--since {text!r} needs a UTC offset, e.g. {at.isoformat()}+00:00")
        return Since(_local(at, zone, text).astimezone(UTC), zone)
    except ValueError:
        raise InvalidInput(
            f"--since wants a span like 30m, 1h, 2d or an ISO time, got {text!r}"
        ) from None
    except OverflowError:
        raise InvalidInput(f"--since {text!r} is out of range") from None


def _local(at: datetime, zone: ZoneInfo, text: str) -> datetime:
    """The naive ``at`` as a wall-clock time in ``zone``; one that does not exist there (the
    clocks skipped it) or exists twice (they went back) is refused with the offsets to use."""
    first, second = at.replace(tzinfo=zone, fold=0), at.replace(tzinfo=zone, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first
    if first.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != at:
        raise InvalidInput(
            f"--since {text!r} does not exist in {zone.key} (the clocks skipped it):"
            " give a time that does, or one with a UTC offset"
        )
    raise InvalidInput(
        f"--since {text!r} happens twice in {zone.key} (the clocks went back): give its"
        f" offset, {first.isoformat()} or {second.isoformat()}"
    )


async def since_for(
    ex: Executor,
    text: str | None,
    *,
    user: str | None = None,
    account: str | None = None,
    recorder: str | None = None,
) -> Since:
    """``--since`` for a listing narrowed by these filters: a time without an offset is read in
    the zone the listing shows its rows in (``listing_zone``)."""
    now = datetime.now(UTC)
    zone = None
    if needs_zone(text):
        # an unknown name says so first, as the listing would
        await listings.require_names(ex, user=user, account=account, recorder=recorder)
        zone = await listing_zone(ex, text or "", user=user, account=account, recorder=recorder)
    return parse_since(text, now, zone)


def needs_zone(text: str | None) -> bool:
    """Whether ``text`` is an ISO time without an offset (it is read in a zone)."""
    if text is None or not text.strip() or _SPAN.match(text):
        return False
    try:
        return datetime.fromisoformat(text.strip()).tzinfo is None
    except ValueError:
        return False  # parse_since says what is wrong with it


async def listing_zone(
    ex: Executor,
    text: str,
    *,
    user: str | None = None,
    account: str | None = None,
    recorder: str | None = None,
) -> ZoneInfo:
    """The zone a listing shows its rows in: the --user's, else the --account's or the
    --recorder's owner's, else the one zone every user shares (the operator's when there is no
    user). Users in several zones: ``InvalidInput`` (which one a bare time means is a guess)."""
    operator = operator_zone()
    if user is not None:
        return owner_zone((await user_store.get(ex, user)).timezone) or operator
    if account is not None:
        owner = (await account_store.get(ex, account)).user_id
        return owner_zone((await user_store.get_by_id(ex, owner)).timezone) or operator
    if recorder is not None:
        return owner_zone((await recorder_store.get(ex, recorder)).owner_timezone) or operator
    zones = {owner_zone(u.timezone) or operator for u in await user_store.list_users(ex)}
    if len(zones) > 1:
        names = ", ".join(sorted(z.key for z in zones))
        raise InvalidInput(
            f"--since {text!r} has no UTC offset and the users' times are in several zones"
            f" ({names}): give one (e.g. {text.strip()}+00:00) or name --user"
        )
    return zones.pop() if zones else operator


def check_since_zone(since: Since, data: list[dict[str, Any]], text: str | None) -> None:
    """A time without an offset was read in ``since.read_in``: the rows it selected must be
    shown there too, or the listing (in each user's zone) shows other clocks than it meant."""
    if since.read_in is None:
        return
    operator = cache(operator_zone)
    shown = {(owner_zone(r.get("timezone")) or operator()).key for r in data}
    if shown - {since.read_in.key}:
        names = ", ".join(sorted(shown | {since.read_in.key}))
        fail(
            f"--since {text!r} was read in {since.read_in.key}, but the rows are in several"
            f" zones ({names}): give it a UTC offset, or narrow the listing to one user"
        )


UserOpt = Annotated[str | None, typer.Option("--user", help="Only this user's accounts.")]
AccountOpt = Annotated[str | None, typer.Option("--account", help="Only this account (label).")]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help=(
            "Only newer than: 30m, 1h, 2d, or a time as the listing shows it, e.g."
            " '2026-11-27 09:00', read in the listing's zone: the --user's (or the"
            " --account's or --recorder's owner's), else the one zone all users share."
            " With users in several zones give an offset: 2026-11-27T09:00-05:00."
            " A time the clocks skip or repeat (DST) is refused."
        ),
    ),
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=10000, help="At most N rows.")]


def _short(text: str | None, width: int = 60) -> str | None:
    if text is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


@signals_app.command("list")
def signals_list(
    recorder: Annotated[str | None, typer.Option("--recorder", help="Only this recorder.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user's recorders.")] = None,
    since: SinceOpt = None,
    verdict: Annotated[
        Verdict | None, typer.Option("--verdict", help="Only signals with this verdict.")
    ] = None,
    limit: LimitOpt = 50,
    json: JsonOpt = False,
) -> None:
    """Signals received, newest first, with verdict, the filter that decided and why.

    Example: jtrades signals list --recorder nq-scalper --since 1h --verdict rejected
    """

    async def go(db: Database) -> tuple[list[signal_store.SignalRow], dict[int, str], Since]:
        await listings.require_names(db.pool, user=user, recorder=recorder)
        after = await since_for(db.pool, since, user=user, recorder=recorder)
        rows = await signal_store.list_signals(
            db.pool,
            recorder=recorder,
            since=after.at,
            limit=limit,
            user=user,
            verdict=verdict.value if verdict else None,
        )
        return rows, await listings.signal_zones(db.pool, [r.id for r in rows]), after

    rows, zones, after = run(go)
    data = [{**asdict(r), "timezone": zones.get(r.id)} for r in rows]
    check_since_zone(after, data, since)
    emit_zoned(
        json,
        data,
        "signals",
        ["id", "received", "recorder", "action", "symbol", "qty", "verdict", "orders", "why"],
        [
            [
                r.id,
                r.received_at,
                r.recorder,
                r.action,
                r.symbol,
                r.quantity,
                r.verdict if r.http_status == 200 else f"{r.verdict} ({r.http_status})",
                r.orders,
                _why(r),
            ]
            for r in rows
        ],
        times=["received_at"],
        empty="no signals",
    )


# How much of a signal's reason the table shows (rich wraps it in its column). Cut at 60, the
# reason's end was lost: "closed only: cannot plan the reversal: the alert reverses f…" hid
# the fix it ends with (add "market_position_size" to the alert), and rule 9 is about people
# reading why. Still bounded: a refusal may quote a long alert.
_WHY_WIDTH = 240


def _why(r: signal_store.SignalRow) -> str | None:
    if r.duplicate_of is not None:
        return f"duplicate of {r.duplicate_of}"
    if r.filter and r.reason and not r.reason.startswith(r.filter):
        # the filter's name, unless its reason opens with it ("cooldown: cooldown 60s: …")
        return _short(f"{r.filter}: {r.reason}", _WHY_WIDTH)
    return _short(r.reason or r.filter, _WHY_WIDTH)


@orders_app.command("list")
def orders_list(
    user: UserOpt = None,
    account: AccountOpt = None,
    since: SinceOpt = None,
    limit: LimitOpt = 50,
    broker: Annotated[
        bool,
        typer.Option("--broker", help="Orders as the broker reports them (TP/SL legs included)."),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Orders the daemon sent (state and the broker's answer), newest first.

    Example: jtrades orders list --user alice --since 1d
    """

    async def go(db: Database) -> tuple[list[dict[str, Any]], Since]:
        fn = listings.broker_orders if broker else listings.intents
        after = await since_for(db.pool, since, user=user, account=account)
        rows = await fn(db.pool, user=user, account=account, since=after.at, limit=limit)
        return rows, after

    rows, after = run(go)
    check_since_zone(after, rows, since)
    if broker:
        cols = ["order", "updated", "user", "account", "sub", "symbol", "side", "qty", "type"]
        cols += ["price", "stop", "status"]
        keys = ["broker_order_id", "updated_at", "user_name", "account", "sub_account", "symbol"]
        keys += ["side", "qty", "order_type", "price", "stop_price", "status"]
    else:
        cols = ["id", "created", "user", "account", "sub", "signal", "kind", "symbol", "side"]
        cols += ["qty", "state", "order", "reason"]
        keys = ["id", "created_at", "user_name", "account", "sub_account", "signal_id", "kind"]
        keys += ["symbol", "side", "qty", "state", "broker_order_id", "reason"]
    emit_zoned(
        json,
        rows,
        "orders",
        cols,
        [[price(r[k]) if k in _PRICES else r[k] for k in keys] for r in rows],
        times=["updated_at" if broker else "created_at"],
        empty="no orders",
    )


# The columns a table shows as prices (``price``: shortest exact form); ``--json`` keeps each
# value as stored.
_PRICES = frozenset({"price", "stop_price", "net_price"})

POSITION_COLUMNS = ["user", "account", "sub", "symbol", "net", "avg price", "updated"]
_POSITION_KEYS = ["user_name", "account", "sub_account", "symbol", "net_pos", "net_price"]


def position_cells(rows: list[dict[str, Any]]) -> list[list[Any]]:
    """Open positions as ``positions list`` and ``status`` show them: the average price in its
    shortest form (``21500`` for a stored ``21500.0``)."""
    return [
        [*(price(r[k]) if k in _PRICES else r[k] for k in _POSITION_KEYS), r["updated_at"]]
        for r in rows
    ]


@positions_app.command("list")
def positions_list(
    user: UserOpt = None,
    account: AccountOpt = None,
    include_flat: Annotated[bool, typer.Option("--all", help="Include flat positions.")] = False,
    json: JsonOpt = False,
) -> None:
    """Open positions per sub-account, as last reported by the broker.

    Example: jtrades positions list --account apex-1
    """

    async def go(db: Database) -> list[dict[str, Any]]:
        return await listings.positions(
            db.pool, user=user, account=account, include_flat=include_flat
        )

    rows = run(go)
    emit_zoned(
        json,
        rows,
        "positions",
        POSITION_COLUMNS,
        position_cells(rows),
        times=["updated_at"],
        empty="no open positions",
    )


@trades_app.command("list")
def trades_list(
    user: UserOpt = None,
    account: AccountOpt = None,
    since: SinceOpt = None,
    limit: LimitOpt = 50,
    json: JsonOpt = False,
) -> None:
    """Closed trades with entry, exit and P&L, newest first.

    Example: jtrades trades list --user alice --since 1d
    """

    async def go(db: Database) -> tuple[list[dict[str, Any]], Since]:
        after = await since_for(db.pool, since, user=user, account=account)
        rows = await listings.trades(
            db.pool, user=user, account=account, since=after.at, limit=limit
        )
        return rows, after

    rows, after = run(go)
    check_since_zone(after, rows, since)
    keys = ["id", "closed_at", "user_name", "account", "sub_account", "symbol", "side", "qty"]
    emit_zoned(
        json,
        rows,
        "trades",
        ["id", "closed", "user", "account", "sub", "symbol", "side", "qty", "entry", "exit", "P&L"],
        [
            [
                *(r[k] for k in keys),
                price(r["entry_price"]),
                price(r["exit_price"]),
                money(r["pnl"]),
            ]
            for r in rows
        ],
        times=["closed_at", "opened_at"],
        empty="no trades",
    )
