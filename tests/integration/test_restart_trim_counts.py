"""give_back_unsent (sql/queries/signals.sql) reads any non-exit 'order' intent of a trader as
"an entry of its reached the broker"; a partial exit (``trim``: a reduce of the held side, no
entry, ``Shortfall(no_entry=True)``) is such an intent. The live verdict gives the trader's
entry back for a trim (``verdicts._reached``: a plan with a shortfall made no entry); the
restart after a kill before the verdict was written keeps counting it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jtrades.db import Database
from jtrades.store import signals as signal_store
from jtrades.store.signals import Delivery, SignalIds
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    sell,
    send,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


async def test_a_trim_killed_before_its_verdict_gives_the_trader_count_back(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "tr")
    rec = await make_recorder(pool, u, "tr-rec")
    (sub,) = await make_paper_account(pool, u, "tr-paper")
    tid = await make_trader(pool, u, rec, [(sub, 1)], max_signals=2)
    first = await engine_factory()
    out = await send(first, pool, rec, buy(quantity=3))  # entry 1 of 2: long 3
    assert (out.verdict, out.orders) == ("accepted", 1), out
    assert await net_pos(first, pool, sub) == 3

    sid = await SignalIds(pool, block=1).take()
    d = Delivery(sid, rec, "tr-1", timedelta(hours=24), datetime.now(UTC), None, None,
                 b'{"action":"sell","quantity":1}', sell(quantity=1, source="native"))  # fmt: skip
    live = await first.on_signal(
        signal_id=sid, recorder_id=rec, signal=d.signal, received_at=d.received_at, delivery=d
    )
    assert await net_pos(first, pool, sub) == 2  # trimmed by 1, nothing opened
    assert live.detail["trader_entries"] == [], live.detail  # the live run gives it back
    # --- kill -9 here: the reduce is out, the verdict (and its detail) never written ---

    await signal_store.settle_interrupted(pool, datetime.now(UTC))  # Daemon._start does this
    second = await engine_factory()
    detail = await pool.fetchval("SELECT detail FROM signals WHERE id=$1", sid)
    # the trader has made one entry this session of its two: a sell (reversal) is entry 2
    again = await send(second, pool, rec, sell())
    assert (again.verdict, again.filter) == ("accepted", None), (
        f"after the restart trader {tid} counts the trim as an entry: {detail};"
        f" its 2nd real entry got {again.verdict} {again.filter}: {again.reason}"
    )
