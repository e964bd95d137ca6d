"""The broker's view mirrored into Postgres, one batch of a login's events at a time.

A batch is written by one statement (``write_batch``): a burst of hundreds of order events costs
one round trip, not one per row or per table. Fills are de-duplicated by the broker's fill id
(Tradovate replays fills around the session change); orders and positions are upserts keyed by
the broker's ids. The trades the new fills close go in the batch's transaction
(``insert_trades``), so a fill is never on disk without the round trip it closed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from jtrades.queries import q
from jtrades.store import Executor, translate_errors

# (cl_ord_id, state, broker_order_id): an intent moved to the state of the order it became
IntentRow = tuple[str, str, int]
# (sub_account_id, broker_order_id, cl_ord_id, symbol, side, qty, order_type, price, stop_price,
#  status, parent_id, oco_id); the intent is found by clOrdId in the statement itself
OrderRow = tuple[
    int, int, str | None, str, str, int, str, Decimal | None, Decimal | None, str, int | None,
    int | None,
]  # fmt: skip
# (sub_account_id, symbol, net_pos, net_price)
PositionRow = tuple[int, str, int, Decimal | None]
# (sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty, price, filled_at)
FillRow = tuple[int, int, int, str, str, int, Decimal, datetime]
# (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl, opened_at, closed_at)
TradeRow = tuple[int, str, str, int, Decimal, Decimal, Decimal, datetime, datetime]


@dataclass(slots=True)
class Batch:
    """What one batch of events changes; rows of one key may repeat, the last one wins."""

    intents: list[IntentRow] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list)
    positions: list[PositionRow] = field(default_factory=list)
    fills: list[FillRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.intents or self.orders or self.positions or self.fills)


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Rows as the column arrays an ``unnest`` statement takes."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def _latest(rows: Sequence[tuple[Any, ...]], key_width: int) -> list[tuple[Any, ...]]:
    """One row per key (the first ``key_width`` fields), the last given winning: an upsert
    statement may not touch one row twice."""
    return list({r[:key_width]: r for r in rows}.values())


async def write_batch(ex: Executor, batch: Batch) -> set[tuple[int, int]]:
    """Write the batch in one statement; returns the (sub_account_id, broker_fill_id) of the
    fills that are new. Pass a connection in a transaction to add the trades they close."""
    with translate_errors():
        rows = await ex.fetch(
            q("mirror.write_batch"),
            *_columns(_latest(batch.intents, 1), 3),
            *_columns(_latest(batch.orders, 2), 12),
            *_columns(_latest(batch.positions, 2), 4),
            *_columns(batch.fills, 8),
        )
    return {
        (int(r["sub_account_id"]), int(r["broker_fill_id"]))
        for r in rows
        if r["broker_fill_id"] is not None
    }


async def insert_trades(ex: Executor, trades: Sequence[TradeRow]) -> None:
    """Record closed round trips, all in one statement."""
    if trades:
        with translate_errors():
            await ex.execute(q("mirror.insert_trades"), *_columns(trades, 9))
