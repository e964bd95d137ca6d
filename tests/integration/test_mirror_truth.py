"""The broker's position is the truth the mirror's next round trip is measured from: a fill the
mirror never applied (made while the daemon was down, given up) must not leave a phantom
position that later trades and the daily-loss P&L are measured against; and held fills of one
contract are given up together, never measured without the earlier ones."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from structlog.testing import capture_logs

from jtrades.broker.base import (
    BrokerEvent,
    Fill,
    OrderStatus,
    OrderType,
    Position,
    Side,
    WorkingOrder,
)
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.mirror_positions import adopted
from jtrades.engine.pnl import OpenPosition
from tests.integration.test_mirror_held import DownPaper, _fills, _second_login
from tests.integration.test_mirror_held import _fill as _mes
from tests.integration.test_reconcile import _fill, _mirroring, _world


def _pos(bid: int, contract: int, symbol: str, net: int, avg: str | None) -> BrokerEvent:
    price = Decimal(avg) if avg is not None else None
    return BrokerEvent("position", bid, Position(bid, contract, symbol, net, price))


async def test_a_position_the_broker_no_longer_holds_is_not_measured_against(
    database: Database, settings: Settings
) -> None:
    """Long 1 @ 100 last mirrored, its stop filled while the daemon was down and gone from the
    next day's snapshot: the broker says flat, and buy 200 / sell 190 is −20, not +80."""
    w = await _world(database.pool)
    await database.pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, 'MNQ1!', 1, 100)",
        w["sub"],
    )
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        t0 = datetime.now(UTC)
        with capture_logs() as logs:
            await m.write([(w["aid"], paper, _pos(w["bid"], 1000, "MNQ1!", 0, None))])
        assert [e["ours_net"] for e in logs if e["event"] == "mirror.position_adopted"] == [1]
        await m.write(
            [
                (w["aid"], paper, _fill(w, 71, 71, Side.BUY, 1, "200", t0)),
                (w["aid"], paper, _fill(w, 72, 72, Side.SELL, 1, "190", t0)),
            ]
        )
        rows = await database.pool.fetch("SELECT entry_price, exit_price, pnl FROM trades")
        assert [tuple(r) for r in rows] == [(Decimal(200), Decimal(190), Decimal(-20))]
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(-20)


async def test_a_position_with_a_fill_after_it_in_its_batch_is_not_adopted(
    database: Database, settings: Settings
) -> None:
    """Fill, position, fill of one contract in a batch (a batch may end anywhere): the
    position has not the last fill yet; adopting it would drop that fill."""
    w = await _world(database.pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        t0 = datetime.now(UTC)
        with capture_logs() as logs:
            await m.write(
                [
                    (w["aid"], paper, _fill(w, 81, 81, Side.BUY, 1, "100", t0)),
                    (w["aid"], paper, _pos(w["bid"], 1000, "MNQ1!", 1, "100")),
                    (w["aid"], paper, _fill(w, 82, 82, Side.BUY, 1, "110", t0)),
                ]
            )
            await m.write(
                [
                    (w["aid"], paper, _pos(w["bid"], 1000, "MNQ1!", 2, "105")),
                    (w["aid"], paper, _fill(w, 83, 83, Side.SELL, 2, "115", t0)),
                    (w["aid"], paper, _pos(w["bid"], 1000, "MNQ1!", 0, None)),
                ]
            )
        assert not [e for e in logs if e["event"] == "mirror.position_adopted"]
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(40)


async def test_a_fill_before_its_order_is_not_counted_on_top_of_its_position(
    database: Database, settings: Settings
) -> None:
    """Tradovate may send a fill before its order: the view publishes it with no account
    (skipped: the mirror files fills by account), the position it made, then, once the order
    arrives, the fill again with its account. A batch may end between them: the position,
    with no attributed fill after it in its batch, was adopted as the truth (long 1), and the
    fill re-published was applied on top (long 2, a phantom): the reversal sell 2 (long 1 →
    short 1) booked 2 contracts, its P&L doubled on the trades and the daily-loss figure."""
    w = await _world(database.pool)
    bid = w["bid"]
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        t0 = datetime.now(UTC)
        orphan = Fill(61, 60, 0, 1000, "MNQ1!", Side.BUY, 1, Decimal(100), t0)  # no order yet
        order = WorkingOrder(60, bid, 1000, "MNQ1!", Side.BUY, 1, OrderType.MARKET,
                             OrderStatus.FILLED)  # fmt: skip
        with capture_logs() as logs:
            await m.write(
                [
                    (w["aid"], paper, BrokerEvent("fill", None, orphan)),
                    (w["aid"], paper, _pos(bid, 1000, "MNQ1!", 1, "100")),
                ]
            )
            await m.write(
                [
                    (w["aid"], paper, BrokerEvent("order", bid, order)),
                    (w["aid"], paper, _fill(w, 61, 60, Side.BUY, 1, "100", t0)),
                ]
            )
            await m.write(
                [
                    (w["aid"], paper, _fill(w, 62, 63, Side.SELL, 2, "110", t0)),
                    (w["aid"], paper, _pos(bid, 1000, "MNQ1!", -1, "110")),
                ]
            )
        rows = await database.pool.fetch(
            "SELECT side, qty, entry_price, exit_price, pnl FROM trades"
        )
        # long 1 from 100 to 110 on MNQ ($2 a point): +$20, 1 contract
        assert [tuple(r) for r in rows] == [("long", 1, Decimal(100), Decimal(110), Decimal(20))]
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(20)
        assert not [e for e in logs if e["event"] == "mirror.position_adopted"]
        # attributed, the fill no longer stands in the way: the broker's position is the truth
        with capture_logs() as logs:
            await m.write([(w["aid"], paper, _pos(bid, 1000, "MNQ1!", -3, "105"))])
        assert [e["broker_net"] for e in logs if e["event"] == "mirror.position_adopted"] == [-3]


@pytest.mark.parametrize("cut", ["each event", "one batch"])
async def test_a_tradovate_views_fill_before_its_order_counts_once_wherever_batches_end(
    database: Database, settings: Settings, cut: str
) -> None:
    """The same through a Tradovate view's own events (fill, position, order and the fill again,
    then a reversal), written one batch per event or all in one."""
    from jtrades.broker.tradovate.view import AccountView

    w = await _world(database.pool)
    t0 = datetime.now(UTC)
    bid, at = w["bid"], t0.isoformat()
    view = AccountView()
    view.set_contract(1000, "MNQ1!")
    frames = [
        ("fill", {"id": 61, "orderId": 60, "contractId": 1000, "action": "Buy", "qty": 1,
                  "price": 100, "timestamp": at}),
        ("position", {"id": 5, "accountId": bid, "contractId": 1000, "netPos": 1,
                      "netPrice": 100, "timestamp": at}),
        ("order", {"id": 60, "accountId": bid, "contractId": 1000, "action": "Buy",
                   "ordStatus": "Filled"}),
        ("order", {"id": 63, "accountId": bid, "contractId": 1000, "action": "Sell",
                   "ordStatus": "Filled"}),
        ("fill", {"id": 62, "orderId": 63, "contractId": 1000, "action": "Sell", "qty": 2,
                  "price": 110, "timestamp": at}),
        ("position", {"id": 5, "accountId": bid, "contractId": 1000, "netPos": -1,
                      "netPrice": 110, "timestamp": at}),
    ]  # fmt: skip
    events = [ev for kind, e in frames for ev in view.apply({"entityType": kind, "entity": e})]
    assert [(ev.kind, ev.account_id) for ev in events[:2]] == [("fill", None), ("position", bid)]
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        batches = [[ev] for ev in events] if cut == "each event" else [events]
        for batch in batches:
            await m.write([(w["aid"], paper, ev) for ev in batch])
        rows = await database.pool.fetch("SELECT side, qty, pnl FROM trades")
        assert [tuple(r) for r in rows] == [("long", 1, Decimal(20))]
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(20)


async def test_a_position_held_behind_its_fill_counts_the_fill_once(
    database: Database, settings: Settings
) -> None:
    """The position event comes in a batch before its fill is written (the fill is held):
    it waits with the fill, so the fill is not counted in it and again on its own."""
    await _world(database.pool)
    o = await _second_login(database)
    down = DownPaper()
    async with _mirroring(database, settings, await _world_of(database)) as (engine, _paper):
        m = engine.reconciler.mirror
        m.hold_waits_s = (0.05, 0.05)
        t0 = datetime.now(UTC)
        await m.write([(o["aid"], down, _mes(o["bid"], 91, Side.BUY, "6000", t0, "MESZ6"))])
        await m.write([(o["aid"], down, _pos(o["bid"], 2000, "MESZ6", 1, "6000"))])
        assert m.held == 1
        down.up = True
        await asyncio.sleep(0.1)
        await m.write([])
        await m.write(
            [
                (o["aid"], down, _mes(o["bid"], 92, Side.SELL, "6010", t0, "MESZ6")),
                (o["aid"], down, _pos(o["bid"], 2000, "MESZ6", 0, None)),
            ]
        )
        assert engine.reconciler.pnl.realized([o["sub"]], t0) == Decimal(50)


async def _world_of(database: Database) -> dict[str, object]:
    from tests.integration.test_engine import account_of

    sub = await database.pool.fetchval("SELECT min(id) FROM sub_accounts")
    aid, bid = await account_of(database.pool, sub)
    return {"sub": sub, "aid": aid, "bid": bid}


async def test_held_fills_of_a_contract_are_given_up_together(
    database: Database, settings: Settings
) -> None:
    """Buy held, sell held behind it; the buy is given up: the sell goes with it, not alone
    (alone: no trade, P&L 0, short 1). When a replay brings both back, −50 is recorded."""
    w = await _world(database.pool)
    o = await _second_login(database)
    down = DownPaper()
    async with _mirroring(database, settings, w) as (engine, _paper):
        m = engine.reconciler.mirror
        m.hold_waits_s = (0.05, 0.05)
        m.hold_s = 0.5
        t0 = datetime.now(UTC)
        buy = (o["aid"], down, _mes(o["bid"], 61, Side.BUY, "6000", t0, "MESZ6"))
        sell = (o["aid"], down, _mes(o["bid"], 62, Side.SELL, "5990", t0, "MESZ6"))
        flat = (o["aid"], down, _pos(o["bid"], 2000, "MESZ6", 0, None))
        await m.write([buy])
        await asyncio.sleep(0.3)
        await m.write([sell, flat])
        await asyncio.sleep(0.3)
        await m.write([])
        assert m.held == 0
        assert await _fills(database) == []
        assert m._open.get((o["sub"], "MESZ6")) is None
        down.up = True
        await asyncio.sleep(0.1)
        await m.write([buy, sell, flat])  # what the session's next snapshot replays
        assert engine.reconciler.pnl.realized([o["sub"]], t0) == Decimal(-50)


async def test_close_writes_what_is_queued(database: Database, settings: Settings) -> None:
    w = await _world(database.pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        m.ensure()
        m.coalesce_s = 1.0
        t0 = datetime.now(UTC)
        m._queue.put_nowait((w["aid"], paper, _fill(w, 95, 95, Side.BUY, 1, "100", t0)))
        await m.close()
    assert await database.pool.fetchval("SELECT count(*) FROM fills") == 1


def test_adopted() -> None:
    t = datetime(2026, 11, 30, tzinfo=UTC)
    long1 = OpenPosition(1, Decimal(100), t)
    p = Position(1, 2, "X", 1, Decimal("100.0000000001"))
    assert adopted(long1, p) is None
    assert adopted(None, Position(1, 2, "X", 0, None)) is None
    assert adopted(long1, Position(1, 2, "X", 0, None)) == OpenPosition()
    assert adopted(None, Position(1, 2, "X", 2, None)) is None  # no price to measure from
    assert adopted(long1, Position(1, 2, "X", 2, Decimal(105))) == OpenPosition(2, Decimal(105), t)
    assert adopted(long1, Position(1, 2, "X", -1, Decimal(90), t)).opened_at == t  # type: ignore[union-attr]


def test_the_view_finds_one_fill_by_id_named_as_it_is_now() -> None:
    from jtrades.broker.tradovate.view import AccountView

    v = AccountView()
    v.load_snapshot(
        {
            "accounts": [{"id": 1, "name": "a1"}],
            "orders": [{"id": 5, "accountId": 1, "contractId": 7, "action": "Buy"}],
            "fills": [{"id": 9, "orderId": 5, "contractId": 7, "qty": 1, "price": 1.25,
                       "action": "Buy", "timestamp": "2026-11-29T15:00:00Z"}],
        }
    )  # fmt: skip
    got = v.fill(9)
    assert got is not None
    assert (got.symbol, got.account_id, got.price) == ("", 1, Decimal("1.25"))
    v.set_contract(7, "MNQZ6")
    assert (f := v.fill(9)) is not None
    assert f.symbol == "MNQZ6"
    assert v.fill(10) is None
