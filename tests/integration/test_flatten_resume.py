"""A plain `resume` leaves the flatten of a login that stays halted; a flatten does not take a
paper login whose stored book could not be restored for flat (rule 6). Real Postgres, the
engine, the CLI."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from jtrades.db import Database
from jtrades.errors import StorageUnavailable
from jtrades.store import trading as trading_store
from tests.cli import ainvoke
from tests.integration.test_engine import account_of, wait_for
from tests.integration.test_flatten import (
    Start,
    _is,
    cli,
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
        try:
            await wait_for(lambda: _is_flat(engine, pool, a), "rf-a flattened as asked", 5)
        except AssertionError as exc:
            raise AssertionError(
                f"rf-a still halted and still holding {await positions(engine, pool, a)}:"
                f" plain `resume` cancelled its flatten ({r.json()['cancelled_flattens']})"
            ) from exc


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
