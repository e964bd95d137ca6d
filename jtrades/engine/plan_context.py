"""What a plan is made of (its types, its numbered steps) and the context it is made in.

Split from ``planning`` so the position table there and the re-working of a held position's
exits (``resize``) share one vocabulary without importing each other: ``planning`` imports
both, this module imports neither. ``planning`` re-exports the public types; import them from
there. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from jtrades.broker.base import (
    Contract,
    OcoRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    StrategyRequest,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.engine.entries import entry_order
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Signal

MAX_CL_ORD_ID = 64
# What marks an order jtrades placed only to exit a position (a take-profit or stop re-placed
# for a DCA or a partial exit; every protective order): its clOrdId. An exit left working once
# the position is gone would open a new one when it fills, and the reconciler cancels such
# orders by this mark (``engine.orphans``); an entry never carries it.
EXIT_MARK = "x"
# Orders that may fill now: Working, PendingNew (accepted, about to work), PendingReplace
# (working while a modify is in flight). Not Suspended (a bracket waiting for its entry).
LIVE = frozenset({OrderStatus.WORKING, OrderStatus.PENDING_NEW, OrderStatus.PENDING_REPLACE})
PROTECTION_PREFIX = "jt-p-"
# The note of an entry that opens a trade with no exits (``planning._open``: from flat, or
# after its plan's liquidation); the owed stop's evidence query tells it from an add by it
# (``sql/queries/owed_stops.sql``). Stored: changing it changes how old rows read.
OPENING_ENTRY = "entry without TP/SL"
# the cause of a plan that could not be made safely (``Shortfall``)
CANNOT_PLAN = "cannot_plan"
# the causes of an add no account could take: --dca off (the account's settings refuse such an
# add, as --direction refuses a side), or no position to add to (``resize.plan_add``,
# ``planning``)
NEEDS_DCA = "dca"
NO_POSITION = "no_position"
# The causes that hold an account's entry back without the strategy's entry being refused:
# every account held back (or trimming), the recorder's entry goes back (``verdicts``), and a
# claim stored so says it for a restart (``held_back``: ``signals.give_back_unsent``).
HALTED = "halted"  # the kill switch (global, or the account's login)
# a buy or sell ignored on a position of its side (``--same-direction ignore``): nothing was
# entered, so it neither uses a --max-signals turn nor starts a cooldown when no account took it
SAME_SIDE = "same_direction"
HELD_BACK = frozenset({"max_contracts", HALTED, NO_POSITION, SAME_SIDE})
# The causes the dispatcher gives a plan whose entry did not go after earlier steps did (a
# reversal's close, an open's cancels: ``Dispatcher._run_account``): the broker refused it or
# would not take it, or it was not sent (past the TTL, after a step that failed). What the
# verdict names when nothing at all went (``broker``, ``expired``), here with less.
ENTRY_REFUSED = "broker"
ENTRY_UNSENT = "unsent"


def placed_as_exit(cl_ord_id: str | None) -> bool:
    """Whether ``cl_ord_id`` names an exit jtrades placed (an OCO's second leg ends in ``b``)."""
    if not cl_ord_id or not cl_ord_id.startswith("jt-"):
        return False
    return cl_ord_id.startswith(PROTECTION_PREFIX) or cl_ord_id.removesuffix("b").endswith(
        EXIT_MARK
    )


def jtrades_exit(order: WorkingOrder) -> bool:
    """Whether a working order is an exit jtrades placed: a bracket leg of an order strategy
    (``parent_id``), or one whose clOrdId or text says so (``placed_as_exit``)."""
    return (
        order.parent_id is not None or placed_as_exit(order.cl_ord_id) or placed_as_exit(order.text)
    )


def held_back(short: Shortfall | None) -> bool:
    """Whether a plan's shortfall holds its entry back (``HELD_BACK``) or takes the alert as no
    entry at all (a trim)."""
    return short is not None and (short.cause in HELD_BACK or short.no_entry)


class PositionAction(StrEnum):
    OPEN = "open"
    ADD = "add"
    REENTER = "reenter"
    REVERSE = "reverse"
    REDUCE = "reduce"
    CLOSE = "close"
    CANCEL = "cancel"  # TradersPost ``cancel``: cancel working orders, keep the position
    NOTHING = "nothing"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class AccountState:
    """This sub-account's position in this contract and its working orders on this contract.

    Orders of another account or contract found here are ignored, never cancelled (money rule 5).
    """

    net_pos: int
    avg_price: Decimal | None
    working: tuple[WorkingOrder, ...] = ()


PlanKind = Literal["order", "oco", "strategy", "liquidate", "cancel"]


@dataclass(frozen=True, slots=True)
class PlannedOrder:
    step: int
    kind: PlanKind
    request: OrderRequest | OcoRequest | StrategyRequest | None
    cancel_order_id: int | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Shortfall:
    """Why a plan opens nothing of the position its alert asked for (it closes only, cancels
    only, or ignores the alert), in a form the verdict reads without parsing words.

    ``cause`` is stable: the name of the limit that held the entry back, as a signal row's
    ``filter`` names it (``direction``, ``max_contracts``, ``halted``, or any filter that
    refused the entry: ``window``, ``cooldown``…), ``cannot_plan`` (the alert cannot be
    sized or priced safely), ``dca`` or ``no_position`` (an add no account could take), or,
    set by the dispatcher on the account's result, ``broker`` or ``unsent`` (the entry step
    did not go after earlier steps did). ``why`` is for people: what a signal's row says after
    what the plan did ("closed only: …"), so without a filter's name (``direction: `` …)."""

    cause: str
    why: str
    # the account took the alert as no entry at all (a partial exit, ``trim``), whatever
    # refused it: what it moved on the counts goes back once no account entered
    no_entry: bool = False


@dataclass(frozen=True, slots=True)
class AccountPlan:
    action: PositionAction
    orders: tuple[PlannedOrder, ...]
    reason: str
    # the plan does less than the alert asked (None: all of it, or nothing was asked); by
    # keyword, so a subclass's fields (``resize.AddPlan``) stay positional
    short: Shortfall | None = field(default=None, kw_only=True)


@dataclass(slots=True)
class Steps:
    """The plan so far. Ids are numbered by position, so the same inputs always give the same
    ``cl_ord_id``s (money rule 2)."""

    prefix: str
    items: list[PlannedOrder] = field(default_factory=list)

    def next_id(self, suffix: str = "") -> str:
        cl = f"{self.prefix}-{len(self.items) + 1}{suffix}"
        if len(cl) > MAX_CL_ORD_ID:
            raise ValueError(f"clOrdId {cl!r} is longer than {MAX_CL_ORD_ID} characters")
        return cl

    def exit_id(self, suffix: str = "") -> str:
        """The next step's clOrdId for an order that only exits (``placed_as_exit``)."""
        return self.next_id(EXIT_MARK + suffix)

    def add(
        self,
        kind: PlanKind,
        request: OrderRequest | OcoRequest | StrategyRequest | None,
        *,
        cancel_order_id: int | None = None,
        note: str = "",
    ) -> None:
        step = len(self.items) + 1
        self.items.append(PlannedOrder(step, kind, request, cancel_order_id, note))


@dataclass(frozen=True, slots=True)
class Ctx:
    """Everything one account's plan depends on, in one argument (also ``exits.ExitInputs``)."""

    sig: Signal
    s: RiskSettings
    multiplier: Decimal
    account: SubAccount
    contract: Contract
    state: AccountState
    signal_price: Decimal | None
    refused: str | None = None  # a filter refused the entry: ``planning``'s refused entry


# --- building blocks -----------------------------------------------------------------------


def own_working(c: Ctx) -> list[WorkingOrder]:
    """Open orders of this sub-account on this contract (anything else is not ours to touch)."""
    cid = c.contract.contract_id
    return [
        w
        for w in c.state.working
        if w.status.is_open
        and w.account_id == c.account.account_id
        and (w.contract_id == cid if cid is not None else w.symbol == c.contract.symbol)
    ]


def exit_working(c: Ctx, pos_side: Side) -> list[WorkingOrder]:
    return [w for w in own_working(c) if w.side is pos_side.opposite]


def working_entries(c: Ctx, side: Side) -> int:
    """Contracts of this sub-account's working orders on ``side`` (flat, or a ``side``
    position): a limit or stop entry not filled yet, which would add to the position if it
    did. ``--max-contracts`` counts them as held. Suspended orders are not entries: they are
    the brackets of an entry on the other side, exiting what it would add."""
    return sum(
        w.qty for w in own_working(c) if w.side is side and w.status is not OrderStatus.SUSPENDED
    )


def label(side: Side) -> str:
    return "long" if side is Side.BUY else "short"


def req(
    c: Ctx,
    side: Side,
    qty: int,
    kind: OrderType,
    cl: str,
    *,
    price: Decimal | None = None,
    stop: Decimal | None = None,
    peg: Decimal | None = None,
    tif: TimeInForce = TimeInForce.DAY,
) -> OrderRequest:
    """An order of this sub-account on this contract, DAY unless told (entries, closes; the
    exits of a held position are GTC, ``exit_orders``)."""
    return OrderRequest(
        c.account, c.contract.symbol, side, qty, kind, cl_ord_id=cl, price=price,
        stop_price=stop, peg_difference=peg, time_in_force=tif,
    )  # fmt: skip


def entry_request(c: Ctx, cl: str, side: Side, qty: int) -> OrderRequest:
    """Market entry, or the alert's limit/stop/stop-limit entry on the tick (``entries``).

    DAY, or GTC when the alert says so (TradersPost ``timeInForce``) for an entry that rests:
    sent DAY whatever the alert said, a GTC limit entry expired at the session's end. A market
    entry fills at once, so it stays DAY (what the brokers are used to being asked for one)."""
    e = entry_order(c.sig, side, c.contract.tick_size)
    rests = e.kind is not OrderType.MARKET
    tif = TimeInForce.GTC if rests and c.sig.time_in_force is TimeInForce.GTC else TimeInForce.DAY
    return req(c, side, qty, e.kind, cl, price=e.price, stop=e.stop, tif=tif)


def liquidate(c: Ctx, steps: Steps) -> None:
    pos = c.state.net_pos
    side = Side.SELL if pos > 0 else Side.BUY
    order = req(c, side, abs(pos), OrderType.MARKET, steps.next_id())
    steps.add("liquidate", order, note=f"flatten {pos:+d} and cancel the contract's working orders")
