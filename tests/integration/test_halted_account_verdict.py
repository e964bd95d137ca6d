"""`jtrades halt --account LABEL` and the signal's verdict (DESIGN §5.9: every rejection is
explainable; an entry never made uses no count).

An entry alert for a recorder whose only follower's login is halted was stored `accepted`,
0 orders, no reason, and it used the recorder's (and the trader's) max-signals and cooldown
turn: after `jtrades resume --account LABEL`, the strategy's next real entry was refused
"1 entries this session". The global `jtrades halt` stores the same alert `rejected` for
`halted` and uses no turn; a halted login now says the same, naming the login. A signal some
other account traded stays accepted, the halted one named.

Real Postgres, the engine and the paper broker.
"""

from __future__ import annotations

from typing import Any

from jtrades.db import Database
from jtrades.store import status as status_store
from tests.integration.test_engine import (
    buy,
    follower,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    sell,
    send,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


async def _halt(engine: Any, pool: Any, label: str, on: bool) -> None:
    """`jtrades halt --account LABEL` / `resume --account LABEL`, as the engine hears it."""
    await status_store.set_account_halted(pool, label, on)
    await engine.config.refresh()


async def test_an_entry_on_a_halted_account_is_not_accepted_and_uses_no_turn(
    database: Database, engine_factory: Any
) -> None:
    """The reviewer's case (README walk-through, halt --account)."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "hal", {"size": 1, "max_signals": 1})
    engine = await engine_factory()
    await _halt(engine, pool, "hal-paper", True)

    during = await send(engine, pool, rec, buy())
    assert during.orders == 0
    assert await net_pos(engine, pool, sub) == 0
    # rule 9: the row says why nothing was traded (the global halt says rejected/halted)
    problems = []
    if during.verdict == "accepted" and not during.reason:
        problems.append(f"halted entry stored accepted with no reason: {during}")

    await _halt(engine, pool, "hal-paper", False)
    after = await send(engine, pool, rec, buy())
    if after.verdict != "accepted" or await net_pos(engine, pool, sub) != 1:
        problems.append(
            "the first entry after `resume --account` was refused: the halted one used the "
            f"max-signals turn: {after.verdict} {after.filter}: {after.reason}"
        )
    assert not problems, problems


async def test_an_entry_on_a_halted_account_is_rejected_for_halted_naming_the_account(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, _sub, _ = await follower(pool, "haln", {"size": 1})
    engine = await engine_factory()
    await _halt(engine, pool, "haln-paper", True)

    out = await send(engine, pool, rec, buy())

    assert (out.verdict, out.filter, out.orders) == ("rejected", "halted", 0), out
    assert "haln-paper" in (out.reason or ""), out.reason
    assert "kill switch" in (out.reason or ""), out.reason
    # what a restart counts: no entry, for the recorder or the trader
    assert out.detail["entry"] is False
    assert out.detail["trader_entries"] == []
    row = await pool.fetchrow("SELECT verdict, filter, reason FROM signals ORDER BY id DESC")
    assert (row["verdict"], row["filter"]) == ("rejected", "halted"), dict(row)


async def test_a_halted_entry_starts_no_cooldown_for_the_recorder_or_the_trader(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "halc", {"size": 1, "cooldown_s": 3600}, {"cooldown_s": 3600, "max_signals": 1}
    )
    engine = await engine_factory()
    await _halt(engine, pool, "halc-paper", True)
    assert (await send(engine, pool, rec, buy())).filter == "halted"
    await _halt(engine, pool, "halc-paper", False)

    out = await send(engine, pool, rec, buy())

    assert out.verdict == "accepted", (out.filter, out.reason)
    assert await net_pos(engine, pool, sub) == 1


async def test_a_reversal_on_a_halted_account_closes_and_is_rejected_like_the_global_halt(
    database: Database, engine_factory: Any
) -> None:
    """Long 1, the strategy reverses while the login is halted: the close goes out (closes
    always pass), the short is not opened; as the global halt says of it, rejected for
    `halted`, and the entry it never made uses no turn."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "halr", {"size": 1, "max_signals": 2})
    engine = await engine_factory()
    assert (await send(engine, pool, rec, buy())).verdict == "accepted"
    assert await net_pos(engine, pool, sub) == 1
    await _halt(engine, pool, "halr-paper", True)

    out = await send(engine, pool, rec, sell())

    assert await net_pos(engine, pool, sub) == 0
    assert (out.verdict, out.filter, out.orders) == ("rejected", "halted", 1), out
    assert "halr-paper" in (out.reason or ""), out.reason
    assert out.detail["entry"] is False
    assert out.detail["trader_entries"] == []
    await _halt(engine, pool, "halr-paper", False)
    again = await send(engine, pool, rec, sell())  # the session's second entry: allowed
    assert again.verdict == "accepted", (again.filter, again.reason)
    assert await net_pos(engine, pool, sub) == -1


async def test_an_entry_traded_on_one_account_and_halted_on_another_stays_accepted(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "halmix")
    rec = await make_recorder(pool, u, "rec", size=1)
    (open_sub,) = await make_paper_account(pool, u, "halmix-open")
    (halted_sub,) = await make_paper_account(pool, u, "halmix-halted")
    trader = await make_trader(pool, u, rec, [(open_sub, 1), (halted_sub, 1)])
    engine = await engine_factory()
    await _halt(engine, pool, "halmix-halted", True)

    out = await send(engine, pool, rec, buy())

    assert (out.verdict, out.filter, out.orders) == ("accepted", None, 1), out
    assert await net_pos(engine, pool, open_sub) == 1
    assert await net_pos(engine, pool, halted_sub) == 0
    assert "halted" in out.detail["accounts"][str(halted_sub)]["reason"]
    assert "halmix-halted" in (out.reason or ""), out.reason  # named where people look
    assert out.detail["entry"] is True
    assert out.detail["trader_entries"] == [trader]


async def test_global_halt_for_comparison(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "glo", {"size": 1, "max_signals": 1})
    engine = await engine_factory()
    await pool.execute(
        "INSERT INTO system_flags (name, value) VALUES ('halted', $1)"
        " ON CONFLICT (name) DO UPDATE SET value = $1",
        {"halted": True},
    )
    await engine.config.refresh()
    during = await send(engine, pool, rec, buy())
    assert (during.verdict, during.filter) == ("rejected", "halted")
    await pool.execute(
        "UPDATE system_flags SET value = $1 WHERE name = 'halted'", {"halted": False}
    )
    await engine.config.refresh()
    after = await send(engine, pool, rec, buy())
    assert after.verdict == "accepted", after
    assert await net_pos(engine, pool, sub) == 1
