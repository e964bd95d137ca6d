"""A reversal killed after its close reached the broker and before its entry was sent: the
trader's account closed and opened nothing, so its entry count goes back after the restart, as
a run that lives gives it back (``verdicts._reached``: a plan short of its entry made none)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from jtrades.db import Database
from jtrades.store import signals as signal_store
from jtrades.store.signals import Delivery, SignalIds
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    sell,
    send,
    wait_for,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


async def test_a_reversal_killed_between_close_and_entry_gives_the_trader_count_back(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "rv")
    rec = await make_recorder(pool, u, "rv-rec")
    (sub,) = await make_paper_account(pool, u, "rv-paper")
    await make_trader(pool, u, rec, [(sub, 1)], max_signals=2)
    first = await engine_factory()

    out = await send(first, pool, rec, sell())  # entry 1 of 2: short 1
    assert (out.verdict, out.orders) == ("accepted", 1), out

    aid, _bid = await account_of(pool, sub)
    paper = first.brokers.paper(aid)
    hang = asyncio.Event()

    async def never(req: Any) -> Any:  # the process dies while the entry is being sent
        await hang.wait()
        raise AssertionError("unreachable")

    paper.start_strategy = never  # type: ignore[method-assign]
    paper.place_order = never  # type: ignore[method-assign]
    sid = await SignalIds(pool, block=1).take()
    d = Delivery(sid, rec, "rv-1", timedelta(hours=24), datetime.now(UTC), None, None,
                 b'{"action":"buy"}', buy())  # fmt: skip
    task = asyncio.create_task(
        first.on_signal(
            signal_id=sid, recorder_id=rec, signal=d.signal, received_at=d.received_at, delivery=d
        )
    )

    async def closed() -> bool:  # the reversal's close went through and is mirrored
        return await pool.fetchval(
            "SELECT net_pos FROM positions WHERE sub_account_id=$1", sub
        ) == 0  # fmt: skip

    await wait_for(closed, "the close mirrored")
    # --- kill -9 here: the close is done, the entry never left ---
    task.cancel()

    await signal_store.settle_interrupted(pool, datetime.now(UTC))  # Daemon._start does this
    second = await engine_factory()
    states = await pool.fetch(
        "SELECT kind, state FROM order_intents WHERE signal_id=$1 ORDER BY step", sid
    )
    assert [r["state"] for r in states if r["kind"] != "liquidate"] == ["expired"], states
    detail = await pool.fetchval("SELECT detail FROM signals WHERE id=$1", sid)
    # no entry was made for this trader: nothing is counted for it
    assert detail["trader_entries"] == [], detail

    # the account is flat and the trader has made one entry this session of its two
    again = await send(second, pool, rec, buy())
    assert (again.verdict, again.orders) == ("accepted", 1), again
