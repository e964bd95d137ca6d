"""A delivery whose claim's answer was lost while the database cannot say whether it committed
(``Delivery.in_doubt``, ``engine.claim_doubt``): the webhook answers 503 at its bound, since
TradingView hangs up at 3 s and re-sends only a 5xx, and nothing has been sent; the dispatch
goes on, and once the fate is known its outcome is written and a re-send is answered as the
duplicate it is."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.errors import StorageUnavailable
from jtrades.store import signals as signal_store
from jtrades.store.signals import Delivery, SignalIds
from jtrades.webhook_answers import settle_never_known
from tests.integration.test_engine import (
    buy,
    make_recorder,
    make_user,
    send,
    wait_for,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_restart_counts import _claim_then_die, one_entry_a_session
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


async def test_a_never_known_claim_gives_back_its_counts_after_a_restart(
    database: Database, engine_factory: Any
) -> None:
    """Its claim's counts go as the live engine gave them back: written "expired", the row was
    skipped by the restart's give-back (it knows interrupted signals) and the entry that never
    traded refused the next real one (max signals, cooldown; review)."""
    pool = database.pool
    rec, sub, trader = await one_entry_a_session(pool, "nk")
    # the claim committed; its answer was lost and the database could not say so before the TTL
    sid, _ = await _claim_then_die(pool, rec, "nk-1", [trader], [(trader, sub)])
    # the webhook's StorageUnavailable branch, in doubt (webhook.py _run_engine)
    await settle_never_known(pool, sid)
    sig = await pool.fetchrow("SELECT verdict, reason FROM signals WHERE id=$1", sid)
    assert sig["verdict"] == "expired", dict(sig)
    # --- a restart, some time later ---
    await signal_store.settle_interrupted(pool, datetime.now(UTC))
    engine = await engine_factory()

    row = await pool.fetchrow("SELECT state FROM order_intents WHERE signal_id=$1", sid)
    assert row["state"] == "expired", dict(row)  # nothing was ever sent
    # nothing was ever traded: the next real alert must not be refused by max signals/cooldown
    out = await send(engine, pool, rec, buy())
    assert (out.verdict, out.filter, out.orders) == ("accepted", None, 1), out


async def test_a_duplicate_claim_never_known_keeps_its_duplicate_verdict(
    database: Database,
) -> None:
    """A re-send whose claim committed as a duplicate while its answer was lost and its fate
    was not learned in time keeps its verdict (it was overwritten "expired", review)."""
    pool = database.pool
    u = await make_user(pool, "nd")
    rec = await make_recorder(pool, u, "nd-rec")
    first, _ = await _claim_then_die(pool, rec, "nd-1", [], [])
    dup = await SignalIds(pool, block=1).take()
    d = Delivery(
        dup,
        rec,
        "id:nd-1",
        timedelta(hours=24),
        datetime.now(UTC),
        None,
        "application/json",
        b'{"action":"buy"}',
        buy(),
        None,
    )
    claim = await signal_store.claim_delivery(pool, d, [])
    assert claim.duplicate_of == first
    row = await pool.fetchrow("SELECT verdict, duplicate_of FROM signals WHERE id=$1", dup)
    assert (row["verdict"], row["duplicate_of"]) == ("duplicate", first)
    await settle_never_known(pool, dup)
    row = await pool.fetchrow("SELECT verdict, reason, duplicate_of FROM signals WHERE id=$1", dup)
    assert row["verdict"] == "duplicate", dict(row)
