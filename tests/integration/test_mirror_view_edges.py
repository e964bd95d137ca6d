"""What the view publishes, as the mirror writes and measures it: the positions, orders and
trades tables say what the broker's view says, and a position's lots are the broker's.

Found by review: a Deleted position entity was written as still open (and measured against);
a snapshot with an unreadable position published it flat (missing is not flat); an order
first written unnamed kept an empty symbol; a position adopted from the broker was seeded at
the next start from older stored fills of the same net, and its close booked the wrong P&L.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import BrokerEvent, Fill, Position, Side
from jtrades.broker.tradovate.view import AccountView, PartlyApplied
from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_reconcile import _fill, _mirroring, _world

MES = 7002


def _snapshot(bid: int, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "accounts": [{"id": bid, "name": "SIM1"}],
        "contracts": [{"id": 7001, "name": "MNQZ6"}],
        "positions": [],
        "orders": [],
        "orderVersions": [],
        "fills": [],
        "cashBalances": [],
    }
    base.update(extra)
    return base


def _props(kind: str, entity: dict[str, Any], event: str = "Created") -> dict[str, Any]:
    return {"entityType": kind, "eventType": event, "entity": entity}


async def test_a_position_the_view_drops_on_deleted_is_flat_in_the_positions_table(
    database: Database, settings: Settings
) -> None:
    """Tradovate deletes a position entity: the view drops it (positions() says flat, and
    planning acts on flat), and publishes the deleted entity as it came, net 1. The mirror
    ignores ``deleted`` and writes net 1: the table (``jtrades positions``, open exposure,
    the next start's seed) keeps a position the view says is gone."""
    w = await _world(database.pool)
    bid = w["bid"]
    view = AccountView()
    view.load_snapshot(_snapshot(bid))
    pos = {"id": 9, "accountId": bid, "contractId": 7001, "netPos": 1, "netPrice": 21500}
    events = view.apply(_props("position", pos))
    events += view.apply(_props("position", pos, "Deleted"))
    assert view.positions(bid) == []  # the view: flat
    async with _mirroring(database, settings, w) as (engine, paper):
        await engine.reconciler.mirror.write([(w["aid"], paper, ev) for ev in events])
        net = await database.pool.fetchval(
            "SELECT net_pos FROM positions WHERE sub_account_id=$1 AND symbol='MNQZ6'", w["sub"]
        )
        assert net == 0


async def test_an_order_first_mirrored_unnamed_gets_its_symbol_once_named(
    database: Database, settings: Settings
) -> None:
    """An order in a contract the view has not named yet (placed by hand in a new month) is
    written with symbol ''. The contract is named a moment later and the order fills: the
    upsert never updates ``symbol``, so the row keeps '' for good (orders list, open
    exposure, owed-stop evidence match on orders.symbol)."""
    w = await _world(database.pool)
    bid = w["bid"]
    view = AccountView()
    view.load_snapshot(_snapshot(bid))
    order = {"id": 55, "accountId": bid, "contractId": MES, "action": "Buy",
             "ordStatus": "Working"}  # fmt: skip
    version = {"id": 56, "orderId": 55, "orderQty": 1, "orderType": "Limit", "price": 6000}
    first = view.apply_all([_props("order", order), _props("orderVersion", version)])
    view.name_contracts({MES: "MESZ6"})
    later = view.apply(_props("order", {**order, "ordStatus": "Canceled"}, "Updated"))
    assert later[0].entity.symbol == "MESZ6"  # the view names it now
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        await m.write([(w["aid"], paper, ev) for ev in first])
        await m.write([(w["aid"], paper, ev) for ev in later])
        row = await database.pool.fetchrow(
            "SELECT symbol, status FROM orders WHERE broker_order_id=55"
        )
        assert row["status"] == "Canceled"
        assert row["symbol"] == "MESZ6"


async def test_a_snapshot_that_cannot_read_a_position_does_not_publish_it_flat(
    database: Database, settings: Settings
) -> None:
    """Long 1 mirrored. The connection drops; the reconnect's snapshot holds the same position
    in an entity the view cannot read (netPrice ""): the view is left unsynced and the stream
    cut (missing is not flat) — yet among the events published before the cut is a *flat*
    position for it (the snapshot's diff against the view before: "a position that left the
    snapshot"). The mirror writes net 0 and adopts flat; every later reconnect diffs against
    the view without it, so the table says flat for good while the broker holds long 1."""
    w = await _world(database.pool)
    bid = w["bid"]
    view = AccountView()
    pos = {"id": 9, "accountId": bid, "contractId": 7001, "netPos": 1, "netPrice": 21500}
    first = view.load_snapshot(_snapshot(bid, positions=[pos]))
    view.mark_unsynced("drop")
    with pytest.raises(PartlyApplied) as caught:
        view.load_snapshot(_snapshot(bid, positions=[{**pos, "netPrice": ""}]))
    published = caught.value.events
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        await m.write([(w["aid"], paper, ev) for ev in first])
        await m.write([(w["aid"], paper, ev) for ev in published])
        net = await database.pool.fetchval(
            "SELECT net_pos FROM positions WHERE sub_account_id=$1 AND symbol='MNQZ6'", w["sub"]
        )
        assert net == 1, "missing is not flat: the position was unreadable, not closed"


async def test_a_deleted_position_is_not_measured_against(
    database: Database, settings: Settings
) -> None:
    """As above, then buy 1 @ 21600 / sell 1 @ 21610 (+10 points, $20 on MNQ) in one batch
    with their position events: the mirror adopted the deleted entity's long 1 @ 21500 as
    the truth, and FIFO booked the sell against that phantom lot: +110 points ($220) on the trades table and the daily-loss figure."""
    w = await _world(database.pool)
    bid = w["bid"]
    view = AccountView()
    view.load_snapshot(_snapshot(bid))
    pos = {"id": 9, "accountId": bid, "contractId": 7001, "netPos": 1, "netPrice": 21500}
    events = view.apply(_props("position", pos))
    events += view.apply(_props("position", pos, "Deleted"))
    t = datetime.now(UTC)

    def fill(fid: int, side: Side, price: int) -> BrokerEvent:
        return BrokerEvent("fill", bid, Fill(fid, fid, bid, 7001, "MNQZ6", side, 1,
                                             Decimal(price), t))  # fmt: skip

    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        await paper.find_contract("MNQZ6")
        await m.write([(w["aid"], paper, ev) for ev in events])
        # one batch (the mirror coalesces 20 ms): the entry, its position, the exit, flat
        moves = [
            fill(301, Side.BUY, 21600),
            view.apply(_props("position", {**pos, "id": 12, "netPrice": 21600}))[0],
            fill(302, Side.SELL, 21610),
            view.apply(_props("position", {**pos, "id": 12, "netPos": 0}, "Updated"))[0],
        ]
        await m.write([(w["aid"], paper, ev) for ev in moves])
        rows = await database.pool.fetch("SELECT entry_price, exit_price, pnl FROM trades")
        assert [tuple(r) for r in rows] == [(Decimal(21600), Decimal(21610), Decimal(20))]


def _pos(w: dict[str, Any], net: int, avg: str | None) -> BrokerEvent:
    price = Decimal(avg) if avg is not None else None
    return BrokerEvent("position", w["bid"], Position(w["bid"], 1000, "MNQ1!", net, price))


async def test_lots_reseeded_after_an_adopted_position_are_the_adopted_ones(
    database: Database, settings: Settings
) -> None:
    """Day 1: buy 1 @ 100, mirrored. The daemon stops; at the broker the position is stopped
    out (sell 1 @ 105) and re-entered (buy 1 @ 120); those fills are gone from the next
    day's snapshot. Start 2: the broker's long 1 @ 120 is adopted (correct). Start 3 (a plain
    restart): the stored fills (buy 1 @ 100) come to the net of 1, so the position is seeded
    as one lot @ 100, its average (120) agrees with the broker's, nothing is adopted, and the
    close at 125 is booked +25 points ($50) instead of +5 ($10)."""
    pool = database.pool
    w = await _world(pool)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        await m.write(
            [
                (w["aid"], paper, _fill(w, 9001, 9001, Side.BUY, 1, "100", t0)),
                (w["aid"], paper, _pos(w, 1, "100")),
            ]
        )
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        await m.write([(w["aid"], paper, _pos(w, 1, "120"))])  # the broker's truth
        assert m.lots(w["sub"], "MNQ1!") == ((1, Decimal(120)),)
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        t1 = datetime.now(UTC)
        await m.write(
            [
                (w["aid"], paper, _fill(w, 9002, 9002, Side.SELL, 1, "125", t1)),
                (w["aid"], paper, _pos(w, 0, None)),
            ]
        )
        rows = await pool.fetch("SELECT entry_price, exit_price, pnl FROM trades")
        assert [tuple(r) for r in rows] == [(Decimal(120), Decimal(125), Decimal(10))]
        assert engine.reconciler.pnl.realized([w["sub"]], t1) == Decimal(10)
