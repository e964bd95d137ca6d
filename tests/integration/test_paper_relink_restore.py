"""A paper sub-account that no trader links when the daemon starts is not restored (its stored
position and exits stay out of the paper broker) until a configuration change links it, and
that restore runs in a task of its own (``Engine._on_config_change`` → ``sync_accounts``) while
the new snapshot is already live. An alert in between traded the sub-account from an empty
paper view (flat, and the login numbered from 1 again): its fill took a stored fill's id (the
mirror dropped it as known: the fill and its P&L were lost), and the restore then overwrote the
position with the stored one. The fan-out now waits for the sub-account's restore."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from jtrades.store import trading as trading_store
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_engine import (
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    store_signal,
    wait_for,
)


async def test_an_alert_right_after_linking_trades_the_restored_paper_sub_account(
    database: Database, engine_factory: Any, monkeypatch: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "relink")
    rec = await make_recorder(pool, u, "rec", size=1, same_direction="add", add_size=1)
    (sub,) = await make_paper_account(pool, u, "relink-paper")
    t1 = await make_trader(pool, u, rec, [(sub, 1)])
    first = await engine_factory()
    sid, at = await store_signal(pool, rec)
    await first.on_signal(
        signal_id=sid, recorder_id=rec, received_at=at,
        signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal("21500")),
    )  # fmt: skip
    assert await net_pos(first, pool, sub) == 1

    async def mirrored() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM positions WHERE net_pos = 1"))

    await wait_for(mirrored, "position mirrored")
    await first.close()
    # the trader is deleted (its position outlives it), and the daemon restarts: the
    # sub-account is linked by no one, so it is not restored
    await pool.execute("DELETE FROM traders WHERE id = $1", t1)
    second = await engine_factory()
    # the restore's first query answers slowly (a loaded database): 300 ms
    slow_query = trading_store.paper_ids_used

    async def slow(ex: Any, account_id: int) -> int:
        await asyncio.sleep(0.3)
        return await slow_query(ex, account_id)

    monkeypatch.setattr(trading_store, "paper_ids_used", slow)
    # a new trader links the sub-account while alerts flow
    await make_trader(pool, u, rec, [(sub, 1)])
    sid, at = await store_signal(pool, rec)
    await second.config.refresh()
    await second.on_signal(
        signal_id=sid, recorder_id=rec, received_at=at,
        signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal("21510")),
    )  # fmt: skip

    async def settled() -> bool:
        filled = "SELECT count(*) FROM order_intents WHERE state = 'filled'"
        return bool(await pool.fetchval(filled) == 2)

    await wait_for(settled, "the add's intent filled")
    assert await net_pos(second, pool, sub) == 2  # the add, on top of the restored long

    async def add_recorded() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM fills WHERE price = 21510"))

    # the add's fill is stored (with an id of its own: not dropped as one already known)
    await wait_for(add_recorded, "the add's fill recorded", limit_s=5)
    await asyncio.sleep(0.5)  # any restore still running ends
    assert await net_pos(second, pool, sub) == 2

    async def stored_two() -> bool:
        q = "SELECT net_pos FROM positions WHERE sub_account_id = $1"
        return bool(await pool.fetchval(q, sub) == 2)

    await wait_for(stored_two, "the position of 2 mirrored", limit_s=5)
