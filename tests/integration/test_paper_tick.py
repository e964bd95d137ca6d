"""A paper account trades on the contract's tick whatever price the alert gives (DESIGN.md §5
rule 4). TradingView's ``{{close}}`` on a Heikin Ashi chart is (O+H+L+C)/4, 21500.0625 on MNQ
(tick 0.25): paper filled a market order there, priced its take-profit and stop from that fill
(21505.0625 / 21490.0625), and a round trip booked $20.25 where one MNQ tick is $0.50. Each
alert's price is now put on the nearest tick (a half tick up) before anything fills or triggers
at it; a restart puts back rows stored off the tick on the tick they trigger at."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.integration.test_engine import (
    account_of,
    buy,
    close,
    follower,
    paper_of,
    send,
    wait_for,
)
from tests.integration.test_engine import engine_factory as engine_factory  # the fixture

SYM = "MNQZ6"
TICK = Decimal("0.25")  # MNQ
TICK_VALUE = Decimal("0.50")  # $ per tick per MNQ contract


async def test_a_heikin_ashi_close_fills_on_the_tick_and_so_do_its_legs(
    database: Any, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "ha", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    engine = await engine_factory()
    aid, bid = await account_of(pool, sub)
    paper = paper_of(engine, aid)
    out = await send(engine, pool, rec, buy("21500.0625"))
    assert out.verdict == "accepted"
    (fill,) = paper.fills(bid)
    assert fill.price == Decimal("21500.00")  # the nearest tick
    legs = {(o.price, o.stop_price) for o in paper.working_orders(bid)}
    assert legs == {(Decimal("21505.00"), None), (None, Decimal("21490.00"))}


async def test_a_round_trip_books_whole_ticks(database: Any, engine_factory: Any) -> None:
    pool = database.pool
    rec, _sub, _ = await follower(pool, "ha2", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, buy("21500.0625"))  # 21500.00
    await send(engine, pool, rec, close("21510.1875"))  # 21510.25

    async def booked() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM trades"))

    await wait_for(booked, "the round trip mirrored")
    row = await pool.fetchrow("SELECT entry_price, exit_price, pnl FROM trades")
    assert (row["entry_price"], row["exit_price"]) == (Decimal("21500"), Decimal("21510.25"))
    assert row["pnl"] == Decimal("20.50")  # 41 ticks of $0.50
    assert row["pnl"] % TICK_VALUE == 0


async def test_a_restart_puts_rows_stored_off_the_tick_back_on_it(
    database: Any, engine_factory: Any
) -> None:
    """Legs mirrored before paper kept to the tick come back where they trigger: the sell
    take-profit up to the next tick, the sell stop down to the one below; the rows are
    written so, and the take-profit fills on the tick."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "har", {"size": 1, "tp": [{"target": "20"}], "sl": 40})
    first = await engine_factory()
    aid, bid = await account_of(pool, sub)
    await send(first, pool, rec, buy("21500"))

    async def mirrored() -> bool:
        n = await pool.fetchval(
            "SELECT count(*) FROM orders WHERE parent_id IS NOT NULL AND status = 'Working'"
        )
        held = await pool.fetchval("SELECT count(*) FROM positions WHERE net_pos = 1")
        return bool(n == 2 and held == 1)

    await wait_for(mirrored, "position and exits mirrored")
    await first.close()
    # what a run before the fix stored after a fill at 21500.0625
    await pool.execute(
        "UPDATE orders SET price = price + 0.0625, stop_price = stop_price + 0.0625"
        " WHERE parent_id IS NOT NULL"
    )
    second = await engine_factory()
    paper = paper_of(second, aid)
    legs = {(o.price, o.stop_price) for o in paper.working_orders(bid)}
    assert legs == {(Decimal("21505.25"), None), (None, Decimal("21490.00"))}
    rows = {
        (r["price"], r["stop_price"])
        for r in await pool.fetch(
            "SELECT price, stop_price FROM orders WHERE parent_id IS NOT NULL"
        )
    }
    assert rows == legs
    paper.on_price(SYM, Decimal("21505.2"))  # 21505.25: the take-profit
    assert [f.price for f in paper.fills(bid)] == [Decimal("21505.25")]
    assert paper.working_orders(bid) == []
