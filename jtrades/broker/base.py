"""The broker port: commands the engine sends and the live state it reads.

The engine never waits on a broker round trip to decide: ``positions`` and ``working_orders`` read
the in-memory view that the broker's event stream keeps current. Commands are async and return
what the broker said; an answer that never came raises ``OutcomeUnknown`` (never a rejection), so
the caller reconciles by ``cl_ord_id`` instead of re-sending.

Prices are ``Decimal`` and already on the contract's tick; quantities are whole contracts ≥ 1.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Side(StrEnum):
    BUY = "Buy"
    SELL = "Sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1


class OrderType(StrEnum):
    MARKET = "Market"
    LIMIT = "Limit"
    STOP = "Stop"
    STOP_LIMIT = "StopLimit"
    TRAILING_STOP = "TrailingStop"


class TimeInForce(StrEnum):
    DAY = "Day"
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(StrEnum):
    PENDING_NEW = "PendingNew"
    WORKING = "Working"
    FILLED = "Filled"
    CANCELED = "Canceled"
    REJECTED = "Rejected"
    EXPIRED = "Expired"
    SUSPENDED = "Suspended"
    PENDING_CANCEL = "PendingCancel"
    PENDING_REPLACE = "PendingReplace"
    COMPLETED = "Completed"
    UNKNOWN = "Unknown"

    @property
    def is_open(self) -> bool:
        return self in _OPEN


_OPEN = frozenset(
    {
        OrderStatus.PENDING_NEW,
        OrderStatus.WORKING,
        OrderStatus.SUSPENDED,
        OrderStatus.PENDING_CANCEL,
        OrderStatus.PENDING_REPLACE,
    }
)


@dataclass(frozen=True, slots=True)
class SubAccount:
    """Where an order goes: the broker's account id and its name (``accountSpec``)."""

    account_id: int
    name: str


@dataclass(frozen=True, slots=True)
class Contract:
    symbol: str  # the tradable contract, e.g. MNQZ6
    root: str  # the product, e.g. MNQ
    tick_size: Decimal
    value_per_point: Decimal
    contract_id: int | None = None

    @property
    def tick_value(self) -> Decimal:
        return self.tick_size * self.value_per_point


@dataclass(frozen=True, slots=True)
class OrderRequest:
    account: SubAccount
    symbol: str
    side: Side
    qty: int
    order_type: OrderType = OrderType.MARKET
    cl_ord_id: str = ""
    price: Decimal | None = None  # Limit, StopLimit
    stop_price: Decimal | None = None  # Stop, StopLimit, TrailingStop (initial trigger)
    peg_difference: Decimal | None = None  # TrailingStop: signed distance in points
    time_in_force: TimeInForce = TimeInForce.DAY
    text: str | None = None


@dataclass(frozen=True, slots=True)
class BracketOrder:
    """An exit order of an OSO: it works once the entry has filled."""

    side: Side
    order_type: OrderType
    price: Decimal | None = None
    stop_price: Decimal | None = None
    peg_difference: Decimal | None = None
    cl_ord_id: str = ""


@dataclass(frozen=True, slots=True)
class OsoRequest:
    """Entry plus up to two linked exits (OCO with each other): Tradovate ``order/placeoso``."""

    entry: OrderRequest
    bracket1: BracketOrder | None = None
    bracket2: BracketOrder | None = None


@dataclass(frozen=True, slots=True)
class OcoRequest:
    """Two working orders where a fill of one cancels the other: Tradovate ``order/placeoco``.

    A TP leg paired with its share of the stop: when the leg fills its stop goes, so the
    protective stop shrinks with the position without any action of ours."""

    first: OrderRequest
    second: OrderRequest


@dataclass(frozen=True, slots=True)
class StrategyBracket:
    """One leg of an order strategy. Offsets are signed points from the fill (long: +tp, -sl)."""

    qty: int
    profit_target: Decimal | None = None
    stop_loss: Decimal | None = None
    trailing_stop: bool = False
    trail_trigger: Decimal | None = None
    trail_freq: Decimal | None = None
    # Once the trade is ``breakeven`` points in profit, the stop moves to the entry price plus
    # ``breakeven_offset`` points (in the trade's favour). Tradovate has no such bracket field.
    breakeven: Decimal | None = None
    breakeven_offset: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class StrategyRequest:
    """Entry and a TP ladder sharing it: Tradovate ``orderStrategy/startorderstrategy``."""

    entry: OrderRequest
    brackets: tuple[StrategyBracket, ...]


@dataclass(frozen=True, slots=True)
class PlaceResult:
    order_id: int
    linked_ids: tuple[int, ...] = ()  # oso1Id/oso2Id, or a strategy's id
    strategy_id: int | None = None


@dataclass(frozen=True, slots=True)
class Position:
    account_id: int
    contract_id: int
    symbol: str
    net_pos: int
    net_price: Decimal | None
    timestamp: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkingOrder:
    order_id: int
    account_id: int
    contract_id: int
    symbol: str
    side: Side
    qty: int
    order_type: OrderType
    status: OrderStatus
    price: Decimal | None = None
    stop_price: Decimal | None = None
    cl_ord_id: str | None = None
    parent_id: int | None = None
    oco_id: int | None = None
    # the broker's text when it rejected the order after accepting it (a risk check)
    reason: str | None = None
    # an order strategy's entry: its brackets are made when it fills, for its whole quantity
    bracketed: bool = False
    # the order's text at the broker: an OCO's second leg carries our clOrdId there (Tradovate
    # takes none for it), which is how an exit of ours is known once its partner is gone
    text: str | None = None
    # a trailing stop's distance in points (unsigned; Tradovate's pegDifference): a stop that
    # protection re-places goes on trailing by it, the alert's distance, not the trader's
    trail: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Fill:
    fill_id: int
    order_id: int
    account_id: int
    contract_id: int
    symbol: str
    side: Side
    qty: int
    price: Decimal
    timestamp: datetime


@dataclass(frozen=True, slots=True)
class CashBalance:
    account_id: int
    realized_pnl: Decimal
    open_pnl: Decimal = Decimal(0)
    amount: Decimal | None = None


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    """A change to the live view: ``kind`` is order|position|fill|cash|session; ``entity`` is the
    parsed dataclass (or None for a session event), ``deleted`` for eventType Deleted."""

    kind: str
    account_id: int | None
    entity: WorkingOrder | Position | Fill | CashBalance | None
    deleted: bool = False
    detail: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class Broker(Protocol):
    """One broker connection serving all sub-accounts of one login.

    Every call returns or raises within a bound of the implementation's own (Tradovate: the
    request timeout, then ``OutcomeUnknown``): callers add no timer around them."""

    async def place_order(self, req: OrderRequest) -> PlaceResult: ...

    async def place_oso(self, req: OsoRequest) -> PlaceResult: ...

    async def place_oco(self, req: OcoRequest) -> PlaceResult: ...

    async def start_strategy(self, req: StrategyRequest) -> PlaceResult: ...

    async def modify_order(
        self,
        order_id: int,
        *,
        qty: int,
        order_type: OrderType,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> None: ...

    async def cancel_order(self, order_id: int) -> None: ...

    async def liquidate_position(self, account: SubAccount, contract_id: int) -> None: ...

    def is_synced(self, account_id: int) -> bool:
        """Whether the live view of this account is current (after sync, not mid-reconnect)."""
        ...

    async def find_contract(self, symbol: str) -> Contract: ...

    def positions(self, account_id: int) -> list[Position]:
        """Live view; raises ``TransientBrokerError`` when the view is not synced (missing ≠ flat)."""
        ...

    def working_orders(self, account_id: int) -> list[WorkingOrder]: ...

    async def position_changed(self, account_id: int, within_s: float) -> None:
        """Return when this account's position in the live view next changes (or its view is
        synced or lost), or after ``within_s``: a caller waiting for a position re-reads it
        then, instead of polling."""
        ...

    def knows_order(self, account_id: int, order_id: int | None, cl_ord_id: str | None) -> bool:
        """Whether the live view has this order, in any state: by its id, or by its clOrdId
        when the answer carried no id (a strategy's entry). Orders' events may come before
        their answers or after them: whoever plans next waits for this."""
        ...

    def fills(self, account_id: int) -> list[Fill]: ...

    def filled_qty(self, account_id: int, order_ids: Iterable[int]) -> dict[int, int]:
        """Contracts filled so far of each of ``order_ids`` (absent: none). Cheap for a few
        orders however many fills the day has: reconciliation asks for every sub-account's
        working exits on every pass."""
        ...

    def last_fill_id(self, account_id: int) -> int:
        """The account's highest fill id in the live view (0: none): the daily-loss filter
        waits until the mirror has counted up to it (``engine.booked_fills``)."""
        ...

    def cash(self, account_id: int) -> CashBalance | None: ...

    async def order_by_cl_ord_id(
        self,
        account_id: int,
        cl_ord_id: str,
        *,
        since: datetime | None = None,
        strategy: bool = False,
    ) -> WorkingOrder | None:
        """Look an intent's order up at the broker (not only the cache): reconciliation after
        a crash. ``None`` means the broker's complete answer has no such order (it was never
        sent); ``BrokerRejected``, that the broker has the intent and refused it without an
        order; an answer that cannot be complete raises anything else (money rule 2).

        ``strategy``: the intent was an order strategy; the answer is its entry order (found
        by the id the strategy was started with). ``since``: when the intent was written, so
        older orders need not be searched."""
        ...

    def events(self) -> AsyncIterator[BrokerEvent]:
        """Subscribe to changes of the live view (each call is an independent subscriber)."""
        ...


def missing_price(
    kind: OrderType, price: Decimal | None, stop: Decimal | None, peg: Decimal | None
) -> str | None:
    """Why an order of ``kind`` cannot work with these prices, or None: checked before an order
    leaves (Tradovate's client) or is created (the paper broker), so a malformed one is refused
    whole instead of spending a round trip, or leaving part of its group behind."""
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and price is None:
        return f"a {kind} order needs a price"
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and stop is None:
        return f"a {kind} order needs a stop price"
    if kind is OrderType.TRAILING_STOP and stop is None and peg is None:
        return "a TrailingStop order needs pegDifference (or an initial stop price)"
    return None


def oco_pair_fault(first: OrderRequest, second: OrderRequest) -> str | None:
    """Why Tradovate's placeoco cannot express this pair, or None: its second order (a
    RestrainedOrderVersion) has no account, symbol or quantity of its own and takes the
    first's, so a pair that differs in them is a caller's bug (both brokers refuse it)."""
    if first.account != second.account:
        return "both orders of an OCO must be for the same sub-account"
    if first.symbol != second.symbol:
        return "both orders of an OCO must be for the same contract"
    if first.qty != second.qty:
        return "both orders of an OCO must have the same quantity (the second takes the first's)"
    return None
