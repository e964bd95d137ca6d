"""The kill switch read again under the sub-account's lock (``plan_time.halted_since``) stops an
entry that passed the gate before ``halt --account`` and waited for the lock, but not a
``cancel`` alert: the planner handles CANCEL before it looks at the refusal, so the alert
cancels the halted login's working orders, its position's protective stop included. The gate
refuses the same alert whole under the kill switch ("cancelling a protective stop adds risk",
``filters``): which of the two happens depended on a lock wait."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    send,
)
from tests.integration.test_flatten import Start, cli, waited_on
from tests.integration.test_flatten import start as start
from tests.polling import until


def _cancel() -> Signal:
    return Signal(Action.CANCEL, ticker="MNQ1!", price=Decimal("21500"))


async def _stops(engine, pool, sub: int) -> list[int]:  # type: ignore[no-untyped-def]
    aid, bid = await account_of(pool, sub)
    return [o.order_id for o in engine.brokers.paper(aid).working_orders(bid) if o.status.is_open]


async def test_a_cancel_refused_by_the_gate_under_the_halt(
    database: Database, start: Start, db_url: str, data_dir: Path
) -> None:
    """For comparison: halted first, the cancel alert is refused and the stop stays."""
    pool = database.pool
    u = await make_user(pool, "hc")
    rec = await make_recorder(pool, u, "rec", size=1, sl=Decimal(40))
    (a,) = await make_paper_account(pool, u, "hc-a")
    await make_trader(pool, u, rec, [(a, 1)])
    engine = await start({})
    await send(engine, pool, rec, buy())
    before = await _stops(engine, pool, a)
    assert before  # long 1 with its stop
    await cli(db_url, data_dir, "halt", "--account", "hc-a")
    await engine.config.refresh()
    await send(engine, pool, rec, _cancel())
    assert await _stops(engine, pool, a) == before


async def test_a_cancel_waiting_for_the_lock_does_not_strip_a_login_halted_meanwhile(
    database: Database, start: Start, db_url: str, data_dir: Path
) -> None:
    pool = database.pool
    u = await make_user(pool, "hw")
    rec = await make_recorder(pool, u, "rec", size=1, sl=Decimal(40))
    (a,) = await make_paper_account(pool, u, "hw-a")
    await make_trader(pool, u, rec, [(a, 1)])
    engine = await start({})
    await send(engine, pool, rec, buy())
    before = await _stops(engine, pool, a)
    assert before  # long 1 with its stop

    lock = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[a])
    await lock.acquire()  # a protection pass, an earlier alert's settle
    alert = asyncio.create_task(send(engine, pool, rec, _cancel()))
    await until(lambda: waited_on(lock) or alert.done(), what="the cancel at hw-a's lock")
    assert not alert.done()  # past the gate, before the halt
    await cli(db_url, data_dir, "halt", "--account", "hw-a")
    await engine.config.refresh()
    lock.release()
    out = await alert
    assert await _stops(engine, pool, a) == before, (
        f"the halted login's stop was cancelled by an alert planned after the halt: {out.detail}"
    )
