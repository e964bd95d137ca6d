"""A protective stop whose answer is lost (a server error after the order went through) while
the connection stays up was forgotten by the protector: its in-pass retry (0.5 s later) planned
from a view whose events had not shown that stop yet and placed a second one. Two stops for 1 on
a long 1: a drop through them ended short 1 (DESIGN §5: a stop must never be doubled)."""

from __future__ import annotations

from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_engine import buy, send
from tests.integration.test_protect_exits_sim import _net, _sim_world, _view_net


async def test_a_stop_whose_answer_was_lost_is_not_placed_a_second_time(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with _sim_world(database, settings, size=1) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        assert sim.working_orders("PX1") == []  # no exits at all
        await pool.execute(
            "UPDATE traders SET sl = 40, updated_at = now() WHERE id=$1", w["trader"]
        )
        await engine.config.refresh()
        assert await engine.reconciler.protect_positions() == 0  # first sighting

        # the stop reaches the broker and works there, but its answer is a server error
        sim.fault("lost_answer", endpoint="placeorder")
        sim.fault("events_after", on=True, ms=800)  # Tradovate sends events before or after
        await engine.reconciler.protect_positions()
        sim.fault("clear")
        await sim.flush()

        stops = [
            (o["qty"], o["stopPrice"])
            for o in sim.working_orders("PX1")
            if o["orderType"] == "Stop"
        ]
        assert sum(q for q, _ in stops) == 1, f"stops on a long 1: {stops}"
        await sim.set_price("MNQ", "21480")  # down through the stop level (21490)
        assert _net(sim) == 0
