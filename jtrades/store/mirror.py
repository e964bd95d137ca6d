"""The broker's view mirrored into Postgres, one batch of a login's events at a time.

A batch is written by one statement (``write_batch``): a burst of hundreds of order events costs
one round trip, not one per row or per table. Fills are de-duplicated by the broker's fill id
(Tradovate replays fills around the session change); orders and positions are upserts keyed by
the broker's ids. The trades the new fills close go in the batch's transaction
(``insert_trades``), so a fill is never on disk without the round trip it closed.

An intent moves only by an event of its own account at the broker: clOrdIds are unique within
one database only (a second jtrades on the same Tradovate login, or a database rebuilt the same
day, makes the same ones for other accounts' orders), so each intent row goes with the
sub-account of its order's row in the batch, and the statement matches the intent by clOrdId
and that account.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from jtrades.queries import q
from jtrades.store import Executor, translate_errors

# (cl_ord_id, state, broker_order_id, reason): an intent moved to the state of the order it
# became, with the broker's text when it rejected the order after accepting it; the batch holds
# that order's row (its sub-account says whose intent it can be)
IntentRow = tuple[str, str, int, str | None]
# (sub_account_id, broker_order_id, cl_ord_id, symbol, side, qty, order_type, price, stop_price,
#  status, parent_id, oco_id); the intent is found by clOrdId and account in the statement
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


# the field names of those rows, as the statements' jsonb_to_recordset column lists spell them
_INTENT = ("sub_account_id", "cl_ord_id", "state", "broker_order_id", "reason")
_ORDER = ("sub_account_id", "broker_order_id", "cl_ord_id", "symbol", "side", "qty", "order_type",
          "price", "stop_price", "status", "parent_id", "oco_id")  # fmt: skip
_POSITION = ("sub_account_id", "symbol", "net_pos", "net_price")
_FILL = ("sub_account_id", "broker_fill_id", "broker_order_id", "symbol", "side", "qty", "price",
         "filled_at")  # fmt: skip
_TRADE = ("sub_account_id", "symbol", "side", "qty", "entry_price", "exit_price", "pnl",
          "opened_at", "closed_at")  # fmt: skip


@dataclass(slots=True)
class Batch:
    """What one batch of events changes; rows of one key may repeat, the last one wins."""

    intents: list[IntentRow] = field(default_factory=list)
    orders: list[OrderRow] = field(default_factory=list)
    positions: list[PositionRow] = field(default_factory=list)
    fills: list[FillRow] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.intents or self.orders or self.positions or self.fills)


def _objects(rows: Sequence[tuple[Any, ...]], names: tuple[str, ...]) -> list[dict[str, Any]]:
    """Rows as the JSON objects ``jsonb_to_recordset`` expands: one parameter per kind of row
    that orjson encodes at once (decimals as exact strings), where a column array per field
    cost the driver a conversion per value."""
    return [dict(zip(names, r, strict=True)) for r in rows]


def _latest(rows: Sequence[tuple[Any, ...]], key_width: int) -> list[tuple[Any, ...]]:
    """One row per key (the first ``key_width`` fields), the last given winning: an upsert
    statement may not touch one row twice."""
    return list({r[:key_width]: r for r in rows}.values())


def _intents(batch: Batch) -> list[tuple[Any, ...]]:
    """The intent rows with the sub-account of their orders' rows, one per order (the last
    given winning): two users' rows for one account at the broker publish each event twice,
    one per row; and two orders of different accounts with one clOrdId each keep their own
    row (only the one of the intent's account moves it). ``ValueError`` for an intent row
    whose order's row is not in the batch: which account it is on would not be known."""
    subs = {(o[2], o[1]): o[0] for o in batch.orders if o[2] is not None}
    out = []
    for cl_ord_id, state, order_id, reason in {(r[0], r[2]): r for r in batch.intents}.values():
        sub = subs.get((cl_ord_id, order_id))
        if sub is None:
            raise ValueError(f"intent row {cl_ord_id} (order {order_id}) without its order's row")
        out.append((sub, cl_ord_id, state, order_id, reason))
    return out


async def write_batch(ex: Executor, batch: Batch) -> set[tuple[int, int]]:
    """Write the batch in one statement; returns the (sub_account_id, broker_fill_id) of the
    fills that are new. Pass a connection in a transaction to add the trades they close. The
    signals whose lost-answer orders it found at the broker are counted again after it, in a
    statement of its own (``signals.recount_orders``; rare)."""
    with translate_errors():
        rows = await ex.fetch(
            q("mirror.write_batch"),
            _objects(_intents(batch), _INTENT),
            _objects(_latest(batch.orders, 2), _ORDER),
            _objects(_latest(batch.positions, 2), _POSITION),
            _objects(batch.fills, _FILL),
        )
        recount = [int(r["recount"]) for r in rows if r["recount"] is not None]
        if recount:
            await ex.execute(q("signals.recount_orders"), recount)
    return {
        (int(r["sub_account_id"]), int(r["broker_fill_id"]))
        for r in rows
        if r["broker_fill_id"] is not None
    }


async def insert_trades(ex: Executor, trades: Sequence[TradeRow]) -> None:
    """Record closed round trips, all in one statement."""
    if trades:
        with translate_errors():
            await ex.execute(q("mirror.insert_trades"), _objects(trades, _TRADE))


async def end_vanished(ex: Executor, sub_account_id: int, present: Sequence[int]) -> int:
    """Mark the sub-account's open orders the broker no longer holds as ended
    (``mirror.end_vanished``); returns how many."""
    with translate_errors():
        return int(await ex.fetchval(q("mirror.end_vanished"), sub_account_id, list(present)))
