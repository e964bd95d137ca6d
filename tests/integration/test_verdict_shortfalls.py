"""Verdicts of signals some account followed less than asked, the holes 34a9b2e left
(``planning.Shortfall``, ``verdicts``).

1. A halted reversal on an account two traders of one recorder share: the losing trader's
   "outranked" result carried no shortfall, so the halted close-only winner did not count as
   "every account halted": stored accepted, the recorder's max-signals turn spent.
2. A reversal whose close went out and whose entry the broker refused (margin) or that was not
   sent: stored accepted, no reason, the trader's count kept; the broker's text only in
   ``detail.accounts[].messages``.
3. An ``add`` on a login halted with ``halt --account``: skipped by the fan-out with a note,
   stored accepted, where the global halt stores it rejected/halted.
4. An ``add`` refused because --dca is off, or with no open position: accepted, 0 orders, no
   reason.

Plus controls that held already: a close on a halted login goes out; a halted reversal's
give-back survives a restart.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from jtrades.broker.base import OrderRequest, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.plan_context import ENTRY_REFUSED, ENTRY_UNSENT
from jtrades.engine.planning import AccountPlan, AccountState, PlannedOrder, PositionAction
from jtrades.engine.signal import Action, Signal
from jtrades.store import status as status_store
from tests.integration.test_broker_refusals import engine_on_sim
from tests.integration.test_dispatch import FaultyBroker, items
from tests.integration.test_dispatch import setup as setup  # the fixture
from tests.integration.test_engine import (
    buy,
    close,
    follower,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    sell,
    send,
    store_signal,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)


def add() -> Signal:
    return Signal(Action.ADD, ticker="MNQ1!", price=Decimal("21500"))


async def _halt(engine: Any, pool: Any, label: str, on: bool) -> None:
    await status_store.set_account_halted(pool, label, on)
    await engine.config.refresh()


# --- 1. two traders on one halted account ---------------------------------------------------


async def test_halted_reversal_on_an_account_two_traders_share_uses_no_recorder_turn(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    u = await make_user(pool, "h2t")
    rec = await make_recorder(pool, u, "rec", size=1, max_signals=2)
    (sub,) = await make_paper_account(pool, u, "h2t-paper")
    # one user, two traders on one sub-account (windows, or sizes split): both plain
    await make_trader(pool, u, rec, [(sub, 1)])
    await make_trader(pool, u, rec, [(sub, 1)])
    engine = await engine_factory()
    first = await send(engine, pool, rec, buy())  # entry 1 of 2
    assert first.verdict == "accepted", first
    assert await net_pos(engine, pool, sub) == 1
    await _halt(engine, pool, "h2t-paper", True)

    out = await send(engine, pool, rec, sell())

    assert await net_pos(engine, pool, sub) == 0  # the close went out
    problems = []
    if (out.verdict, out.filter) != ("rejected", "halted"):
        problems.append(f"verdict {out.verdict}/{out.filter}: {out.reason} (one trader: halted)")
    if out.detail["entry"] is not False:
        problems.append("the halted reversal kept the recorder's entry count")
    await _halt(engine, pool, "h2t-paper", False)
    again = await send(engine, pool, rec, sell())  # the session's 2nd real entry
    if again.verdict != "accepted" or await net_pos(engine, pool, sub) != -1:
        problems.append(f"the first entry after resume was refused: {again.verdict} {again.reason}")
    assert not problems, problems


# --- 2. a reversal whose entry did not go -----------------------------------------------------


async def test_a_reversal_whose_entry_the_broker_refused_says_so(settings: Settings) -> None:
    async with engine_on_sim(settings, max_signals=2) as (engine, sim, pool, rec):
        buy_ = Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500))
        sell_ = Signal(Action.SELL, ticker="MNQ1!", price=Decimal(21500))
        sid, at = await store_signal(pool, rec)
        await engine.on_signal(signal_id=sid, recorder_id=rec, signal=buy_, received_at=at)
        assert list(sim.positions("MX1").values()) == [1]

        # the next order command (the reversal's entry; the liquidation is left alone) refused
        sim.fault("reject_order", reason="MaxPosLimitReached", text="Insufficient margin")
        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(signal_id=sid, recorder_id=rec, signal=sell_, received_at=at)
        assert list(sim.positions("MX1").values()) in ([], [0])  # closed, short not opened

        problems = []
        if out.verdict == "accepted" and "Insufficient margin" not in (out.reason or ""):
            problems.append(f"stored {out.verdict}/{out.filter}, reason {out.reason!r}")
        if out.detail["trader_entries"]:
            problems.append(f"the trader's entry counted: {out.detail['trader_entries']}")
        assert not problems, problems
        # as a plan that could only close: accepted, saying what was done and why not more;
        # the recorder's count kept (its follower acted: it closed)
        assert out.verdict == "accepted", out
        assert (out.reason or "").startswith("closed only: the broker refused the entry: "), out
        assert out.detail["entry"] is True


def _reversal(state: AccountState, account: SubAccount, symbol: str) -> AccountPlan:
    """A reversal by hand: close (step 1), then the entry of the other side (step 2)."""
    return AccountPlan(
        PositionAction.REVERSE,
        (
            PlannedOrder(1, "liquidate", OrderRequest(account, symbol, Side.SELL, 1)),
            PlannedOrder(2, "order", OrderRequest(account, symbol, Side.SELL, 1)),
        ),
        "reverse: close long 1, open short 1",
    )


async def _long_one(paper: PaperBroker, symbol: str) -> None:
    await paper.place_order(OrderRequest(SubAccount(1, "acct-1"), symbol, Side.BUY, 1))


async def test_the_result_of_a_reversal_whose_entry_the_broker_refused_names_it(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    paper, contract = setup["paper"], setup["contract"]
    await _long_one(paper, contract.symbol)
    broker = FaultyBroker(paper)
    broker.faults = {1: "reject"}  # orders refused; the liquidation goes
    sid, at = await store_signal(pool, setup["rec"])

    res = await Dispatcher(pool, ttl_s=30).dispatch(
        sid, at, items(broker, contract, setup["subs"][:1], _reversal)
    )

    (a,) = res.accounts
    assert (a.sent, a.rejected) == (1, 1)
    assert a.short is not None
    assert a.short.cause == ENTRY_REFUSED
    assert a.short.why == "the broker refused the entry: MaxPosLimitReached: position limit"


async def test_the_result_of_a_reversal_whose_entry_went_past_the_ttl_names_it(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    paper, contract = setup["paper"], setup["contract"]
    await _long_one(paper, contract.symbol)
    sid, at = await store_signal(pool, setup["rec"])
    # the close is sent in time; by the entry the signal is past its TTL
    times = [at, at + timedelta(seconds=31)]

    def clock() -> datetime:
        return times.pop(0) if len(times) > 1 else times[0]

    res = await Dispatcher(pool, ttl_s=30, clock=clock).dispatch(
        sid, at, items(paper, contract, setup["subs"][:1], _reversal)
    )

    (a,) = res.accounts
    assert (a.sent, a.expired) == (1, 1)
    assert a.short is not None
    assert a.short.cause == ENTRY_UNSENT
    assert a.short.why == "the entry was not sent: signal older than its TTL"


async def test_an_entry_refused_with_nothing_sent_before_it_is_no_shortfall(
    pool: asyncpg.Pool, setup: dict[str, Any]
) -> None:
    """Nothing went: the verdict's refusal (rejected/broker) says it, as it did."""
    broker = FaultyBroker(setup["paper"])
    broker.faults = {1: "reject"}
    sid, at = await store_signal(pool, setup["rec"])

    res = await Dispatcher(pool, ttl_s=30).dispatch(
        sid, at, items(broker, setup["contract"], setup["subs"][:1], _reversal_entry_only)
    )

    (a,) = res.accounts
    assert (a.sent, a.rejected, a.short) == (0, 1, None)


def _reversal_entry_only(state: AccountState, account: SubAccount, symbol: str) -> AccountPlan:
    return AccountPlan(
        PositionAction.OPEN,
        (PlannedOrder(1, "order", OrderRequest(account, symbol, Side.BUY, 1)),),
        "open long 1",
    )


# --- 3. an add on a halted login --------------------------------------------------------------


async def test_an_add_on_a_halted_account_is_rejected_for_halted(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "hadd", {"size": 1, "add_size": 1, "dca": True, "max_signals": 2}
    )
    engine = await engine_factory()
    assert (await send(engine, pool, rec, buy())).verdict == "accepted"
    assert await net_pos(engine, pool, sub) == 1
    await _halt(engine, pool, "hadd-paper", True)

    out = await send(engine, pool, rec, add())

    assert await net_pos(engine, pool, sub) == 1
    assert (out.verdict, out.filter) == ("rejected", "halted"), (out.verdict, out.reason)
    assert out.reason == "trading is halted on account hadd-paper (kill switch); only closes pass"
    assert out.detail["entry"] is False  # as the global switch: no entry counted
    await _halt(engine, pool, "hadd-paper", False)
    again = await send(engine, pool, rec, add())  # the session's 2nd real entry
    assert again.verdict == "accepted", again
    assert await net_pos(engine, pool, sub) == 2


async def test_a_cancel_on_a_halted_account_sends_nothing_and_says_halted(
    database: Database, engine_factory: Any
) -> None:
    """A cancel passes no kill switch either (only closes do): as the global halt, rejected."""
    pool = database.pool
    rec, sub, _ = await follower(pool, "hcan", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, buy())
    await _halt(engine, pool, "hcan-paper", True)

    out = await send(engine, pool, rec, Signal(Action.CANCEL, ticker="MNQ1!"))

    assert (out.verdict, out.filter, out.orders) == ("rejected", "halted", 0), out
    assert await net_pos(engine, pool, sub) == 1


# --- 4. adds the plan ignores -----------------------------------------------------------------


async def test_an_add_refused_for_want_of_dca_says_why(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(
        pool, "nodca", {"size": 1, "add_size": 1, "sl": Decimal(40), "max_signals": 2}
    )
    engine = await engine_factory()
    assert (await send(engine, pool, rec, buy())).verdict == "accepted"
    assert await net_pos(engine, pool, sub) == 1

    out = await send(engine, pool, rec, add())

    assert await net_pos(engine, pool, sub) == 1
    assert not (out.verdict == "accepted" and out.orders == 0 and out.reason is None), out
    assert out.verdict == "accepted", out
    assert (out.reason or "").startswith("not traded: already long 1; adding needs --dca"), out
    # the follower's settings refused the add, as --direction refuses a side: the strategy's
    # entry stays counted for the recorder; the trader's goes back
    assert out.detail["entry"] is True
    assert out.detail["trader_entries"] == []


async def test_an_add_with_no_open_position_says_why_and_uses_no_recorder_turn(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "noadd", {"size": 1, "add_size": 1, "max_signals": 1})
    engine = await engine_factory()

    out = await send(engine, pool, rec, add())

    assert await net_pos(engine, pool, sub) == 0
    assert (out.verdict, out.reason) == ("accepted", "not traded: add with no open position"), out
    # the account would have taken it holding a position (as at --max-contracts): the turn
    # goes back, and the strategy's one entry of the session still passes
    assert out.detail["entry"] is False
    again = await send(engine, pool, rec, buy())
    assert again.verdict == "accepted", again
    assert await net_pos(engine, pool, sub) == 1


# --- controls (held before) -------------------------------------------------------------------


async def test_close_on_a_halted_login_goes_out(database: Database, engine_factory: Any) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "hcl", {"size": 1})
    engine = await engine_factory()
    await send(engine, pool, rec, buy())
    await _halt(engine, pool, "hcl-paper", True)
    out = await send(engine, pool, rec, close())
    assert await net_pos(engine, pool, sub) == 0
    assert (out.verdict, out.orders) == ("accepted", 1), out


async def test_halted_reversal_give_back_survives_a_restart(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    rec, sub, _ = await follower(pool, "hrs", {"size": 1, "max_signals": 2}, {"max_signals": 2})
    first = await engine_factory()
    await send(first, pool, rec, buy())
    await _halt(first, pool, "hrs-paper", True)
    out = await send(first, pool, rec, sell())
    assert (out.verdict, out.filter, out.orders) == ("rejected", "halted", 1)
    await _halt(first, pool, "hrs-paper", False)
    await first.close()
    engine = await engine_factory()
    again = await send(engine, pool, rec, sell())
    assert again.verdict == "accepted", again
    assert await net_pos(engine, pool, sub) == -1


# --- 5. a trader refused by its own filter while another traded -----------------------------


async def test_a_trader_its_own_filter_refused_is_named_while_another_traded(
    database: Database, engine_factory: Any
) -> None:
    """Found by a walkthrough: a trader's own limit (its max signals, its daily loss) refused
    the entry while another trader of the recorder took it: the row said accepted with no
    reason, and nothing told why that trader's account stayed flat (rule 9)."""
    pool = database.pool
    u = await make_user(pool, "own")
    rec = await make_recorder(pool, u, "rec", size=1)
    (capped,) = await make_paper_account(pool, u, "own-capped")
    (free,) = await make_paper_account(pool, u, "own-free")
    t_capped = await make_trader(pool, u, rec, [(capped, 1)], max_signals=1)
    await make_trader(pool, u, rec, [(free, 1)])
    engine = await engine_factory()
    first = await send(engine, pool, rec, buy())
    assert (first.verdict, first.reason) == ("accepted", None)
    await send(engine, pool, rec, close())
    second = await send(engine, pool, rec, buy())
    assert second.verdict == "accepted"
    assert second.orders == 1
    assert second.reason is not None
    assert second.reason.startswith(f"trader {t_capped}: max_signals: "), second.reason
    row = await pool.fetchrow("SELECT reason FROM signals ORDER BY id DESC LIMIT 1")
    assert row["reason"] == second.reason


async def test_an_accepted_row_names_five_refused_traders_and_counts_the_rest(
    database: Database, engine_factory: Any
) -> None:
    """A public recorder's many followers refused by their own limits: the row names five,
    counts the others (each one's refusal stays in the signal's detail)."""
    pool = database.pool
    u = await make_user(pool, "many")
    rec = await make_recorder(pool, u, "rec", size=1)
    capped = []
    for i in range(7):
        (sub,) = await make_paper_account(pool, u, f"many-{i}")
        capped.append(await make_trader(pool, u, rec, [(sub, 1)], max_signals=1))
    (free,) = await make_paper_account(pool, u, "many-free")
    await make_trader(pool, u, rec, [(free, 1)])
    engine = await engine_factory()
    await send(engine, pool, rec, buy())
    await send(engine, pool, rec, close())
    second = await send(engine, pool, rec, buy())
    assert (second.verdict, second.orders) == ("accepted", 1)
    named = [f"trader {t}: max_signals: " for t in capped[:5]]
    assert all(n in (second.reason or "") for n in named), second.reason
    assert f"trader {capped[5]}:" not in (second.reason or ""), second.reason
    assert (second.reason or "").endswith("; 2 more traders refused"), second.reason
    assert {str(t) for t in capped} <= set(second.detail["traders"]), second.detail


# --- 6. what the named refusals say (a review of the first version of ``Judged._refusals``;
# what they may say of other users: test_verdict_privacy.py) ---------------------------------


async def test_a_close_names_a_switched_off_trader_on_every_row(
    database: Database, engine_factory: Any
) -> None:
    """A trader switched off (the default of ``trader create``) is named on every accepted
    signal of the recorder, closes included: no filter refused anything."""
    pool = database.pool
    u = await make_user(pool, "own")
    rec = await make_recorder(pool, u, "rec", size=1)
    (s1,) = await make_paper_account(pool, u, "own-1")
    (s2,) = await make_paper_account(pool, u, "own-2")
    await make_trader(pool, u, rec, [(s1, 1)])
    t_off = await make_trader(pool, u, rec, [(s2, 1)], enabled=False)
    engine = await engine_factory()
    await send(engine, pool, rec, buy("21500"))
    out = await send(engine, pool, rec, close("21501"))
    assert out.verdict == "accepted", out
    assert out.reason is None, f"a plain close's row: {out.reason!r} (trader {t_off} is off)"


async def test_an_entry_only_refusal_whose_close_went_says_it_closed(
    database: Database, engine_factory: Any
) -> None:
    """Trader 1's own cooldown refuses the sell's entry; its long is closed (the reversal's
    close half). Trader 2 reverses. The row names trader 1's cooldown as if its account had
    stayed as it was: nothing says it closed (a non-refused account that only closed says
    "closed only: …")."""
    pool = database.pool
    u = await make_user(pool, "cd")
    rec = await make_recorder(pool, u, "rec", size=1)
    (s1,) = await make_paper_account(pool, u, "cd-1")
    (s2,) = await make_paper_account(pool, u, "cd-2")
    t1 = await make_trader(pool, u, rec, [(s1, 1)], cooldown_s=3600)
    await make_trader(pool, u, rec, [(s2, 1)])
    engine = await engine_factory()
    first = await send(engine, pool, rec, buy("21500"))
    assert first.verdict == "accepted"
    out = await send(engine, pool, rec, sell("21500"))
    assert out.verdict == "accepted", out
    assert await net_pos(engine, pool, s1) == 0  # closed
    assert await net_pos(engine, pool, s2) == -1  # reversed
    reason = out.reason or ""
    assert reason.startswith(f"trader {t1}: closed only: cooldown: "), reason
