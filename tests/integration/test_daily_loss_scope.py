"""A trader's daily-loss limit is judged on its own instrument on its sub-accounts: a trader
sharing its sub-account with another (another recorder, another contract) had its realized
part summed over the whole sub-account (every contract, every trader) while the open part was
read for its own contract only: another trader's profit hid this one's loss, and another
contract's loss counted once closed but not while open. With the paper broker and Postgres."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import (
    account_of,
    follower,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    wait_for,
)
from tests.integration.test_engine import engine_factory as engine_factory


def mnq(action: Action, price: str) -> Signal:
    return Signal(action, ticker="MNQ1!", price=Decimal(price))


def mes(action: Action, price: str) -> Signal:
    return Signal(action, ticker="MES1!", price=Decimal(price))


async def _world(database: Database, engine_factory: Any) -> tuple[Any, ...]:
    pool = database.pool
    u = await make_user(pool, "dl")
    (sub,) = await make_paper_account(pool, u, "dl-paper")
    r_mnq = await make_recorder(pool, u, "mnq", "MNQ1!", size=3, add_size=1, same_direction="add")
    r_mes = await make_recorder(pool, u, "mes", "MES1!", size=10)
    await make_trader(pool, u, r_mnq, [(sub, 1)], max_daily_loss=Decimal(500))
    await make_trader(pool, u, r_mes, [(sub, 1)])
    engine = await engine_factory()
    return pool, engine, sub, r_mnq, r_mes


async def test_another_traders_profit_does_not_hide_this_traders_loss(
    database: Database, engine_factory: Any
) -> None:
    """The MES trader made +$1,000 today on the shared sub-account; the MNQ trader (max daily
    loss $500) is long 3 from 21500 and the market is at 21400: its own P&L is -$600. Its add
    was let through: +1000 - 600 = +400 was judged."""
    pool, engine, sub, r_mnq, r_mes = await _world(database, engine_factory)
    await send(engine, pool, r_mes, mes(Action.BUY, "6000"))
    await send(engine, pool, r_mes, Signal(Action.CLOSE, ticker="MES1!", price=Decimal("6020")))

    async def mirrored() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM trades"))

    await wait_for(mirrored, "the MES round trip mirrored")
    assert await pool.fetchval("SELECT pnl FROM trades") == Decimal(1000)
    out = await send(engine, pool, r_mnq, mnq(Action.BUY, "21500"))
    assert out.verdict == "accepted", out.reason
    out = await send(engine, pool, r_mnq, mnq(Action.BUY, "21400"))  # open -$600
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), (
        f"add let through at a -$600 open loss on a $500 limit: {out.verdict} {out.reason};"
        f" MNQ net now {await net_pos(engine, pool, sub) - 0}"
    )


async def test_another_contracts_open_loss_is_ignored_but_its_realized_loss_is_not(
    database: Database, engine_factory: Any
) -> None:
    """The same -$1,000 MES loss on the shared sub-account: while open, the MNQ trader's entry
    passes its $500 limit; once closed, the same entry is refused. One of the two verdicts is
    wrong whichever scope the limit has."""
    pool, engine, _sub, r_mnq, r_mes = await _world(database, engine_factory)
    await send(engine, pool, r_mes, mes(Action.BUY, "6000"))
    # the MES market falls 20 points: -$1,000 open (10 x 20 x $5)
    await send(engine, pool, r_mes, mes(Action.BUY, "5980"))  # ignored: same direction
    open_verdict = await send(engine, pool, r_mnq, mnq(Action.BUY, "21500"))
    await send(engine, pool, r_mnq, Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal("21500")))
    await send(engine, pool, r_mes, Signal(Action.CLOSE, ticker="MES1!", price=Decimal("5980")))

    async def mirrored() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM trades WHERE pnl < 0"))

    await wait_for(mirrored, "the MES round trip mirrored")
    closed_verdict = await send(engine, pool, r_mnq, mnq(Action.BUY, "21500"))
    assert (open_verdict.verdict, open_verdict.filter) == (
        closed_verdict.verdict,
        closed_verdict.filter,
    ), (
        f"with MES -$1000 open: {open_verdict.verdict} ({open_verdict.reason}); "
        f"with it closed: {closed_verdict.verdict} ({closed_verdict.reason})"
    )


async def _months(database: Database, engine_factory: Any, name: str) -> tuple[Any, ...]:
    """A trader with a $100 daily-loss limit on paper, and the front and next MNQ months."""
    pool = database.pool
    rec, sub, _ = await follower(pool, name, {"size": 1}, {"max_daily_loss": Decimal(100)})
    engine = await engine_factory()
    aid, bid = await account_of(pool, sub)
    link = engine.config.snapshot.recorders[rec].traders[0].links[0]
    paper = engine.brokers.paper(aid)
    months = [
        (await engine.brokers.resolve_contract(link, paper, t)).symbol for t in ("MNQ1!", "MNQ2!")
    ]
    return engine, rec, paper, bid, months


def _held(paper: Any, bid: int) -> dict[str, int]:
    return {p.symbol: p.net_pos for p in paper.positions(bid) if p.net_pos}


async def test_an_open_loss_in_the_month_held_counts_for_an_alert_naming_another(
    database: Database, engine_factory: Any
) -> None:
    """After the roll the chart names the new month: the open loss of the month still held
    was not counted (only the alert's month was read), and an entry opened beside it."""
    engine, rec, paper, bid, (front, following) = await _months(database, engine_factory, "m1")
    pool = database.pool
    assert (
        await send(engine, pool, rec, Signal(Action.BUY, ticker=front, price=Decimal("21500")))
    ).verdict == "accepted"
    out = await send(
        engine, pool, rec, Signal(Action.BUY, ticker=following, price=Decimal("21020"))
    )
    # the front long 1 from 21500, marked at 21020: -$960 against $100
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), (out, _held(paper, bid))
    assert _held(paper, bid) == {front: 1}


async def test_every_month_of_the_instrument_counts_toward_a_reversal(
    database: Database, engine_factory: Any
) -> None:
    """Both months held: a reversal of the front month's position at a falling market closes
    it and opens nothing, the next month's open loss (marked at the alert's price, a calendar
    spread away) counted with it."""
    engine, rec, paper, bid, (front, following) = await _months(database, engine_factory, "m2")
    pool = database.pool
    for ticker in (following, front):
        out = await send(
            engine, pool, rec, Signal(Action.BUY, ticker=ticker, price=Decimal("21500"))
        )
        assert out.verdict == "accepted", out
    # the front month reverses at 21470: -$60 realized on it, the next month -$60 open
    out = await send(engine, pool, rec, Signal(Action.SELL, ticker="MNQ1!", price=Decimal("21470")))
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), (out, _held(paper, bid))
    assert _held(paper, bid) == {following: 1}
