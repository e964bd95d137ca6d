"""The engine end to end in-process: real Postgres, the paper broker, the real filters/planner.

Also holds the small row builders the dispatch/reconcile tests share (``make_*``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from jtrades.broker.base import OrderType, Side
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine, Outcome
from jtrades.engine.signal import Action, MarketPosition, Signal
from jtrades.store.signals import Delivery, SignalIds

# --- row builders ------------------------------------------------------------------------------


async def make_user(pool: asyncpg.Pool, name: str, *, status: str = "approved") -> int:
    return int(
        await pool.fetchval(
            "INSERT INTO users (name, email, status) VALUES ($1, $2, $3) RETURNING id",
            name,
            f"{name}@example.com",
            status,
        )
    )


async def make_paper_account(
    pool: asyncpg.Pool, user_id: int, label: str, subs: int = 1
) -> list[int]:
    """A paper login with ``subs`` sub-accounts (broker ids 1..n); returns sub_accounts ids."""
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, $2, 'paper') RETURNING id",
        user_id,
        label,
    )
    out = []
    for i in range(1, subs + 1):
        out.append(
            int(
                await pool.fetchval(
                    "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                    " VALUES ($1, $2, $3) RETURNING id",
                    aid,
                    i,
                    f"{label}-{i}",
                )
            )
        )
    return out


def _cols(risk: dict[str, Any]) -> tuple[str, str, list[Any]]:
    names = list(risk)
    return (
        ", ".join(names),
        ", ".join(f"${i}" for i in range(1, len(names) + 1)),
        list(risk.values()),
    )


async def make_recorder(
    pool: asyncpg.Pool, user_id: int, name: str, symbol: str = "MNQ1!", **risk: Any
) -> int:
    """``risk`` are recorder columns, e.g. ``tp=[{"target": "20", "qty": 1}], sl=Decimal(40)``."""
    values = {"user_id": user_id, "name": name, "symbol": symbol, "token_hash": os.urandom(32)}
    values.update(risk)
    cols, params, args = _cols(values)
    return int(
        await pool.fetchval(f"INSERT INTO recorders ({cols}) VALUES ({params}) RETURNING id", *args)
    )


async def make_trader(
    pool: asyncpg.Pool,
    user_id: int,
    recorder_id: int,
    links: list[tuple[int, Any]],
    *,
    enabled: bool = True,
    **overrides: Any,
) -> int:
    values = {"user_id": user_id, "recorder_id": recorder_id, "enabled": enabled}
    values.update(overrides)
    cols, params, args = _cols(values)
    tid = int(
        await pool.fetchval(f"INSERT INTO traders ({cols}) VALUES ({params}) RETURNING id", *args)
    )
    for sub, mult in links:
        await pool.execute(
            "INSERT INTO trader_accounts (trader_id, sub_account_id, multiplier) VALUES ($1,$2,$3)",
            tid,
            sub,
            Decimal(str(mult)),
        )
    return tid


async def follower(
    pool: asyncpg.Pool,
    name: str,
    recorder: dict[str, Any] | None = None,
    trader: dict[str, Any] | None = None,
) -> tuple[int, int, int]:
    """A user following their own recorder on one paper sub-account, with the recorder's and
    the trader's settings given: (recorder id, sub-account id, trader id)."""
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", **(recorder or {}))
    (sub,) = await make_paper_account(pool, u, f"{name}-paper")
    return rec, sub, await make_trader(pool, u, rec, [(sub, 1)], **(trader or {}))


async def store_signal(
    pool: asyncpg.Pool, recorder_id: int, received_at: datetime | None = None
) -> tuple[int, datetime]:
    """The HTTP layer's part: a ``signals`` row to hang intents on."""
    at = received_at or datetime.now(UTC)
    sid = await pool.fetchval(
        "INSERT INTO signals (recorder_id, received_at, raw_body, verdict)"
        " VALUES ($1, $2, $3, 'received') RETURNING id",
        recorder_id,
        at,
        b"{}",
    )
    return int(sid), at


async def record_outcome(pool: asyncpg.Pool, signal_id: int, out: Outcome) -> None:
    """Store the verdict the way the HTTP layer does, so counters can be rebuilt from it."""
    await pool.execute(
        "UPDATE signals SET verdict=$2, filter=$3, reason=$4, orders=$5, detail=$6 WHERE id=$1",
        signal_id,
        out.verdict,
        out.filter,
        out.reason,
        out.orders,
        out.detail,
    )


async def send(engine: Engine, pool: asyncpg.Pool, recorder_id: int, signal: Signal) -> Outcome:
    sid, at = await store_signal(pool, recorder_id)
    out = await engine.on_signal(
        signal_id=sid, recorder_id=recorder_id, signal=signal, received_at=at
    )
    await record_outcome(pool, sid, out)
    return out


def buy(price: str = "21500", **kw: Any) -> Signal:
    return Signal(Action.BUY, ticker="MNQ1!", price=Decimal(price), **kw)


def sell(price: str = "21500", **kw: Any) -> Signal:
    return Signal(Action.SELL, ticker="MNQ1!", price=Decimal(price), **kw)


def close(price: str = "21500") -> Signal:
    return Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal(price))


def paper_of(engine: Engine, pool_account_id: int) -> PaperBroker:
    return engine.brokers.paper(pool_account_id)


async def account_of(pool: asyncpg.Pool, sub_id: int) -> tuple[int, int]:
    """(accounts.id, broker_account_id) of a sub-account."""
    r = await pool.fetchrow(
        "SELECT account_id, broker_account_id FROM sub_accounts WHERE id=$1", sub_id
    )
    return int(r["account_id"]), int(r["broker_account_id"])


async def net_pos(engine: Engine, pool: asyncpg.Pool, sub_id: int) -> int:
    aid, bid = await account_of(pool, sub_id)
    return sum(p.net_pos for p in engine.brokers.paper(aid).positions(bid))


async def working(engine: Engine, pool: asyncpg.Pool, sub_id: int) -> list[Any]:
    aid, bid = await account_of(pool, sub_id)
    return engine.brokers.paper(aid).working_orders(bid)


async def wait_for(cond: Any, what: str, limit_s: float = 30.0) -> None:
    """Poll an async condition (event mirroring runs in the background); fail after a bound.

    The bound is wall-clock time and only stops a hang: on a loaded CI machine (two shared
    cores) the background task may lag by seconds, and the condition is what is waited for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while not await cond():
        if loop.time() >= deadline:
            raise AssertionError(f"never happened within {limit_s:g} s: {what}")
        await asyncio.sleep(0.02)


@pytest.fixture
async def engine_factory(database: Database, settings: Settings) -> AsyncIterator[Any]:
    made: list[Engine] = []

    async def make(**trading: Any) -> Engine:
        s = settings
        if trading:
            s = settings.model_copy(update={"trading": settings.trading.model_copy(update=trading)})
        e = Engine(database, s)
        await e.start()
        made.append(e)
        return e

    yield make
    for e in made:
        await e.close()


# --- tests -------------------------------------------------------------------------------------


async def test_open_with_tp_ladder_times_three_on_two_users(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    alice, bob = await make_user(pool, "alice"), await make_user(pool, "bob")
    rec = await make_recorder(
        pool,
        alice,
        "mnq",
        is_private=False,
        size=3,
        tp=[{"target": "10", "qty": 1}, {"target": "20", "qty": 1}, {"target": "30"}],
        sl=Decimal(40),
    )
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    (b_sub,) = await make_paper_account(pool, bob, "bob-paper")
    await make_trader(pool, alice, rec, [(a_sub, 3)])
    await make_trader(pool, bob, rec, [(b_sub, 3)])
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy("21500"))

    assert out.verdict == "accepted", out
    assert out.orders == 2  # one strategy per sub-account
    for sub in (a_sub, b_sub):
        assert await net_pos(engine, pool, sub) == 9
        orders = await working(engine, pool, sub)
        tps = sorted((o for o in orders if o.order_type is OrderType.LIMIT), key=lambda o: o.price)
        stops = [o for o in orders if o.order_type is OrderType.STOP]
        assert [o.qty for o in tps] == [3, 3, 3]
        assert [o.price for o in tps] == [Decimal("21502.5"), Decimal("21505"), Decimal("21507.5")]
        assert sum(o.qty for o in stops) == 9
        assert {o.stop_price for o in stops} == {Decimal("21490")}
        assert all(o.side is Side.SELL for o in orders)
    rows = await pool.fetch("SELECT cl_ord_id, state FROM order_intents ORDER BY cl_ord_id")
    # sent, or already filled by the time the broker's events were mirrored
    assert {r["state"] for r in rows} <= {"sent", "working", "filled"}
    assert len(rows) == 2
    sid = await pool.fetchval("SELECT id FROM signals")
    assert {r["cl_ord_id"] for r in rows} == {f"jt-{sid}-{s}-1" for s in (a_sub, b_sub)}


async def test_recorder_filter_rejects_and_sends_nothing(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "carol")
    rec = await make_recorder(pool, u, "rec", recording_enabled=False)
    (sub,) = await make_paper_account(pool, u, "carol-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy())

    assert (out.verdict, out.filter) == ("rejected", "recording_disabled")
    assert out.reason
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 0
    assert await net_pos(engine, pool, sub) == 0


async def test_an_unknown_ticker_is_not_traded_and_each_sub_account_says_why(
    database: Database, engine_factory: Any
) -> None:
    """A contract nobody knows stops every sub-account it was meant for, each saying why, and
    nothing is sent."""
    pool = database.pool
    u = await make_user(pool, "zed")
    rec = await make_recorder(pool, u, "rec", symbol="ZZQX1!")
    subs = await make_paper_account(pool, u, "zed-paper", subs=2)
    tid = await make_trader(pool, u, rec, [(s, 1) for s in subs])
    engine = await engine_factory()

    out = await send(engine, pool, rec, Signal(Action.BUY, ticker="ZZQX1!"))

    assert out.orders == 0
    reasons = out.detail["traders"][str(tid)]
    assert set(reasons) == {str(s) for s in subs}
    assert all(r.startswith("not traded: ") and "ZZQX" in r for r in reasons.values())
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 0


async def test_direction_and_trader_filters_name_themselves(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "dave")
    rec = await make_recorder(pool, u, "rec", direction="long")
    (sub,) = await make_paper_account(pool, u, "dave-paper")
    await make_trader(pool, u, rec, [(sub, 1)], max_signals=1)
    engine = await engine_factory()

    out = await send(engine, pool, rec, sell(prev_market_position=MarketPosition.FLAT))
    assert (out.verdict, out.filter) == ("rejected", "direction")

    assert (await send(engine, pool, rec, buy())).verdict == "accepted"
    out = await send(engine, pool, rec, buy())
    assert (out.verdict, out.filter) == ("rejected", "max_signals")
    assert "trader" in (out.reason or "")
    # a close is never blocked by entry filters
    out = await send(engine, pool, rec, close())
    assert out.verdict == "accepted"
    assert out.orders == 1
    assert await net_pos(engine, pool, sub) == 0


async def test_a_follower_in_another_zone_trades_the_recorders_window_not_its_own_clock(
    database: Database, engine_factory: Any
) -> None:
    """The recorder's window is its owner's wall clock (New York), applied once. A follower in
    Los Angeles who inherits it trades whenever the recorder does; one who sets the same window
    as an override of their own gets it on their own (Los Angeles) wall clock."""
    pool = database.pool
    alice, bob = await make_user(pool, "alice"), await make_user(pool, "bob")
    await pool.execute("UPDATE users SET timezone = 'America/New_York' WHERE id = $1", alice)
    await pool.execute("UPDATE users SET timezone = 'America/Los_Angeles' WHERE id = $1", bob)
    # a window around now on a New York clock: Los Angeles is 3 h behind, well outside it
    ny = datetime.now(UTC).astimezone(ZoneInfo("America/New_York"))
    window = f"{ny - timedelta(minutes=30):%H:%M}-{ny + timedelta(minutes=30):%H:%M}"
    rec = await make_recorder(pool, alice, "rth", is_private=False, windows=[window])
    inherit_sub, own_sub = await make_paper_account(pool, bob, "bob-paper", subs=2)
    inherits = await make_trader(pool, bob, rec, [(inherit_sub, 1)])
    owns = await make_trader(pool, bob, rec, [(own_sub, 1)], windows=[window])
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy())

    assert out.verdict == "accepted", out
    assert str(inherits) not in out.detail["traders"], out.detail
    assert await net_pos(engine, pool, inherit_sub) == 1
    own = out.detail["traders"][str(owns)]
    assert own["filter"] == "window"
    assert "America/Los_Angeles" in own["reason"]
    assert await net_pos(engine, pool, own_sub) == 0


async def test_close_and_reversal(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    u = await make_user(pool, "erin")
    rec = await make_recorder(pool, u, "rec", size=2, tp=[{"target": "8"}], sl=Decimal(8))
    (sub,) = await make_paper_account(pool, u, "erin-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()

    await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, sub) == 2
    out = await send(engine, pool, rec, sell())
    assert out.verdict == "accepted"
    assert await net_pos(engine, pool, sub) == -2
    orders = await working(engine, pool, sub)
    assert orders
    assert all(o.side is Side.BUY for o in orders)
    out = await send(engine, pool, rec, close())
    assert await net_pos(engine, pool, sub) == 0
    assert await working(engine, pool, sub) == []


async def test_a_reversal_refused_by_the_recorders_filter_still_closes(
    database: Database, engine_factory: Any
) -> None:
    """The strategy reversed out of its long; a filter refused the new short. Keeping the long
    would leave the follower on a side the strategy left. The signal stays rejected (by the
    filter, and not counted as an entry), the long is closed, and nothing new opens."""
    pool = database.pool
    u = await make_user(pool, "rex")
    rec = await make_recorder(pool, u, "rec", size=1, sl=Decimal(40), max_signals=1)
    (sub,) = await make_paper_account(pool, u, "rex-paper")
    await make_trader(pool, u, rec, [(sub, 2)])
    engine = await engine_factory()
    assert (await send(engine, pool, rec, buy())).verdict == "accepted"
    assert await net_pos(engine, pool, sub) == 2

    out = await send(engine, pool, rec, sell())

    assert (out.verdict, out.filter, out.orders) == ("rejected", "max_signals", 1), out
    assert await net_pos(engine, pool, sub) == 0
    assert await working(engine, pool, sub) == []  # the long's stop went with it
    assert out.detail["entry"] is False
    (account,) = out.detail["accounts"].values()
    assert account["action"] == "close"
    assert "max_signals" in account["reason"]
    # flat now: a refused entry has nothing to close, and it still is not counted
    for again in (sell(), buy()):
        out = await send(engine, pool, rec, again)
        assert (out.verdict, out.filter, out.orders) == ("rejected", "max_signals", 0)
    assert await net_pos(engine, pool, sub) == 0


async def test_a_reversal_refused_by_a_traders_own_filter_closes_only_its_accounts(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "sam")
    rec = await make_recorder(pool, u, "rec", size=1)
    follows, cools = await make_paper_account(pool, u, "sam-paper", subs=2)
    await make_trader(pool, u, rec, [(follows, 1)])
    cooling = await make_trader(pool, u, rec, [(cools, 1)], cooldown_s=3600)
    engine = await engine_factory()
    await send(engine, pool, rec, buy())

    out = await send(engine, pool, rec, sell())

    assert out.verdict == "accepted", out
    assert out.orders == 3  # the reversal (close, then open) and the other one's close
    assert await net_pos(engine, pool, follows) == -1
    assert await net_pos(engine, pool, cools) == 0
    assert out.detail["traders"][str(cooling)]["filter"] == "cooldown"
    assert cooling not in out.detail["trader_entries"]


@pytest.mark.parametrize("level", ["recorder", "trader"])
async def test_a_sell_a_long_only_follower_can_only_close_is_not_an_entry(
    database: Database, engine_factory: Any, level: str
) -> None:
    """A long/short strategy followed long-only: the sell reversing it closes the long and
    opens nothing. Counted as an entry, it used up --max-signals 2 after one long (the next
    buy refused), restarted the cooldown and took every-Nth turns."""
    pool = database.pool
    limits: dict[str, Any] = {"direction": "long", "max_signals": 2}
    on_recorder = limits if level == "recorder" else {}
    on_trader = limits if level == "trader" else {}
    rec, sub, trader = await follower(pool, f"lo-{level}", {"size": 1, **on_recorder}, on_trader)
    engine = await engine_factory()
    long_ = {"prev_market_position": MarketPosition.SHORT, "market_position": MarketPosition.LONG}
    short = {"prev_market_position": MarketPosition.LONG, "market_position": MarketPosition.SHORT}

    first = await send(engine, pool, rec, buy(**long_))
    reversal = await send(engine, pool, rec, sell(**short))
    assert await net_pos(engine, pool, sub) == 0  # closed; nothing opened
    second = await send(engine, pool, rec, buy(**long_))

    assert (first.verdict, reversal.verdict, second.verdict) == ("accepted",) * 3, second
    assert await net_pos(engine, pool, sub) == 1
    counted = "entry" if level == "recorder" else "trader_entries"
    flags = [o.detail[counted] for o in (first, reversal, second)]
    assert flags == ([True, False, True] if level == "recorder" else [[trader], [], [trader]])


async def test_a_halted_sub_account_closes_on_a_reversal_and_opens_nothing(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "tia", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, buy())
    await pool.execute("UPDATE sub_accounts SET halted = true WHERE id = $1", sub)
    await engine.config.refresh()

    out = await send(engine, pool, rec, sell())
    assert out.orders == 1, out
    assert await net_pos(engine, pool, sub) == 0
    out = await send(engine, pool, rec, sell())
    assert out.orders == 0, out
    assert await net_pos(engine, pool, sub) == 0


@pytest.mark.parametrize("level", ["recorder", "trader"])
async def test_the_cooldown_is_measured_between_arrivals(
    database: Database, engine_factory: Any, level: str
) -> None:
    """Two alerts 0.5 s apart under a 1 s cooldown, the second handled a second later (it
    waited on the recorder's lock behind a slow broker): measured from the first one's arrival
    to the second one's handling, it passed."""
    pool = database.pool
    cooldown = {"cooldown_s": 1}
    rec, sub, _ = await follower(
        pool, f"cd-{level}", *((cooldown, None) if level == "recorder" else (None, cooldown))
    )
    engine = await engine_factory()
    t0 = datetime.now(UTC)
    sid, _ = await store_signal(pool, rec, t0)
    first = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy(), received_at=t0)
    await asyncio.sleep(1.2)
    t1 = t0 + timedelta(seconds=0.5)
    sid, _ = await store_signal(pool, rec, t1)
    second = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy(), received_at=t1)
    assert first.verdict == "accepted"
    assert (second.verdict, second.filter) == ("rejected", "cooldown"), second
    assert await net_pos(engine, pool, sub) == 1


async def test_a_continuous_symbol_acts_on_the_month_the_position_is_held_in(
    database: Database, engine_factory: Any
) -> None:
    """A long opened in the next quarter (``MNQ2!``: as after a roll, or when the broker's
    answer and the calendar fallback name different months in roll week), then a ``close`` for
    ``MNQ1!``: planned on the front month, it found nothing held there and left the long open.
    The position is in the root's other month, and only there: the close takes it."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "rolls", {"size": 1})
    engine = await engine_factory()
    assert (
        await send(engine, pool, rec, Signal(Action.BUY, ticker="MNQ2!", price=Decimal("21500")))
    ).verdict == "accepted"
    aid, bid = await account_of(pool, sub)
    (held,) = engine.brokers.paper(aid).positions(bid)

    out = await send(
        engine, pool, rec, Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal("21510"))
    )

    assert out.orders == 1, out
    assert [p for p in engine.brokers.paper(aid).positions(bid) if p.net_pos] == [], held
    (account,) = out.detail["accounts"].values()
    assert account["action"] == "close", account


async def test_a_continuous_symbol_with_both_months_held_acts_on_the_front_only(
    database: Database, engine_factory: Any
) -> None:
    """Long the front and the next quarter (a calendar spread, each leg bought by its month):
    ``MNQ1!`` is the front month, as before; the other leg is not the signal's to touch."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "spread", {"size": 1})
    engine = await engine_factory()
    aid, bid = await account_of(pool, sub)
    link = engine.config.snapshot.recorders[rec].traders[0].links[0]
    paper = engine.brokers.paper(aid)
    front, following = [
        (await engine.brokers.resolve_contract(link, paper, t)).symbol for t in ("MNQ1!", "MNQ2!")
    ]
    for month in (following, front):
        await send(engine, pool, rec, Signal(Action.BUY, ticker=month, price=Decimal("21500")))
    assert len([p for p in paper.positions(bid) if p.net_pos]) == 2

    await send(engine, pool, rec, Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal("21510")))

    (left,) = [p for p in paper.positions(bid) if p.net_pos]
    assert (left.symbol, left.net_pos) == (following, 1)


async def test_expired_signal_is_not_traded(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    u = await make_user(pool, "fay")
    rec = await make_recorder(pool, u, "rec")
    (sub,) = await make_paper_account(pool, u, "fay-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory(signal_ttl_s=5)
    sid, at = await store_signal(pool, rec, datetime.now(UTC) - timedelta(seconds=30))

    out = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy(), received_at=at)

    assert out.verdict == "expired"
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 0


async def test_fifty_copies_of_one_signal_make_one_set_of_orders(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "gus")
    rec = await make_recorder(
        pool, u, "rec", size=1, tp=[{"target": "20"}], sl=Decimal(20), max_signals=2
    )
    subs = await make_paper_account(pool, u, "gus-paper", subs=2)
    await make_trader(pool, u, rec, [(s, 2) for s in subs])
    engine = await engine_factory()
    sid, at = await store_signal(pool, rec)

    outs = await asyncio.gather(
        *(
            engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy(), received_at=at)
            for _ in range(50)
        )
    )

    assert outs[0].orders == 2  # one strategy per sub-account …
    for s in subs:
        assert await net_pos(engine, pool, s) == 2
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 2
    assert all(o == outs[0] for o in outs)  # … and every copy is told that one outcome
    # counted once: a second entry is still within --max-signals 2
    out = await send(engine, pool, rec, buy())
    assert (out.verdict, out.filter) == ("accepted", None)


def _delivery(signal_id: int, recorder_id: int, signal: Signal, key: str) -> Delivery:
    """A webhook delivery not stored yet: the engine claims it with its intents."""
    return Delivery(
        signal_id=signal_id,
        recorder_id=recorder_id,
        idem_key=key,
        window=timedelta(hours=24),
        received_at=datetime.now(UTC),
        remote_addr=None,
        content_type="application/json",
        raw_body=b"{}",
        signal=signal,
    )


async def test_fifty_deliveries_of_one_alert_trade_and_count_once(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "dee")
    rec = await make_recorder(pool, u, "rec", size=1, max_signals=2, same_direction="add")
    subs = await make_paper_account(pool, u, "dee-paper", subs=2)
    await make_trader(pool, u, rec, [(s, 2) for s in subs], max_signals=2)
    engine = await engine_factory()
    ids = SignalIds(pool)

    async def deliver(key: str) -> Any:
        d = _delivery(await ids.take(), rec, buy(), key)
        return await engine.on_signal(
            signal_id=d.signal_id,
            recorder_id=rec,
            signal=d.signal,
            received_at=d.received_at,
            delivery=d,
        )

    outs = await asyncio.gather(*(deliver("same") for _ in range(50)))

    accepted = [o for o in outs if o.verdict == "accepted"]
    assert len(accepted) == 1
    assert accepted[0].orders == 2
    first_id = await pool.fetchval("SELECT id FROM signals WHERE verdict = 'received'")
    assert {o.duplicate_of for o in outs if o is not accepted[0]} == {first_id}
    assert await pool.fetchval("SELECT count(*) FROM signals") == 50
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 2
    for s in subs:
        assert await net_pos(engine, pool, s) == 2
    # The 49 duplicates ran the filters too, and were taken back: with --max-signals 2 on the
    # recorder and on the trader, one more alert is accepted and the next one is not.
    second = await deliver("second")
    assert (second.verdict, second.orders) == ("accepted", 2)
    third = await deliver("third")
    assert (third.verdict, third.filter) == ("rejected", "max_signals")


async def test_racing_alerts_on_one_sub_account_never_interleave(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "hal")
    rec = await make_recorder(pool, u, "rec", size=1, sl=Decimal(20))
    (sub,) = await make_paper_account(pool, u, "hal-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    for _ in range(5):
        a, b = await store_signal(pool, rec), await store_signal(pool, rec)
        await asyncio.gather(
            engine.on_signal(signal_id=a[0], recorder_id=rec, signal=buy(), received_at=a[1]),
            engine.on_signal(signal_id=b[0], recorder_id=rec, signal=sell(), received_at=b[1]),
        )
        # serial outcomes only: buy then sell = short 1, sell then buy = long 1
        assert abs(await net_pos(engine, pool, sub)) == 1
        stops = [o for o in await working(engine, pool, sub) if o.order_type is OrderType.STOP]
        assert sum(o.qty for o in stops) == 1


async def test_daily_loss_blocks_entries_after_a_losing_trade(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "ida")
    rec = await make_recorder(pool, u, "rec", size=1)
    (sub,) = await make_paper_account(pool, u, "ida-paper")
    await make_trader(pool, u, rec, [(sub, 5)], max_daily_loss=Decimal(100))
    engine = await engine_factory()

    await send(engine, pool, rec, buy("21500"))
    await send(engine, pool, rec, close("21480"))  # 5 × 20 points × $2 = -$200

    async def mirrored() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM trades"))

    await wait_for(mirrored, "the losing trade mirrored into trades")
    assert await pool.fetchval("SELECT pnl FROM trades") == Decimal(-200)
    out = await send(engine, pool, rec, buy("21480"))
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss")
    assert await net_pos(engine, pool, sub) == 0


async def test_daily_loss_blocks_at_the_limit_after_an_averaged_position(
    database: Database, engine_factory: Any
) -> None:
    """A position added to in another alert (another mirror batch) closes at exactly the max
    daily loss: the trade reads −26, not −25.99999999999999999999998 (an average cost rounded to
    28 digits), and the filter says no."""
    pool = database.pool
    u = await make_user(pool, "dca")
    rec = await make_recorder(pool, u, "rec", size=2, add_size=1, same_direction="add")
    (sub,) = await make_paper_account(pool, u, "dca-paper")
    await make_trader(pool, u, rec, [(sub, 1)], max_daily_loss=Decimal(26))
    engine = await engine_factory()

    await send(engine, pool, rec, buy("21500"))  # long 2 @ 21500
    await send(engine, pool, rec, buy("21501"))  # add 1 @ 21501
    assert await net_pos(engine, pool, sub) == 3
    await send(engine, pool, rec, close("21496"))  # (−4 × 2 − 5) points × $2 = −$26

    async def mirrored() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM trades"))

    await wait_for(mirrored, "the round trip mirrored into trades")
    row = await pool.fetchrow("SELECT qty, entry_price, pnl FROM trades")
    assert tuple(row) == (3, Decimal("21500.3333"), Decimal(-26))
    out = await send(engine, pool, rec, buy("21496"))
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss")


async def test_quantities_after_multipliers(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    u = await make_user(pool, "jo")
    rec = await make_recorder(pool, u, "rec", size=3, max_contracts=5)
    subs = await make_paper_account(pool, u, "jo-paper", subs=3)
    await make_trader(pool, u, rec, list(zip(subs, ["0.5", "1.5", "10"], strict=True)))
    engine = await engine_factory()

    await send(engine, pool, rec, buy())

    assert [await net_pos(engine, pool, s) for s in subs] == [1, 4, 5]


async def test_counters_survive_a_restart(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    u = await make_user(pool, "kim")
    rec = await make_recorder(pool, u, "rec", max_signals=1)
    (sub,) = await make_paper_account(pool, u, "kim-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    first = await engine_factory()
    assert (await send(first, pool, rec, buy())).verdict == "accepted"
    await first.close()

    second = await engine_factory()
    out = await send(second, pool, rec, buy())
    assert (out.verdict, out.filter) == ("rejected", "max_signals")


async def test_a_paper_login_records_its_trades_after_a_restart(
    database: Database, engine_factory: Any
) -> None:
    """The paper broker numbered its orders and fills from 1 again on every start, and the
    mirror took the new run's fills for ones it had stored: no round trip written, the day's
    realized P&L (what --max-daily-loss reads) short of the second loss."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "pp", {"size": 1})

    async def trades(n: int) -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM trades") == n)

    first = await engine_factory()
    await send(first, pool, rec, buy("21500"))
    await send(first, pool, rec, close("21480"))  # -20 points on 1 MNQ: -$40
    await wait_for(lambda: trades(1), "the first round trip mirrored")
    await first.close()

    second = await engine_factory()
    await send(second, pool, rec, buy("21500"))
    await send(second, pool, rec, close("21470"))  # -$60
    await wait_for(lambda: trades(2), "the second round trip mirrored")
    assert await pool.fetchval("SELECT count(*) FROM fills") == 4
    assert await pool.fetchval("SELECT count(DISTINCT broker_order_id) FROM orders") == 4
    assert second.reconciler.pnl.realized([sub], datetime.now(UTC)) == Decimal(-100)


async def test_trader_counters_survive_a_restart(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    u = await make_user(pool, "kit")
    rec = await make_recorder(pool, u, "rec", same_direction="add")
    (sub,) = await make_paper_account(pool, u, "kit-paper")
    await make_trader(pool, u, rec, [(sub, 1)], max_signals=1)
    first = await engine_factory()
    assert (await send(first, pool, rec, buy())).orders == 1
    await first.close()

    second = await engine_factory()
    out = await send(second, pool, rec, buy())
    assert (out.verdict, out.filter) == ("rejected", "max_signals")
    assert (out.reason or "").startswith("trader")


async def test_a_traders_every_nth_survives_a_restart(
    database: Database, engine_factory: Any
) -> None:
    """Every 2nd: the first signal refused, the second taken, a restart, the third refused. The
    restart rebuilt the trader's count from its every-Nth refusals only, not the entries its
    every-Nth let through as well, and took the third."""
    pool = database.pool
    rec, _sub, _ = await follower(pool, "nth", {"same_direction": "add"}, {"every_nth": 2})
    first = await engine_factory()
    assert (await send(first, pool, rec, buy())).filter == "every_nth"
    assert (await send(first, pool, rec, buy())).verdict == "accepted"
    await first.close()

    second = await engine_factory()
    out = await send(second, pool, rec, buy())
    assert (out.verdict, out.filter) == ("rejected", "every_nth"), out
    assert (await send(second, pool, rec, buy())).verdict == "accepted"


async def test_counters_survive_a_restart_between_the_orders_and_the_outcome(
    database: Database, engine_factory: Any
) -> None:
    """The claim stored the signal without what its filters counted, and only the outcome
    (written after the orders) carried it: a daemon dying in between forgot the signal, and
    after the restart a second entry passed max-signals 1."""
    pool = database.pool
    u = await make_user(pool, "kip")
    rec = await make_recorder(pool, u, "rec", max_signals=1, same_direction="add")
    (sub,) = await make_paper_account(pool, u, "kip-paper")
    await make_trader(pool, u, rec, [(sub, 1)], max_signals=1)
    first = await engine_factory()
    sid = await SignalIds(pool, block=1).take()
    body = b'{"action":"buy"}'
    d = Delivery(sid, rec, "crash", timedelta(hours=24), datetime.now(UTC), None, None, body, buy())
    out = await first.on_signal(
        signal_id=sid, recorder_id=rec, signal=buy(), received_at=d.received_at, delivery=d
    )
    assert out.orders == 1  # sent; the outcome is never written: the daemon dies here
    await first.close()

    second = await engine_factory()
    again = await send(second, pool, rec, buy())
    assert (again.verdict, again.filter) == ("rejected", "max_signals")


async def test_an_entry_every_trader_refused_still_counts_for_the_recorder_after_a_restart(
    database: Database, engine_factory: Any
) -> None:
    """In memory the recorder counts an entry its own filters passed, whatever its traders did;
    the restart counted only accepted ones, so the same alerts traded differently after it."""
    pool = database.pool
    u = await make_user(pool, "kai")
    rec = await make_recorder(pool, u, "rec", max_signals=1)
    (sub,) = await make_paper_account(pool, u, "kai-paper")
    await make_trader(pool, u, rec, [(sub, 1)], direction="short")
    first = await engine_factory()
    refused = await send(first, pool, rec, buy(prev_market_position=MarketPosition.FLAT))
    assert (refused.verdict, refused.filter) == ("rejected", "direction")
    await first.close()

    second = await engine_factory()
    out = await send(second, pool, rec, sell(prev_market_position=MarketPosition.FLAT))
    assert (out.verdict, out.filter) == ("rejected", "max_signals")


async def test_halt_blocks_entries_and_flatten_closes_one_login(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "lee")
    rec = await make_recorder(pool, u, "rec", size=2, sl=Decimal(40))
    (a,) = await make_paper_account(pool, u, "lee-a")
    (b,) = await make_paper_account(pool, u, "lee-b")
    await make_trader(pool, u, rec, [(a, 1), (b, 1)])
    engine = await engine_factory()
    await send(engine, pool, rec, buy())
    assert [await net_pos(engine, pool, s) for s in (a, b)] == [2, 2]

    at = "2026-01-01T00:00:00+00:00"
    await pool.execute(
        "INSERT INTO system_flags (name, value) VALUES ('halted', $1)",
        {"halted": True, "flattens": {at: {"requested_at": at, "account": "lee-a"}}},
    )
    await engine.config.refresh()

    async def flat() -> bool:
        return await net_pos(engine, pool, a) == 0

    await wait_for(flat, "lee-a flattened")
    assert await net_pos(engine, pool, b) == 2  # the other login is untouched
    assert await working(engine, pool, a) == []
    assert len(await working(engine, pool, b)) == 1

    async def marked() -> bool:
        v = await pool.fetchval("SELECT value FROM system_flags WHERE name='halted'")
        return bool(v["flattens"][at].get("done_at"))

    await wait_for(marked, "flatten marked done")
    out = await send(engine, pool, rec, buy("21510"))
    assert (out.verdict, out.filter) == ("rejected", "halted")
    out = await send(engine, pool, rec, close())
    assert out.verdict == "accepted"
    assert await net_pos(engine, pool, b) == 0


async def test_two_flatten_requests_of_one_account_each_send(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "mo")
    rec = await make_recorder(pool, u, "rec", size=1)
    (a,) = await make_paper_account(pool, u, "mo-a")
    await make_trader(pool, u, rec, [(a, 1)])
    engine = await engine_factory()
    for second in (0, 1):  # two requests, moments apart: each must get its own clOrdIds
        await send(engine, pool, rec, buy())
        assert await net_pos(engine, pool, a) == 1
        requested_at = f"2026-01-01T00:00:0{second}+00:00"
        await pool.execute(
            "INSERT INTO system_flags (name, value) VALUES ('halted', $1)"
            " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value",
            {
                "halted": False,
                "flattens": {requested_at: {"requested_at": requested_at, "account": "mo-a"}},
            },
        )
        await engine.config.refresh()

        async def flat() -> bool:
            return await net_pos(engine, pool, a) == 0

        await wait_for(flat, f"flatten {second} done")
    ids = await pool.fetch("SELECT cl_ord_id FROM order_intents WHERE kind = 'liquidate'")
    assert len({r["cl_ord_id"] for r in ids}) == 2


async def test_a_flatten_run_again_after_a_restart_still_sends(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "ned")
    rec = await make_recorder(pool, u, "rec", size=1)
    (a,) = await make_paper_account(pool, u, "ned-a")
    await make_trader(pool, u, rec, [(a, 1)])
    engine = await engine_factory()
    at = "2026-01-01T00:00:00+00:00"
    flag = "SELECT value #> ARRAY['flattens', $1] FROM system_flags WHERE name = 'halted'"

    async def flattened() -> bool:
        return await net_pos(engine, pool, a) == 0 and "done_at" in await pool.fetchval(flag, at)

    await send(engine, pool, rec, buy())
    await pool.execute(  # not halted: the entry after it must go out
        "INSERT INTO system_flags (name, value) VALUES ('halted', $1)",
        {"halted": False, "flattens": {at: {"requested_at": at, "account": "ned-a"}}},
    )
    await engine.config.refresh()
    await wait_for(flattened, "the first run flattened")
    # A crash before the request was marked done: the next run carries out the same request
    # with no memory of the first, and its liquidation must go out, not collide with the first.
    await send(engine, pool, rec, buy())
    engine._flattener._done.clear()
    await pool.execute(
        "UPDATE system_flags SET value = value #- ARRAY['flattens', $1, 'done_at']", at
    )
    await engine.config.refresh()
    await wait_for(flattened, "the second run flattened")
    ids = await pool.fetch("SELECT cl_ord_id, state FROM order_intents WHERE kind = 'liquidate'")
    assert len({r["cl_ord_id"] for r in ids}) == 2
    assert [r["state"] for r in ids] == ["done", "done"]
    assert await net_pos(engine, pool, a) == 0


async def test_a_position_held_across_a_restart_is_measured_first_in_first_out(
    database: Database, engine_factory: Any
) -> None:
    """Seeded at start as one lot at the broker's average (which a partial exit leaves where
    it was: 105 here), the rest of the position closed at 90 booked -$30 instead of -$40, and
    the daily-loss filter at 40 let the next entry through."""
    pool = database.pool
    u = await make_user(pool, "fifo")
    rec = await make_recorder(pool, u, "rec", size=1, add_size=1, same_direction="add")
    (sub,) = await make_paper_account(pool, u, "fifo-paper")
    await make_trader(pool, u, rec, [(sub, 1)], max_daily_loss=Decimal(40))
    first = await engine_factory()
    await send(first, pool, rec, buy("100"))  # long 1 @ 100
    await send(first, pool, rec, buy("110"))  # add 1 @ 110: netPrice 105
    assert await net_pos(first, pool, sub) == 2
    # sell 1 with the strategy still long: a partial exit, FIFO closes the 100 lot at 100: $0
    await send(first, pool, rec, sell("100", quantity=1, market_position=MarketPosition.LONG))
    assert await net_pos(first, pool, sub) == 1

    async def mirrored() -> bool:
        return bool(await pool.fetchval("SELECT count(*) FROM trades")) and bool(
            await pool.fetchval("SELECT count(*) FROM positions WHERE net_pos = 1")
        )

    await wait_for(mirrored, "partial exit mirrored")
    await first.close()
    engine = await engine_factory()  # restart: seed_open from positions (1 @ netPrice 105)
    await send(engine, pool, rec, close("90"))  # the 110 lot closes at 90: -20 points, -$40
    assert await net_pos(engine, pool, sub) == 0

    async def both() -> bool:
        return await pool.fetchval("SELECT count(*) FROM trades") == 2

    await wait_for(both, "both round trips mirrored")
    rows = [
        tuple(r)
        for r in await pool.fetch(
            "SELECT qty, entry_price, exit_price, pnl FROM trades ORDER BY id"
        )
    ]
    out = await send(engine, pool, rec, buy("90"))
    # the cash flow: -100 - 110 + 100 + 90 = -20 points = -$40 (what Tradovate's FIFO pairs say)
    assert sum(r[3] for r in rows) == Decimal(-40), rows
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss")


async def test_two_traders_on_one_sub_account_split_by_direction(
    database: Database, engine_factory: Any
) -> None:
    """One user sizes longs and shorts differently with two traders on one sub-account: a
    long-only x2 and a short-only x1. A sell from flat went to the first trader in line, whose
    plan was close-only (nothing to close), and the short-only trader's entry was never sent."""
    pool = database.pool
    u = await make_user(pool, "split")
    rec = await make_recorder(pool, u, "rec", size=1)
    (sub,) = await make_paper_account(pool, u, "split-paper")
    await make_trader(pool, u, rec, [(sub, 2)], direction="long")
    await make_trader(pool, u, rec, [(sub, 1)], direction="short")
    engine = await engine_factory()
    out = await send(engine, pool, rec, sell())
    assert await net_pos(engine, pool, sub) == -1, out.detail
    out = await send(engine, pool, rec, buy())  # the long-only trader reverses it: long 2
    assert await net_pos(engine, pool, sub) == 2, out.detail


async def test_a_trader_outranked_on_its_account_has_no_entry_counted(
    database: Database, engine_factory: Any
) -> None:
    """Two traders on one sub-account, a long-only x2 and a both-sides x1 with a one-hour
    cooldown and one entry a session: the buy went to the long-only trader, yet the other's
    cooldown started and its one entry was used, so its reversal later was refused."""
    pool = database.pool
    u = await make_user(pool, "outr")
    rec = await make_recorder(pool, u, "rec", size=1)
    (sub,) = await make_paper_account(pool, u, "outr-paper")
    a = await make_trader(pool, u, rec, [(sub, 2)], direction="long")
    await make_trader(pool, u, rec, [(sub, 1)], cooldown_s=3600, max_signals=1)
    engine = await engine_factory()
    out = await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, sub) == 2
    assert out.detail["accounts"][str(sub)]["trader_id"] == a
    assert out.detail["trader_entries"] == [a]  # what a restart counts
    out = await send(engine, pool, rec, sell())  # the other trader's first entry: short 1
    assert await net_pos(engine, pool, sub) == -1, out.detail


async def test_two_traders_refusing_one_account_say_why_not_traded_by(
    database: Database, engine_factory: Any
) -> None:
    """With no plan sending anything, the signal's detail (one result per sub-account) said
    "traded by trader N" though nothing was, hiding why (rule 9)."""
    pool = database.pool
    u = await make_user(pool, "why")
    rec = await make_recorder(pool, u, "rec", size=1)
    (sub,) = await make_paper_account(pool, u, "why-paper")
    await make_trader(pool, u, rec, [(sub, 1)], direction="short")
    await make_trader(pool, u, rec, [(sub, 1)], direction="short")
    engine = await engine_factory()
    out = await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, sub) == 0
    assert "traded by trader" not in out.detail["accounts"][str(sub)]["reason"]


async def test_an_older_closed_positions_fills_are_not_the_lots_of_an_adopted_one(
    database: Database, engine_factory: Any
) -> None:
    """The position held at restart was adopted from the broker (its fill is not stored): its
    lots were read from an older, closed round trip's fills, and a -$100 close booked +$100."""
    pool = database.pool
    u = await make_user(pool, "stale")
    rec = await make_recorder(pool, u, "rec", size=1)
    (sub,) = await make_paper_account(pool, u, "stale-paper")
    await make_trader(pool, u, rec, [(sub, 1)], max_daily_loss=Decimal(50))
    first = await engine_factory()
    await send(first, pool, rec, buy("21400"))  # an earlier round trip: +$100
    await send(first, pool, rec, close("21450"))

    async def one_trade() -> bool:
        return await pool.fetchval("SELECT count(*) FROM trades") == 1

    await wait_for(one_trade, "the first round trip mirrored")
    await first.close()
    symbol = await pool.fetchval("SELECT symbol FROM fills LIMIT 1")
    await pool.execute(  # what the mirror writes when it adopts: the position row, no fill
        "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price)"
        " VALUES ($1, $2, 1, 21500) ON CONFLICT (sub_account_id, symbol)"
        " DO UPDATE SET net_pos = 1, net_price = 21500",
        sub,
        symbol,
    )
    await pool.execute("DELETE FROM trades")  # a new trading day
    engine = await engine_factory()
    await send(engine, pool, rec, close("21450"))  # long 21500 out at 21450: -$100

    async def closed() -> bool:
        return await pool.fetchval("SELECT count(*) FROM trades") == 1

    await wait_for(closed, "the round trip mirrored")
    row = await pool.fetchrow("SELECT entry_price, pnl FROM trades")
    assert (row["entry_price"], row["pnl"]) == (Decimal(21500), Decimal(-100))
    out = await send(engine, pool, rec, buy("21450"))
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss")


async def test_an_alert_for_another_instrument_than_the_recorders_is_refused(
    database: Database, engine_factory: Any
) -> None:
    """A PickMyTrade template naming NQ1! posted to an MNQ recorder opened full-size NQ: ten
    times the money per point its risk settings were sized for. The close of another root too
    is refused; the recorder's own root in another spelling is its own."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "nqm", {"size": 1})
    engine = await engine_factory()

    out = await send(engine, pool, rec, Signal(Action.BUY, ticker="NQ1!", price=Decimal(21500)))
    assert (out.verdict, out.filter, out.orders) == ("rejected", "symbol", 0), out
    assert "NQ1!" in (out.reason or "")
    assert "MNQ1!" in (out.reason or "")
    closed = await send(engine, pool, rec, Signal(Action.CLOSE, ticker="ES1!"))
    assert (closed.verdict, closed.filter) == ("rejected", "symbol")
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 0

    ok = await send(
        engine, pool, rec, Signal(Action.BUY, ticker="CME_MINI:MNQ1!", price=Decimal(21500))
    )
    assert (ok.verdict, ok.orders) == ("accepted", 1), ok
    assert await net_pos(engine, pool, sub) == 1
