"""A claim whose answer was lost, and whose fate the database cannot tell yet.

The claim's connection failed with the statement sent: it may have committed. If it did, its
intents are on disk, and TradingView's re-send (of the 503 or of an answer that never came) meets
its key as a duplicate and sends nothing: answering "not stored" while that is unknown loses the
alert. So the fate is asked again until it is known or the signal is past its TTL (money rule 2:
then nothing may be sent, whatever the fate). Meanwhile the dispatch keeps its accounts' locks
(rule 3: no later signal overtakes it on them) and the webhook its answer (nothing is answered
before the delivery is known stored). A database that comes back within the TTL sends the orders
of a claim that committed, or answers 503 for one that did not, as if the answer had come.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

import asyncpg
import structlog

from jtrades.errors import StorageUnavailable
from jtrades.store import signals as signal_store
from jtrades.store.intents import NewIntent

log = structlog.get_logger(__name__)

FIRST_PAUSE_S = 0.05  # between asks; doubled each time up to LAST_PAUSE_S
LAST_PAUSE_S = 1.0
LEAST_ASK_S = 1.0  # an ask is given at least this long, even close to the deadline


async def learn_fate(
    pool: asyncpg.Pool,
    delivery: signal_store.Delivery,
    intents: Sequence[NewIntent],
    backend: int | None,
    deadline: datetime,
    clock: Callable[[], datetime],
) -> signal_store.Claim:
    """The claim as stored, once the database can say it committed; raises
    ``StorageUnavailable`` once it says it did not, or when ``deadline`` (the signal's TTL)
    passes first. An ask that hangs (a connection attempt to an unreachable server) is cut at
    the deadline."""
    pause = FIRST_PAUSE_S
    asks = 0
    while True:
        asks += 1
        left = (deadline - clock()).total_seconds()
        try:
            async with asyncio.timeout(max(left, LEAST_ASK_S)):
                fate = await signal_store.claim_fate(pool, delivery, intents, backend)
        except (StorageUnavailable, TimeoutError) as exc:
            left = (deadline - clock()).total_seconds()
            if left <= 0:
                log.error(
                    "dispatch.claim_fate_unknown",
                    signal_id=delivery.signal_id,
                    asks=asks,
                    error=str(exc) or type(exc).__name__,
                    effect="past its TTL: nothing is sent; a committed claim's intents are "
                    "resolved by reconciliation",
                )
                raise StorageUnavailable(
                    "the database could not say whether the signal was stored before its TTL"
                ) from None
            if asks == 1:
                log.warning(
                    "dispatch.claim_fate_asked_again",
                    signal_id=delivery.signal_id,
                    error=str(exc) or type(exc).__name__,
                    effect="its answer waits until the database can tell (at most its TTL)",
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, LAST_PAUSE_S)
            continue
        if fate is None:
            raise StorageUnavailable("the claim's connection failed before it committed")
        return fate
