"""Signal verdicts and counts a review found wrong (DESIGN §5.9: every rejection is
explainable; an entry never made uses no count; §5.6: missing is not flat).

- An entry every account ignored at ``--max-contracts`` was stored "accepted" with no reason,
  and used the recorder's max-signals and cooldown turn: the session's next real entry was
  refused for a limit nothing had been traded towards.
- An order the broker would not take the request for (a p-ticket, a 429, a session
  reconnecting: nothing reached it) was blamed on the signal TTL: "its orders waited past the
  30s signal TTL", the broker's penalty only on the intent.
- The daily-loss filter counted the open P&L of a sub-account whose positions could not be
  read as 0: a trader's other sub-accounts opened new entries on a day already past its limit.

Real Postgres, the engine and the paper broker (the Tradovate simulator for the broker's
answers).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import Position
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from jtrades.errors import TransientBrokerError
from tests.integration.test_dispatch import sim_engine
from tests.integration.test_engine import (
    buy,
    close,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    store_signal,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)

_CAPPED = {"size": 1, "same_direction": "add", "dca": True, "max_contracts": 1}


async def _capped_follower(pool: Any, name: str, **recorder: Any) -> tuple[int, int]:
    """A recorder adding to a position up to ``--max-contracts 1``, followed on one paper
    sub-account: (recorder id, sub-account id)."""
    u = await make_user(pool, name)
    rec = await make_recorder(pool, u, "rec", **_CAPPED, **recorder)
    (sub,) = await make_paper_account(pool, u, f"{name}-paper")
    await make_trader(pool, u, rec, [(sub, 1)])
    return rec, sub


async def test_an_add_every_account_ignores_at_max_contracts_is_rejected_saying_so(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub = await _capped_follower(pool, "mcv")
    engine = await engine_factory()
    assert (await send(engine, pool, rec, buy("21500"))).verdict == "accepted"
    assert await net_pos(engine, pool, sub) == 1

    out = await send(engine, pool, rec, buy("21501"))  # the account is at the cap

    assert out.orders == 0
    assert await net_pos(engine, pool, sub) == 1
    assert (out.verdict, out.filter) == ("rejected", "max_contracts"), out
    assert "at --max-contracts 1" in (out.reason or ""), out.reason
    # what a restart counts: no entry, for the recorder or the trader
    assert out.detail["entry"] is False
    assert out.detail["trader_entries"] == []


async def test_an_add_ignored_at_max_contracts_uses_no_max_signals_turn(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub = await _capped_follower(pool, "mcs", max_signals=2)
    engine = await engine_factory()
    assert (await send(engine, pool, rec, buy("21500"))).verdict == "accepted"
    assert (await send(engine, pool, rec, buy("21501"))).orders == 0  # at the cap
    await send(engine, pool, rec, close("21502"))
    assert await net_pos(engine, pool, sub) == 0

    out = await send(engine, pool, rec, buy("21503"))  # the session's second real entry

    assert out.verdict == "accepted", (out.filter, out.reason)
    assert await net_pos(engine, pool, sub) == 1


async def test_an_entry_ignored_at_max_contracts_starts_no_cooldown(
    database: Database, engine_factory: Any
) -> None:
    """The account already holds the cap (opened by another recorder): the recorder's buy
    trades nothing, and its hour-long cooldown must not start from it."""
    pool = database.pool
    u = await make_user(pool, "mcc")
    rec = await make_recorder(pool, u, "rec", **_CAPPED, cooldown_s=3600)
    opener = await make_recorder(pool, u, "opener", size=1)
    (sub,) = await make_paper_account(pool, u, "mcc-paper")
    await make_trader(pool, u, opener, [(sub, 1)])
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    await send(engine, pool, opener, buy("21500"))
    assert await net_pos(engine, pool, sub) == 1

    capped = await send(engine, pool, rec, buy("21501"))
    assert (capped.verdict, capped.filter, capped.orders) == ("rejected", "max_contracts", 0)
    await send(engine, pool, opener, close("21502"))
    assert await net_pos(engine, pool, sub) == 0

    out = await send(engine, pool, rec, buy("21503"))

    assert out.verdict == "accepted", (out.filter, out.reason)
    assert await net_pos(engine, pool, sub) == 1


async def test_an_entry_capped_on_one_account_and_traded_on_another_is_accepted(
    database: Database, engine_factory: Any
) -> None:
    """Some accounts at the cap, others trading: the entry was made, its counts stay."""
    pool = database.pool
    u = await make_user(pool, "mcmix")
    rec = await make_recorder(pool, u, "rec", **_CAPPED)
    opener = await make_recorder(pool, u, "opener", size=1)
    sub1, sub2 = await make_paper_account(pool, u, "mcmix-paper", subs=2)
    await make_trader(pool, u, opener, [(sub1, 1)])
    await make_trader(pool, u, rec, [(sub1, 1), (sub2, 1)])
    engine = await engine_factory()
    await send(engine, pool, opener, buy("21500"))
    assert await net_pos(engine, pool, sub1) == 1

    out = await send(engine, pool, rec, buy("21501"))  # sub1 at the cap, sub2 flat

    assert (out.verdict, out.filter) == ("accepted", None), out
    assert await net_pos(engine, pool, sub1) == 1
    assert await net_pos(engine, pool, sub2) == 1
    assert out.detail["entry"] is True
    assert len(out.detail["trader_entries"]) == 1


@pytest.mark.parametrize(
    ("kind", "said"), [("request_penalty", "Tradovate penalty"), ("rate_limit", "429")]
)
async def test_an_order_the_broker_would_not_take_is_not_blamed_on_the_ttl(
    settings: Settings, kind: str, said: str
) -> None:
    async with sim_engine(settings, {"pt_tv": ["PT1"]}) as (engine, sim, pool, rec, _subs):
        warm, at = await store_signal(pool, rec)  # the session is up and synced
        await engine.on_signal(
            signal_id=warm, recorder_id=rec, signal=Signal(Action.CLOSE, ticker="MNQ1!"),
            received_at=at,
        )  # fmt: skip
        sim.fault(kind, endpoint="order/placeorder", p_time=1)
        sid, at = await store_signal(pool, rec)
        entry = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))
        out = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=entry, received_at=at)

        assert sim.positions("PT1") == {}  # nothing placed
        row = await pool.fetchrow("SELECT state, reason FROM order_intents WHERE signal_id=$1", sid)
        assert row["state"] == "expired"
        assert "broker unavailable" in row["reason"]
        assert (out.verdict, out.filter, out.orders) == ("rejected", "broker", 0), out
        assert "TTL" not in (out.reason or ""), out.reason
        assert said in (out.reason or ""), out.reason
        # nothing reached the broker: no entry was made, for a restart either
        assert out.detail["entry"] is False
        assert out.detail["trader_entries"] == []


async def test_a_sub_account_whose_positions_cannot_be_read_stops_the_daily_loss_entry(
    database: Database, engine_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long 1 MNQ at 21500 on sub-account 1, the market now 21000 (-$1000 open, twice the
    $500 limit), and sub-account 1's view unreadable: its open loss counted as 0, and the
    trader's flat sub-account 2 opened a new position."""
    pool = database.pool
    u = await make_user(pool, "dlunread")
    rec = await make_recorder(pool, u, "rec", size=1)
    opener = await make_recorder(pool, u, "opener", size=1)
    sub1, sub2 = await make_paper_account(pool, u, "dlunread-paper", subs=2)
    await make_trader(pool, u, opener, [(sub1, 1)])
    await make_trader(pool, u, rec, [(sub1, 1), (sub2, 1)], max_daily_loss=Decimal(500))
    engine = await engine_factory()
    await send(engine, pool, opener, buy("21500"))
    assert await net_pos(engine, pool, sub1) == 1

    link = engine.config.snapshot.links_by_sub[sub1]
    paper = engine.brokers.paper(link.account_id)
    readable = paper.positions

    def positions(account_id: int) -> list[Position]:
        if account_id == link.broker_account_id:
            raise TransientBrokerError("the broker view of account 1 is not synced")
        return readable(account_id)

    monkeypatch.setattr(paper, "positions", positions)
    out = await send(engine, pool, rec, buy("21000"))
    monkeypatch.undo()

    assert await net_pos(engine, pool, sub2) == 0, (out.verdict, out.filter, out.reason)
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out
    assert "open P&L unknown" in (out.reason or ""), out.reason
    assert "cannot be read" in (out.reason or ""), out.reason
    assert "no price" not in (out.reason or ""), out.reason

    # a close is not a daily-loss matter: it goes through with the view unreadable elsewhere
    monkeypatch.setattr(paper, "positions", positions)
    closed = await send(engine, pool, opener, close("21000"))
    monkeypatch.undo()
    assert closed.filter != "max_daily_loss", closed


async def test_a_sub_account_with_no_broker_session_stops_the_daily_loss_entry(
    database: Database, engine_factory: Any
) -> None:
    """A trader's second sub-account is on a Tradovate login with no session (not up yet,
    or given up): its positions cannot be read, and its open loss counted as none."""
    pool = database.pool
    u = await make_user(pool, "dlnosession")
    rec = await make_recorder(pool, u, "rec", size=1)
    (paper_sub,) = await make_paper_account(pool, u, "dlnosession-paper")
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username)"
        " VALUES ($1, 'dlnosession-tv', 'demo', 'dlnosession_tv') RETURNING id",
        u,
    )
    tv_sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name)"
        " VALUES ($1, 77, 'DL77') RETURNING id",
        aid,
    )
    await make_trader(pool, u, rec, [(paper_sub, 1), (tv_sub, 1)], max_daily_loss=Decimal(500))
    engine = await engine_factory()

    out = await send(engine, pool, rec, buy("21500"))

    assert await net_pos(engine, pool, paper_sub) == 0, (out.verdict, out.filter, out.reason)
    assert (out.verdict, out.filter) == ("rejected", "max_daily_loss"), out
    assert "sub-account DL77 cannot be read" in (out.reason or ""), out.reason
