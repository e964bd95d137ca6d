"""A plain `resume` leaves the flatten of a login that stays halted; a flatten does not take a
paper login whose stored book could not be restored for flat (rule 6). Real Postgres, the
engine, the CLI."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.errors import StorageUnavailable
from jtrades.store import flatten as flatten_store
from jtrades.store import trading as trading_store
from tests.cli import ainvoke
from tests.integration.test_engine import (
    account_of,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    wait_for,
)
from tests.integration.test_flatten import (
    Start,
    _is,
    cli,
    fast_retries,
    flatten_flag,
    liquidation_ids,
    logged,
    mirrored,
    one_blind_of_two,
    one_long,
    positions,
    request_flatten,
    wait_done,
)
from tests.integration.test_flatten import (
    start as start,  # the fixture
)
from tests.login_rows import hold_password
from tests.polling import until
from tests.sim_worlds import sim_tradovate
from tests.simutil import running_sim


async def test_plain_resume_keeps_the_flatten_of_a_login_that_stays_halted(
    database: Database,
    start: Start,
    db_url: str,
    data_dir: Path,
) -> None:
    """README: `resume` "lifts the switch it names: plain `resume` the global one (logins
    halted with --account stay halted ...)". rf-a was halted with --flatten; its flatten is
    still retrying (the view is reconnecting). A plain `resume` to lift the global switch
    leaves rf-a halted but silently ends its flatten: once the view is back nothing closes
    the position, and no entry or flatten will (its login is halted)."""
    pool = database.pool
    engine, blind, a, _ = await one_blind_of_two(pool, start, "rf")
    with structlog.testing.capture_logs() as logs:
        await cli(db_url, data_dir, "halt")  # the global switch, for something else
        await cli(db_url, data_dir, "halt", "--account", "rf-a", "--flatten")
        await engine.config.refresh()
        await wait_for(logged(logs, "engine.flatten_incomplete"), "rf-a left for the next pass")
        r = await ainvoke(["resume", "--json"], db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 0, r.stderr
        await engine.config.refresh()
        assert r.json()["still_halted"] == ["rf-a"]  # the login stays halted ...
        blind.synced = True  # ... its view is back
        await wait_for(lambda: _is_flat(engine, pool, a), "rf-a flattened as asked", 5)


async def _is_flat(engine: Any, pool: Any, sub: int) -> bool:
    return await positions(engine, pool, sub) == {}


async def test_a_flatten_does_not_take_an_unrestored_paper_login_for_flat(
    database: Database,
    start: Start,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Missing is not flat (rule 6). After a restart a paper login no trader links is restored
    by the flatten's ``reach``; when that restore fails once (the database hiccups), the
    flatten logs ``engine.flatten_unreachable`` and goes on with the empty paper book
    (``PaperBroker.is_synced`` is always True, ``_flatten_account`` never asks
    ``BrokerRegistry.restored``): "already flat", the request is marked done with 0 closed,
    and the stored position comes back on the next restore with the request done."""
    pool = database.pool
    engine, _, a = await one_long(pool, start, "ur")
    await wait_for(lambda: _is(mirrored(pool, a), 1), "the position mirrored")
    await engine.close()
    await pool.execute("DELETE FROM traders")
    engine = await start()
    aid, _ = await account_of(pool, a)
    symbol = await pool.fetchval("SELECT symbol FROM positions WHERE sub_account_id = $1", a)
    engine.brokers.paper(aid).on_price(symbol, Decimal("21500"))

    real = trading_store.positions
    down = [True]  # the database refuses the restore's read for a moment

    async def hiccup(ex: Any, ids: list[int]) -> list[dict[str, Any]]:
        if down[0]:
            raise StorageUnavailable("connection reset (injected)")
        return await real(ex, ids)

    monkeypatch.setattr(trading_store, "positions", hiccup)
    await request_flatten(engine, pool, "ur-a")

    async def left_unrestored() -> bool:
        left = (await flatten_flag(pool)).get("progress", {}).get("left", [])
        return any(x["why"] == "paper state not restored" for x in left)

    await wait_for(left_unrestored, "the pass leaves the unrestored login for the next", 10)
    assert (await flatten_flag(pool)).get("done_at") is None
    down[0] = False  # the database is back: the login is restored (next config sync / alert)
    await engine.brokers.reach([engine.config.snapshot.subs[a]])
    await wait_done(pool, limit_s=30)  # the next pass closes what the restore put back
    assert await positions(engine, pool, a) == {}
    assert await liquidation_ids(pool), "closed by the flatten's liquidation"


async def test_a_flatten_leaves_a_position_on_an_account_with_no_row_pending(
    database: Database, settings: Any
) -> None:
    """The login px_tv holds PX1 and PX2; only PX1 has a row (PX2 came after the last
    `accounts sync`). The flatten cannot write an intent for PX2 (rule 1); it marked the
    request done with PX2 still long. Now PX2 is left, named, and once its row exists (the
    sync) the next pass closes it."""
    pool = database.pool
    async with running_sim() as sim:
        sim.add_login("px_tv", "px-pw", ["PX1", "PX2"])
        await sim.set_price("MNQ", "21500")
        tv = TradovatePool(sim_tradovate(settings, sim))
        try:
            broker = await tv.broker("demo", "px_tv", "px-pw")
            u = await make_user(pool, "alice")
            rec = await make_recorder(pool, u, "alice-rec", size=1)
            aid = await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username)"
                " VALUES ($1, 'alice-demo', 'demo', 'px_tv') RETURNING id",
                u,
            )
            await hold_password(pool, aid, "px-pw", proven=True)
            sub1 = await pool.fetchval(
                "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                " VALUES ($1, $2, 'PX1') RETURNING id",
                aid,
                sim.account_id("PX1"),
            )
            await make_trader(pool, u, rec, [(sub1, 1)])
            brokers = BrokerRegistry(database, settings)
            brokers.attach(aid, "demo", broker)
            engine = Engine(database, settings, brokers)
            await engine.start()
            fast_retries(engine)
            try:
                bid2 = sim.account_id("PX2")
                symbol = (await broker.find_contract("MNQ1!")).symbol
                await broker.place_order(OrderRequest(SubAccount(bid2, "PX2"), symbol, Side.BUY, 1))
                await until(lambda: sim.positions("PX2") == {symbol: 1})
                await request_flatten(engine, pool, "alice-demo")

                async def left_rowless() -> bool:
                    left = (await flatten_flag(pool)).get("progress", {}).get("left", [])
                    return any("has no sub-account row" in x["why"] for x in left)

                await wait_for(left_rowless, "PX2 named as left", 10)
                assert (await flatten_flag(pool)).get("done_at") is None
                assert sim.positions("PX2") == {symbol: 1}
                await pool.execute(  # what `accounts sync alice-demo` stores
                    "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
                    " VALUES ($1, $2, 'PX2')",
                    aid,
                    bid2,
                )
                await engine.config.refresh()
                await wait_done(pool, limit_s=30)
                assert sim.positions("PX2") == {}
            finally:
                await engine.close()
        finally:
            await tv.close()


async def _pending(pool: Any) -> dict[str, dict[str, Any]]:
    value = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    return flatten_store.pending(value)


async def test_a_flatten_given_back_by_a_plain_resume_is_carried_out(
    database: Database, start: Start, db_url: str, data_dir: Path
) -> None:
    """gb-a halted with --flatten; its view is reconnecting, so the request retries. A flatten
    of everything then covers it (its task ends, "taken over"). A plain `resume` ends the
    flatten of everything and gives gb-a's back (gb-a stays halted): the flag says pending,
    `resume` says "their flatten goes on". The engine took that request on once in this run
    (``Flattener._done``) and never again: gb-a stays long under its kill switch."""
    pool = database.pool
    engine, blind, a, _ = await one_blind_of_two(pool, start, "gb")
    with structlog.testing.capture_logs() as logs:
        await cli(db_url, data_dir, "halt", "--account", "gb-a", "--flatten")
        await engine.config.refresh()
        await wait_for(logged(logs, "engine.flatten_incomplete"), "gb-a left for the next pass")
        await cli(db_url, data_dir, "halt", "--flatten")  # everything: covers gb-a's request
        await engine.config.refresh()
        await wait_for(logged(logs, "engine.flatten_abandoned"), "gb-a's own request ended")
        r = await ainvoke(["resume", "--json"], db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 0, r.stderr
        assert r.json()["still_halted"] == ["gb-a"]
        kept = r.json()["flattens_kept"]
        assert len(kept) == 1, r.json()
        await engine.config.refresh()
        assert kept[0] in (engine.config.snapshot.flatten or {})  # pending to the engine too
        blind.synced = True  # the view is back
        await wait_for(lambda: _is_flat(engine, pool, a), "gb-a flattened as the flag says", 8)


async def test_resume_account_ends_a_covered_flatten_for_good(
    database: Database, db_url: str, data_dir: Path
) -> None:
    """`halt --flatten` (everything), then `halt --account L --flatten` (kept, covered), then
    `resume --account L`: L is resumed, and the CLI says only the flatten of everything keeps
    closing L ("`jtrades resume` ends it"). L is later halted again WITHOUT --flatten, to stop
    its entries. A plain `resume` then gives L's old covered request back: a flatten nobody
    asked for any more (its owner resumed it) liquidates L."""
    pool = database.pool
    u = await make_user(pool, "cv")
    await make_paper_account(pool, u, "cv-a")
    await cli(db_url, data_dir, "halt", "--flatten")
    await cli(db_url, data_dir, "halt", "--account", "cv-a", "--flatten")
    r = await ainvoke(["resume", "--account", "cv-a", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert r.json()["still_flattening"], r.json()  # told: the flatten of everything goes on
    await cli(db_url, data_dir, "halt", "--account", "cv-a")  # entries only, no flatten
    r = await ainvoke(["resume", "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    back = await _pending(pool)
    assert not back, (
        f"a plain resume started a flatten of cv-a that `resume --account cv-a` had ended:"
        f" {back}; resume said flattens_kept={r.json()['flattens_kept']}"
    )


async def test_a_login_flatten_asked_twice_under_everything_comes_back_once(
    database: Database, db_url: str, data_dir: Path
) -> None:
    """`add` keeps one pending request per login; asked twice while a flatten of everything
    covered it, two covered copies pile up and a plain `resume` gives both back."""
    pool = database.pool
    u = await make_user(pool, "pl")
    await make_paper_account(pool, u, "pl-a")
    await cli(db_url, data_dir, "halt", "--flatten")
    await cli(db_url, data_dir, "halt", "--account", "pl-a", "--flatten")
    await cli(db_url, data_dir, "halt", "--account", "pl-a", "--flatten")
    await cli(db_url, data_dir, "resume")
    back = await _pending(pool)
    assert len(back) == 1, f"{len(back)} pending flattens of one login: {list(back)}"
