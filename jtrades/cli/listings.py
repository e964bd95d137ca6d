"""``jtrades signals|orders|positions|trades list``: what the daemon received and did.

Read-only. Tables for people, ``--json`` for scripts; newest first. A signal's row says which
filter refused it and why (money rule 9); its raw body is never printed (it may hold a token).
Times are in each row's owner's time zone (DESIGN §4; ``users set-timezone``), which the table's
title (or, when the rows span several, a column) and each JSON row's ``timezone`` name; the
JSON keeps ISO-8601 with the offset.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import typer

from jtrades.cli.common import JsonOpt, clock, emit, run, settings
from jtrades.db import Database
from jtrades.errors import InvalidInput
from jtrades.store import listings
from jtrades.store import signals as signal_store

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


def parse_since(text: str | None, now: datetime) -> datetime | None:
    """``90s``, ``15m``, ``1h``, ``2d``, ``1w`` before ``now``, or an ISO date/time (UTC if naive)."""
    if text is None or not text.strip():
        return None
    m = _SPAN.match(text)
    try:
        if m:
            return now - timedelta(**{_UNIT[m.group(2).lower()]: float(m.group(1))})
        at = datetime.fromisoformat(text.strip())
        # in UTC, where the database compares it: a time zone can take it past year 1 or 9999
        return (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)
    except ValueError:
        raise InvalidInput(
            f"--since wants a span like 30m, 1h, 2d or an ISO time, got {text!r}"
        ) from None
    except OverflowError:
        raise InvalidInput(f"--since {text!r} is out of range") from None


UserOpt = Annotated[str | None, typer.Option("--user", help="Only this user's accounts.")]
AccountOpt = Annotated[str | None, typer.Option("--account", help="Only this account (label).")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only newer than: 30m, 1h, 2d, or an ISO time.")
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=10000, help="At most N rows.")]


def _zone(name: str | None) -> ZoneInfo | None:
    """A row owner's zone; None for a row with no owner (a signal no recorder took) or with a
    name stored before names were checked (OSError: a tzdata folder, an overlong name)."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _emit_zoned(
    json_mode: bool,
    data: list[dict[str, Any]],
    title: str,
    columns: Sequence[str],
    cells: list[list[Any]],
    *,
    times: Sequence[str],
    empty: str,
) -> None:
    """``emit`` with every time in its row owner's zone (``data[i]["timezone"]``, then named
    there as the zone used), the ``times`` keys of the JSON rows and each time in ``cells``:
    in the machine's zone, a New York user on a UTC VPS read a 10:00 exit as 15:00."""
    # a row with no zone of its own is shown in the operator's (``[trading] timezone``)
    operator = cache(lambda: ZoneInfo(settings().trading.timezone))
    zones = [_zone(r.get("timezone")) or operator() for r in data]
    for r, zone in zip(data, zones, strict=True):
        r["timezone"] = zone.key
        for key in times:
            if isinstance(r.get(key), datetime):
                r[key] = r[key].astimezone(zone)
    cells = [
        [clock(v, zone) if isinstance(v, datetime) else v for v in row]
        for row, zone in zip(cells, zones, strict=True)
    ]
    names = sorted({z.key for z in zones})
    if len(names) > 1:
        title, columns = f"{title} (times in each user's zone)", [*columns, "zone"]
        cells = [[*row, zone.key] for row, zone in zip(cells, zones, strict=True)]
    elif names:
        title = f"{title} (times in {names[0]})"
    emit(json_mode, data, title, columns, cells, empty=empty)


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

    async def go(db: Database) -> tuple[list[signal_store.SignalRow], dict[int, str]]:
        await listings.require_names(db.pool, user=user, recorder=recorder)
        rows = await signal_store.list_signals(
            db.pool,
            recorder=recorder,
            since=parse_since(since, datetime.now(UTC)),
            limit=limit,
            user=user,
            verdict=verdict.value if verdict else None,
        )
        return rows, await listings.signal_zones(db.pool, [r.id for r in rows])

    rows, zones = run(go)
    _emit_zoned(
        json,
        [{**asdict(r), "timezone": zones.get(r.id)} for r in rows],
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


def _why(r: signal_store.SignalRow) -> str | None:
    if r.duplicate_of is not None:
        return f"duplicate of {r.duplicate_of}"
    if r.filter and r.reason:
        return _short(f"{r.filter}: {r.reason}")
    return _short(r.reason or r.filter)


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

    async def go(db: Database) -> list[dict[str, Any]]:
        fn = listings.broker_orders if broker else listings.intents
        return await fn(
            db.pool,
            user=user,
            account=account,
            since=parse_since(since, datetime.now(UTC)),
            limit=limit,
        )

    rows = run(go)
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
    _emit_zoned(
        json,
        rows,
        "orders",
        cols,
        [[r[k] for k in keys] for r in rows],
        times=["updated_at" if broker else "created_at"],
        empty="no orders",
    )


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
    keys = ["user_name", "account", "sub_account", "symbol", "net_pos", "net_price", "updated_at"]
    _emit_zoned(
        json,
        rows,
        "positions",
        ["user", "account", "sub", "symbol", "net", "avg price", "updated"],
        [[r[k] for k in keys] for r in rows],
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

    async def go(db: Database) -> list[dict[str, Any]]:
        return await listings.trades(
            db.pool,
            user=user,
            account=account,
            since=parse_since(since, datetime.now(UTC)),
            limit=limit,
        )

    rows = run(go)
    keys = ["id", "closed_at", "user_name", "account", "sub_account", "symbol", "side", "qty"]
    keys += ["entry_price", "exit_price", "pnl"]
    _emit_zoned(
        json,
        rows,
        "trades",
        ["id", "closed", "user", "account", "sub", "symbol", "side", "qty", "entry", "exit", "P&L"],
        [[r[k] for k in keys] for r in rows],
        times=["closed_at", "opened_at"],
        empty="no trades",
    )
