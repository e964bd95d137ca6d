"""What the simulated exchange accepts in an order: a type it can match, a quantity, the prices
its type needs, every price on the contract's tick.

Apart from the exchange (``exchange.Exchange``) because it is a pure check of one order's terms,
the same for a new order, a modification and a strategy's entry, made before any state changes.
The request's shape (fields, types) is checked before, by ``validate``; these are the rules a
well-formed order can still break, answered with Tradovate's rejection reasons.
"""

from __future__ import annotations

from jtrades.sim.config import Contract
from jtrades.sim.entities import OrderSpec, Rejected, on_tick

SUPPORTED_TYPES = frozenset({"Market", "Limit", "Stop", "StopLimit", "TrailingStop", "MIT"})


def check_spec(contract: Contract, spec: OrderSpec) -> None:
    """Raise ``Rejected`` for an order the exchange does not take."""
    tick = contract.root.tick
    kind = spec.order_type
    if kind not in SUPPORTED_TYPES:
        raise Rejected("Unsupported", f"{kind} orders are not supported by the simulator")
    if spec.qty < 1:
        raise Rejected("UnknownReason", "Invalid or missed parameters: orderQty")
    needs_price = kind in ("Limit", "StopLimit", "MIT")
    needs_stop = kind in ("Stop", "StopLimit")
    if needs_price and spec.price is None:
        raise Rejected("InvalidPrice", f"{kind} order needs a price")
    if needs_stop and spec.stop_price is None:
        raise Rejected("InvalidPrice", f"{kind} order needs a stopPrice")
    if kind == "TrailingStop" and spec.peg is None and spec.stop_price is None:
        raise Rejected("InvalidPrice", "TrailingStop needs a pegDifference")
    for what, value in (("price", spec.price), ("stopPrice", spec.stop_price)):
        if value is not None and (value <= 0 or not on_tick(value, tick)):
            raise Rejected("InvalidPrice", f"{what} {value} is not on the tick {tick}")
    if spec.peg is not None and (spec.peg == 0 or not on_tick(spec.peg, tick)):
        raise Rejected("InvalidPrice", f"pegDifference {spec.peg} is not on the tick {tick}")
