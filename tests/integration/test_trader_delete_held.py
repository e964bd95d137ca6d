"""`trader delete` and `trader edit --account` while the trader's sub-accounts hold positions only
its recorder's alerts close: refused (unless --force), as `recorder delete` is. They went
through silently, and the strategy's next close alert no longer reached the position.

The engine trades on the paper broker; the CLI runs in-process against the same Postgres.
"""

from __future__ import annotations

from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from tests.cli import ainvoke
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
)


async def _long_1(database: Database, settings: Settings) -> tuple[Any, ...]:
    pool = database.pool
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "trend", size=1)
    sub, other = await make_paper_account(pool, u, "ap", subs=2)
    tid = await make_trader(pool, u, rec, [(sub, 1)])
    engine = Engine(database, settings)
    await engine.start()
    await send(engine, pool, rec, buy())
    assert await net_pos(engine, pool, sub) == 1
    return u, rec, sub, other, tid, engine


async def test_a_trader_holding_what_only_its_alerts_close_is_not_deleted_nor_moved(
    database: Database, settings: Settings
) -> None:
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    pool = database.pool
    _u, _rec, _sub, _other, tid, engine = await _long_1(database, settings)
    try:
        r = await ainvoke(["trader", "delete", str(tid)], **cli)
        assert r.exit_code == 1
        assert "hold positions only its recorder's alerts close (ap:ap-1 MNQ" in r.error_line()
        r = await ainvoke(["trader", "edit", str(tid), "--account", "ap:ap-2"], **cli)
        assert r.exit_code == 1
        assert "none could once unlinked from it" in r.error_line()
        links = await pool.fetch(
            "SELECT sub_account_id FROM trader_accounts WHERE trader_id=$1", tid
        )
        assert [r["sub_account_id"] for r in links] == [_sub]  # nothing changed
        # adding a sub-account beside the held one is no unlinking
        r = await ainvoke(["trader", "edit", str(tid), "--account", "ap"], **cli)
        assert r.exit_code == 0, r.stderr
        r = await ainvoke(["trader", "delete", str(tid), "--force"], **cli)
        assert r.exit_code == 0, r.stderr
        assert await pool.fetchval("SELECT count(*) FROM traders") == 0
    finally:
        await engine.close()


async def test_a_position_another_trader_of_the_root_still_closes_does_not_hold_it(
    database: Database, settings: Settings
) -> None:
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    pool = database.pool
    u, _rec, sub, _other, tid, engine = await _long_1(database, settings)
    try:
        second = await make_recorder(pool, u, "trend-2", size=1)
        await make_trader(pool, u, second, [(sub, 1)])
        r = await ainvoke(["trader", "delete", str(tid)], **cli)
        assert r.exit_code == 0, r.stderr
    finally:
        await engine.close()
