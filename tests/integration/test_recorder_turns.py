"""The recorder's turn at its counts (``engine.recorder_turn``) and the accounts a dispatch
waits for (``account_locks``), against the engine on paper accounts: alerts of one recorder
still reach a held account in the order they came, an entry the broker refused is given back
before the next one is judged by its cooldown (an earlier signal settling within
``EARLIER_WAIT_S``), and a duplicate's put-back never erases another signal's give-back."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from jtrades.broker.base import PlaceResult
from jtrades.broker.paper import PaperBroker
from jtrades.db import Database
from jtrades.engine import engine as engine_module
from jtrades.errors import BrokerRejected, StorageUnavailable
from jtrades.store import signals as signal_store
from jtrades.store.signals import SignalIds
from tests.integration.test_engine import (
    _delivery,
    buy,
    follower,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    sell,
    send,
    wait_for,
)
from tests.integration.test_engine import engine_factory as engine_factory  # the fixture
from tests.integration.test_flatten import Start, start  # noqa: F401  (fixture)
from tests.polling import until

LIMIT_S = 30.0


def _waiters(lock: asyncio.Lock) -> int:
    return len(getattr(lock, "_waiters", None) or ())


async def _deliver(engine: Any, ids: SignalIds, rec: int, signal: Any, key: str) -> Any:
    d = _delivery(await ids.take(), rec, signal, key)
    return await engine.on_signal(
        signal_id=d.signal_id,
        recorder_id=rec,
        signal=d.signal,
        received_at=d.received_at,
        delivery=d,
    )


async def test_one_recorders_alerts_reach_a_behind_account_in_order(
    database: Database,
    start: Start,  # noqa: F811
) -> None:
    """Rule 3, one recorder: sell then buy. The sell's account hl-b is behind (a protection
    pass holds it) and is freed while the sell's claim is on its way to the database; the
    recorder's turn is given up at the claim. The buy, filtered at once, took hl-b's free
    lock before the sell's wait for it existed: hl-b traded buy, then sell, short where the
    strategy (and hl-a) is long. The sell's wait is in line before its claim."""
    pool = database.pool
    u = await make_user(pool, "ord")
    rec = await make_recorder(pool, u, "rec", size=1)
    (a,) = await make_paper_account(pool, u, "ord-a")
    (b,) = await make_paper_account(pool, u, "ord-b")
    await make_trader(pool, u, rec, [(a, 1), (b, 1)])
    engine = await start({})
    await send(engine, pool, rec, buy())
    assert (await net_pos(engine, pool, a), await net_pos(engine, pool, b)) == (1, 1)
    ids = SignalIds(pool)

    lock_b = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[b])
    await until(lambda: not lock_b.locked(), what="the first alert's settle on hl-b")
    await lock_b.acquire()  # a protection pass on hl-b
    real_claim = engine.dispatcher.claim
    in_claim, go = asyncio.Event(), asyncio.Event()
    calls = 0

    async def claim(delivery: Any, intents: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the sell's claim
            in_claim.set()
            await go.wait()
            out = await real_claim(delivery, intents)
            lock_b.release()  # the protection pass ended during the claim's round trip
            return out
        return await real_claim(delivery, intents)

    engine.dispatcher.claim = claim  # type: ignore[method-assign]
    first = asyncio.create_task(_deliver(engine, ids, rec, sell(), "sell"))
    await asyncio.wait_for(in_claim.wait(), LIMIT_S)
    second = asyncio.create_task(_deliver(engine, ids, rec, buy(), "buy"))
    rlock = engine.turns.lock(rec)
    await until(lambda: _waiters(rlock) > 0, what="the buy at the recorder's lock")
    go.set()
    o1, o2 = await asyncio.wait_for(asyncio.gather(first, second), LIMIT_S)
    await until(lambda: not lock_b.locked(), what="hl-b settled")
    # sell then buy, as the recorder sent them: long 1 on both
    assert await net_pos(engine, pool, a) == 1
    assert await net_pos(engine, pool, b) == 1, (o1.detail, o2.detail)


class RefusingEntries(PaperBroker):
    """A login whose broker refuses the next ``refuse`` new orders (a risk check)."""

    refuse = 0

    def _refused(self) -> bool:
        if self.refuse:
            self.refuse -= 1
            return True
        return False

    async def place_order(self, req: Any) -> PlaceResult:
        if self._refused():
            raise BrokerRejected("insufficient margin")
        return await super().place_order(req)

    async def place_oso(self, req: Any) -> PlaceResult:
        if self._refused():
            raise BrokerRejected("insufficient margin")
        return await super().place_oso(req)


async def _one_follower(pool: Any, name: str) -> tuple[int, int, int]:
    """A recorder with a 1 h cooldown followed on one paper sub-account: (recorder, login, sub)."""
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", size=1, cooldown_s=3600)
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, $2, 'paper') RETURNING id",
        u,
        f"{name}-b",
    )
    b = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " VALUES ($1, 1, $2) RETURNING id",
        aid,
        f"{name}-b-1",
    )
    await make_trader(pool, u, rec, [(b, 1)])
    return rec, aid, b


async def _first_entry_refused(
    pool: Any,
    begin: Start,
    name: str,
) -> tuple[int, int, RefusingEntries, Any, asyncio.Lock]:
    """One follower (``_one_follower``) on a paper login that refuses the next entry, its
    sub-account's lock held (a protection pass): the first buy's orders wait behind it."""
    rec, aid, b = await _one_follower(pool, name)
    paper = RefusingEntries()
    engine = await begin({aid: paper})
    lock_b = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[b])
    await lock_b.acquire()
    paper.refuse = 1
    return rec, b, paper, engine, lock_b


async def test_an_entry_never_made_does_not_refuse_the_next_one_for_its_cooldown(
    database: Database,
    start: Start,  # noqa: F811
) -> None:
    """``Judged.settle``: "an entry counted but never made refused the next real one". The
    first buy's only account is behind (a protection pass holds it, briefly); the next buy
    waits for the first to settle (its turn was given up at its claim) and is judged once
    the broker's refusal of the first entry was given back: accepted, traded."""
    pool = database.pool
    rec, b, _paper, engine, lock_b = await _first_entry_refused(pool, start, "cd")
    ids = SignalIds(pool)
    first = asyncio.create_task(_deliver(engine, ids, rec, buy(), "one"))
    await until(lambda: _waiters(lock_b) > 0, what="the first buy behind cd-b's lock")
    second = asyncio.create_task(_deliver(engine, ids, rec, buy("21510"), "two"))
    await asyncio.sleep(0)
    lock_b.release()  # the pass ends at once: the first settles well within the wait
    o1 = await asyncio.wait_for(first, LIMIT_S)
    assert o1.verdict == "rejected", o1  # the broker refused the only entry
    o2 = await asyncio.wait_for(second, LIMIT_S)
    assert (o2.verdict, o2.filter) == ("accepted", None), (o2.verdict, o2.filter, o2.reason)
    assert await net_pos(engine, pool, b) == 1


async def test_the_next_alert_waits_for_an_earlier_one_a_bounded_time(
    database: Database,
    start: Start,  # noqa: F811
) -> None:
    """An earlier signal still waiting for its account past ``EARLIER_WAIT_S`` (a silent
    broker's request timeout) no longer holds the recorder's next one: it is stored (and its
    free accounts' orders go) while the first still waits, judged on the counts as they
    stand, the earlier entry still in flight counted as made (here: the cooldown)."""
    pool = database.pool
    rec, aid, b = await _one_follower(pool, "bw")
    engine = await start({aid: PaperBroker()})
    ids = SignalIds(pool)
    lock_b = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[b])
    await lock_b.acquire()  # held past the wait: the first buy cannot be done meanwhile
    first = asyncio.create_task(_deliver(engine, ids, rec, buy(), "one"))
    await until(lambda: _waiters(lock_b) > 0, what="the first buy behind bw-b's lock")
    second = asyncio.create_task(_deliver(engine, ids, rec, buy("21510"), "two"))
    stored = "SELECT count(*) FROM signals WHERE recorder_id = $1"
    await wait_for(lambda: _is(pool, stored, rec, 2), "the second buy stored")
    assert not first.done()  # stored while the first still waits for its account
    lock_b.release()
    o1, o2 = await asyncio.wait_for(asyncio.gather(first, second), LIMIT_S)
    assert o1.verdict == "accepted"
    assert (o2.verdict, o2.filter) == ("rejected", "cooldown"), (o2.verdict, o2.reason)
    assert await net_pos(engine, pool, b) == 1


async def _is(pool: Any, query: str, arg: Any, want: Any) -> bool:
    return bool(await pool.fetchval(query, arg) == want)


async def test_a_duplicates_undo_does_not_erase_an_earlier_signals_give_back(
    database: Database,
    start: Start,  # noqa: F811
) -> None:
    """The first buy's entry is refused by the broker while TradingView's re-send of it is
    being claimed (the re-send waited out ``EARLIER_WAIT_S``: the first buy is behind a held
    account). Had the first one's give-back been made then, the re-send's put-back (the
    snapshot it took after the first buy counted its entry) brought the entry that never was
    back for the rest of the day: every later buy refused for the cooldown. The give-back
    waits for the recorder's turn."""
    pool = database.pool
    rec, b, paper, engine, lock_b = await _first_entry_refused(pool, start, "du")
    ids = SignalIds(pool)
    real_claim = engine.dispatcher.claim
    calls = 0

    async def claim(delivery: Any, intents: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the re-send's claim: the first buy's entry is refused meanwhile
            lock_b.release()
            await until(lambda: paper.refuse == 0, what="the first buy's entry refused")
        return await real_claim(delivery, intents)

    engine.dispatcher.claim = claim  # type: ignore[method-assign]
    first = asyncio.create_task(_deliver(engine, ids, rec, buy(), "one"))
    await until(lambda: _waiters(lock_b) > 0, what="the first buy behind du-b's lock")
    again = await asyncio.wait_for(_deliver(engine, ids, rec, buy(), "one"), LIMIT_S)
    assert again.duplicate_of is not None
    o1 = await asyncio.wait_for(first, LIMIT_S)
    assert o1.verdict == "rejected", (o1.verdict, o1.filter, o1.reason)  # never entered
    assert await net_pos(engine, pool, b) == 0

    later = await asyncio.wait_for(_deliver(engine, ids, rec, buy("21510"), "later"), LIMIT_S)
    assert (later.verdict, later.filter) == ("accepted", None), (
        later.verdict,
        later.filter,
        later.reason,
    )
    assert await net_pos(engine, pool, b) == 1


async def test_control_without_the_duplicate_the_give_back_holds(
    database: Database,
    start: Start,  # noqa: F811
) -> None:
    """The same refused first buy, no re-send: the later buy is accepted."""
    pool = database.pool
    rec, b, _paper, engine, lock_b = await _first_entry_refused(pool, start, "dc")
    ids = SignalIds(pool)
    first = asyncio.create_task(_deliver(engine, ids, rec, buy(), "one"))
    await until(lambda: _waiters(lock_b) > 0, what="the first buy behind dc-b's lock")
    lock_b.release()
    o1 = await asyncio.wait_for(first, LIMIT_S)
    assert o1.verdict == "rejected"
    later = await asyncio.wait_for(_deliver(engine, ids, rec, buy("21510"), "later"), LIMIT_S)
    assert (later.verdict, later.filter) == ("accepted", None)
    assert await net_pos(engine, pool, b) == 1


async def test_a_signal_stopped_while_all_its_accounts_were_behind_counts_no_entry(
    database: Database,
    start: Start,  # noqa: F811
) -> None:
    """Stored with no intent (every account behind another's lock), then the daemon stopped
    (a kill, a drain run out behind a silent broker): nothing was sent, and the restart
    counted its entry all the same (with no intent, what the traders decided was unknown):
    the next real entry refused for the cooldown. The claim now says accounts were behind."""
    pool = database.pool
    rec, aid, b = await _one_follower(pool, "ab")
    engine = await start({aid: PaperBroker()})
    lock_b = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[b])
    await lock_b.acquire()  # a protection pass on ab-b
    ids = SignalIds(pool)
    run = asyncio.create_task(_deliver(engine, ids, rec, buy(), "ab-1"))
    stored = "SELECT count(*) FROM signals WHERE recorder_id = $1"
    await wait_for(lambda: _is(pool, stored, rec, 1), "the buy stored, its account behind")
    run.cancel()  # the daemon stops
    await asyncio.gather(run, return_exceptions=True)
    lock_b.release()
    assert await pool.fetchval("SELECT count(*) FROM order_intents") == 0
    await engine.close()

    await signal_store.settle_interrupted(pool, datetime.now(UTC))  # as Daemon.run does
    again = await start({aid: PaperBroker()})
    out = await _deliver(again, ids, rec, buy("21510"), "ab-2")
    assert (out.verdict, out.filter) == ("accepted", None), (out.verdict, out.reason)
    assert await net_pos(again, pool, b) == 1


@pytest.mark.parametrize("error", [RuntimeError, StorageUnavailable])
async def test_a_failure_after_the_orders_went_keeps_the_entry_counted(
    database: Database, engine_factory: Any, monkeypatch: pytest.MonkeyPatch, error: type
) -> None:
    """An internal error (or the database lost) once the signal was stored and its order
    sent, its turn taken again, while the database cannot say whether the row is there
    (``is_stored`` answers False then): the entry was made and counts, as a restart would
    count it from the row (and the webhook answers 200). Put back, the session's one entry
    (max_signals 1) let a second buy through."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "aft", {"size": 1, "max_signals": 1})
    engine = await engine_factory()
    ids = SignalIds(pool)

    def bug(*_a: Any, **_kw: Any) -> Any:
        raise error("a failure after the orders went")

    async def cannot_say(*_a: Any, **_kw: Any) -> bool:
        return False

    monkeypatch.setattr(engine_module.Judged, "settle", bug)
    monkeypatch.setattr(signal_store, "is_stored", cannot_say)
    with pytest.raises(error):
        await _deliver(engine, ids, rec, buy(), "aft-1")
    monkeypatch.undo()
    assert await net_pos(engine, pool, sub) == 1  # the order went

    second = await _deliver(engine, ids, rec, buy(), "aft-2")
    assert (second.verdict, second.filter) == ("rejected", "max_signals"), second
    assert await net_pos(engine, pool, sub) == 1
