"""The mirror when a fill cannot be priced right now (its login's session is down, its contract
has no name yet) or the database refuses a batch: what can be written is, the rest waits and is
written later in order, counted once; nothing goes to disk without a symbol."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from structlog.testing import capture_logs

from jtrades.broker.base import (
    BrokerEvent,
    Contract,
    Fill,
    OrderRequest,
    Position,
    Side,
    SubAccount,
)
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.errors import TransientBrokerError
from tests.integration.test_engine import (
    account_of,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
)
from tests.integration.test_reconcile import _mirroring, _world
from tests.polling import until


class DownPaper(PaperBroker):
    """A login whose session is down: contracts cannot be looked up until ``up``."""

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.up_for: set[str] = set()  # contracts that can be looked up all the same
        self.asked = 0

    async def find_contract(self, symbol: str) -> Contract:
        self.asked += 1
        if not self.up and symbol not in self.up_for:
            raise TransientBrokerError("Tradovate session demo:x is connecting: not ready")
        return await super().find_contract(symbol)


async def _second_login(database: Database) -> dict[str, Any]:
    pool = database.pool
    u = await make_user(pool, "mh2")
    (sub,) = await make_paper_account(pool, u, "mh2-paper")
    await make_trader(pool, u, await make_recorder(pool, u, "mh2-rec"), [(sub, 1)])
    aid, bid = await account_of(pool, sub)
    return {"sub": sub, "aid": aid, "bid": bid}


def _fill(bid: int, fid: int, side: Side, price: str, at: datetime, symbol: str) -> BrokerEvent:
    return BrokerEvent("fill", bid, Fill(fid, fid, bid, 2000, symbol, side, 1, Decimal(price), at))


async def _fills(database: Database) -> list[tuple[int, int, str]]:
    rows = await database.pool.fetch(
        "SELECT sub_account_id, broker_fill_id, symbol FROM fills ORDER BY 2"
    )
    return [(r["sub_account_id"], r["broker_fill_id"], r["symbol"]) for r in rows]


async def test_a_fill_that_cannot_be_priced_now_is_held_and_written_later_in_order(
    database: Database, settings: Settings
) -> None:
    """One batch of two logins: the first login's round trip is written and counted; the other
    login's session is down, so its fill's contract (not looked up before) has no value per
    point: that fill is held with the later fill of its contract, not dropped with the batch.
    The contract is asked again only once its wait (``hold_waits_s``) has passed, whatever the
    batches do. Once the session is back the held fills are written first, in order, with their
    round trip; a replay of the same fills (the next sync) counts nothing twice."""
    w = await _world(database.pool)
    o = await _second_login(database)
    down = DownPaper()
    async with _mirroring(database, settings, w) as (engine, paper):
        mirror = engine.reconciler.mirror
        mirror.hold_waits_s = (0.3, 0.3)
        t0 = datetime.now(UTC)
        held = [
            (o["aid"], down, _fill(o["bid"], 21, Side.BUY, "6000", t0, "MESZ6")),
            (o["aid"], down, _fill(o["bid"], 22, Side.SELL, "6010", t0, "MESZ6")),
        ]
        ok = [
            (w["aid"], paper, _fill(w["bid"], 11, Side.BUY, "100", t0, "MNQ1!")),
            (w["aid"], paper, _fill(w["bid"], 12, Side.SELL, "110", t0, "MNQ1!")),
        ]
        with capture_logs() as logs:
            await mirror.write([held[0], ok[0], held[1], ok[1]])
        assert await _fills(database) == [(w["sub"], 11, "MNQ1!"), (w["sub"], 12, "MNQ1!")]
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(20)
        assert mirror.held == 2
        assert down.asked == 1  # once, not once a fill
        assert [e["fill_id"] for e in logs if e["event"] == "mirror.fill_held"] == [21, 22]

        await mirror.write([])  # waiting out the failure: not asked again
        assert (mirror.held, down.asked) == (2, 1)
        down.up = True
        await asyncio.sleep(0.35)
        await mirror.write([])
        assert mirror.held == 0
        assert [f[1] for f in await _fills(database)] == [11, 12, 21, 22]
        trades = await database.pool.fetch("SELECT sub_account_id, symbol, pnl FROM trades")
        assert {(t["sub_account_id"], t["symbol"], t["pnl"]) for t in trades} == {
            (w["sub"], "MNQ1!", Decimal(20)),
            (o["sub"], "MESZ6", Decimal(50)),  # 10 points on 1 MES at $5 a point
        }
        assert engine.reconciler.pnl.realized([o["sub"]], t0) == Decimal(50)

        await mirror.write([*ok, *held])  # replayed by the next sync
        assert await database.pool.fetchval("SELECT count(*) FROM trades") == 2
        assert engine.reconciler.pnl.realized([w["sub"], o["sub"]], t0) == Decimal(70)


async def test_the_positions_behind_a_held_fill_wait_with_it(
    database: Database, settings: Settings
) -> None:
    """A fill is held, and the position events of its sub-account and contract in its batch
    and after it are held with it (a position row with the fill in it is what the next start
    measures fills against: the fill, replayed then, would count twice); another contract's
    position is written. Once the fills are priced they go in one batch with the latest of
    those positions."""
    w = await _world(database.pool)
    o = await _second_login(database)
    down = DownPaper()

    def position(net: int) -> tuple[int, PaperBroker, BrokerEvent]:
        p = Position(o["bid"], 2000, "MESZ6", net, Decimal(6000) if net else None)
        return (o["aid"], down, BrokerEvent("position", o["bid"], p))

    async def positions() -> dict[tuple[int, str], int]:
        rows = await database.pool.fetch("SELECT sub_account_id, symbol, net_pos FROM positions")
        return {(r["sub_account_id"], r["symbol"]): r["net_pos"] for r in rows}

    async with _mirroring(database, settings, w) as (engine, paper):
        mirror = engine.reconciler.mirror
        mirror.hold_waits_s = (0.2, 0.2)
        t0 = datetime.now(UTC)
        other = Position(w["bid"], 1000, "MNQZ6", 3, Decimal(100))
        await mirror.write(
            [
                position(1),  # the position event may come before its fill
                (o["aid"], down, _fill(o["bid"], 51, Side.BUY, "6000", t0, "MESZ6")),
                (w["aid"], paper, BrokerEvent("position", w["bid"], other)),
            ]
        )
        await mirror.write([position(1)])
        await mirror.write(
            [(o["aid"], down, _fill(o["bid"], 52, Side.SELL, "6010", t0, "MESZ6")), position(0)]
        )
        assert mirror.held == 2
        assert await positions() == {(w["sub"], "MNQZ6"): 3}
        assert await _fills(database) == []

        down.up = True
        await asyncio.sleep(0.25)
        await mirror.write([])
        assert mirror.held == 0
        assert await positions() == {(w["sub"], "MNQZ6"): 3, (o["sub"], "MESZ6"): 0}
        assert [f[1] for f in await _fills(database)] == [51, 52]
        assert engine.reconciler.pnl.realized([o["sub"]], t0) == Decimal(50)


async def test_nothing_is_written_without_a_symbol(database: Database, settings: Settings) -> None:
    """A position or fill of a contract the view cannot name yet is not written under ''; the
    fill waits for its name and is given up (loudly) after ``hold_s`` — the session's next sync
    replays it under the name the snapshot gives."""
    w = await _world(database.pool)
    async with _mirroring(database, settings, w) as (engine, paper):
        mirror = engine.reconciler.mirror
        t0 = datetime.now(UTC)
        nameless = (w["aid"], paper, _fill(w["bid"], 31, Side.BUY, "100", t0, ""))
        position = BrokerEvent("position", w["bid"], Position(w["bid"], 2000, "", 1, Decimal(100)))
        await mirror.write([nameless, (w["aid"], paper, position)])
        assert mirror.held == 1
        assert await _fills(database) == []
        assert await database.pool.fetchval("SELECT count(*) FROM positions") == 0

        mirror.hold_s = 0
        with capture_logs() as logs:
            await mirror.write([])
        assert mirror.held == 0
        assert await _fills(database) == []
        [gone] = [e for e in logs if e["event"] == "mirror.fill_given_up"]
        assert (gone["fill_id"], gone["log_level"]) == (31, "error")


async def test_the_writer_tries_held_fills_again_on_its_own(
    database: Database, settings: Settings
) -> None:
    """The writer holds what it cannot price and tries again after a wait, with or without
    new events coming: the session coming back is enough."""
    w = await _world(database.pool)
    o = await _second_login(database)
    down = DownPaper()
    async with _mirroring(database, settings, w) as (engine, paper):
        mirror = engine.reconciler.mirror
        mirror.hold_waits_s = (0.05, 0.1)
        t0 = datetime.now(UTC)
        await mirror.write([(o["aid"], down, _fill(o["bid"], 41, Side.BUY, "6000", t0, "MESZ6"))])
        assert mirror.held == 1
        # an event of the other login goes through the writer, the held fill with it (still down)
        paper.on_price("MNQ1!", Decimal(100))
        await paper.place_order(OrderRequest(SubAccount(w["bid"], "x"), "MNQ1!", Side.BUY, 1))
        await until(lambda: down.asked >= 2)
        assert mirror.held == 1
        down.up = True  # no event comes: the writer's own retry writes it
        for _ in range(200):
            if 41 in [f[1] for f in await _fills(database)]:
                break
            await asyncio.sleep(0.02)
        assert (o["sub"], 41, "MESZ6") in await _fills(database)
        assert mirror.held == 0


async def test_a_batch_the_database_refuses_is_written_again(
    database: Database, settings: Settings
) -> None:
    """The trades table is away while a round trip's events arrive: the writer tries the batch
    again after a wait instead of dropping it, and the round trip is recorded and counted."""
    w = await _world(database.pool)
    pool = database.pool
    async with _mirroring(database, settings, w) as (engine, paper):
        mirror = engine.reconciler.mirror
        mirror.retry_waits_s = (0.2, 0.2, 0.2, 5.0)
        t0 = datetime.now(UTC)
        await pool.execute("ALTER TABLE trades RENAME TO trades_away")
        with capture_logs() as logs:
            account = SubAccount(w["bid"], "x")
            paper.on_price("MNQ1!", Decimal(100))
            await paper.place_order(OrderRequest(account, "MNQ1!", Side.BUY, 1))
            paper.on_price("MNQ1!", Decimal(110))
            await paper.place_order(OrderRequest(account, "MNQ1!", Side.SELL, 1))
            await until(lambda: any(e["event"] == "mirror.write_retry" for e in logs))
            await pool.execute("ALTER TABLE trades_away RENAME TO trades")
            for _ in range(200):
                if await pool.fetchval("SELECT count(*) FROM trades") == 1:
                    break
                await asyncio.sleep(0.02)
        assert await pool.fetchval("SELECT count(*) FROM fills") == 2
        assert await pool.fetchval("SELECT pnl FROM trades") == Decimal(20)
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(20)
        assert not any(e["event"] == "mirror.write_failed" for e in logs)


async def test_a_held_fill_keeps_its_account_behind_until_it_is_counted(
    database: Database, settings: Settings
) -> None:
    """A losing MES round trip is held (its contract cannot be looked up), then a fill of MNQ
    on the same account is priced at once. The account's mark passed the held fills, and the
    daily-loss filter judged entries as if the held loss were counted (it waits for the
    account while ``behind``). Once the held fills are written, the account is caught up."""
    w = await _world(database.pool)
    o = await _second_login(database)
    down = DownPaper()
    async with _mirroring(database, settings, w) as (engine, _paper):
        mirror = engine.reconciler.mirror
        mirror.hold_waits_s = (0.3, 0.3)
        aid, bid = o["aid"], o["bid"]
        t0 = datetime.now(UTC)
        mnq = BrokerEvent(
            "fill", bid, Fill(23, 23, bid, 3000, "MNQZ6", Side.BUY, 1, Decimal(21500), t0)
        )
        await mirror.write(
            [
                (aid, down, _fill(bid, 21, Side.BUY, "6000", t0, "MESZ6")),
                (aid, down, _fill(bid, 22, Side.SELL, "5900", t0, "MESZ6")),  # -$500
            ]
        )
        down.up_for = {"MNQZ6"}
        await mirror.write([(aid, down, mnq)])
        assert mirror.held == 2
        assert engine.reconciler.pnl.realized([o["sub"]], t0) == 0
        assert mirror.booked.behind({(aid, bid): 23}) == [(aid, bid)]
        assert not await mirror.booked.caught_up({(aid, bid): 23}, 0.05)

        down.up = True
        await asyncio.sleep(0.35)
        await mirror.write([])
        assert mirror.held == 0
        assert engine.reconciler.pnl.realized([o["sub"]], t0) == Decimal(-500)
        assert mirror.booked.behind({(aid, bid): 23}) == []
