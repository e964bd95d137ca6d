"""An order refused during a 429 hold, through the engine: recorded as not sent, never unknown,
never sent later by itself (DESIGN.md §5 rules 2 and 7).

Real Postgres, the engine, and a Tradovate session on the simulator over real sockets.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg

from jtrades.config import Settings
from jtrades.engine.signal import Action, Signal
from jtrades.engine.unsent import says_not_sent
from jtrades.sim.faults import Refusal
from tests.integration.test_dispatch import sim_engine
from tests.integration.test_engine import store_signal


async def _intent(pool: asyncpg.Pool, signal_id: int) -> asyncpg.Record:
    rows = await pool.fetch("SELECT state, reason FROM order_intents WHERE signal_id=$1", signal_id)
    assert len(rows) == 1, rows
    return rows[0]


async def test_an_order_refused_during_a_429_hold_is_not_sent_and_not_sent_later(
    settings: Settings,
) -> None:
    """The first entry's order is answered 429 (asking for 1 s); the second, a moment later,
    is refused by the session's hold before it leaves. Both intents are ``expired`` with a
    "not sent" reason naming the 429; once the hold is over nothing goes out by itself, and
    the next alert trades."""
    async with sim_engine(settings, {"rl_tv": ["RL1"]}) as (engine, sim, pool, rec, _subs):
        warm, at = await store_signal(pool, rec)  # the session up, the contract resolved
        await engine.on_signal(
            signal_id=warm, recorder_id=rec, signal=Signal(Action.CLOSE, ticker="MNQ1!"),
            received_at=at,
        )  # fmt: skip
        placed = lambda: sim.stats()["by_endpoint"].get("order/placeorder", 0)  # noqa: E731
        before = placed()
        sim.faults.refusals.append(Refusal("order/placeorder", 429, {"p-time": 1}))
        entry = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))

        outs = []
        signal_ids = []
        for _ in range(2):
            sid, at = await store_signal(pool, rec)
            signal_ids.append(sid)
            outs.append(
                await engine.on_signal(signal_id=sid, recorder_id=rec, signal=entry, received_at=at)
            )
        assert placed() - before == 1  # the second never left
        for sid, out in zip(signal_ids, outs, strict=True):
            row = await _intent(pool, sid)
            assert row["state"] == "expired", (row, out)
            assert says_not_sent(row["reason"]), row
            assert "429" in row["reason"], row
            assert (out.verdict, out.filter, out.orders) == ("rejected", "broker", 0), out

        await asyncio.sleep(1.5)  # the hold is over: nothing is sent by itself
        assert placed() - before == 1
        assert sim.positions("RL1") == {}
        for sid in signal_ids:
            assert (await _intent(pool, sid))["state"] == "expired"

        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=entry, received_at=at)
        assert out.verdict == "accepted", out
        assert placed() - before == 2
        assert sim.positions("RL1") == {sim.contract("MNQ").name: 1}
