"""Order planning: what one signal does to one sub-account's position, as an ordered list of orders.

Pure: (signal, effective settings, multiplier, sub-account, contract, that account's live state)
→ ``AccountPlan``. DESIGN.md §2 "What a signal does to a sub-account's position" is the spec.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Literal

from jtrades.broker.base import (
    Contract,
    OcoRequest,
    OrderRequest,
    StrategyRequest,
    SubAccount,
    WorkingOrder,
)
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Signal


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
    """This sub-account's position in this contract and its working orders on this contract only."""

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
class AccountPlan:
    action: PositionAction
    orders: tuple[PlannedOrder, ...]
    reason: str


def plan_account(
    signal: Signal,
    s: RiskSettings,
    multiplier: Decimal,
    account: SubAccount,
    contract: Contract,
    state: AccountState,
    *,
    signal_price: Decimal | None,
    cl_ord_prefix: str,
) -> AccountPlan:
    """Plan what ``signal`` does to this sub-account (body in progress)."""
    raise NotImplementedError
