"""A claim whose answer was lost, and whose fate the database cannot tell yet.

The claim's connection failed with the statement sent: it may have committed. Asked once and
answered 503 when the database could not say, a claim that had committed was lost: its intents
were on disk, unsent, and TradingView's re-send met its key as a duplicate. Held until the
database could say, one that had not committed was lost instead: TradingView hangs up at 3 s
and re-sends only a 5xx, so a 503 given later reached nobody and nothing re-sent it.

So both: the delivery is in doubt from the first ask (``Delivery.in_doubt``: an ask may hang
on a server that does not answer), the webhook answers 503 at its bound unless the fate is
known by then (nothing has been sent), and the dispatch goes on asking, its accounts' locks
and its recorder's turn held, until the fate is known or the signal's TTL passes. Committed,
its orders go out and the re-send, which waits for the recorder's turn, is a duplicate of it;
not committed, the re-send is new and trades. Never both: the re-send's claim is decided by the
key once this one's fate is, and the key's window runs between receptions (``signals.claim``),
so a re-send received within it is a duplicate however late its claim comes.
Past the TTL nothing of this claim is sent; if it had committed, its intents stay pending for
reconciliation and the re-send is a duplicate of it: the alert is lost, and said so in the
log (the one case left, a database that cannot tell for the whole TTL).
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
# and at most this long: ending the claim's process waits up to 5 s, the probe's lock as long;
# past that the ask hangs (a connection to a server that does not answer: asyncpg waits 60 s)
# and another is made, which may find the server back
MOST_ASK_S = 11.0


async def learn_fate(
    pool: asyncpg.Pool,
    delivery: signal_store.Delivery,
    intents: Sequence[NewIntent],
    backend: int | None,
    deadline: datetime,
    clock: Callable[[], datetime],
) -> signal_store.Claim:
    """The claim as stored, once the database can say it committed; raises
    ``StorageUnavailable`` once it says it did not, or when ``deadline`` passes first. The
    claim's server process ``backend`` is ended once (a later ask must not end another process
    that took its pid); an ask that hangs (a connection to an unreachable server) is cut."""
    if delivery.in_doubt is not None:
        delivery.in_doubt.set()
    pause = FIRST_PAUSE_S
    asks = 0
    while True:
        asks += 1
        left = (deadline - clock()).total_seconds()
        try:
            async with asyncio.timeout(min(max(left, LEAST_ASK_S), MOST_ASK_S)):
                if backend is not None:
                    await signal_store.end_claim_backend(pool, backend)
                    backend = None  # gone for good: the probe alone decides now
                fate = await signal_store.claim_fate(pool, delivery, intents)
        except (StorageUnavailable, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
            left = (deadline - clock()).total_seconds()
            if left <= 0:
                log.error(
                    "dispatch.claim_fate_unknown",
                    signal_id=delivery.signal_id,
                    asks=asks,
                    error=error,
                    effect="nothing is sent; had it been stored, its re-send is a duplicate "
                    "and reconciliation expires its intents",
                )
                raise StorageUnavailable(
                    "the database could not say whether the signal was stored in time"
                ) from None
            if asks == 1:
                log.warning(
                    "dispatch.claim_fate_asked_again",
                    signal_id=delivery.signal_id,
                    error=error,
                    effect="nothing is sent until the database can tell; answered 503",
                )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, LAST_PAUSE_S)
            continue
        if fate is None:
            raise StorageUnavailable("the claim's connection failed before it committed")
        return fate
