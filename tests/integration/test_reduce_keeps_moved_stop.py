"""A reduce (TradersPost's partial exit) leaves the average as it was: the working stop a
breakeven or a trail moved toward the market stays, where it was re-placed at the configured
level (``resize._tighter``; reviewed 2026-12-01). The paper broker, the engine, Postgres."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from jtrades.broker.base import OrderType, WorkingOrder
from jtrades.db import Database
from jtrades.engine.parsing import parse_payload
from jtrades.engine.signal import Signal
from tests.integration.test_engine import account_of, follower, net_pos, paper_of, send
from tests.integration.test_engine import engine_factory as engine_factory  # the fixture

D = Decimal
SYM = "MNQZ6"


def sig(**body: Any) -> Signal:
    body.setdefault("ticker", "MNQ1!")
    return parse_payload(json.dumps(body).encode(), "application/json")


def _stop(paper: Any, bid: int) -> WorkingOrder:
    (s,) = [
        o
        for o in paper.working_orders(bid)
        if o.order_type in (OrderType.STOP, OrderType.TRAILING_STOP)
    ]
    return s


async def test_a_partial_exit_keeps_a_breakeven_stop(
    database: Database, engine_factory: Any
) -> None:
    """Long 2 @ 21500, --sl 40 ticks, --breakeven 20:4 (5 pts, +1 pt). At 21506 the stop is at
    21501 (profit locked in). TradersPost's partial exit of 1 leaves 1 contract whose stop went
    back to 21490: the trader risked 10 points again on a trade that had a +1 stop."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool,
        "pbe",
        recorder={
            "size": 2,
            "sl": D(40),
            "tp": [{"target": "80"}],
            "breakeven_trigger": D(20),
            "breakeven_offset": D(4),
        },
    )
    engine = await engine_factory()
    aid, bid = await account_of(pool, sub)
    paper = paper_of(engine, aid)
    await send(engine, pool, rec, sig(action="buy", price=21500))
    paper.on_price(SYM, D("21506"))
    assert _stop(paper, bid).stop_price == D("21501")  # breakeven reached
    out = await send(engine, pool, rec, sig(action="exit", quantity=1, price=21506))
    assert await net_pos(engine, pool, sub) == 1, out.detail
    stop = _stop(paper, bid)
    assert stop.qty == 1
    assert stop.stop_price >= D("21501"), f"stop loosened to {stop.stop_price}"


async def test_a_partial_exit_keeps_a_trailed_stop(database: Database, engine_factory: Any) -> None:
    """Long 2 @ 21500, trailing 40 ticks. The market ran to 21520 (stop 21510) and pulled back
    to 21512. A partial exit of 1 re-placed a trailing stop starting from 21512: 21502."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool,
        "ptr",
        recorder={"size": 2, "sl": D(40), "sl_type": "trailing", "tp": [{"target": "200"}]},
    )
    engine = await engine_factory()
    aid, bid = await account_of(pool, sub)
    paper = paper_of(engine, aid)
    await send(engine, pool, rec, sig(action="buy", price=21500))
    paper.on_price(SYM, D("21520"))
    paper.on_price(SYM, D("21512"))
    assert _stop(paper, bid).stop_price == D("21510")
    out = await send(engine, pool, rec, sig(action="exit", quantity=1, price=21512))
    assert await net_pos(engine, pool, sub) == 1, out.detail
    stop = _stop(paper, bid)
    assert stop.stop_price >= D("21510"), f"stop loosened to {stop.stop_price}"
