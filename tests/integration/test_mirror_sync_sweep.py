"""The sweep of an account unsynced when the mirror started (``Mirror._pump``) is made after
what its view already holds: ``ViewFeed.snapshot`` applies the events that overtook the sync
answer before it publishes [snapshot…, synced, early events…]. A stop that filled as the
connection came up is such an event; swept from the view at the ``synced`` event, a flat
position went ahead of the fill, the fill was measured against flat, and its round trip (its
realized loss, which the daily-loss filter reads) was never recorded.

Real Postgres, the engine's mirror, a real Session's ViewFeed/AccountView/EventHub fed as a
connection's reader feeds them (no socket)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from jtrades.broker.base import BrokerEvent, Position, Side
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.lifecycle import Timing
from jtrades.broker.tradovate.session import Session
from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_reconcile import _fill, _mirroring, _world


def _props(kind: str, entity: dict[str, Any], event: str = "Updated") -> dict[str, Any]:
    return {"entityType": kind, "eventType": event, "entity": entity}


async def test_a_stop_filled_as_the_account_syncs_keeps_its_round_trip(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    w = await _world(pool)
    bid, sub = w["bid"], w["sub"]
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        t0 = datetime.now(UTC)
        # mirrored before: long 1 @ 100 (MNQ1!, contract 1000, $2 a point)
        await m.write(
            [
                (w["aid"], paper, _fill(w, 1, 10, Side.BUY, 1, "100", t0)),
                (w["aid"], paper, BrokerEvent("position", bid,
                                              Position(bid, 1000, "MNQ1!", 1, Decimal(100)))),
            ]
        )  # fmt: skip
        assert m._open[(sub, "MNQ1!")].net == 1

        session = Session("ws://127.0.0.1:9/unused", None, Timing(), label="race")  # type: ignore[arg-type]
        tv = TradovateBroker(session)
        pump = asyncio.create_task(m._pump(w["aid"], tv))  # the account is unsynced: not swept
        await asyncio.sleep(0.1)
        try:
            day = {"year": t0.year, "month": t0.month, "day": t0.day}
            stamp = t0.isoformat().replace("+00:00", "Z")
            feed = session._feed
            # the stop's fill overtakes the sync answer (ViewFeed keeps it for the snapshot)
            feed.props_all(
                [
                    _props("order", {"id": 12, "accountId": bid, "contractId": 1000,
                                     "action": "Sell", "ordStatus": "Filled"}),
                    _props("fill", {"id": 77, "orderId": 12, "contractId": 1000, "action": "Sell",
                                    "qty": 1, "price": 90, "timestamp": stamp}, "Created"),
                    _props("position", {"id": 500, "accountId": bid, "contractId": 1000,
                                        "netPos": 0, "netPrice": None, "timestamp": stamp,
                                        "tradeDate": day}),
                ]
            )  # fmt: skip
            feed.snapshot(
                {
                    "accounts": [{"id": bid, "name": "race"}],
                    "contracts": [{"id": 1000, "name": "MNQ1!"}],
                    "positions": [{"id": 500, "accountId": bid, "contractId": 1000, "netPos": 1,
                                   "netPrice": 100, "timestamp": stamp, "tradeDate": day}],
                    "orders": [{"id": 12, "accountId": bid, "contractId": 1000, "action": "Sell",
                                "ordStatus": "Working"}],
                    "orderVersions": [{"id": 13, "orderId": 12, "orderQty": 1,
                                       "orderType": "Stop", "stopPrice": 90}],
                    "fills": [],
                    "cashBalances": [],
                }
            )  # fmt: skip
            assert session.view.is_synced(bid)
            assert tv.positions(bid) == []
            rows: list[Any] = []
            for _ in range(150):
                await asyncio.sleep(0.02)
                if await pool.fetchval("SELECT count(*) FROM fills WHERE broker_fill_id=77"):
                    await asyncio.sleep(0.2)
                    rows = await pool.fetch(
                        "SELECT side, qty, entry_price, exit_price, pnl FROM trades"
                        " WHERE sub_account_id=$1", sub,
                    )  # fmt: skip
                    break
            assert await pool.fetchval("SELECT count(*) FROM fills WHERE broker_fill_id=77") == 1
            # long 1 from 100 to 90 at $2 a point: −$20
            assert [tuple(r) for r in rows] == [
                ("long", 1, Decimal(100), Decimal(90), Decimal(-20))
            ], rows
        finally:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
