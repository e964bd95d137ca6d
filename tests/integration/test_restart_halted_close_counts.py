"""A reversal on a login halted with ``halt --account`` only closes (it opens nothing): a run
that lives gives the recorder's entry back (``verdicts._HELD_BACK``), and the restart after a
daemon killed before the signal's verdict was written must do the same."""

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


async def test_a_halted_accounts_close_killed_before_its_verdict_counts_no_entry(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "ha")
    rec = await make_recorder(pool, u, "ha-rec", max_signals=2)
    (sub,) = await make_paper_account(pool, u, "ha-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    first = await engine_factory()
    assert (await send(first, pool, rec, buy())).orders == 1  # entry 1 of 2: long 1

    await pool.execute("UPDATE accounts SET halted = true WHERE label = 'ha-paper'")
    await first.config.refresh()
    sid = await SignalIds(pool, block=1).take()
    d = Delivery(sid, rec, "ha-1", timedelta(hours=24), datetime.now(UTC), None, None,
                 b'{"action":"sell"}', sell())  # fmt: skip
    live = await first.on_signal(
        signal_id=sid, recorder_id=rec, signal=d.signal, received_at=d.received_at, delivery=d
    )
    assert await net_pos(first, pool, sub) == 0  # closed, nothing opened
    assert live.detail["entry"] is False, live.detail  # the live run gives the entry back
    # --- kill -9 here: the orders are out, the verdict (and its detail) never written ---

    await signal_store.settle_interrupted(pool, datetime.now(UTC))  # Daemon._start does this
    second = await engine_factory()
    detail = await pool.fetchval("SELECT detail FROM signals WHERE id=$1", sid)
    assert detail["entry"] is False, detail  # as the live run said

    await pool.execute("UPDATE accounts SET halted = false WHERE label = 'ha-paper'")
    await second.config.refresh()
    again = await send(second, pool, rec, buy())  # entry 2 of 2
    assert (again.verdict, again.orders) == ("accepted", 1), again
