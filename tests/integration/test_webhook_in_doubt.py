"""A delivery whose claim's answer was lost while the database cannot say whether it committed
(``Delivery.in_doubt``, ``engine.claim_doubt``): the webhook answers 503 at its bound, since
TradingView hangs up at 3 s and re-sends only a 5xx, and nothing has been sent; the dispatch
goes on, and once the fate is known its outcome is written and a re-send is answered as the
duplicate it is."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from jtrades.config import Settings
from jtrades.errors import StorageUnavailable
from jtrades.store import signals as signal_store
from tests.integration.test_engine import wait_for
from tests.integration.test_server import ALERT, FakeEngine, _outcome, serving

BOUND_S = 0.5


class InDoubt(FakeEngine):
    """The first delivery's claim is in doubt until ``known`` is set; then it turns out to have
    committed (stored here), and its order went out. Later deliveries are claimed as usual."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        super().__init__(pool)
        self.known = asyncio.Event()
        self.first: int | None = None

    async def on_signal(self, *, delivery: signal_store.Delivery, **kw: Any) -> Any:
        if self.first is not None:
            return await super().on_signal(delivery=delivery, **kw)
        self.first = delivery.signal_id
        assert delivery.in_doubt is not None
        delivery.in_doubt.set()
        await self.known.wait()
        claim = await signal_store.claim_delivery(self.pool, delivery)
        assert claim.duplicate_of is None
        return _outcome("accepted", orders=1)


async def test_a_delivery_in_doubt_is_answered_503_and_settled_when_its_fate_is_known(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    server = settings.server.model_copy(update={"answer_within_s": BOUND_S})
    engine = InDoubt(pool)
    async with serving(settings.model_copy(update={"server": server}), pool, engine) as s:
        started = time.monotonic()
        status, body = await s.post(ALERT)
        answered_s = time.monotonic() - started

        assert status == 503, body
        assert body["error"] == "storage_unavailable"
        assert "nothing has been sent" in body["detail"]
        assert answered_s < BOUND_S + 1.0  # at the bound, well inside TradingView's 3 s
        assert engine.first is not None
        assert await pool.fetchval("SELECT count(*) FROM signals") == 0  # not known yet

        engine.known.set()  # the database says the claim had committed

        async def settled() -> bool:
            verdict = await pool.fetchval("SELECT verdict FROM signals WHERE id = $1", engine.first)
            return bool(verdict == "accepted")

        await wait_for(settled, "the first delivery's outcome written")
        row = await s.row(engine.first)
        assert row["http_status"] == 503  # what TradingView got (it was 200 on the row)
        assert "answered 503" in row["reason"]
        status, again = await s.post(ALERT)  # TradingView's re-send of the 503
        assert status == 200, again
        assert again["verdict"] == "duplicate"
        assert again["duplicate_of"] == engine.first
        assert await s.hooks.drain(5)


class NeverKnown(FakeEngine):
    """The claim committed, but the database could not say so before the TTL: the dispatch
    gives up (``claim_doubt``) with nothing sent."""

    async def on_signal(self, *, delivery: signal_store.Delivery, **kw: Any) -> Any:
        claim = await signal_store.claim_delivery(self.pool, delivery)
        assert claim.duplicate_of is None
        assert delivery.in_doubt is not None
        delivery.in_doubt.set()
        raise StorageUnavailable("the database could not say whether it was stored in time")


async def test_a_stored_delivery_whose_fate_was_never_known_says_nothing_was_sent(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    """Its row said "received" (200) while the daemon ran, then "interrupted" after a restart;
    TradingView got a 503 and nothing was sent (the review's case)."""
    async with serving(settings, pool, NeverKnown(pool)) as s:
        status, body = await s.post(ALERT)
        assert status == 503, body
        signal_id = await pool.fetchval("SELECT max(id) FROM signals")
        row = await s.row(signal_id)
        assert row["verdict"] == "expired"
        assert row["http_status"] == 503
        assert "nothing was sent" in row["reason"]
