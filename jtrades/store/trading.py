"""The engine's configuration snapshot, the counters the filters start from after a restart,
and reads of the mirrored broker state (``store.mirror`` writes it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

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
    # every active sub-account of every login, linked or not (what ``halt --flatten`` reaches)
    subs: list[dict[str, Any]] = field(default_factory=list)
    # the labels of demo/live logins with no sub-account row (never synced)
    rowless: list[str] = field(default_factory=list)


async def config_fingerprint(ex: Executor) -> str:
    """A hash of every column the engine caches: it changes when any of them does."""
    with translate_errors():
        return str(await ex.fetchval(q("trading.config_fingerprint")))


async def load_config(pool: asyncpg.Pool) -> ConfigRows:
    """Every read in one read-only REPEATABLE READ transaction, so one snapshot of the
    database: read one statement at a time, a ``trader edit`` committing between the traders
    and the links gave the old size with the new multiplier (5 × 5 contracts where 5 × 1 was
    edited to 1 × 5), a configuration nobody made."""
    with translate_errors():
        async with (
            pool.acquire() as ex,
            ex.transaction(isolation="repeatable_read", readonly=True),
        ):
            fp = await ex.fetchval(q("trading.config_fingerprint"))
            recorders = [dict(r) for r in await ex.fetch(q("trading.config_recorders"))]
            traders = [dict(r) for r in await ex.fetch(q("trading.config_traders"))]
            links = [dict(r) for r in await ex.fetch(q("trading.config_links"))]
            subs = [dict(r) for r in await ex.fetch(q("trading.config_subs"))]
            rowless = [r["label"] for r in await ex.fetch(q("trading.config_rowless"))]
            halted = await ex.fetchval(q("trading.halted"))
    return ConfigRows(recorders, traders, links, halted, str(fp), subs, rowless)


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


async def positions(ex: Executor, sub_account_ids: list[int]) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.positions"), sub_account_ids)]


async def open_position_fills(
    ex: Executor, sub_account_ids: list[int]
) -> dict[tuple[int, str], list[tuple[int, Decimal]]]:
    """(sub-account, symbol) -> the fills of that open position, (signed qty, price), oldest
    first."""
    with translate_errors():
        rows = await ex.fetch(q("trading.open_position_fills"), sub_account_ids)
    out: dict[tuple[int, str], list[tuple[int, Decimal]]] = {}
    for r in rows:
        qty = int(r["qty"]) if r["side"] == "Buy" else -int(r["qty"])
        out.setdefault((int(r["sub_account_id"]), str(r["symbol"])), []).append((qty, r["price"]))
    return out


async def paper_ids_used(ex: Executor, account_id: int) -> int:
    with translate_errors():
        return int(await ex.fetchval(q("trading.paper_ids_used"), account_id))


async def paper_open_orders(
    ex: Executor, sub_account_ids: list[int], open_statuses: list[str]
) -> list[dict[str, Any]]:
    """The open orders of these sub-accounts, with their intents' requests, their parents' and
    the parents' fill price: what a paper broker restarted puts back (``paper_restore``)."""
    with translate_errors():
        rows = await ex.fetch(q("trading.paper_open_orders"), sub_account_ids, open_statuses)
    return [dict(r) for r in rows]


async def orders_of(ex: Executor, sub_account_id: int) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.orders_of"), sub_account_id)]


async def fills_of(ex: Executor, sub_account_id: int) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.fills_of"), sub_account_id)]


async def trades_of(ex: Executor, sub_account_id: int) -> list[dict[str, Any]]:
    with translate_errors():
        return [dict(r) for r in await ex.fetch(q("trading.trades_of"), sub_account_id)]
