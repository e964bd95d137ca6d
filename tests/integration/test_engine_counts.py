"""What a signal leaves on the session counters when it trades nothing, and the last entry a
cooldown measures from, across the CME day's turn and a restart. Real Postgres, the engine and
the paper broker."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Action, Signal
from jtrades.engine.tradingday import session_start
from tests.integration.test_engine import (
    Outcome,
    account_of,
    buy,
    follower,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    paper_of,
    record_outcome,
    sell,
    send,
    store_signal,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


async def _expired_entry(engine: Engine, pool: Any, rec: int, sub: int) -> Outcome:
    """A buy whose sub-account lock is held past the 1 s TTL (another signal's orders still
    settling behind a slow broker): its one intent expires unsent."""
    lock = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[sub])
    await lock.acquire()
    task = asyncio.create_task(send(engine, pool, rec, buy()))
    await asyncio.sleep(1.3)
    lock.release()
    out = await task
    assert await net_pos(engine, pool, sub) == 0
    return out


async def test_an_entry_that_expired_unsent_says_so(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "stan", {"size": 1, "max_signals": 1})
    engine = await engine_factory(signal_ttl_s=1)

    first = await _expired_entry(engine, pool, rec, sub)

    assert (first.verdict, first.orders) == ("expired", 0), first
    assert "TTL" in (first.reason or "")
    assert (first.detail["entry"], first.detail["trader_entries"]) == (False, [])
    row = await pool.fetchrow("SELECT verdict, reason FROM signals")
    assert row["verdict"] == "expired"


async def test_an_entry_that_expired_unsent_uses_no_count(
    database: Database, engine_factory: Any
) -> None:
    """It used the session's one entry (the recorder's and the trader's): the next real buy
    was refused by max_signals, and the cooldown ran from an entry never made."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "stu", {"size": 1, "max_signals": 1}, {"max_signals": 1, "cooldown_s": 3600}
    )
    engine = await engine_factory(signal_ttl_s=1)
    await _expired_entry(engine, pool, rec, sub)

    second = await send(engine, pool, rec, buy())
    assert (second.verdict, second.filter, second.orders) == ("accepted", None, 1), second
    assert await net_pos(engine, pool, sub) == 1


async def test_a_cooldown_outlives_the_day_turn_and_a_restart(
    database: Database, engine_factory: Any
) -> None:
    """``--cooldown`` is the least time between entries: the last one lived in the session's
    counters, rebuilt at start from the signals since the session opened, so an entry made ten
    minutes before 17:00 Chicago was forgotten and the cooldown let the next one through."""
    pool = database.pool
    now = datetime.now(UTC)
    before_turn = session_start(now) - timedelta(minutes=10)
    cooldown = {"cooldown_s": int((now - before_turn).total_seconds()) + 3600}
    u = await make_user(pool, "cool")
    on_recorder = await make_recorder(pool, u, "on-recorder", **cooldown)
    on_trader = await make_recorder(pool, u, "on-trader")
    sub_r, sub_t = await make_paper_account(pool, u, "cool-paper", subs=2)
    await make_trader(pool, u, on_recorder, [(sub_r, 1)])
    tid = await make_trader(pool, u, on_trader, [(sub_t, 1)], **cooldown)
    for rec, traders in ((on_recorder, []), (on_trader, [tid])):
        sid, _ = await store_signal(pool, rec, before_turn)
        detail = {"entry": True, "nth_seen": True, "trader_entries": traders, "trader_seen": []}
        await record_outcome(pool, sid, Outcome("accepted", None, None, 1, detail))
    engine = await engine_factory()

    out = await send(engine, pool, on_recorder, buy())
    assert (out.verdict, out.filter) == ("rejected", "cooldown"), out
    out = await send(engine, pool, on_trader, buy())
    assert (out.verdict, out.filter) == ("rejected", "cooldown"), out
    assert (out.reason or "").startswith(f"trader {tid}:")
    # the counts themselves are the new session's: none of its entries were made yet
    assert engine.counters.get("trader", tid, datetime.now(UTC)).entries == 0


async def test_an_entry_no_sub_account_could_trade_uses_no_count(
    database: Database, engine_factory: Any
) -> None:
    """A buy whose contract no sub-account found ("not traded: ...") sent nothing, yet it used
    the session's one entry (the recorder's and the trader's) and started the cooldown: the
    next real buy was refused by max_signals, and the row said accepted, with no reason."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool,
        "unk",
        {"size": 1, "max_signals": 1, "symbol": "ZZQX1!"},
        {"max_signals": 1, "cooldown_s": 3600},
    )
    engine = await engine_factory()

    first = await send(engine, pool, rec, Signal(Action.BUY, ticker="ZZQX1!", price=Decimal(1)))
    assert (first.verdict, first.filter, first.orders) == ("accepted", None, 0), first
    assert (first.reason or "").startswith("not traded: ")
    assert "ZZQX" in (first.reason or "")
    # what a restart counts
    assert (first.detail["entry"], first.detail["trader_entries"]) == (False, [])
    await pool.execute("UPDATE recorders SET symbol = 'MNQ1!', updated_at = now()")
    await engine.config.refresh()  # the recorder fixed to a contract that exists
    second = await send(engine, pool, rec, buy())
    assert (second.verdict, second.filter, second.orders) == ("accepted", None, 1), second
    assert await net_pos(engine, pool, sub) == 1


async def test_a_trader_with_no_sub_account_uses_no_count(
    database: Database, engine_factory: Any
) -> None:
    """A trader linking no sub-account sends nothing: its entry was counted all the same (and
    the recorder's), so once linked its first buy was refused."""
    pool = database.pool
    u = await make_user(pool, "nolink")
    rec = await make_recorder(pool, u, "rec", size=1, max_signals=1)
    (sub,) = await make_paper_account(pool, u, "nolink-paper")
    tid = await make_trader(pool, u, rec, [], cooldown_s=3600)
    engine = await engine_factory()

    first = await send(engine, pool, rec, buy())
    assert (first.verdict, first.orders) == ("accepted", 0), first
    assert (first.reason or "").startswith("not traded: ")
    assert (first.detail["entry"], first.detail["trader_entries"]) == (False, [])
    assert engine.counters.get("trader", tid, datetime.now(UTC)).last_entry_at is None
    await pool.execute(
        "INSERT INTO trader_accounts (trader_id, sub_account_id, multiplier) VALUES ($1, $2, 1)",
        tid,
        sub,
    )
    await engine.config.refresh()
    second = await send(engine, pool, rec, buy())
    assert (second.verdict, second.filter, second.orders) == ("accepted", None, 1), second
    assert await net_pos(engine, pool, sub) == 1


async def test_an_entry_no_synced_view_could_take_uses_no_count(
    database: Database, engine_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's view not synced (mid-reconnect), nothing is planned ("missing is not
    flat"), yet the entry used the recorder's and the trader's counts."""
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "blind", {"size": 1, "max_signals": 1}, {"max_signals": 1, "cooldown_s": 3600}
    )
    engine = await engine_factory()
    paper = paper_of(engine, (await account_of(pool, sub))[0])
    monkeypatch.setattr(paper, "is_synced", lambda account_id: False)

    first = await send(engine, pool, rec, buy())
    assert (first.verdict, first.orders) == ("accepted", 0), first
    assert "not synced" in (first.reason or ""), first
    assert (first.detail["entry"], first.detail["trader_entries"]) == (False, [])
    monkeypatch.undo()
    second = await send(engine, pool, rec, buy())
    assert (second.verdict, second.filter, second.orders) == ("accepted", None, 1), second
    assert await net_pos(engine, pool, sub) == 1


async def test_a_buy_a_follower_keeps_its_position_on_uses_none_of_its_entries(
    database: Database, engine_factory: Any
) -> None:
    """Already long with ``--same-direction ignore``, the follower's plan for a second buy is
    to do nothing: it made no entry, yet it used one of the follower's two, and the reversal
    after it was refused by max_signals (it only closed). No account entered, so the
    recorder's entry goes back too, as one held back at --max-contracts does
    (``tests/integration/test_same_direction_counts.py``)."""
    pool = database.pool
    rec, sub, tid = await follower(pool, "keep", {"size": 1}, {"max_signals": 2})
    engine = await engine_factory()

    assert (await send(engine, pool, rec, buy())).orders == 1
    kept = await send(engine, pool, rec, buy())
    assert (kept.verdict, kept.orders) == ("accepted", 0), kept
    assert (kept.detail["entry"], kept.detail["trader_entries"]) == (False, [])
    reversal = await send(engine, pool, rec, sell())
    assert (reversal.verdict, reversal.filter) == ("accepted", None), reversal
    assert await net_pos(engine, pool, sub) == -1
    assert reversal.detail["trader_entries"] == [tid]


async def test_a_partial_exit_trims_says_so_and_uses_no_count(
    database: Database, engine_factory: Any
) -> None:
    """Long 3 (× 2: 6 held); "sell 1" with no market position trims 2 and opens nothing, as
    TradersPost reads it: the row says closed only, and the sell is no entry, so it
    neither starts a cooldown nor spends an entry of the session (nor does a restart count
    one: the row's ``entry``)."""
    pool = database.pool
    u = await make_user(pool, "tpx")
    rec = await make_recorder(pool, u, "rec", size=3, max_signals=5)
    (sub,) = await make_paper_account(pool, u, "tpx-paper")
    tid = await make_trader(pool, u, rec, [(sub, 2)], max_signals=5)
    engine = await engine_factory()

    first = await send(engine, pool, rec, buy())
    assert (first.verdict, first.orders) == ("accepted", 1), first
    assert await net_pos(engine, pool, sub) == 6
    now = datetime.now(UTC)
    made = engine.counters.get("recorder", rec, now).last_entry_at
    assert made is not None

    trim = await send(engine, pool, rec, sell(quantity=1, source="native"))
    assert (trim.verdict, trim.filter, trim.orders) == ("accepted", None, 1), trim
    assert (trim.reason or "").startswith("closed only: "), trim
    assert "trims it" in (trim.reason or "")
    assert await net_pos(engine, pool, sub) == 4
    assert (trim.detail["entry"], trim.detail["trader_entries"]) == (False, [])
    for kind, key in (("recorder", rec), ("trader", tid)):
        counts = engine.counters.get(kind, key, datetime.now(UTC))
        assert counts.entries == 1, (kind, counts)
    assert engine.counters.get("recorder", rec, now).last_entry_at == made


async def test_a_partial_exit_refused_by_every_nth_spends_no_turn(
    database: Database, engine_factory: Any
) -> None:
    """--every-nth 2: refused by it, a trim still trims, and the turn is given back like an
    accepted trim's: kept, whether a trim moved the sequence hung on its parity, and the next
    real entry taken was not the one --every-nth says."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "nth-trim", {"size": 1, "every_nth": 2})
    engine = await engine_factory()

    first = await send(engine, pool, rec, buy(quantity=4, source="native"))
    assert (first.verdict, first.filter) == ("rejected", "every_nth"), first  # 1 of 2
    second = await send(engine, pool, rec, buy(quantity=4, source="native"))
    assert second.verdict == "accepted", second  # 2 of 2: taken
    trim = await send(engine, pool, rec, sell(quantity=1, source="native"))
    assert await net_pos(engine, pool, sub) == 3, trim
    assert (trim.detail["entry"], trim.detail["nth_seen"]) == (False, False)
    await send(engine, pool, rec, Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal(21500)))
    third = await send(engine, pool, rec, buy(quantity=1, source="native"))  # 3: refused
    assert (third.verdict, third.filter) == ("rejected", "every_nth"), third


async def test_a_partial_exit_one_follower_refused_spends_no_recorder_turn(
    database: Database, engine_factory: Any
) -> None:
    """One follower's own cooldown refused the signal's entry; both followers trimmed. Its trim
    carried that refusal, and the recorder's max-signals turn stayed spent (in memory and in
    the row a restart reads): the strategy's next real entry was refused for the other."""
    pool = database.pool
    u = await make_user(pool, "trimcount")
    rec = await make_recorder(pool, u, "rec", size=1, max_signals=2)
    sub_a, sub_b = await make_paper_account(pool, u, "trimcount-paper", subs=2)
    await make_trader(pool, u, rec, [(sub_a, 1)], cooldown_s=3600)  # its own cooldown
    await make_trader(pool, u, rec, [(sub_b, 1)])
    engine = await engine_factory()

    assert (await send(engine, pool, rec, buy(quantity=4, source="native"))).verdict == "accepted"
    trim = await send(engine, pool, rec, sell(quantity=1, source="native"))
    assert [await net_pos(engine, pool, s) for s in (sub_a, sub_b)] == [3, 3]
    assert trim.detail["entry"] is False, trim.detail
    await send(engine, pool, rec, Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal(21500)))
    second = await send(engine, pool, rec, buy(quantity=1, source="native"))
    assert second.filter != "max_signals", second
    assert await net_pos(engine, pool, sub_b) == 1


async def test_a_trim_on_a_shared_account_gives_back_the_outranked_traders_turn(
    database: Database, engine_factory: Any
) -> None:
    """Two traders of one user on one sub-account: the plan that does most is sent, the other
    is outranked. A partial exit refused by the second's own every-Nth gave back that turn
    alone on its account, and spent it outranked by the first's identical trim."""
    pool = database.pool
    u = await make_user(pool, "shnth")
    rec = await make_recorder(pool, u, "rec", size=1)
    (sub,) = await make_paper_account(pool, u, "shnth-paper")
    await make_trader(pool, u, rec, [(sub, 1)])  # the first: its plan is sent
    t2 = await make_trader(pool, u, rec, [(sub, 1)], every_nth=3)
    engine = await engine_factory()

    first = await send(engine, pool, rec, buy(quantity=4, source="native"))
    assert first.verdict == "accepted", first
    assert await net_pos(engine, pool, sub) == 4
    assert first.detail["trader_seen"] == [t2]  # signal 1 of 3 for t2: refused, its turn

    trim = await send(engine, pool, rec, sell(quantity=1, source="native"))
    assert await net_pos(engine, pool, sub) == 3, trim  # trimmed, opened nothing
    seen = engine.counters.get("trader", t2, datetime.now(UTC)).seen
    assert (trim.detail["trader_seen"], seen) == ([], 1)
