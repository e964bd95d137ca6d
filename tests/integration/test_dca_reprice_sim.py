"""A DCA add's exits are measured from the broker's average, not from the alert's price.

The plan can only estimate the average (the alert's price as the add's fill); the market add
fills where the market is. Once the add shows in the position, its exits are priced again
from the broker's average before they go out, and the intents record what went out; a stop
is checked against where the add filled (the market), not the alert's stale price. Exits
that cannot be re-priced go as planned: the added contracts are never left uncovered. Against
the Tradovate simulator over real sockets (the real client), and the paper broker (which
fills at the alert's price, so the estimate is the average there).

MNQ: tick 0.25, $2 a point. ``--sl 100`` ticks = 25 points, ``--tp 8`` ticks = 2 points.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.signal import ExitSpec, Units
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    wait_for,
    working,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_protect_exits_sim import _net, _sim_world, _view_net, _view_orders

D = Decimal
SL = D(25)  # points: --sl 100 ticks
TP = D(2)  # points: --tp 8 ticks
RISK: dict[str, Any] = {
    "size": 1,
    "add_size": 1,
    "sl": D(100),
    "tp": [{"target": "8"}],
    "dca": True,
    "same_direction": "add",
}


async def _exit_intents(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    """The last signal's exit intents (their clOrdIds carry the exit mark)."""
    sid = await pool.fetchval("SELECT max(signal_id) FROM order_intents")
    return await pool.fetch(
        "SELECT kind, qty, state, request, reason FROM order_intents"
        " WHERE signal_id = $1 AND kind IN ('oco', 'order') AND step > 1 ORDER BY step",
        sid,
    )


def _messages(out: Any) -> list[str]:
    return [m for a in out.detail["accounts"].values() for m in a["messages"]]


async def test_the_exits_of_a_dca_add_are_priced_from_the_brokers_average(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    async with _sim_world(database, settings, **RISK) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 2)  # the entry's bracket: TP 21502, stop 21475
        # the market is at 21490; the add's alert says 21480 (its bar's close)
        await sim.set_price("MNQ", "21490")
        await sim.flush()
        out = await send(engine, pool, w["rec"], buy("21480"))
        assert "averaged at 21490" in out.detail["accounts"]["1"]["reason"]  # the estimate
        await _view_net(w, 2)
        await sim.flush()
        assert _net(sim) == 2
        (pos,) = w["broker"].positions(w["bid"])
        avg = pos.net_price
        assert avg == D("21495")  # (21500 + 21490) / 2

        async def replaced() -> bool:
            return {o["orderType"] for o in sim.working_orders("PX1")} == {"Limit", "Stop"} and all(
                o["qty"] == 2 for o in sim.working_orders("PX1")
            )

        await wait_for(replaced, "the exits for 2 replace the entry's bracket")
        orders = sim.working_orders("PX1")
        limits = [(D(str(o["price"])), o["qty"]) for o in orders if o["orderType"] == "Limit"]
        stops = [(D(str(o["stopPrice"])), o["qty"]) for o in orders if o["orderType"] == "Stop"]
        # planned from 21490 the take-profit was 21492: under the real average, a "profit"
        # booking a loss; the stop 21465 put $120 at risk for --sl's $100
        assert limits == [(avg + TP, 2)]
        assert stops == [(avg - SL, 2)]
        assert any("re-priced from the broker's average 21495" in m for m in _messages(out))

        (oco,) = await _exit_intents(pool)
        assert (oco["kind"], oco["qty"]) == ("oco", 2)
        assert oco["state"] in ("sent", "working")  # the mirror may be first
        sent = oco["request"]["request"]
        assert D(sent["first"]["price"]) == avg + TP
        assert D(sent["second"]["stop_price"]) == avg - SL


def _stops(sim: Any) -> list[tuple[Decimal, int]]:
    return [
        (D(str(o["stopPrice"])), o["qty"])
        for o in sim.working_orders("PX1")
        if o["orderType"] == "Stop"
    ]


async def test_a_stop_at_the_alerts_stale_price_is_safe_short_of_the_fill(
    database: Database, settings: Settings
) -> None:
    """The alert's price lags the market: long 1 @ 21500 with its stop 21475, the market
    21498, the alert 21474. From the broker's average (21499) the stop is 21474: at the
    alert's price, but 24 points under the market the add filled at. It goes for the whole
    position in place of the entry's stop (it used to be refused for the alert's price, and
    then nothing went: long 2 with a stop for 1)."""
    pool = database.pool
    risk = {k: v for k, v in RISK.items() if k != "tp"}
    async with _sim_world(database, settings, **risk) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 1)  # the entry's stop 21475
        await sim.set_price("MNQ", "21498")
        await sim.flush()
        out = await send(engine, pool, w["rec"], buy("21474"))
        assert "stop 21462.00 for 2" in out.detail["accounts"]["1"]["reason"]  # the estimate
        await _view_net(w, 2)
        await sim.flush()
        (pos,) = w["broker"].positions(w["bid"])
        assert pos.net_price == D("21499")

        async def replaced() -> bool:
            return _stops(sim) == [(D("21474"), 2)]

        await wait_for(replaced, "one stop for 2 replaces the entry's")
        assert _net(sim) == 2
        assert sum(q for _, q in _stops(sim)) == 2  # covered
        assert any("re-priced from the broker's average 21499" in m for m in _messages(out))
        rows = await pool.fetch(
            "SELECT kind, state FROM order_intents WHERE signal_id ="
            " (SELECT max(signal_id) FROM order_intents) ORDER BY step"
        )
        assert rows[0]["state"] in ("sent", "filled")  # the add (the mirror may be first)
        assert [(r["kind"], r["state"]) for r in rows][1:2] == [("cancel", "done")]
        assert rows[2]["kind"] == "order"
        assert rows[2]["state"] in ("sent", "working")


async def test_exits_that_cannot_be_re_priced_go_as_planned_and_cover_the_add(
    database: Database, settings: Settings
) -> None:
    """The alert gives its take-profit as a price, 21492: above the estimated average (21490),
    under the broker's (21495; the add filled at 21490, the alert said 21480). Re-priced it
    would book a loss, so it cannot be; the planned exits go instead (stop 21465 for 2 with the
    take-profit, priced from the estimate), the entry's stop is cancelled, and the signal says
    so: the added contract is never left without a stop."""
    pool = database.pool
    risk = {k: v for k, v in RISK.items() if k != "tp"}
    async with _sim_world(database, settings, **risk) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await _view_orders(w, 1)  # the entry's stop 21475
        await sim.set_price("MNQ", "21490")
        await sim.flush()
        tp = (ExitSpec(D(21492), Units.PRICE),)
        out = await send(engine, pool, w["rec"], buy("21480", take_profit=tp))
        await _view_net(w, 2)
        await sim.flush()
        (pos,) = w["broker"].positions(w["bid"])
        assert pos.net_price == D("21495")

        async def replaced() -> bool:
            return _stops(sim) == [(D("21465"), 2)]

        await wait_for(replaced, "the planned exits for 2 replace the entry's stop")
        assert _net(sim) == 2
        limits = [
            (D(str(o["price"])), o["qty"])
            for o in sim.working_orders("PX1")
            if o["orderType"] == "Limit"
        ]
        assert limits == [(D(21492), 2)]
        assert any(
            "not re-priced from the broker's average" in m
            and "priced from the estimated average 21490" in m
            for m in _messages(out)
        )
        assert not any("re-priced from the broker's average 21495" in m for m in _messages(out))
        rows = await pool.fetch(
            "SELECT kind, state, request FROM order_intents WHERE signal_id ="
            " (SELECT max(signal_id) FROM order_intents) ORDER BY step"
        )
        assert [(r["kind"], r["state"]) for r in rows][1:2] == [("cancel", "done")]
        assert rows[2]["kind"] == "oco"
        assert rows[2]["state"] in ("sent", "working")
        # the intent records what went: the plan's prices
        assert D(rows[2]["request"]["request"]["second"]["stop_price"]) == D(21465)


async def test_paper_fills_the_add_at_the_alerts_price_and_prices_exits_alike(
    database: Database, settings: Settings, engine_factory: Any
) -> None:
    """The paper broker fills a market add at the alert's price: the estimate is the average,
    the exits are the planned ones, and nothing is re-priced."""
    pool = database.pool
    u = await make_user(pool, "dcap")
    rec = await make_recorder(pool, u, "rec", **RISK)
    (sub,) = await make_paper_account(pool, u, "dcap-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    await send(engine, pool, rec, buy("21500"))
    out = await send(engine, pool, rec, buy("21480"))
    assert await net_pos(engine, pool, sub) == 2
    aid = await pool.fetchval("SELECT account_id FROM sub_accounts WHERE id=$1", sub)
    bid = await pool.fetchval("SELECT broker_account_id FROM sub_accounts WHERE id=$1", sub)
    (pos,) = engine.brokers.paper(aid).positions(bid)
    avg = pos.net_price
    assert avg == D("21490")
    orders = await working(engine, pool, sub)
    limits = [(o.price, o.qty) for o in orders if o.order_type.value == "Limit"]
    stops = [(o.stop_price, o.qty) for o in orders if o.order_type.value == "Stop"]
    assert limits == [(avg + TP, 2)]
    assert stops == [(avg - SL, 2)]
    assert not any("re-priced" in m for m in _messages(out))
    (oco,) = await _exit_intents(pool)
    assert D(oco["request"]["request"]["second"]["stop_price"]) == avg - SL


async def test_a_leg_reached_at_the_brokers_average_hands_its_contracts_on(
    database: Database, settings: Settings
) -> None:
    """--tp 8:1,40 (2 and 10 points). Long 1 @ 21500; the add's alert says 21502, the market
    is 21496. From the estimate 21501 the legs are 21503 and 21511; from the broker's 21498
    they are 21500 (under the alert's price: reached) and 21508, which takes both contracts,
    under the first leg's step; the second leg's step is not sent, and its intent says why."""
    pool = database.pool
    risk = dict(RISK, tp=[{"target": "8", "qty": 1}, {"target": "40"}])
    async with _sim_world(database, settings, **risk) as (sim, engine, w):
        await send(engine, pool, w["rec"], buy("21500"))
        await _view_net(w, 1)
        await sim.set_price("MNQ", "21496")
        await sim.flush()
        out = await send(engine, pool, w["rec"], buy("21502"))
        await _view_net(w, 2)
        (pos,) = w["broker"].positions(w["bid"])
        assert pos.net_price == D("21498")

        async def replaced() -> bool:
            orders = sim.working_orders("PX1")
            return len(orders) == 2 and all(o["qty"] == 2 for o in orders)

        await wait_for(replaced, "one take-profit leg with its stop, for 2")
        orders = sim.working_orders("PX1")
        assert [D(str(o["price"])) for o in orders if o["orderType"] == "Limit"] == [D(21508)]
        assert [D(str(o["stopPrice"])) for o in orders if o["orderType"] == "Stop"] == [D(21473)]
        assert any("already reached" in m for m in _messages(out))
        first, second = await _exit_intents(pool)
        assert first["qty"] == 2
        assert first["state"] in ("sent", "working")
        assert D(first["request"]["request"]["first"]["price"]) == D(21508)
        assert second["state"] == "expired"
        # The legs left go out under the first steps: the step not sent is the last planned
        # one (21511, not reached), and its row must not say its own level was reached.
        assert D(second["request"]["request"]["first"]["price"]) == D(21511)
        assert "a leg fewer" in second["reason"]
        assert "its take-profit is reached" not in second["reason"]
        assert "take-profit 21500.00 already reached" in second["reason"]


async def test_planned_exits_through_the_market_at_the_fill_are_not_sent(
    database: Database, settings: Settings
) -> None:
    """Re-pricing fails (every take-profit reached at the broker's average) and the planned
    exits went as planned: a sell limit for 2 at 21501 with the add filled at 21504 filled at
    once, and the account asked to add was flat. Now nothing more goes: the working exits
    stay, and the position is long 2 as asked."""
    pool = database.pool
    async with _sim_world(database, settings, **RISK) as (sim, engine, w):
        tp = (ExitSpec(D(21530), Units.PRICE),)
        await send(engine, pool, w["rec"], buy("21500", take_profit=tp))
        await _view_net(w, 1)
        await _view_orders(w, 2)  # TP 21530, stop 21475
        await sim.set_price("MNQ", "21504")
        await sim.flush()
        out = await send(engine, pool, w["rec"], buy("21498"))  # the bar's close, stale
        await _view_net(w, 2)
        await sim.flush()
        assert _net(sim) == 2, _messages(out)
        assert any("the working exits are kept" in m for m in _messages(out)), _messages(out)
        kinds = sorted(o["orderType"] for o in sim.working_orders("PX1"))
        assert kinds == ["Limit", "Stop"]  # the entry's bracket, untouched
