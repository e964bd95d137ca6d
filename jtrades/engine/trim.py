"""A partial exit: a buy or sell of fewer contracts than the other side held.

TradersPost reads ``{"action": "sell", "quantity": 5}`` against a long 10 as "exit 5 of it"
and opens nothing on the other side, whatever its sides setting (traderspost.io/reference,
"Exit Partial Position"); against a long of 5 or less, or from flat, it is the usual exit
and entry. jtrades' table read every sell while long as a reversal, so that message, moved
from TradersPost unchanged (it is jtrades' own format too), closed the long 10 and opened a
short 5; a strategy's partial exit sent without its market position did the same. A message
that does not say the position after the order (``market_position``, TradersPost's
``sentiment``: with it the order reads as a reduce or a reversal already) is read
TradersPost's way, per sub-account, as TradersPost compares with the position at the broker:
the account's position against the alert's quantity times the account's multiplier.
PickMyTrade's dialect keeps its own reading.

The plan is a reduce that opens nothing (a close, where the scaled quantity covers a
fractional follower's position), so it carries a ``Shortfall`` marked ``no_entry`` (cause
``TRIM``, or the filter's that refused the entry: a window, the kill switch, which do not
stop the trim, as they do not stop a reversal's close): the row says "closed only", and
once every account trimmed the signal counts as no entry (no cooldown, max-signals or
every-Nth turn, the recorder's or a trader's). Pure.
"""

from __future__ import annotations

import dataclasses

from jtrades.broker.base import Side
from jtrades.engine.exits import CannotPlan
from jtrades.engine.plan_context import AccountPlan, Ctx, Shortfall, Steps, label
from jtrades.engine.resize import plan_reduce
from jtrades.engine.signal import Action
from jtrades.engine.sizing import floor_scaled

# the cause of a plan that trimmed the other side and opened nothing (``Shortfall``)
TRIM = "partial_exit"
# the dialects read so (``Signal.source``)
_READ_SO = frozenset({"native", "traderspost", "text"})


def is_trim(c: Ctx) -> bool:
    """Whether the alert is a partial exit of this account's position: not PickMyTrade's, no
    market position said, a quantity, a position on the other side, and fewer contracts than
    the chart may hold (as many or more: an exit and an entry). The reduce sizes it
    (``plan_reduce``)."""
    sig, pos = c.sig, c.state.net_pos
    if sig.source not in _READ_SO or sig.market_position is not None:
        return False
    if sig.action not in (Action.BUY, Action.SELL) or not sig.quantity or pos == 0:
        return False
    if (pos > 0) == (sig.action is Action.BUY):
        return False
    # The chart's position is not known, only that it scaled to what this account holds: a
    # trim when it may hold more than the order, the most that scales to the position
    # (``sizing.scale_qty``: rounded down, at least 1) being more than ``quantity``. A ×0.5
    # follower's long 1 may be the chart's long 1, 2 or 3: a sell of 2 trims it (it closes)
    # rather than open a short 1 while the chart may still be long 1; wrong the other way, it
    # misses the chart's new short, never takes the side opposite the chart's. At ×1: fewer
    # contracts than held.
    return floor_scaled(sig.quantity + 1, c.multiplier) <= abs(pos)


def plan_trim(c: Ctx, steps: Steps, refusal: Shortfall | None) -> AccountPlan:
    """The partial exit ``is_trim`` found: a reduce of the position held, its exits
    re-placed for what is left (``resize.plan_reduce``). ``refusal``: a filter refused the
    signal's entry; the plan carries it instead of ``TRIM``, as a refused reversal's close
    carries its refusal."""
    if (c.sig.order_type or "market") != "market":
        # the trim goes at market (``plan_reduce``): sent so, a limit meant to rest went at once
        raise CannotPlan(
            f"a {c.sig.order_type} {c.sig.action} of fewer contracts than held trims the"
            " position, and exits go at market: send orderType market"
        )
    pos_side = Side.BUY if c.state.net_pos > 0 else Side.SELL
    plan = plan_reduce(c, steps, pos_side)
    why = (
        f"a {c.sig.action} of fewer contracts than the {label(pos_side)} held, with no market"
        " position, trims it and opens nothing (as TradersPost does)"
    )
    short = Shortfall(*((refusal.cause, refusal.why) if refusal else (TRIM, why)), no_entry=True)
    return dataclasses.replace(plan, reason=f"{plan.reason} ({why})", short=short)
