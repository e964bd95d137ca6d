"""After the roll, a paper position held in the old month gets no market of its own: the engine
does not note a continuous alert's price as the held month's market (``fanout._links``: its
chart is the new month's, a calendar spread away), and the paper broker's only market is the
alerts' prices. A close then filled at the last price the old month had (days before, a $0
trade for a 1,500-point loss), and after a restart every close and flatten of it was refused
("no price yet"), for good.

The paper broker fills at the signal price: a market order of the held month (a close, a
reversal, a flatten) fills at the price of the latest alert that acted on it, while its
resting exits (stops, limits) trigger only on that month's own prices
(``test_roll_month.test_a_continuous_alert_s_price_is_not_the_held_month_s_market``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import (
    account_of,
    follower,
    net_pos,
    paper_of,
    send,
    wait_for,
    working,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


def _sig(action: Action, ticker: str, price: str | None) -> Signal:
    return Signal(action, ticker=ticker, price=Decimal(price) if price else None)


async def _fills(engine: Any, pool: Any, sub: int) -> list[tuple[str, str, int, Decimal]]:
    aid, bid = await account_of(pool, sub)
    return [(f.symbol, f.side.value, f.qty, f.price) for f in paper_of(engine, aid).fills(bid)]


async def _mirrored(pool: Any) -> None:
    async def held() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM positions WHERE net_pos = 1"))

    await wait_for(held, "position mirrored")


async def test_a_close_after_the_roll_fills_at_the_signal_price(
    database: Database, engine_factory: Any
) -> None:
    """Long 1 MNQ of the next quarter (the month held across a roll) at 21500; the root falls
    1500 points and the strategy closes on MNQ1! at 20000: the close fills at 20000, not at the
    held month's last pre-roll price (a $0 trade the daily-loss filter never saw)."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rollclose", {"size": 1})
    engine = await engine_factory()
    assert (await send(engine, pool, rec, _sig(Action.BUY, "MNQ2!", "21500"))).orders >= 1
    held = (await _fills(engine, pool, sub))[0][0]

    out = await send(engine, pool, rec, _sig(Action.CLOSE, "MNQ1!", "20000"))
    assert await net_pos(engine, pool, sub) == 0, out
    assert (await _fills(engine, pool, sub))[-1] == (held, "Sell", 1, Decimal("20000"))


async def test_the_held_months_stop_is_not_triggered_by_the_new_months_prices(
    database: Database, engine_factory: Any
) -> None:
    """The reviewer's test asserted the opposite (the held month's stop fires on a continuous
    alert's price); by design it does not: another month's price is not this month's market
    (a calendar spread away, it filled a take-profit that had not traded). The stop works on;
    the close the strategy sends fills at its alert's price."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rollstop", {"size": 1, "sl": 40})
    engine = await engine_factory()
    assert (await send(engine, pool, rec, _sig(Action.BUY, "MNQ2!", "21500"))).orders >= 1
    stop = [(o.order_type.value, o.stop_price) for o in await working(engine, pool, sub)]
    assert [kind for kind, _ in stop] == ["Stop"]
    await send(engine, pool, rec, _sig(Action.BUY, "MNQ1!", "20000"))
    await send(engine, pool, rec, _sig(Action.BUY, "MNQ1!", "19990"))
    assert await net_pos(engine, pool, sub) == 1
    assert [(o.order_type.value, o.stop_price) for o in await working(engine, pool, sub)] == stop

    await send(engine, pool, rec, _sig(Action.CLOSE, "MNQ1!", "19980"))
    assert await net_pos(engine, pool, sub) == 0
    assert (await _fills(engine, pool, sub))[-1][1:] == ("Sell", 1, Decimal("19980"))
    assert await working(engine, pool, sub) == []


async def test_after_a_restart_a_position_held_across_the_roll_closes_at_the_alerts_price(
    database: Database, engine_factory: Any
) -> None:
    """After a restart the paper broker has no price for the held month, and no alert would
    ever give one: every close was refused with 'no price yet', for good."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rollrestart", {"size": 1})
    first = await engine_factory()
    await send(first, pool, rec, _sig(Action.BUY, "MNQ2!", "21500"))
    assert await net_pos(first, pool, sub) == 1
    await _mirrored(pool)
    await first.close()
    second = await engine_factory()
    assert await net_pos(second, pool, sub) == 1

    out = await send(second, pool, rec, _sig(Action.CLOSE, "MNQ1!", "21400"))
    assert await net_pos(second, pool, sub) == 0, out
    assert (await _fills(second, pool, sub))[-1][1:] == ("Sell", 1, Decimal("21400"))


async def test_after_a_restart_a_flatten_of_the_held_month_goes_once_an_alert_gives_a_price(
    database: Database, engine_factory: Any
) -> None:
    """``halt --flatten`` after a restart, before any alert: refused ('no price yet', as
    before, and retried); an alert of the recorder with a price (an entry the halt refuses)
    gives the held month's market orders their price, and the flatten's next pass closes."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rollflat", {"size": 1})
    first = await engine_factory()
    await send(first, pool, rec, _sig(Action.BUY, "MNQ2!", "21500"))
    await _mirrored(pool)
    await first.close()
    engine = await engine_factory()
    at = "2026-01-01T00:00:00+00:00"
    await pool.execute(
        "INSERT INTO system_flags (name, value) VALUES ('halted', $1)",
        {"halted": True, "flattens": {at: {"requested_at": at, "account": "rollflat-paper"}}},
    )
    await engine.config.refresh()

    async def refused() -> bool:
        q = "SELECT count(*) FROM order_intents WHERE kind = 'liquidate' AND reason LIKE $1"
        return bool(await pool.fetchval(q, "%no price yet%"))

    await wait_for(refused, "the flatten refused for want of a price")
    assert await net_pos(engine, pool, sub) == 1

    out = await send(engine, pool, rec, _sig(Action.SELL, "MNQ1!", "21300"))
    assert out.filter == "halted", out

    async def flat() -> bool:
        return await net_pos(engine, pool, sub) == 0

    await wait_for(flat, "the held month flattened at the alert's price")
    assert (await _fills(engine, pool, sub))[-1][1:] == ("Sell", 1, Decimal("21300"))


async def test_a_reversal_after_the_roll_fills_at_the_signal_price(
    database: Database, engine_factory: Any
) -> None:
    """Long 1 held across the roll at 21500; a sell on MNQ1! at 20000 reverses in the held
    month: the close and the new short both fill at 20000, not at the month's stale 21500."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rollrev", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, _sig(Action.BUY, "MNQ2!", "21500"))
    held = (await _fills(engine, pool, sub))[0][0]
    await send(engine, pool, rec, _sig(Action.SELL, "MNQ1!", "20000"))
    assert await net_pos(engine, pool, sub) == -1
    assert (await _fills(engine, pool, sub))[1:] == [
        (held, "Sell", 1, Decimal("20000")),
        (held, "Sell", 1, Decimal("20000")),
    ]


async def test_a_reversals_stop_is_not_filled_at_the_held_months_stale_price(
    database: Database, engine_factory: Any
) -> None:
    """The reversal's short fills at the alert's 20000 with its stop 40 points above; the held
    month's own last price (21500, from before the roll) is past that stop, and must not fill
    it the moment it starts working: the stop waits for the month's own next price."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rollrevstop", {"size": 1, "sl": 40})
    engine = await engine_factory()
    await send(engine, pool, rec, _sig(Action.BUY, "MNQ2!", "21500"))
    (_, stop_at), *_ = [(o.order_type, o.stop_price) for o in await working(engine, pool, sub)]
    distance = Decimal(21500) - stop_at
    out = await send(engine, pool, rec, _sig(Action.SELL, "MNQ1!", "20000"))
    fills = await _fills(engine, pool, sub)
    assert await net_pos(engine, pool, sub) == -1, (out.detail, fills)
    assert fills[-1][1:] == ("Sell", 1, Decimal("20000")), fills
    assert [(o.order_type.value, o.stop_price) for o in await working(engine, pool, sub)] == [
        ("Stop", Decimal("20000") + distance)
    ]
