"""The daily-loss filter marks a trader's open position, when its alert carries no price, at
the last price an alert of the trader's own user gave for the contract: never at another
user's. Any user can post any price (a stale bar, a typo, or on purpose); marked at the last
price any alert gave, user A's alert turned user B's open loss past its limit into a profit,
and B's entry passed (money rule 5)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_engine import (
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
)


def _buy(price: str | None) -> Signal:
    return Signal(Action.BUY, ticker="MNQ1!", price=Decimal(price) if price else None)


async def _user_b(pool: Any) -> tuple[int, int, int, int]:
    """User B: an ``opener`` recorder trading sub-account 1, and ``rec`` whose trader (max
    daily loss $100) trades sub-accounts 1 and 2: (opener, rec, sub1, sub2)."""
    b = await make_user(pool, "userb")
    opener = await make_recorder(pool, b, "opener", size=1)
    rec = await make_recorder(pool, b, "rec", size=1)
    sub1, sub2 = await make_paper_account(pool, b, "b-paper", subs=2)
    await make_trader(pool, b, opener, [(sub1, 1)])
    await make_trader(pool, b, rec, [(sub1, 1), (sub2, 1)], max_daily_loss=Decimal(100))
    return opener, rec, sub1, sub2


async def test_another_users_alert_price_does_not_mark_my_open_position(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    opener, rec, sub1, sub2 = await _user_b(pool)
    a = await make_user(pool, "usera")
    arec = await make_recorder(pool, a, "arec", size=1)
    (asub,) = await make_paper_account(pool, a, "a-paper")
    await make_trader(pool, a, arec, [(asub, 1)])
    engine = await engine_factory()

    await send(engine, pool, opener, _buy("21500"))  # B long 1 at 21500 on sub-account 1
    assert await net_pos(engine, pool, sub1) == 1
    out = await send(engine, pool, rec, _buy("21400"))  # open loss $200 > $100
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out
    assert await net_pos(engine, pool, sub2) == 0

    await send(engine, pool, arec, _buy("21600"))  # user A's alert, at A's price

    out = await send(engine, pool, rec, _buy(None))  # B's next alert carries no price
    assert await net_pos(engine, pool, sub2) == 0, (
        f"B's entry passed its daily-loss limit on user A's price: {out.verdict} {out.reason}"
    )
    # marked at B's own last price (21400): still $200 down
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out
    assert "unknown" not in (out.reason or ""), out.reason


async def test_with_no_price_of_its_own_user_the_open_pnl_is_unknown(
    database: Database, engine_factory: Any
) -> None:
    """B's position was opened by an alert of its own with no price mark kept for it (a
    restart), and only user A has given a price since: B's priceless entry fails closed as
    'open P&L unknown', not judged on A's price."""
    pool = database.pool
    opener, rec, sub1, sub2 = await _user_b(pool)
    a = await make_user(pool, "usera")
    arec = await make_recorder(pool, a, "arec", size=1)
    (asub,) = await make_paper_account(pool, a, "a-paper")
    await make_trader(pool, a, arec, [(asub, 1)])
    first = await engine_factory()
    await send(first, pool, opener, _buy("21500"))
    assert await net_pos(first, pool, sub1) == 1
    await first.close()
    engine = await engine_factory()

    await send(engine, pool, arec, _buy("21900"))  # only user A's price since the restart
    out = await send(engine, pool, rec, _buy(None))
    assert await net_pos(engine, pool, sub2) == 0, (out.verdict, out.reason)
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out
    assert "open P&L unknown" in (out.reason or ""), out.reason


async def test_control_without_the_other_users_alert_the_entry_is_refused(
    database: Database, engine_factory: Any
) -> None:
    """The same world without user A's alert: B's priceless alert is refused."""
    pool = database.pool
    opener, rec, _, sub2 = await _user_b(pool)
    engine = await engine_factory()
    await send(engine, pool, opener, _buy("21500"))
    await send(engine, pool, rec, _buy("21400"))
    out = await send(engine, pool, rec, _buy(None))
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out
    assert await net_pos(engine, pool, sub2) == 0
