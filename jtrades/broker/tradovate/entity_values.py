"""Tradovate entities built into our value objects: ``Position``, ``Fill``, ``WorkingOrder`` and
``CashBalance``, and the keys the view orders them by.

Apart from the view (``view.AccountView``) because building a value from its entities is a job of
its own, and a pure one: the view keeps the entities and decides when a value is (re)built; these
functions only read the entities given (one field at a time, through ``entity_fields``) and the
names of contracts known so far, so that what a value says is checked without a view's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jtrades.broker.base import CashBalance, Fill, Position, WorkingOrder
from jtrades.broker.tradovate.entity_fields import (
    parse_decimal,
    parse_order_type,
    parse_side,
    parse_status,
    parse_time,
)

Entity = Mapping[str, Any]


def fill_order(f: Fill) -> tuple[datetime, int]:
    """The order fills happened in: by time, then by id (Tradovate's ids grow)."""
    return (f.timestamp, f.fill_id)


def position_rank(e: Entity) -> tuple[tuple[int, int, int], int]:
    """A position entity's trading day (``tradeDate``), then its id: Tradovate keeps one entity
    per account, contract and trading day, and the most recent is the position held."""
    day = e.get("tradeDate")
    try:
        d = (
            (int(day["year"]), int(day["month"]), int(day["day"]))
            if isinstance(day, Mapping)
            else (0, 0, 0)
        )
    except (KeyError, TypeError, ValueError):
        d = (0, 0, 0)
    return d, int(e.get("id") or 0)


def trail_distance(peg: object) -> Decimal | None:
    """A trailing stop's distance from its pegDifference (signed by side at Tradovate)."""
    value = parse_decimal(peg)
    return abs(value) if value is not None and value != 0 else None


def position_of(e: Entity, contracts: Mapping[int, str]) -> Position:
    """A ``position`` entity; ``contracts`` names its contract (unknown: no name yet)."""
    cid = int(e["contractId"])
    return Position(
        account_id=int(e["accountId"]),
        contract_id=cid,
        symbol=contracts.get(cid, ""),
        net_pos=int(e.get("netPos") or 0),
        net_price=parse_decimal(e.get("netPrice")),
        timestamp=parse_time(e.get("timestamp")),
    )


def working_order_of(
    order_id: int,
    o: Entity,
    v: Entity,
    contracts: Mapping[int, str],
    *,
    cl_ord_id: str | None,
    parent_id: int | None,
    reason: str | None,
    bracketed: bool,
) -> WorkingOrder:
    """One order from its ``order`` entity ``o`` (status, links) and its latest ``orderVersion``
    ``v`` (quantity, prices); what other entities say of it (its clOrdId, its strategy parent,
    a rejection's text, whether a strategy brackets it) comes from the caller."""
    cid = int(o.get("contractId") or 0)
    return WorkingOrder(
        order_id=order_id,
        account_id=int(o["accountId"]),
        contract_id=cid,
        symbol=contracts.get(cid, ""),
        side=parse_side(o.get("action")),
        qty=int(v.get("orderQty") or 0),
        order_type=parse_order_type(v.get("orderType")),
        status=parse_status(o.get("ordStatus")),
        price=parse_decimal(v.get("price")),
        stop_price=parse_decimal(v.get("stopPrice")),
        cl_ord_id=cl_ord_id,
        parent_id=parent_id,
        oco_id=o.get("ocoId"),
        reason=reason,
        bracketed=bracketed,
        text=v.get("text"),
        trail=trail_distance(v.get("pegDifference")),
    )


def fill_of(e: Entity, order: Entity, contracts: Mapping[int, str]) -> Fill:
    """A ``fill`` entity; its account (and, when the fill lacks them, its contract and side)
    come from its ``order`` entity (empty: the order has not arrived, no account yet)."""
    cid = int(e.get("contractId") or order.get("contractId") or 0)
    return Fill(
        fill_id=int(e["id"]),
        order_id=int(e["orderId"]),
        account_id=int(order.get("accountId") or 0),
        contract_id=cid,
        symbol=contracts.get(cid, ""),
        side=parse_side(e.get("action") or order.get("action")),
        qty=int(e.get("qty") or 0),
        price=parse_decimal(e.get("price")) or Decimal(0),
        timestamp=parse_time(e.get("timestamp")) or datetime.fromtimestamp(0, tz=UTC),
    )


def cash_balance_of(e: Entity) -> CashBalance:
    """A ``cashBalance`` entity."""
    return CashBalance(
        account_id=int(e["accountId"]),
        realized_pnl=parse_decimal(e.get("realizedPnL")) or Decimal(0),
        open_pnl=parse_decimal(e.get("openPnL")) or Decimal(0),
        amount=parse_decimal(e.get("amount")),
    )
