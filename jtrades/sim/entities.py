"""The simulator's entities and their Tradovate JSON shapes.

Internally prices are ``Decimal`` (a tick of 1/64 or 0.00005 must not drift); on the wire they are
JSON numbers, as Tradovate sends them. Each ``*_json`` builds a fresh small dict: an event carries
the entity as it was at that moment, which is what a client's view must be built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from jtrades.sim.config import Contract

WORKING = "Working"
SUSPENDED = "Suspended"
PENDING_NEW = "PendingNew"
FILLED = "Filled"
CANCELED = "Canceled"
OPEN_STATUSES = frozenset({WORKING, SUSPENDED, PENDING_NEW})

# (accountId, entityType, eventType, entity)
PropsEvent = tuple[int, str, str, dict[str, Any]]


def iso(ts: datetime) -> str:
    return ts.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def trade_date(ts: datetime) -> dict[str, int]:
    return {"year": ts.year, "month": ts.month, "day": ts.day}


def num(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


class Rejected(Exception):
    """A command Tradovate would refuse: ``reason`` is a ``failureReason`` value."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text


def to_tick(value: Decimal, tick: Decimal, rounding: str = ROUND_HALF_UP) -> Decimal:
    return (value / tick).to_integral_value(rounding=rounding) * tick


def on_tick(value: Decimal, tick: Decimal) -> bool:
    return value % tick == 0


@dataclass(slots=True)
class OrderSpec:
    """What an order asks for (a placeorder body or a bracket), already type-checked."""

    action: str
    qty: int
    order_type: str
    price: Decimal | None = None
    stop_price: Decimal | None = None
    peg: Decimal | None = None
    tif: str = "Day"
    cl_ord_id: str | None = None
    text: str | None = None


@dataclass(slots=True, eq=False)
class Order:
    id: int
    account_id: int
    contract: Contract
    spec: OrderSpec
    status: str
    timestamp: datetime
    version_id: int
    is_automated: bool = True
    oco_id: int | None = None
    parent_id: int | None = None
    linked_id: int | None = None
    strategy_id: int | None = None
    role: str = ""  # in a strategy: entry, tp, sl
    children: list[int] = field(default_factory=list)  # OSO brackets waiting on this fill
    triggered: bool = False  # a StopLimit whose stop was hit
    immediate: bool = False  # IOC/FOK
    fill_price: Decimal | None = None
    auto_trail: dict[str, Decimal] | None = None  # strategy autoTrail: stopLoss, trigger, freq
    anchor: Decimal | None = None  # the entry price an autoTrail measures profit from
    commands: list[dict[str, Any]] = field(default_factory=list)  # New, Modify, Cancel

    @property
    def sign(self) -> int:
        return 1 if self.spec.action == "Buy" else -1

    def json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "accountId": self.account_id,
            "contractId": self.contract.id,
            "timestamp": iso(self.timestamp),
            "action": self.spec.action,
            "ordStatus": self.status,
            "admin": False,
        }
        if self.oco_id is not None:
            d["ocoId"] = self.oco_id
        if self.parent_id is not None:
            d["parentId"] = self.parent_id
        if self.linked_id is not None:
            d["linkedId"] = self.linked_id
        return d

    def version_json(self) -> dict[str, Any]:
        s = self.spec
        d: dict[str, Any] = {
            "id": self.version_id,
            "orderId": self.id,
            "orderQty": s.qty,
            "orderType": s.order_type,
            "timeInForce": s.tif,
        }
        if s.price is not None:
            d["price"] = float(s.price)
        if s.stop_price is not None:
            d["stopPrice"] = float(s.stop_price)
        if s.peg is not None:
            d["pegDifference"] = float(s.peg)
        if s.text is not None:
            d["text"] = s.text
        return d

    def command_json(self, command_id: int, command_type: str, ts: datetime) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": command_id,
            "orderId": self.id,
            "timestamp": iso(ts),
            "commandType": command_type,
            "commandStatus": "ExecutionStopped",
            "isAutomated": self.is_automated,
        }
        if self.spec.cl_ord_id is not None:
            d["clOrdId"] = self.spec.cl_ord_id
        return d


@dataclass(slots=True)
class Fill:
    id: int
    order_id: int
    account_id: int
    contract: Contract
    timestamp: datetime
    action: str
    qty: int
    price: Decimal

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "orderId": self.order_id,
            "contractId": self.contract.id,
            "timestamp": iso(self.timestamp),
            "tradeDate": trade_date(self.timestamp),
            "action": self.action,
            "qty": self.qty,
            "price": float(self.price),
            "active": True,
            "finallyPaired": 0,
        }


@dataclass(slots=True)
class Position:
    id: int
    account_id: int
    contract: Contract
    timestamp: datetime
    net_pos: int = 0
    net_price: Decimal = Decimal(0)  # average entry of the open quantity
    bought: int = 0
    bought_value: Decimal = Decimal(0)
    sold: int = 0
    sold_value: Decimal = Decimal(0)
    prev_pos: int = 0
    prev_price: Decimal | None = None
    lots: list[list[Any]] = field(default_factory=list)  # open fills, FIFO: [fill id, qty, price]

    def json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "accountId": self.account_id,
            "contractId": self.contract.id,
            "timestamp": iso(self.timestamp),
            "tradeDate": trade_date(self.timestamp),
            "netPos": self.net_pos,
            "bought": self.bought,
            "boughtValue": float(self.bought_value),
            "sold": self.sold,
            "soldValue": float(self.sold_value),
            "prevPos": self.prev_pos,
        }
        if self.net_pos:
            d["netPrice"] = float(self.net_price)
        if self.prev_price is not None:
            d["prevPrice"] = float(self.prev_price)
        return d


@dataclass(slots=True)
class CashBalance:
    id: int
    account_id: int
    timestamp: datetime
    start: Decimal
    realized: Decimal = Decimal(0)

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "accountId": self.account_id,
            "timestamp": iso(self.timestamp),
            "tradeDate": trade_date(self.timestamp),
            "currencyId": 1,
            "amount": float(self.start + self.realized),
            "realizedPnL": float(self.realized),
            "weekRealizedPnL": float(self.realized),
            "amountSOD": float(self.start),
        }


@dataclass(slots=True)
class Leg:
    """One bracket of a strategy: its TP limit and its share of a (possibly shared) stop."""

    qty: int
    target: Decimal | None  # signed offset in points
    stop: Decimal | None
    trailing: bool = False
    auto_trail: dict[str, Decimal] | None = None
    tp_id: int | None = None
    sl_id: int | None = None
    done: bool = False


@dataclass(slots=True)
class Strategy:
    id: int
    account_id: int
    contract: Contract
    action: str
    params: str
    timestamp: datetime
    legs: list[Leg]
    entry_id: int = 0
    status: str = "ActiveStrategy"
    uuid: str | None = None

    def json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id,
            "accountId": self.account_id,
            "timestamp": iso(self.timestamp),
            "contractId": self.contract.id,
            "orderStrategyTypeId": 2,
            "action": self.action,
            "params": self.params,
            "status": self.status,
        }
        if self.uuid is not None:
            d["uuid"] = self.uuid
        return d


def strategy_link_json(link_id: int, strategy_id: int, order_id: int, label: str) -> dict[str, Any]:
    return {"id": link_id, "orderStrategyId": strategy_id, "orderId": order_id, "label": label}
