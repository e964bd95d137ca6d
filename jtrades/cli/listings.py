"""``jtrades signals|orders|positions|trades list``: what the daemon received and did.

Read-only. Tables for people, ``--json`` for scripts; newest first. A signal's row says which
filter refused it and why (money rule 9); its raw body is never printed (it may hold a token).
"""

from __future__ import annotations

import re
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer

from jtrades.cli.common import JsonOpt, emit, run
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

    async def go(db: Database) -> list[signal_store.SignalRow]:
        await listings.require_names(db.pool, user=user, recorder=recorder)
        return await signal_store.list_signals(
            db.pool,
            recorder=recorder,
            since=parse_since(since, datetime.now(UTC)),
            limit=limit,
            user=user,
            verdict=verdict.value if verdict else None,
        )

    rows = run(go)
    emit(
        json,
        [asdict(r) for r in rows],
        "signals",
        ["id", "received", "recorder", "action", "symbol", "qty", "verdict", "orders", "why"],
        [
            (
                r.id,
                r.received_at,
                r.recorder,
                r.action,
                r.symbol,
                r.quantity,
                r.verdict if r.http_status == 200 else f"{r.verdict} ({r.http_status})",
                r.orders,
                _why(r),
            )
            for r in rows
        ],
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
    emit(json, rows, "orders", cols, [[r[k] for k in keys] for r in rows], empty="no orders")


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
    emit(
        json,
        rows,
        "positions",
        ["user", "account", "sub", "symbol", "net", "avg price", "updated"],
        [[r[k] for k in keys] for r in rows],
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
    emit(
        json,
        rows,
        "trades",
        ["id", "closed", "user", "account", "sub", "symbol", "side", "qty", "entry", "exit", "P&L"],
        [[r[k] for k in keys] for r in rows],
        empty="no trades",
    )
