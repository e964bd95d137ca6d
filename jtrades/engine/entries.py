"""The entry order an alert asks for (TradersPost/PickMyTrade ``orderType``), and the price it
will fill at.

Split from ``planning`` because the two answers must agree: exits given as absolute price levels
become bracket offsets measured from the expected fill, and the broker applies those offsets to
the real fill. Measuring them from the signal price while the entry rests elsewhere (a limit
50 points below the market) would put every stop and target 50 points off the alert's levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from jtrades.broker.base import OrderRequest, OrderType, Side
from jtrades.engine.exits import CannotPlan
from jtrades.engine.signal import Signal
from jtrades.engine.sizing import round_to_tick

_KINDS = {
    "market": OrderType.MARKET,
    "limit": OrderType.LIMIT,
    "stop": OrderType.STOP,
    "stop_limit": OrderType.STOP_LIMIT,
}


@dataclass(frozen=True, slots=True)
class EntryOrder:
    """Type and prices of the entry, on the tick: ``price`` is the limit, ``stop`` the trigger."""

    kind: OrderType
    price: Decimal | None = None
    stop: Decimal | None = None


def entry_order(sig: Signal, side: Side, tick: Decimal) -> EntryOrder:
    """The alert's entry (market when it names none), its prices rounded in the trader's favour.

    A buy limit rounds down and a sell limit up (never pay more than asked); a buy stop rounds up
    and a sell stop down (never trigger earlier than asked); a stop-limit does both. An entry
    type we do not know, or one missing the price it needs, raises ``CannotPlan``: sending it at
    market instead would buy at a price the trader never asked for.
    """
    name = (sig.order_type or "market").lower()
    kind = _KINDS.get(name)
    if kind is None:
        raise CannotPlan(f"unsupported entry order type {name!r}")
    buy = side is Side.BUY
    price = stop = None
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT):
        if sig.limit_price is None:
            raise CannotPlan(f"a {name} entry needs a limit price")
        price = round_to_tick(sig.limit_price, tick, "down" if buy else "up")
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT):
        if sig.stop_price is None:
            raise CannotPlan(f"a {name} entry needs a stop price")
        stop = round_to_tick(sig.stop_price, tick, "up" if buy else "down")
    return EntryOrder(kind, price, stop)


def expected_fill(entry: OrderRequest, signal_price: Decimal | None) -> Decimal | None:
    """The price ``entry`` is expected to fill at: what absolute exit levels are measured from.

    Market: the signal price (None when the alert gave none). Limit: a buy limit at or above
    the market (a cap on slippage, TradersPost sends them so) fills at the market, one below it
    waits for its limit: the lower of the limit and the signal price; a sell the higher (the
    limit without a signal price). Measured from the limit, a buy limit 10 points above the
    market put the alert's stop level 10 points farther from the fill. Stop: its stop (it
    becomes a market order there). Stop-limit: the limit order is born when the stop trades, so a
    buy fills at the stop when its limit is at or above it (the limit only caps slippage) and at
    the limit when that is below (it waits for the pull-back): the lower of the two; a sell the
    higher.
    """
    kind, price, stop = entry.order_type, entry.price, entry.stop_price
    if kind is OrderType.MARKET:
        return signal_price
    if kind is OrderType.LIMIT:
        if price is None or signal_price is None:
            return price
        return min(price, signal_price) if entry.side is Side.BUY else max(price, signal_price)
    if kind is OrderType.STOP:
        return stop
    if kind is OrderType.STOP_LIMIT and price is not None and stop is not None:
        return min(price, stop) if entry.side is Side.BUY else max(price, stop)
    raise CannotPlan(f"no expected fill for a {kind} entry")
