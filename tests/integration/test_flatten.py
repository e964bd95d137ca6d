"""``jtrades halt --flatten`` carried out by the engine: every contract of every sub-account, each
liquidation within its own TTL, one account's failure isolated from the others, and the request
marked done only when nothing it had to close is left (else it stays pending and is retried).

Real Postgres, the engine and the paper broker; a few paper subclasses make a login slow,
unsynced, flaky or refusing, as ``test_reconcile`` does for an unsynced view.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog.testing

from jtrades.broker.base import Contract, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Action, Signal
from jtrades.errors import BrokerRejected, TransientBrokerError
from jtrades.migrations import migrations
from tests.cli import ainvoke
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    send,
    wait_for,
)
from tests.polling import until

REQUESTED_AT = "2026-01-02T03:04:05.678901+00:00"


class SlowPaper(PaperBroker):
    """A login whose liquidations take ``delay`` seconds to be answered (a slow broker)."""

    delay = 0.0

    async def liquidate_position(self, account: SubAccount, contract_id: int) -> None:
        await asyncio.sleep(self.delay)
        await super().liquidate_position(account, contract_id)


class FlakyContracts(PaperBroker):
    """A login whose contract lookups fail while ``broken`` (the broker briefly unreachable)."""

    broken = False

    async def find_contract(self, symbol: str) -> Contract:
        if self.broken:
            raise TransientBrokerError("contract lookup: connection reset")
        return await super().find_contract(symbol)


class Blind(PaperBroker):
    """A login whose live view can be switched out of sync (mid-reconnect)."""

    synced = True

    def is_synced(self, account_id: int) -> bool:
        return self.synced


class Refusing(PaperBroker):
    """A login whose broker refuses liquidations (the next ``refuse`` of them; -1: every one)."""

    refuse = 0

    async def liquidate_position(self, account: SubAccount, contract_id: int) -> None:
        if self.refuse:
            self.refuse -= 1 if self.refuse > 0 else 0
            raise BrokerRejected("Market is closed")
        await super().liquidate_position(account, contract_id)


Start = Callable[..., Awaitable[Engine]]


@pytest.fixture
async def start(database: Database, settings: Settings) -> AsyncIterator[Start]:
    """Start an engine whose paper logins (``accounts.id`` → broker) are the given ones."""
    made: list[Engine] = []

    async def go(paper: dict[int, PaperBroker] | None = None, **trading: Any) -> Engine:
        s = settings
        if trading:
            s = settings.model_copy(update={"trading": settings.trading.model_copy(update=trading)})
        brokers = BrokerRegistry(database, s)
        for aid, broker in (paper or {}).items():
            brokers._paper[aid] = broker
        engine = Engine(database, s, brokers)
        await engine.start()
        made.append(engine)
        return engine

    yield go
    for e in made:
        await e.close()


async def positions(engine: Engine, pool: asyncpg.Pool, sub_id: int) -> dict[str, int]:
    aid, bid = await account_of(pool, sub_id)
    return {p.symbol: p.net_pos for p in engine.brokers.paper(aid).positions(bid) if p.net_pos}


async def request_flatten(
    engine: Engine, pool: asyncpg.Pool, account: str | None = None, *, halted: bool = True
) -> None:
    """What ``jtrades halt --flatten`` writes, then the engine hears it."""
    request = {"requested_at": REQUESTED_AT, "account": account}
    await pool.execute(
        "INSERT INTO system_flags (name, value) VALUES ('halted', $1)"
        " ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value, updated_at = now()",
        {"halted": halted, "flattens": {REQUESTED_AT: request}},
    )
    await engine.config.refresh()


async def flat(engine: Engine, pool: asyncpg.Pool, sub_id: int) -> bool:
    return await positions(engine, pool, sub_id) == {}


async def flatten_flag(pool: asyncpg.Pool) -> dict[str, Any]:
    value = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    return dict(value["flattens"][REQUESTED_AT])


async def wait_done(pool: asyncpg.Pool, limit_s: float = 30.0) -> None:
    async def done() -> bool:
        return bool((await flatten_flag(pool)).get("done_at"))

    await wait_for(done, "flatten marked done", limit_s)


def waited_on(lock: asyncio.Lock) -> bool:
    """Whether a task is queued to take ``lock`` (asyncio keeps its waiters in ``_waiters``)."""
    return bool(lock._waiters)


async def liquidation_ids(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT cl_ord_id FROM order_intents WHERE kind = 'liquidate' ORDER BY id"
    )
    return [r["cl_ord_id"] for r in rows]


def mes(price: str = "6000") -> Signal:
    return Signal(Action.BUY, ticker="MES1!", price=Decimal(price))


async def one_long(
    pool: asyncpg.Pool, start: Start, name: str, *, size: int = 1, paper: PaperBroker | None = None
) -> tuple[Engine, int, int]:
    """User ``name`` following a recorder on one paper sub-account (login ``{name}-a``), long
    ``size`` through it on the engine ``start`` ran (``paper`` as that login's broker):
    (engine, recorder, sub-account)."""
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", size=size)
    (sub,) = await make_paper_account(pool, u, f"{name}-a")
    await make_trader(pool, u, rec, [(sub, 1)])
    brokers: dict[int, PaperBroker] = {}
    if paper is not None:
        aid, _ = await account_of(pool, sub)
        brokers[aid] = paper
    engine = await start(brokers)
    await send(engine, pool, rec, buy())

    async def filled() -> bool:  # else a flatten's first pass also reports the entry in flight
        return not await pool.fetchval(
            "SELECT count(*) FROM order_intents"
            " WHERE sub_account_id = $1 AND state IN ('pending', 'sent', 'unknown')",
            sub,
        )

    await wait_for(filled, "the entry's fill moved its intent")
    return engine, rec, sub


# --- tests -------------------------------------------------------------------------------------


async def test_flatten_closes_every_contract_of_a_sub_account(
    database: Database, start: Start
) -> None:
    pool = database.pool
    u = await make_user(pool, "fa")
    nq = await make_recorder(pool, u, "nq", size=1)
    es = await make_recorder(pool, u, "es", symbol="MES1!", size=1)
    (sub,) = await make_paper_account(pool, u, "fa-a")
    await make_trader(pool, u, nq, [(sub, 1)])
    await make_trader(pool, u, es, [(sub, 1)])
    engine = await start()
    await send(engine, pool, nq, buy())
    await send(engine, pool, es, mes())
    assert sorted((await positions(engine, pool, sub)).values()) == [1, 1]  # MNQ and MES

    await request_flatten(engine, pool)

    async def flat() -> bool:
        return await positions(engine, pool, sub) == {}

    await wait_for(flat, "both contracts of the sub-account flattened")
    await wait_done(pool)
    ids = await liquidation_ids(pool)
    assert len(set(ids)) == 2  # one clOrdId per contract, neither taken for a duplicate
    assert all(len(cl) <= 64 for cl in ids)


async def test_flatten_cancels_entries_still_working_on_a_flat_sub_account(
    database: Database, start: Start
) -> None:
    """A resting limit entry would open a position after the flatten is marked done, with the
    kill switch on and nobody to close it: a flat sub-account's working orders are cancelled,
    and the request is done only once none is left."""
    pool = database.pool
    u = await make_user(pool, "fw")
    resting = await make_recorder(pool, u, "resting", size=1, sl=Decimal(40))
    market = await make_recorder(pool, u, "market", size=1)
    (waiting, held) = await make_paper_account(pool, u, "fw-a", subs=2)
    await make_trader(pool, u, resting, [(waiting, 1)])
    await make_trader(pool, u, market, [(held, 1)])
    engine = await start()
    limit = buy(order_type="limit", limit_price=Decimal("21400"))
    assert (await send(engine, pool, resting, limit)).orders == 1
    await send(engine, pool, market, buy())
    aid, bid_waiting = await account_of(pool, waiting)
    paper = engine.brokers.paper(aid)
    assert len(paper.working_orders(bid_waiting)) >= 1  # the entry (its brackets wait on it)
    assert await positions(engine, pool, waiting) == {}

    await request_flatten(engine, pool)

    await wait_done(pool)
    assert paper.working_orders(bid_waiting) == []
    assert await positions(engine, pool, held) == {}
    assert await positions(engine, pool, waiting) == {}
    progress = (await flatten_flag(pool))["progress"]
    assert progress["cancelled"] >= 1
    assert progress["liquidations"] == 1


async def test_a_slow_flatten_gives_each_account_its_own_ttl(
    database: Database, start: Start
) -> None:
    pool = database.pool
    u = await make_user(pool, "sl")
    rec = await make_recorder(pool, u, "rec", size=1)
    subs = await make_paper_account(pool, u, "sl-a", subs=3)
    await make_trader(pool, u, rec, [(s, 1) for s in subs])
    aid, _bid = await account_of(pool, subs[0])
    slow = SlowPaper()
    # each liquidation is answered after 0.4 s: under the 0.7 s TTL, but two in a row are not
    engine = await start({aid: slow}, signal_ttl_s=0.7)
    await send(engine, pool, rec, buy())
    assert [sum((await positions(engine, pool, s)).values()) for s in subs] == [1, 1, 1]
    slow.delay = 0.4

    await request_flatten(engine, pool)

    async def all_flat() -> bool:
        return all([await positions(engine, pool, s) == {} for s in subs])

    await wait_for(all_flat, "every sub-account flattened")
    await wait_done(pool)
    states = await pool.fetch("SELECT state FROM order_intents WHERE kind = 'liquidate'")
    assert [r["state"] for r in states] == ["done"] * 3  # none expired


async def test_a_failed_contract_lookup_does_not_stop_the_other_accounts(
    database: Database, start: Start
) -> None:
    pool = database.pool
    u = await make_user(pool, "fl")
    rec = await make_recorder(pool, u, "rec", size=1)
    (a,) = await make_paper_account(pool, u, "fl-a")
    (b,) = await make_paper_account(pool, u, "fl-b")
    await make_trader(pool, u, rec, [(a, 1), (b, 1)])
    aid_a, _ = await account_of(pool, a)
    flaky = FlakyContracts()
    engine = await start({aid_a: flaky})
    await send(engine, pool, rec, buy())
    flaky.broken = True  # fl-a's contract cannot be looked up for now

    async def flat(sub: int) -> bool:
        return await positions(engine, pool, sub) == {}

    async def reported() -> bool:
        return bool((await flatten_flag(pool)).get("progress", {}).get("left"))

    with structlog.testing.capture_logs() as logs:
        await request_flatten(engine, pool)
        await wait_for(lambda: flat(b), "fl-b flattened despite fl-a's failure")
        await wait_for(reported, "fl-a reported left")
    assert "done_at" not in await flatten_flag(pool)
    assert await positions(engine, pool, a) != {}
    left = [e for e in logs if e["event"] == "engine.flatten_incomplete"]
    assert left
    assert left[0]["log_level"] == "error"
    assert f"sub {a} " in left[0]["detail"]
    assert "TransientBrokerError" in left[0]["detail"]

    flaky.broken = False  # the next pass closes it
    await wait_for(lambda: flat(a), "fl-a flattened on a later pass", 10)
    await wait_done(pool)
    assert (await flatten_flag(pool))["progress"]["left"] == []


async def test_an_unsynced_account_keeps_the_request_pending_until_it_is_flat(
    database: Database, start: Start
) -> None:
    pool = database.pool
    blind = Blind()
    engine, _, a = await one_long(pool, start, "un", size=2, paper=blind)
    blind.synced = False  # mid-reconnect when the request arrives: missing is not flat

    await request_flatten(engine, pool)

    async def reported() -> bool:
        return bool((await flatten_flag(pool)).get("progress", {}).get("left"))

    await wait_for(reported, "what is left reported on the request")
    f = await flatten_flag(pool)
    assert "done_at" not in f
    (left,) = f["progress"]["left"]
    assert left["sub_account_id"] == a
    assert "not synced" in left["why"]
    assert await positions(engine, pool, a) != {}

    blind.synced = True

    async def flat() -> bool:
        return await positions(engine, pool, a) == {}

    await wait_for(flat, "flattened once the view is back", 10)
    await wait_done(pool)
    assert (await flatten_flag(pool))["progress"]["left"] == []


async def test_a_liquidation_the_broker_refused_once_is_retried_until_flat(
    database: Database, start: Start
) -> None:
    """A refusal (a risk check, a busy venue) ended the request at once, the position open and
    the request done: it is asked again after the back-off."""
    pool = database.pool
    refusing = Refusing()
    engine, _, a = await one_long(pool, start, "ro", paper=refusing)
    fast_retries(engine)
    refusing.refuse = 1

    await request_flatten(engine, pool)
    await wait_done(pool)

    assert await positions(engine, pool, a) == {}
    progress = (await flatten_flag(pool))["progress"]
    assert progress["refused"] == []
    assert progress["left"] == []
    states = await pool.fetch(
        "SELECT state FROM order_intents WHERE kind = 'liquidate' ORDER BY id"
    )
    assert [r["state"] for r in states] == ["rejected", "done"]


async def test_a_liquidation_the_broker_keeps_refusing_is_given_up_and_said(
    database: Database, start: Start
) -> None:
    """Refused again and again (a closed market): the request stays pending with the refusal
    on it, is asked again up to ``max_refusals`` times, then ends naming what is still open."""
    pool = database.pool
    refusing = Refusing()
    engine, _, a = await one_long(pool, start, "rf", paper=refusing)
    engine._flattener._max_refusals = 3
    engine._flattener._retry_s = engine._flattener._max_retry_s = 1.0  # room to look between
    refusing.refuse = -1

    async def reported() -> bool:
        return bool((await flatten_flag(pool)).get("progress", {}).get("left"))

    with structlog.testing.capture_logs() as logs:
        await request_flatten(engine, pool)
        await wait_for(reported, "the refusal reported on the pending request")
        f = await flatten_flag(pool)
        assert "done_at" not in f
        lefts = f["progress"]["left"]
        assert len(lefts) == 1, lefts
        (left,) = lefts
        assert left["sub_account_id"] == a
        # the same words on each attempt: a pass that has nothing new to say writes nothing
        assert left["why"] == "refused by the broker, tried again (up to 3 times): Market is closed"
        await wait_done(pool)

        # logged once the request's row is written done: the row can be read before the log
        async def said_so() -> bool:
            return any(e["event"] == "engine.flatten_refused" for e in logs)

        await wait_for(said_so, "the refusal logged")

    progress = (await flatten_flag(pool))["progress"]
    assert progress["left"] == []
    (refused,) = progress["refused"]
    assert refused["sub_account_id"] == a
    assert "3 times, given up: " in refused["why"]
    assert "Market is closed" in refused["why"]
    assert await positions(engine, pool, a) != {}  # refused, and not reported as closed
    assert len(await liquidation_ids(pool)) == 3
    (said,) = [e for e in logs if e["event"] == "engine.flatten_refused"]
    assert said["log_level"] == "error"
    assert f"sub {a} " in said["detail"]


# --- positions no trader links any more ---------------------------------------------------------


async def mirrored(pool: asyncpg.Pool, sub_id: int) -> int:
    return int(
        await pool.fetchval(
            "SELECT COALESCE(sum(net_pos), 0) FROM positions WHERE sub_account_id = $1", sub_id
        )
    )


async def test_flatten_closes_a_position_whose_trader_was_deleted(
    database: Database, start: Start
) -> None:
    """The flatten walked the traders' links only: a position whose trader was deleted stayed
    open at the broker, and the request said done."""
    pool = database.pool
    engine, _, a = await one_long(pool, start, "td", size=2)
    await wait_for(lambda: _is(mirrored(pool, a), 2), "the position mirrored")
    await pool.execute("DELETE FROM traders")
    await engine.config.refresh()
    assert a not in engine.config.snapshot.links_by_sub

    await request_flatten(engine, pool)
    await wait_done(pool)

    assert await positions(engine, pool, a) == {}
    assert (await flatten_flag(pool))["progress"]["closed"] == 1
    # the mirror follows a sub-account no trader links: `status` does not show it open
    await wait_for(lambda: _is(mirrored(pool, a), 0), "the liquidation mirrored")


async def test_flatten_restores_and_closes_a_paper_login_no_trader_links(
    database: Database, start: Start
) -> None:
    """After a restart a paper login no trader links has no state in memory: the flatten found
    it flat. Its stored positions are put back first, then closed."""
    pool = database.pool
    engine, _, a = await one_long(pool, start, "pl")
    await wait_for(lambda: _is(mirrored(pool, a), 1), "the position mirrored")
    await engine.close()
    await pool.execute("DELETE FROM traders")
    engine = await start()  # a new run: nothing links the login, nothing of it is restored
    assert a not in engine.config.snapshot.links_by_sub
    aid, _ = await account_of(pool, a)
    symbol = await pool.fetchval("SELECT symbol FROM positions WHERE sub_account_id = $1", a)
    engine.brokers.paper(aid).on_price(symbol, Decimal("21500"))  # paper fills need a price

    await request_flatten(engine, pool, "pl-a")
    await wait_done(pool)

    progress = (await flatten_flag(pool))["progress"]
    assert progress["closed"] == 1, progress
    assert await positions(engine, pool, a) == {}
    assert len(await liquidation_ids(pool)) == 1
    await wait_for(lambda: _is(mirrored(pool, a), 0), "the liquidation mirrored")


async def _is(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_a_request_run_again_after_a_crash_finds_its_clordids(
    database: Database, start: Start
) -> None:
    from jtrades.engine.steps import flatten_prefix

    pool = database.pool
    engine, rec, a = await one_long(pool, start, "cr")
    await request_flatten(engine, pool, "cr-a", halted=False)  # so the next entry goes out
    await wait_done(pool)
    # a crash before the request was marked done: the next run of the same request, with no
    # memory of the first, finds the first's clOrdId and does not reuse it
    await send(engine, pool, rec, buy())
    engine._flattener._done.clear()
    await pool.execute(
        "UPDATE system_flags SET value = value #- ARRAY['flattens', $1, 'done_at']", REQUESTED_AT
    )
    await engine.config.refresh()
    await wait_done(pool)
    assert await positions(engine, pool, a) == {}
    (symbol,) = {r["symbol"] for r in await pool.fetch("SELECT symbol FROM order_intents")}
    base = flatten_prefix(REQUESTED_AT, a, symbol)
    assert await liquidation_ids(pool) == [f"{base}-1", f"{base}-2"]


# --- requests from the CLI: they accumulate, end on `resume`, and cost no reload per pass -------


async def cli(db_url: str, data_dir: Path, *args: str) -> None:
    r = await ainvoke(list(args), db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr


def fast_retries(engine: Engine) -> None:
    """Passes moments apart, so a test sees several of them."""
    engine._flattener._retry_s, engine._flattener._max_retry_s = 0.05, 0.1


async def one_blind_of_two(
    pool: asyncpg.Pool, start: Start, name: str, *, blind: str = "a"
) -> tuple[Engine, Blind, int, int]:
    """A user long 1 through one recorder on two paper logins ``{name}-a`` and ``{name}-b``;
    then the ``blind`` one's live view is lost (a flatten leaves it pending until it is back).
    Passes follow each other fast. (engine, the blind login's broker, sub a, sub b)."""
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", size=1)
    (a,) = await make_paper_account(pool, u, f"{name}-a")
    (b,) = await make_paper_account(pool, u, f"{name}-b")
    await make_trader(pool, u, rec, [(a, 1), (b, 1)])
    aid, _ = await account_of(pool, a if blind == "a" else b)
    view = Blind()
    engine = await start({aid: view})
    fast_retries(engine)
    await send(engine, pool, rec, buy())
    view.synced = False
    return engine, view, a, b


def logged(logs: list[dict[str, Any]], event: str, times: int = 1) -> Callable[[], Awaitable[bool]]:
    """A condition for ``wait_for``: ``event`` was logged at least ``times`` times."""

    async def cond() -> bool:
        return sum(e["event"] == event for e in logs) >= times

    return cond


async def test_a_flatten_of_one_login_keeps_a_pending_flatten_of_everything(
    database: Database, start: Start, db_url: str, data_dir: Path
) -> None:
    """The second request replaced the first: the engine gave up the flatten of everything and
    the other login's position stayed open."""
    pool = database.pool
    # ga-b cannot be closed for now: the request stays pending
    engine, blind, a, b = await one_blind_of_two(pool, start, "ga", blind="b")

    with structlog.testing.capture_logs() as logs:
        await cli(db_url, data_dir, "halt", "--flatten")
        await wait_for(lambda: flat(engine, pool, a), "ga-a flattened")
        await wait_for(logged(logs, "engine.flatten_incomplete"), "ga-b left")
        await cli(db_url, data_dir, "halt", "--account", "ga-a", "--flatten")
        await engine.config.refresh()
        blind.synced = True
        await wait_for(lambda: flat(engine, pool, b), "ga-b flattened all the same", 10)


async def test_two_flattens_of_two_logins_are_both_carried_out(
    database: Database, start: Start, db_url: str, data_dir: Path
) -> None:
    pool = database.pool
    engine, blind, a, b = await one_blind_of_two(pool, start, "tw")

    with structlog.testing.capture_logs() as logs:
        await cli(db_url, data_dir, "halt", "--account", "tw-a", "--flatten")
        await wait_for(logged(logs, "engine.flatten_incomplete"), "tw-a left")
        await cli(db_url, data_dir, "halt", "--account", "tw-b", "--flatten")
        await engine.config.refresh()
        await wait_for(lambda: flat(engine, pool, b), "tw-b flattened")
        blind.synced = True
        await wait_for(lambda: flat(engine, pool, a), "tw-a flattened all the same", 10)


async def test_resuming_a_login_ends_its_flatten(
    database: Database, start: Start, db_url: str, data_dir: Path
) -> None:
    """``resume --account`` left the request pending: the engine went on liquidating the login
    its owner had just resumed."""
    pool = database.pool
    engine, blind, a, _ = await one_blind_of_two(pool, start, "rs")

    with structlog.testing.capture_logs() as logs:
        await cli(db_url, data_dir, "halt", "--account", "rs-a", "--flatten")
        await wait_for(logged(logs, "engine.flatten_incomplete"), "rs-a left")
        await cli(db_url, data_dir, "resume", "--account", "rs-a")
        await engine.config.refresh()
        assert engine.config.snapshot.flatten is None  # the engine agrees: nothing pending
        sent = await liquidation_ids(pool)
        blind.synced = True
        await wait_for(logged(logs, "engine.flatten_abandoned"), "the flatten ended")
    assert await positions(engine, pool, a) != {}  # resumed: its position is its owner's again
    assert await liquidation_ids(pool) == sent


async def test_a_resume_ends_a_flatten_waiting_out_a_long_retry_at_once(
    database: Database, start: Start
) -> None:
    """A flatten that cannot finish backs off up to 30 s between passes; slept whole, a
    resume early in such a wait was acted on only at its end (and a pass in between could
    liquidate what its owner had just taken back)."""
    pool = database.pool
    engine, *_ = await one_blind_of_two(pool, start, "lw")
    engine._flattener._retry_s = engine._flattener._max_retry_s = 20.0
    with structlog.testing.capture_logs() as logs:
        await request_flatten(engine, pool)
        await wait_for(logged(logs, "engine.flatten_incomplete"), "the first pass")
        await pool.execute(  # what `resume` writes
            "UPDATE system_flags SET value = $1 WHERE name = 'halted'",
            {"halted": False, "flattens": {}},
        )
        await engine.config.refresh()
        await wait_for(logged(logs, "engine.flatten_abandoned"), "the flatten ended", 2.0)


async def test_an_incomplete_flatten_does_not_reload_the_configuration_every_pass(
    database: Database, start: Start
) -> None:
    """Each pass wrote its progress on the flag, whose trigger reloads the whole configuration."""
    pool = database.pool
    engine, *_ = await one_blind_of_two(pool, start, "pr")
    flag_at = "SELECT updated_at FROM system_flags WHERE name = 'halted'"

    with structlog.testing.capture_logs() as logs:
        await request_flatten(engine, pool)
        # a pass writes before the next begins: by the third, the first two have written
        await wait_for(logged(logs, "engine.flatten_incomplete", 3), "three passes")
        before = await pool.fetchval(flag_at)
        await wait_for(logged(logs, "engine.flatten_incomplete", 8), "eight passes")
    assert await pool.fetchval(flag_at) == before  # nothing new to say: nothing written


async def test_a_request_written_before_the_upgrade_is_carried_out(
    database: Database, start: Start
) -> None:
    """Migration 0004 moves a request of the single ``flatten`` key under ``flattens``."""
    pool = database.pool
    engine, _, a = await one_long(pool, start, "up")
    legacy = {"requested_at": REQUESTED_AT, "account": "up-a"}
    await pool.execute(
        "INSERT INTO system_flags (name, value) VALUES ('halted', $1)",
        {"halted": True, "by": "cli:ops", "flatten": legacy},
    )
    (mig,) = [m for m in migrations() if m.name == "flatten_requests"]
    await pool.execute(mig.sql())
    value = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    assert value == {"halted": True, "by": "cli:ops", "flattens": {REQUESTED_AT: legacy}}

    await engine.config.refresh()
    await wait_for(lambda: flat(engine, pool, a), "the request carried out")
    await wait_done(pool)


async def test_a_resume_while_the_liquidation_waits_for_the_lock_sends_nothing(
    database: Database, start: Start
) -> None:
    """The request was pending when its liquidation was queued, no longer when its plan ran
    under the sub-account's lock: the resumed account's position is its owner's again."""
    pool = database.pool
    engine, _, sub = await one_long(pool, start, "rl")
    lock = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[sub])
    with structlog.testing.capture_logs() as logs:
        async with lock:  # an alert of the account's is being dispatched
            await request_flatten(engine, pool)
            await until(lambda: waited_on(lock), what="the flattener waiting for the lock")
            await pool.execute(  # what `resume` writes
                "UPDATE system_flags SET value = $1 WHERE name = 'halted'",
                {"halted": False, "flattens": {}},
            )
            await engine.config.refresh()
        await wait_for(logged(logs, "engine.flatten_abandoned"), "the flatten ended")
    assert await positions(engine, pool, sub) != {}  # resumed: the position is its owner's
    assert await liquidation_ids(pool) == []


async def test_an_alert_waiting_for_a_lock_does_not_open_on_a_login_halted_meanwhile(
    database: Database, start: Start, db_url: str, data_dir: Path
) -> None:
    """The kill switch was read once, at the gate: an entry that passed it, then waited for
    the sub-account's lock (a protection pass, an earlier alert's settle), opened short on a
    login halted and flattened meanwhile. The signal's other account, free, is not held up
    by that wait: it trades at once, before the halt."""
    pool = database.pool
    u = await make_user(pool, "hl")
    rec = await make_recorder(pool, u, "rec", size=1)
    (a,) = await make_paper_account(pool, u, "hl-a")
    (b,) = await make_paper_account(pool, u, "hl-b")
    await make_trader(pool, u, rec, [(a, 1), (b, 1)])
    engine = await start({})
    await send(engine, pool, rec, buy())
    lock_b = engine.dispatcher.lock_for(engine.config.snapshot.links_by_sub[b])
    await lock_b.acquire()
    alert = asyncio.create_task(send(engine, pool, rec, Signal(Action.SELL, ticker="MNQ1!",
                                                               price=Decimal("21500"))))  # fmt: skip
    await until(lambda: waited_on(lock_b) or alert.done(), what="the alert at hl-b's lock")
    assert not alert.done()  # past the gate, waiting for hl-b's lock
    await wait_for(
        lambda: _holds(engine, pool, a, [-1]), "hl-a reversed meanwhile, not held up by hl-b"
    )

    await cli(db_url, data_dir, "halt", "--account", "hl-b", "--flatten")
    await engine.config.refresh()
    lock_b.release()  # the alert's plan for hl-b comes first, then the flatten
    out = await alert

    async def done() -> bool:
        value = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
        return all(r.get("done_at") for r in value["flattens"].values())

    await wait_for(done, "the flatten of hl-b marked done")
    assert await flat(engine, pool, b)  # was short 1 on the halted, flattened login
    assert list((await positions(engine, pool, a)).values()) == [-1]  # not halted: reversed
    assert "halted" in out.detail["accounts"][str(b)]["reason"]


async def _holds(engine: Engine, pool: asyncpg.Pool, sub: int, want: list[int]) -> bool:
    return list((await positions(engine, pool, sub)).values()) == want
