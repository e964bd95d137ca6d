"""A signal's TTL against a slow broker, once the signal has changed the position.

Past its TTL a signal never trades (money rule 2). But once one of its steps changed the
position (a DCA add filled), the steps that protect that position (the cancels of the working
exits and the exits re-placed for it) are not late trading: holding them back left long 2
with no exits at all (the add filled, the old exits cancelled, the new ones "expired"). They
still go, for ``dispatch.FOLLOW_UP_S`` past the TTL; a reversal's new side does not.

Against the Tradovate simulator over real sockets (the real client): its ``delay`` fault makes
every answer slow, as a busy broker is; the TTL is the setting's (1 s, or less).

MNQ: tick 0.25, $2 a point. ``--sl 100`` ticks = 25 points, ``--tp 8`` ticks = 2 points.
"""

from __future__ import annotations

from decimal import Decimal

from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_dca_reprice_sim import RISK, SL, TP, _messages
from tests.integration.test_engine import buy, sell, send, wait_for
from tests.integration.test_protect_exits_sim import _net, _sim_world, _view_net, _view_orders

D = Decimal


def _ttl(settings: Settings, seconds: float) -> Settings:
    return settings.model_copy(
        update={"trading": settings.trading.model_copy(update={"signal_ttl_s": seconds})}
    )


async def _last_intents(database: Database) -> list[tuple[int, str, str, str, str | None]]:
    rows = await database.pool.fetch(
        "SELECT step, kind, cl_ord_id, state, reason FROM order_intents WHERE signal_id ="
        " (SELECT max(signal_id) FROM order_intents) ORDER BY step"
    )
    return [(r["step"], r["kind"], r["cl_ord_id"], r["state"], r["reason"]) for r in rows]


async def test_a_dca_adds_exits_go_out_past_the_ttl_on_a_slow_broker(
    database: Database, settings: Settings
) -> None:
    """Long 1 with its bracket; a DCA add; every answer takes 0.6 s, the TTL is 1 s: the add
    fills, the first cancel starts inside the TTL, the second cancel and the exits after it.
    They go (the position the add made is covered: a stop for 2, from the broker's average),
    and the signal says they went past its TTL."""
    pool = database.pool
    async with _sim_world(database, _ttl(settings, 1), **RISK) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 2)  # the entry's bracket: TP 21502, stop 21475
        await sim.set_price("MNQ", "21490")
        await sim.flush()
        sim.fault("delay", ms=600)
        out = await send(engine, pool, w["rec"], buy("21480"))
        sim.fault("delay", ms=0)
        await _view_net(w, 2)
        await sim.flush()
        assert _net(sim) == 2
        avg = D(21495)  # (21500 + 21490) / 2

        async def replaced() -> bool:
            orders = sim.working_orders("PX1")
            return {o["orderType"] for o in orders} == {"Limit", "Stop"} and all(
                o["qty"] == 2 for o in orders
            )

        await wait_for(replaced, "the exits for 2 replace the entry's bracket")
        orders = sim.working_orders("PX1")
        stops = [(D(str(o["stopPrice"])), o["qty"]) for o in orders if o["orderType"] == "Stop"]
        limits = [(D(str(o["price"])), o["qty"]) for o in orders if o["orderType"] == "Limit"]
        assert stops == [(avg - SL, 2)]
        assert limits == [(avg + TP, 2)]
        intents = await _last_intents(database)
        # the signal's own exits (not reconciliation's protection: ``jt-p-``), all sent
        exit_ids = {cl for _, kind, cl, _, _ in intents if kind == "oco"}
        assert {o["clOrdId"] for o in orders} <= exit_ids | {f"{cl}b" for cl in exit_ids}
        assert [(k, s) for _, k, _, s, _ in intents][1:] in (
            [("cancel", "done"), ("cancel", "done"), ("oco", s)]
            for s in ("sent", "working")  # the mirror may be first
        )
        assert not any(s == "expired" for _, _, _, s, _ in intents)
        assert any("past the signal's TTL" in m for m in _messages(out))


async def test_a_reversals_new_side_never_goes_past_the_ttl(
    database: Database, settings: Settings
) -> None:
    """Long 1; a sell reverses: the liquidation starts inside the TTL (0.5 s), its answer takes
    0.6 s. The new short is an entry, not the protection of what changed: it is not sent,
    its intent says why, and the account is left flat."""
    pool = database.pool
    async with _sim_world(database, _ttl(settings, 0.5), **RISK) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 2)
        sim.fault("delay", ms=600)
        out = await send(engine, pool, w["rec"], sell("21500"))
        sim.fault("delay", ms=0)
        await _view_net(w, 0)
        await sim.flush()
        assert _net(sim) == 0
        intents = await _last_intents(database)
        assert [(k, s) for _, k, _, s, _ in intents] == [
            ("liquidate", "done"),
            ("strategy", "expired"),
        ]
        assert intents[1][4] == "not sent: signal older than its TTL"
        assert sim.working_orders("PX1") == []
        assert not any("past the signal's TTL" in m for m in _messages(out))


async def test_the_protective_steps_go_as_a_whole_or_not_at_all(
    database: Database, settings: Settings
) -> None:
    """Judged step by step against TTL + FOLLOW_UP_S, on a broker answering in 2.6 s the two
    cancels of the working exits went inside the window and the exits replacing them did not:
    long 2 with no stop at all. The tail is decided once, at its first step."""
    pool = database.pool
    async with _sim_world(database, _ttl(settings, 1), **RISK) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 2)
        await sim.set_price("MNQ", "21490")
        await sim.flush()
        sim.fault("delay", ms=2600)
        await send(engine, pool, w["rec"], buy("21480"))
        sim.fault("delay", ms=0)
        await _view_net(w, 2)
        await sim.flush()
        intents = await _last_intents(database)
        states = [s for _, _, _, s, _ in intents]
        assert "expired" not in states, intents
        stops = sum(o["qty"] for o in sim.working_orders("PX1") if o["orderType"] == "Stop")
        assert stops == 2, intents
