"""``jtrades serve`` restarted around what the broker did while it was down: a stop that filled
meanwhile reaches the mirror's tables and the daily-loss filter when the daemon starts, once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.test_pipeline_e2e import PRICE, World, buy, sell, settle
from tests.e2e.test_pipeline_e2e import world as world  # the fixture

pytestmark = pytest.mark.e2e


async def _mirrored(w: World, fills: int, pnl: int) -> None:
    """Wait until the daemon has mirrored ``fills`` fills and trades worth ``pnl`` in all."""
    got = None
    for _ in range(100):  # the mirror writes behind the broker's events
        got = (
            await w.pool.fetchval("SELECT count(*) FROM fills"),
            await w.pool.fetchval("SELECT coalesce(sum(pnl), 0) FROM trades"),
        )
        if got == (fills, pnl):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"(fills, P&L) mirrored: {got}, expected {(fills, pnl)}")


async def test_a_stop_filled_while_the_daemon_was_down_counts_toward_the_daily_loss(
    world: World, tmp_path: Path
) -> None:
    w = world
    await w.user("kim")
    await w.demo("kim", "kim-demo", "kim_tv", ["K1"])
    await w.recorder("guarded", "kim", "--size", "1", "--sl", "40", "--max-daily-loss", "30")
    await w.trader("kim", "guarded", "kim-demo:K1")
    await w.start(tmp_path)

    out = await w.alert("guarded", buy(id="k1"))
    assert out["verdict"] == "accepted", out
    await settle()
    assert w.net("K1") == 1
    assert [o["stopPrice"] for o in w.orders("K1")] == [PRICE - 10]  # 40 ticks
    await _mirrored(w, 1, 0)
    await w.stop()

    await w.sim.set_price("MNQ", PRICE - 20)  # through the stop while no daemon runs
    assert w.net("K1") == 0
    await w.start(tmp_path)
    await _mirrored(w, 2, -40)  # 20 points on 1 MNQ at $2 a point
    out = await w.alert("guarded", buy(id="k2", price=PRICE - 20))
    assert (out["verdict"], out["filter"]) == ("rejected", "max_daily_loss"), out

    # the next start reads the loss back from the trades table; the replayed fills are not new
    await w.stop()
    await w.start(tmp_path)
    out = await w.alert("guarded", buy(id="k3", price=PRICE - 20))
    assert (out["verdict"], out["filter"]) == ("rejected", "max_daily_loss"), out
    await settle()
    await _mirrored(w, 2, -40)
    assert await w.pool.fetchval("SELECT count(*) FROM trades") == 1


async def test_what_closed_while_down_and_left_the_next_days_snapshot_is_not_kept_open(
    world: World, tmp_path: Path
) -> None:
    """The stop filled while the daemon was down, then the trading day changed: the next
    snapshot lists neither the flat position, nor its fills, nor the finished orders. With no
    view before it to compare with, the long 1 stayed open in ``positions`` and its stop
    "Working"; the next fill of the contract was measured against the phantom long (a short
    from flat at 21460 booked -$80, dated today) and the daily-loss filter then refused."""
    w = world
    await w.user("kim")
    await w.demo("kim", "kim-demo", "kim_tv", ["K1"])
    await w.recorder("guarded", "kim", "--size", "1", "--sl", "40", "--max-daily-loss", "30")
    await w.trader("kim", "guarded", "kim-demo:K1")
    await w.start(tmp_path)
    out = await w.alert("guarded", buy(id="k1"))
    assert out["verdict"] == "accepted", out
    await settle()
    await _mirrored(w, 1, 0)
    await w.stop()

    await w.sim.set_price("MNQ", PRICE - 20)  # through the stop while no daemon runs
    assert w.net("K1") == 0
    w.sim.new_trading_day()
    await w.sim.set_price("MNQ", PRICE - 40)  # today's market

    await w.start(tmp_path)
    for _ in range(50):
        if await w.pool.fetchval("SELECT count(*) FROM positions WHERE net_pos <> 0") == 0:
            break
        await asyncio.sleep(0.1)
    assert await w.cli.ok("positions", "list") == []
    orders = await w.cli.ok("orders", "list", "--broker")
    assert [r for r in orders if r["status"] == "Working"] == []
    assert {r["status"] for r in orders} <= {"Filled", "Unknown"}

    out = await w.alert("guarded", sell(id="k2", price=PRICE - 40))  # short 1 from flat
    assert out["verdict"] == "accepted", out
    await settle()
    assert w.net("K1") == -1
    await asyncio.sleep(0.5)
    assert await w.pool.fetchval("SELECT count(*) FROM trades") == 0  # no round trip today
    out = await w.alert("guarded", buy(id="k3", price=PRICE - 40))  # nothing lost today
    assert (out["verdict"], out.get("filter")) == ("accepted", None), out
