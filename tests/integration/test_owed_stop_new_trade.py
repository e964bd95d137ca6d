"""A trade the strategy opens from flat with a plain entry (no stop in the alert, none
configured) is the trader's to leave naked: the stop a closed trade owed never lands on it,
even when what closed that trade left no trace — a person's close in a session the daemon
missed (the broker no longer lists its fills after the day turn), or the strategy's close
whose liquidation reached the broker but is closed "outcome not confirmed"
(``engine.owed_stop``: an opening entry is no plain order passed over)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.plan_context import OPENING_ENTRY
from tests.cut_short_world import deliver, deliver_and_die_at, delivery, sim_world
from tests.integration.test_engine import buy, close
from tests.integration.test_owed_stop_after_cut_resize import (
    RISK,
    _cut_dca_restarted,
    _open_with_alert_stop,
)
from tests.integration.test_owed_stop_holes import _passes, _written_before_the_session
from tests.sim_worlds import sim_tradovate


async def _by_hand(w: Any, side: Side, qty: int) -> None:
    """A person trades at the broker (their own session, the daemon down)."""
    tv = TradovatePool(sim_tradovate(w.settings, w.sim))
    try:
        b = await tv.broker("demo", w.login, w.pw)
        c = w.sim.contract("MNQ")
        await b.place_order(
            OrderRequest(SubAccount(w.bids["KA"], "KA"), c.name, side, qty, OrderType.MARKET)
        )
        await w.sim.flush()
    finally:
        await tv.close()


async def _close_and_die_after_the_liquidation_left(w: Any) -> None:
    """The strategy's close: the liquidation reaches the broker, which flattens, and the
    process dies before any answer or event of it is read (kill -9)."""
    e = w.engine
    dead = asyncio.Event()

    async def send(item: Any, po: Any) -> Any:
        assert po.kind == "liquidate", po
        w.sim.world.exchange.liquidate(w.bids["KA"], w.sim.contract("MNQ").id)
        dead.set()
        await asyncio.Event().wait()

    e.dispatcher._send = send
    d = await delivery(w, close("21500"), "c1")
    task = asyncio.create_task(
        e.on_signal(signal_id=d.signal_id, recorder_id=d.recorder_id, signal=d.signal,
                    received_at=d.received_at, delivery=d)
    )  # fmt: skip
    await asyncio.wait_for(dead.wait(), 20)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await w.kill()


async def _next_trade(w: Any, e: Any) -> list[Any]:
    """The strategy's next alert opens a trade from flat with a plain entry; the intents."""
    out = await deliver(w, await delivery(w, buy("21500"), "e2"))
    assert out.orders == 1, out
    note = await w.database.pool.fetchval(
        "SELECT request ->> 'note' FROM order_intents ORDER BY id DESC LIMIT 1"
    )
    assert note == OPENING_ENTRY  # the entry's note, as the evidence query reads it
    await w.view_net("KA", 1)
    await _passes(w, e)
    rows = await w.database.pool.fetch(
        "SELECT cl_ord_id, kind, state, request ->> 'note' AS note FROM order_intents ORDER BY id"
    )
    return [tuple(r) for r in rows]


async def test_a_trade_closed_by_hand_in_the_missed_session_leaves_the_next_one_alone(
    database: Database, settings: Settings
) -> None:
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        await w.start()
        await _open_with_alert_stop(w)
        went = await deliver_and_die_at(w, await delivery(w, buy("21500"), "a1"), 3)
        assert went == ["1:order:sent", "2:cancel:done"], went
        assert w.net("KA") == 2
        assert w.stops("KA") == []
        await _by_hand(w, Side.SELL, 2)  # a person closes the naked long 2
        assert w.net("KA") == 0
        await _written_before_the_session(w)
        w.sim.new_trading_day()  # the hand fill is never stored
        e = await w.restart()
        await w.view_net("KA", 0)
        await _passes(w, e)
        await w.sim.set_price("MNQ", "21520")
        rows = await _next_trade(w, e)
        assert w.net("KA") == 1
        assert w.stop_qty("KA") == 0, (w.orders("KA"), rows)


async def test_a_trade_whose_close_is_in_doubt_leaves_the_next_one_alone(
    database: Database, settings: Settings
) -> None:
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        await _cut_dca_restarted(w)  # long 2, its stop cancelled, the new one never sent
        await _close_and_die_after_the_liquidation_left(w)
        assert w.net("KA") == 0  # the close did flatten at the broker
        w.sim.new_trading_day()  # restarted after 17:00 Chicago: its fill is never stored
        e = await w.restart()
        await w.view_net("KA", 0)
        await _passes(w, e)
        rows = await _next_trade(w, e)
        assert w.net("KA") == 1
        assert w.stop_qty("KA") == 0, (w.orders("KA"), rows)


async def test_a_trade_whose_close_is_in_doubt_restarted_the_same_session(
    database: Database, settings: Settings
) -> None:
    """Control: the session's fills replayed, the liquidation's is stored."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        await _cut_dca_restarted(w)
        await _close_and_die_after_the_liquidation_left(w)
        e = await w.restart()
        await w.view_net("KA", 0)
        await _passes(w, e)
        rows = await _next_trade(w, e)
        assert w.stop_qty("KA") == 0, (w.orders("KA"), rows)
