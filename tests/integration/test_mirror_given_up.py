"""A batch the database keeps refusing is given up, and its login's whole view is written again
on its own: nothing lost, nothing counted twice, on the simulator and a real Postgres.

The mirror writes a refused batch again after each of ``retry_waits_s``, then gives it up with
an error and marks the login for a replay. The replay goes with the next batch, or after
``REPLAY_AFTER_S`` when no event comes: a stream gone quiet (the strategy's last trade of the
day) must not leave its fill and its P&L off the books until the next alert."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from structlog.testing import capture_logs

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine import mirror as mirror_mod
from tests.integration.test_mirror_replay import _broker, _world
from tests.polling import until
from tests.simutil import running_sim

# a constraint no fill row meets: every write of a batch with a fill in it fails, as a full
# disk or a lost connection would make it, until it is dropped
REFUSE_FILLS = "ALTER TABLE fills ADD CONSTRAINT refuse_fills CHECK (false) NOT VALID"
ACCEPT_FILLS = "ALTER TABLE fills DROP CONSTRAINT refuse_fills"


async def _settled(logs: list[MutableMapping[str, Any]]) -> None:
    """Until the mirror's last write gave up and nothing was tried for 0.3 s since."""

    def writes() -> list[str]:
        return [e["event"] for e in logs if e["event"].startswith("mirror.write_")]

    while True:
        await until(lambda: writes()[-1:] == ["mirror.write_failed"])
        seen = len(writes())
        await asyncio.sleep(0.3)
        if len(writes()) == seen:
            return


async def test_a_given_up_batch_is_replayed_with_no_further_event(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long 1 MNQ then flat again, while Postgres refuses fills: the batch with both fills is
    tried again, then given up (logged, with the login to replay). Postgres accepts again, and
    no event follows; the replay still comes, by itself: both fills, the round trip and its
    P&L (+20: 10 points on 1 MNQ), each once. A later batch does not write them again."""
    monkeypatch.setattr(mirror_mod, "REPLAY_AFTER_S", 1.0)
    async with running_sim() as sim:
        w = await _world(database, settings, sim, 1)
        pool = database.pool
        ((sub, bid),) = w.subs.values()
        t0 = datetime.now(UTC)
        async with w.daemon() as engine:
            mirror = engine.reconciler.mirror
            mirror.retry_waits_s = (0.05, 0.05)
            broker = _broker(engine, w)
            account = SubAccount(bid, "RP1")
            symbol = (await broker.find_contract("MNQ1!")).symbol
            await pool.execute(REFUSE_FILLS)
            with capture_logs() as logs:
                await broker.place_order(OrderRequest(account, symbol, Side.BUY, 1))
                await sim.set_price("MNQ", "21510")
                await broker.place_order(OrderRequest(account, symbol, Side.SELL, 1))
                await until(lambda: sim.positions("RP1") == {})
                await _settled(logs)  # every event of both trades was in a given-up batch
                failed = [e for e in logs if e["event"] == "mirror.write_failed"]
                assert all(e["replay"] == [w.aid] and e["attempts"] == 3 for e in failed)
                assert await w.count("fills") == 0
                await pool.execute(ACCEPT_FILLS)
                # nothing trades from here on: only the replay can write the fills
                await w.rows(2, "fills")
            trades = await pool.fetch("SELECT side, qty, pnl FROM trades")
            assert [tuple(t) for t in trades] == [("long", 1, Decimal(20))]
            assert engine.reconciler.pnl.realized([sub], t0) == Decimal(20)
            assert (
                await pool.fetchval("SELECT net_pos FROM positions WHERE sub_account_id=$1", sub)
                == 0
            )
            # the next batch is an ordinary one: the login is not replayed again
            written = mirror.batches
            await sim.set_price("MNQ", "21520")
            await broker.place_order(OrderRequest(account, symbol, Side.BUY, 1))
            await w.rows(3, "fills")
            await until(lambda: mirror.batches > written)
            await asyncio.sleep(1.1)  # past REPLAY_AFTER_S: no replay is pending to come
            assert (await w.count("fills"), await w.count("trades")) == (3, 1)
            assert engine.reconciler.pnl.realized([sub], t0) == Decimal(20)
