"""The strategy's position after the order, as an alert says it.

TradingView's ``{{strategy.market_position_size}}`` (any spelling, kept in ``Signal.extra``;
the plain-text default strategy message's "New strategy position is N") is the chart's
position once the order has filled. It corrects what the order quantity alone gets wrong:
a reversal's quantity counts the contracts it closes (``planning._opening_qty``), and a
fractional follower's share of what a partial exit leaves is not the order times its
multiplier (``resize.plan_reduce``). Pure.
"""

from __future__ import annotations

from decimal import Decimal

from jtrades.engine.exits import CannotPlan
from jtrades.engine.parse_values import MAX_QUANTITY, NUMBER, short
from jtrades.engine.signal import Signal

_KEYS = frozenset(
    {"positionsize", "marketpositionsize", "strategypositionsize", "strategymarketpositionsize"}
)


def size_after(sig: Signal) -> int | None:
    """The contracts the alert says the strategy holds after the order (≥ 1, whole), or None
    when it says none (absent, not a number, 0 or fractional). A value spelled as no plain
    number (Decimal reads "2_0" as 20, and non-ASCII digits: refused as a quantity at
    parsing) or beyond the quantity's bound cannot be planned from."""
    for key, value in sig.extra.items():
        if not isinstance(key, str) or isinstance(value, bool):
            continue
        if "".join(ch for ch in key.lower() if ch not in "_- .") not in _KEYS:
            continue
        text = str(value).strip()
        try:
            size = abs(Decimal(text))
        except ArithmeticError:
            continue  # not a number at all ("n/a"): as if absent
        if not NUMBER.fullmatch(text):
            raise CannotPlan(f"{key} {short(text)!r} is not a plain number")
        if size.is_finite() and size > MAX_QUANTITY:
            raise CannotPlan(f"{key} is larger than {MAX_QUANTITY} contracts")
        if size.is_finite() and size >= 1 and size == size.to_integral_value():
            return int(size)
    return None
