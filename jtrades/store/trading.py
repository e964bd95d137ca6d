"""The broker's view mirrored into Postgres, the engine's configuration snapshot, and the
counters the filters start from after a restart.

Fills are de-duplicated by the broker's fill id (Tradovate replays fills around the session
change); orders and positions are upserts keyed by the broker's ids.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


@dataclass(frozen=True, slots=True)
class ConfigRows:
    """Everything the engine's in-memory configuration is built from, read in one go."""

    recorders: list[dict[str, Any]]
    traders: list[dict[str, Any]]
    links: list[dict[str, Any]]
    halted: Any
    fingerprint: str


async def config_fingerprint(ex: Executor) -> str:
    """A hash of every column the engine caches: it changes when any of them does."""
    with translate_errors():
        return str(await ex.fetchval(q("trading.config_fingerprint")))


async def load_config(ex: Executor) -> ConfigRows:
    with translate_errors():
        fp = await ex.fetchval(q("trading.config_fingerprint"))
        recorders = [dict(r) for r in await ex.fetch(q("trading.config_recorders"))]
        traders = [dict(r) for r in await ex.fetch(q("trading.config_traders"))]
        links = [dict(r) for r in await ex.fetch(q("trading.config_links"))]
        halted = await ex.fetchval(q("trading.halted"))
    return ConfigRows(recorders, traders, links, halted, str(fp))


@dataclass(frozen=True, slots=True)
class RecorderCounters:
    recorder_id: int
    signals: int
    entries: int
    last_entry_at: datetime | None
    seen: int


async def recorder_counters(ex: Executor, since: datetime) -> list[RecorderCounters]:
    """Per recorder since ``since``: signals, accepted entries, last entry, every-Nth count."""
    with translate_errors():
        rows = await ex.fetch(q("trading.recorder_counters"), since)
    return [RecorderCounters(**dict(r)) for r in rows]


async def trader_entries(
    ex: Executor, since: datetime
) -> dict[int, tuple[int, datetime | None, int]]:
    """Per trader since ``since``: (entries, last entry time, signals its every-Nth saw)."""
    with translate_errors():
        rows = await ex.fetch(q("trading.trader_entries"), since)
    return {
        int(r["trader_id"]): (int(r["entries"]), r["last_entry_at"], int(r["seen"])) for r in rows
    }


async def realized_today(ex: Executor, since: datetime) -> dict[tuple[int, str], Decimal]:
    """Realized P&L of closed trades since ``since`` per (sub-account, contract)."""
    with translate_errors():
        rows = await ex.fetch(q("trading.realized_today"), since)
    return {(int(r["sub_account_id"]), str(r["symbol"])): Decimal(r["pnl"]) for r in rows}


async def insert_fills(
    ex: Executor, fills: list[tuple[int, int, int, str, str, int, Decimal, datetime]]
) -> set[tuple[int, int]]:
    """Record a batch of (sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty,
    price, filled_at) in one statement; returns the (sub_account_id, broker_fill_id) of the new
    ones (a replayed fill is not new)."""
    if not fills:
        return set()
    with translate_errors():
        rows = await ex.fetch(
            q("trading.insert_fills"), *(list(c) for c in zip(*fills, strict=True))
        )
    return {(int(r["sub_account_id"]), int(r["broker_fill_id"])) for r in rows}


TradeRow = tuple[int, str, str, int, Decimal, Decimal, Decimal, datetime, datetime]


async def insert_trades(ex: Executor, trades: list[TradeRow]) -> None:
    """Record closed round trips: (sub_account_id, symbol, side, qty, entry_price, exit_price,
    pnl, opened_at, closed_at), all in one statement."""
    if trades:
        with translate_errors():
            await ex.execute(q("trading.insert_trades"), *_columns(trades, 9))


async def positions(ex: Executor, sub_account_ids: list[int]) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.positions"), sub_account_ids)]


async def orders_of(ex: Executor, sub_account_id: int) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.orders_of"), sub_account_id)]


async def fills_of(ex: Executor, sub_account_id: int) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.fills_of"), sub_account_id)]


async def trades_of(ex: Executor, sub_account_id: int) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.trades_of"), sub_account_id)]


async def flatten_done(ex: Executor, requested_at: str, done_at: datetime) -> None:
    """Record that the flatten requested at ``requested_at`` was carried out."""
    with translate_errors():
        await ex.execute(q("trading.flatten_done"), requested_at, done_at.isoformat())


def order_row(
    *,
    sub_account_id: int,
    broker_order_id: int,
    cl_ord_id: str | None,
    symbol: str,
    side: str,
    qty: int,
    order_type: str,
    price: Decimal | None,
    stop_price: Decimal | None,
    status: str,
    parent_id: int | None,
    oco_id: int | None,
) -> tuple[Any, ...]:
    """One ``upsert_orders`` row; the intent is found by clOrdId in the statement itself."""
    return (
        sub_account_id,
        broker_order_id,
        cl_ord_id,
        symbol,
        side,
        qty,
        order_type,
        price,
        stop_price,
        status,
        parent_id,
        oco_id,
    )


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as the column arrays an ``unnest`` statement takes."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _latest(rows: list[tuple[Any, ...]], key_width: int) -> list[tuple[Any, ...]]:
    """One row per key (the first ``key_width`` fields), the last given winning: an upsert
    statement may not touch one row twice."""
    return list({r[:key_width]: r for r in rows}.values())


async def upsert_orders(ex: Executor, rows: list[tuple[Any, ...]]) -> None:
    """Mirror many orders (``order_row`` tuples) in one statement."""
    if rows:
        with translate_errors():
            await ex.execute(q("trading.upsert_orders"), *_columns(_latest(rows, 2), 12))


async def upsert_positions(ex: Executor, rows: list[tuple[int, str, int, Decimal | None]]) -> None:
    """Mirror many positions in one statement: (sub_account_id, symbol, net_pos, net_price)."""
    if rows:
        with translate_errors():
            await ex.execute(q("trading.upsert_positions"), *_columns(_latest(rows, 2), 4))
