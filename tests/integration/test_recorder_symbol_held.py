"""`recorder edit --symbol` to another root, and `recorder delete`, while followers hold
positions are refused: every later alert of the recorder names the new root (a `close` for the
old one is refused for `symbol`), or there is none, and the position had no close path left
but the broker. A delete also takes other users' traders with it: refused without --force.
Real Postgres, the engine and its paper broker, the CLI."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.engine.signal import Action, Signal
from tests.cli import Result, ainvoke, invoke
from tests.integration.test_engine import (
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    wait_for,
)


async def test_a_symbol_change_is_refused_while_followers_hold_the_old_root(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    u = await make_user(pool, "alice")
    rec = await make_recorder(pool, u, "trend", size=1)
    (sub,) = await make_paper_account(pool, u, "ap")
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = Engine(database, settings)
    await engine.start()
    try:
        await send(engine, pool, rec, buy())
        assert await net_pos(engine, pool, sub) == 1  # long 1 MNQ

        r = await ainvoke(["recorder", "edit", "trend", "--symbol", "MES1!"], **cli)
        assert r.exit_code == 1, r.stdout
        assert "hold MNQ positions (ap:ap-1 MNQZ6 +1)" in r.stderr, r.stderr
        assert await pool.fetchval("SELECT symbol FROM recorders WHERE id = $1", rec) == "MNQ1!"
        r = await ainvoke(["recorder", "delete", "trend"], **cli)
        assert r.exit_code == 1, r.stdout
        assert "hold positions only its alerts close (ap:ap-1 MNQZ6 +1)" in r.stderr, r.stderr
        # the same root in another spelling is no change of instrument
        r = await ainvoke(["recorder", "edit", "trend", "--symbol", "CME_MINI:MNQ1!"], **cli)
        assert r.exit_code == 0, r.stderr

        close = Signal(Action.CLOSE, ticker="MNQ1!", price=Decimal(21500))
        await engine.config.refresh()
        assert (await send(engine, pool, rec, close)).verdict == "accepted"
        assert await net_pos(engine, pool, sub) == 0
        r = await ainvoke(["recorder", "edit", "trend", "--symbol", "MES1!"], **cli)
        assert r.exit_code == 0, r.stderr  # flat: the change is the user's to make
    finally:
        await engine.close()


def test_a_recorder_followed_by_other_users_is_deleted_only_with_force(
    db_url: str, data_dir: Path
) -> None:
    """`users reject` refused while other users' traders follow the recorders; `recorder delete`
    of the same public recorder deleted bob's enabled trader (his links, multipliers and
    overrides) and said only "(1 trader(s) removed)"."""

    def run(*args: str) -> Result:
        return invoke(list(args), db_url=db_url, data_dir=data_dir)

    for args in (
        ("users", "register", "alice", "--email", "a@x.io"),
        ("users", "approve", "alice"),
        ("users", "register", "bob", "--email", "b@x.io"),
        ("users", "approve", "bob"),
        ("accounts", "add", "bp", "--user", "bob", "--env", "paper"),
        ("recorder", "create", "pub", "--user", "alice", "--symbol", "MNQ1!", "--public"),
        ("trader", "create", "--user", "bob", "--recorder", "pub", "--account", "bp", "--enabled"),
    ):
        assert run(*args).exit_code == 0, args
    r = run("recorder", "delete", "pub")
    assert r.exit_code == 1
    assert "followed by other users' traders: bob (trader 1)" in r.stderr
    r = run("recorder", "delete", "pub", "--force")
    assert r.exit_code == 0, r.stderr
    assert "1 trader(s) removed" in r.stdout + r.stderr


async def _held(pool: Any, sub: int) -> bool:
    return bool(
        await pool.fetchval(
            "SELECT count(*) FROM positions WHERE sub_account_id = $1 AND net_pos <> 0", sub
        )
    )


async def test_a_symbol_edit_is_not_refused_for_another_recorders_position(
    database: Database, settings: Settings
) -> None:
    """Two recorders of one root on one sub-account: the other's long is its alerts' to close."""
    pool = database.pool
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    u = await make_user(pool, "alice")
    trend = await make_recorder(pool, u, "trend", size=1)  # MNQ1!, never traded
    scalp = await make_recorder(pool, u, "scalp", size=1)  # MNQ1!, holds long 1
    (sub,) = await make_paper_account(pool, u, "ap")
    await make_trader(pool, u, trend, [(sub, 1)])
    await make_trader(pool, u, scalp, [(sub, 1)])
    engine = Engine(database, settings)
    await engine.start()
    try:
        await send(engine, pool, scalp, buy())
        assert await net_pos(engine, pool, sub) == 1
        await wait_for(lambda: _held(pool, sub), "position mirrored")
        # trend never opened anything; scalp's alerts still close scalp's long
        r = await ainvoke(["recorder", "edit", "trend", "--symbol", "MES1!"], **cli)
        assert r.exit_code == 0, r.stderr
    finally:
        await engine.close()


async def test_a_delete_is_not_refused_for_another_roots_position(
    database: Database, settings: Settings
) -> None:
    """An ES position on a sub-account an MNQ recorder shares with an ES one is not the MNQ
    recorder's, and the ES recorder's alerts still close it."""
    pool = database.pool
    cli = {"db_url": settings.database.url, "data_dir": settings.data_dir}
    u = await make_user(pool, "alice")
    trend = await make_recorder(pool, u, "trend", size=1)  # MNQ1!
    es = await make_recorder(pool, u, "es", symbol="ES1!", size=1)
    (sub,) = await make_paper_account(pool, u, "ap")
    await make_trader(pool, u, trend, [(sub, 1)])
    await make_trader(pool, u, es, [(sub, 1)])
    engine = Engine(database, settings)
    await engine.start()
    try:
        out = await send(engine, pool, es, Signal(Action.BUY, ticker="ES1!", price=Decimal(6000)))
        assert out.verdict == "accepted", out
        await wait_for(lambda: _held(pool, sub), "position mirrored")
        # an ES position cannot be the MNQ recorder's; "no alert could close them once it
        # is gone" is false: the es recorder's alerts still do
        r = await ainvoke(["recorder", "delete", "trend"], **cli)
        assert r.exit_code == 0, r.stderr
    finally:
        await engine.close()
