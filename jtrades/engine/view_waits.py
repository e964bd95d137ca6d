"""Waiting for an account's live view to show what the broker has already answered.

Why: Tradovate sends an order's events before its answer or after it ("does either",
TRADOVATE.md), and whoever plans next on the account plans from the view. A stop placed but not
yet shown is not cancelled by the next plan, which places its own beside it (stops for 5 on a
long 3); a limit entry not yet shown is not cancelled by the close behind it, and fills after
it. So whoever holds an account's lock keeps it until the view has what it placed and no longer
shows what it cancelled as open (bounded by the caller). The view changes with the stream, which
has no event to wait on per order: these poll.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from jtrades.broker.base import Broker

POLL_S = 0.01

# an order placed: its id from the answer (None when the answer had none), its clOrdId
Placed = tuple[int | None, str | None]


def shows_placed(broker: Broker, account_id: int, placed: Iterable[Placed]) -> bool:
    """Whether the view has every one of ``placed``, in any state."""
    return all(broker.knows_order(account_id, oid, cl) for oid, cl in placed)


def shows_gone(broker: Broker, account_id: int, order_ids: Iterable[int]) -> bool:
    """Whether the view no longer shows any of ``order_ids`` as open."""
    wanted = set(order_ids)
    return not wanted or not any(o.order_id in wanted for o in broker.working_orders(account_id))


def shows_orders(
    broker: Broker, account_id: int, placed: Iterable[Placed], cancelled: Iterable[int]
) -> bool:
    """Both of the above: the view is what the lock holder made it."""
    return shows_placed(broker, account_id, placed) and shows_gone(broker, account_id, cancelled)


async def within(check: Callable[[], bool], within_s: float, poll_s: float = POLL_S) -> bool:
    """Whether ``check`` comes true within ``within_s``, looking every ``poll_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not check():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(poll_s)
    return True
