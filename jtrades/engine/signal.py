"""A parsed webhook delivery: what TradingView (or a TradersPost/PickMyTrade alert) asked for."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any

from jtrades.broker.base import TimeInForce


class Action(StrEnum):
    BUY = "buy"  # also: long
    SELL = "sell"  # also: short
    CLOSE = "close"  # also: exit, flat
    CANCEL = "cancel"  # TradersPost: cancel working orders, keep the position
    ADD = "add"  # TradersPost: add to the position in its current direction


class MarketPosition(StrEnum):
    LONG = "long"
    SHORT = "short"
    FLAT = "flat"


class Units(StrEnum):
    TICKS = "ticks"
    POINTS = "points"
    PERCENT = "percent"
    DOLLARS = "dollars"  # per contract
    # Dollars for the whole position the alert trades (TradersPost ``pnlAmount``), spread over
    # its contracts as the alert counts them (``exits.resolve_exits``)
    POSITION_DOLLARS = "position_dollars"
    PRICE = "price"  # an absolute price level


@dataclass(frozen=True, slots=True)
class ExitSpec:
    """A per-alert take-profit or stop-loss: ``value`` in ``units`` (PRICE = absolute level)."""

    value: Decimal
    units: Units
    trailing: bool = False
    # Trailing stops that start trailing only once in profit by ``trail_trigger`` and move in
    # steps of ``trail_freq`` (PickMyTrade ``trail_trigger``/``trail_freq``), both in ``units``.
    trail_trigger: Decimal | None = None
    trail_freq: Decimal | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    """Everything the filters and the planner need from one alert; the raw body is kept elsewhere.

    ``quantity`` None means "use the configured size"; a per-alert ``take_profit``/``stop_loss``
    overrides the recorder's for this signal only.
    """

    action: Action
    ticker: str | None = None
    quantity: int | None = None
    # a close that exits ``quantity`` contracts of the position, not all (TradersPost ``exit``)
    partial_exit: bool = False
    # the one side a close may exit: TradersPost's ``sentiment: flat`` with a buy covers a
    # short only, with a sell exits a long only (its "Exit short ONLY"); None = either side
    closes_only: MarketPosition | None = None
    # TradersPost ``stopLoss: {"type": "stop"}`` with no distance: the configured stop loss,
    # placed as a plain stop even where the recorder's trails (the alert chose the leg's type)
    plain_stop: bool = False
    price: Decimal | None = None
    market_position: MarketPosition | None = None
    prev_market_position: MarketPosition | None = None
    alert_id: str | None = None
    order_type: str | None = None  # market|limit|stop (TradersPost orderType)
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    take_profit: tuple[ExitSpec, ...] = ()
    stop_loss: ExitSpec | None = None
    token: str | None = None  # token carried in the body, stripped before storage
    # the entry's time in force (TradersPost ``timeInForce``): DAY or GTC; None = DAY
    time_in_force: TimeInForce | None = None
    source: str | None = (
        None  # which dialect the body was written in: native|traderspost|pickmytrade|text
    )
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_close(self) -> bool:
        """Close signals skip entry filters: explicit close, or a target position of flat."""
        return self.action is Action.CLOSE or self.market_position is MarketPosition.FLAT
