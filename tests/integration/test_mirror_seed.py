"""The positions the mirror measures the first round trips after a start against
(``Reconciler.start`` → ``Mirror.seed_open``): every sub-account the mirror follows, linked by a
trader or not, and a stored position the mirror cannot measure from never fails a batch."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from structlog.testing import capture_logs

from jtrades.broker.base import BrokerEvent, Fill, Position, Side
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.integration.test_mirror_replay import LOGIN, PASSWORD, _broker, _long_with_stop
from tests.integration.test_mirror_replay import _world as _tv_world
from tests.integration.test_reconcile import _mirroring, _world
from tests.polling import until
from tests.sim_worlds import FAST_RECONNECT, sim_tradovate
from tests.simutil import running_sim


async def _net(database: Database, sub: int, want: int) -> object:
    """The sub-account's mirrored net once it is ``want``, else what it is after 5 s."""
    net = None
    for _ in range(250):
        net = await database.pool.fetchval(
            "SELECT net_pos FROM positions WHERE sub_account_id=$1", sub
        )
        if net == want:
            break
        await asyncio.sleep(0.02)
    return net


async def test_a_close_after_a_restart_on_a_sub_account_no_trader_links_records_its_trade(
    database: Database, settings: Settings
) -> None:
    """A position outlives its trader (deleted, moved to another sub-account): the mirror still
    writes the sub-account's fills and positions, so its close after a restart is a round trip
    like any other, measured against the position mirrored before."""
    pool = database.pool
    w = await _world(pool)
    sub2 = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " VALUES ($1, 2, 'rc-paper-2') RETURNING id",
        w["aid"],
    )  # a second sub-account of the login, linked by no trader
    await pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, 'MNQ1!', 1, 100)",
        sub2,
    )
    await pool.execute(
        "INSERT INTO fills (sub_account_id, broker_fill_id, broker_order_id, symbol, side, qty,"
        " price, filled_at) VALUES ($1, 50, 50, 'MNQ1!', 'Buy', 1, 100, $2)",
        sub2,
        datetime(2026, 1, 5, 15, 0, tzinfo=UTC),
    )
    async with _mirroring(database, settings, w) as (engine, paper):
        t0 = datetime.now(UTC)
        sell = Fill(51, 51, 2, 1000, "MNQ1!", Side.SELL, 1, Decimal(90), t0)
        flat = Position(2, 1000, "MNQ1!", 0, None)
        await engine.reconciler.mirror.write(
            [
                (w["aid"], paper, BrokerEvent("fill", 2, sell)),
                (w["aid"], paper, BrokerEvent("position", 2, flat)),
            ]
        )
        rows = await pool.fetch(
            "SELECT side, qty, entry_price, exit_price, pnl FROM trades WHERE sub_account_id=$1",
            sub2,
        )
        # MNQ at $2 a point: long 1 from 100 to 90 is −$20
        assert [tuple(r) for r in rows] == [("long", 1, Decimal(100), Decimal(90), Decimal(-20))]
        assert engine.reconciler.pnl.realized([sub2], t0) == Decimal(-20)


async def test_an_unlinked_position_closed_while_down_is_not_kept_open_the_next_day(
    database: Database, settings: Settings
) -> None:
    """RP2 long 1 with a stop, mirrored; its trader link is removed and the daemon stops; the
    stop fills while it is down, and the trading day changes: the next snapshot lists neither
    the position nor its fills. What the mirror had of RP2 must still be swept flat
    (``mirror_positions.vanished`` compares with the seeded positions), or ``positions list``
    shows the long 1 for good."""
    async with running_sim() as sim:
        w = await _tv_world(database, settings, sim, 2)
        pool = database.pool
        sub2, bid2 = w.subs["RP2"]
        async with w.daemon() as engine:
            await _long_with_stop(_broker(engine, w), "RP2", bid2, "jt-seed-stop")
            await w.rows(1, "fills")
            assert await _net(database, sub2, 1) == 1
        await pool.execute("DELETE FROM trader_accounts WHERE sub_account_id=$1", sub2)

        await sim.set_price("MNQ", "21480")  # through the stop, with no daemon running
        assert sim.positions("RP2") == {}
        sim.new_trading_day()

        async with w.daemon():
            assert await _net(database, sub2, 0) == 0


async def test_a_seeded_position_without_a_price_does_not_fail_the_batch(
    database: Database, settings: Settings
) -> None:
    """A position stored with a net but no price (the broker's position event without a
    netPrice is written so) and no fills to rebuild its lots from cannot be measured from: the
    fill closing it records no round trip, says why, and the batch — with every other fill in
    it — is written; the next position the broker reports is then the truth."""
    pool = database.pool
    w = await _world(pool)
    await pool.execute(
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, 'MNQ1!', 1, NULL)",
        w["sub"],
    )
    async with _mirroring(database, settings, w) as (engine, paper):
        m = engine.reconciler.mirror
        t0 = datetime.now(UTC)
        sell = Fill(71, 71, w["bid"], 1000, "MNQ1!", Side.SELL, 1, Decimal(90), t0)
        flat = Position(w["bid"], 1000, "MNQ1!", 0, None)
        with capture_logs() as logs:
            await m.write(
                [
                    (w["aid"], paper, BrokerEvent("fill", w["bid"], sell)),
                    (w["aid"], paper, BrokerEvent("position", w["bid"], flat)),
                ]
            )
        assert await pool.fetchval("SELECT count(*) FROM fills") == 1
        assert await pool.fetchval("SELECT count(*) FROM trades") == 0
        (unmeasured,) = [e for e in logs if e["event"] == "mirror.trade_unmeasured"]
        assert unmeasured["fill_id"] == 71
        assert "no average price" in unmeasured["reason"]

        # measured from the broker's next position: buy 1 @ 100, sell 1 @ 110 is +$20
        buy = Fill(72, 72, w["bid"], 1000, "MNQ1!", Side.BUY, 1, Decimal(100), t0)
        long1 = Position(w["bid"], 1000, "MNQ1!", 1, Decimal(100), t0)
        sell2 = Fill(73, 73, w["bid"], 1000, "MNQ1!", Side.SELL, 1, Decimal(110), t0)
        for batch in ([buy, long1], [sell2, flat]):
            await m.write(
                [(w["aid"], paper, BrokerEvent(type(e).__name__.lower(), w["bid"], e))
                 for e in batch]
            )  # fmt: skip
        pnl = await pool.fetchval("SELECT pnl FROM trades")
        assert pnl == Decimal(20)
        assert engine.reconciler.pnl.realized([w["sub"]], t0) == Decimal(20)


async def test_a_position_closed_while_down_is_swept_when_its_view_syncs_after_the_mirror_starts(
    database: Database, settings: Settings
) -> None:
    """As above, on a linked sub-account whose connection drops between its first snapshot and
    the mirror following it: the mirror's start finds the account unsynced and cannot sweep it,
    and the next snapshot publishes only what changed against the first, which already lacked
    the position. The sweep is made once the account syncs, or the long 1 stays for good."""
    async with running_sim() as sim:
        w = await _tv_world(database, settings, sim, 1)
        sub, bid = w.subs["RP1"]
        async with w.daemon() as engine:
            await _long_with_stop(_broker(engine, w), "RP1", bid, "jt-seed-stop")
            await w.rows(1, "fills")
            assert await _net(database, sub, 1) == 1

        await sim.set_price("MNQ", "21480")  # through the stop, with no daemon running
        assert sim.positions("RP1") == {}
        sim.new_trading_day()

        tv = TradovatePool(sim_tradovate(settings, sim, **FAST_RECONNECT))
        try:
            broker = await tv.broker("demo", LOGIN, PASSWORD)  # its first snapshot: flat
            assert isinstance(broker, TradovateBroker)
            sim.faults.refuse_ws = 1_000_000  # the network is down ...
            sim.fault("drop")
            await until(lambda: not broker.is_synced(bid))
            brokers = BrokerRegistry(database, settings)
            brokers.attach(w.aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()  # ... as the mirror starts following the login
            try:
                sim.faults.refuse_ws = 0
                await until(lambda: broker.is_synced(bid))
                assert broker.positions(bid) == []
                assert await _net(database, sub, 0) == 0
            finally:
                await engine.close()
        finally:
            await tv.close()
