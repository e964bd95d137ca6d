"""A close never goes out with a made-up contract id.

When the broker's contract lookup fails (a 429, a penalty, a reconnect), the instrument resolver
hands out a built-in-table contract without a broker id. Entries still work (they go by symbol),
but ``order/liquidateposition`` takes a ``contractId``: a close must use the id the held position
names, or one looked up at send time, and otherwise not be sent at all — recorded as "not sent",
never as a broker rejection. Real Postgres; the paper broker and the simulator over real sockets.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
import structlog.testing

from jtrades.broker.base import Broker, Contract, OrderRequest, Side, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.broker.registry import BrokerRegistry
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import Settings
from jtrades.engine.dispatch import Dispatcher, WorkItem
from jtrades.engine.instruments import table_contract
from jtrades.engine.planning import AccountPlan, AccountState, PlannedOrder, PositionAction
from jtrades.errors import TransientBrokerError
from tests.integration.test_dispatch import link
from tests.integration.test_engine import (
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    store_signal,
)
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, SimHandle, running_sim


def close_plan(account: SubAccount, symbol: str, *, reverse: bool = False) -> Any:
    """A close (a liquidation) of whatever the account holds; ``reverse`` adds the new side."""

    def plan(state: AccountState) -> AccountPlan:
        side = Side.SELL if state.net_pos > 0 else Side.BUY
        steps = [
            PlannedOrder(1, "liquidate", OrderRequest(account, symbol, side, abs(state.net_pos)))
        ]
        if reverse:
            steps.append(PlannedOrder(2, "order", OrderRequest(account, symbol, side, 1)))
        return AccountPlan(PositionAction.CLOSE, tuple(steps), "close")

    return plan


@pytest.fixture
async def trader(pool: asyncpg.Pool) -> dict[str, Any]:
    u = await make_user(pool, "liq")
    subs = await make_paper_account(pool, u, "liq-paper", subs=1)
    rec = await make_recorder(pool, u, "liq-rec")
    tid = await make_trader(pool, u, rec, [(subs[0], 1)])
    return {"sub": subs[0], "rec": rec, "trader": tid}


async def intent_rows(pool: asyncpg.Pool) -> list[asyncpg.Record]:
    return await pool.fetch("SELECT step, state, reason, sent_at FROM order_intents ORDER BY step")


async def dispatch_close(
    pool: asyncpg.Pool,
    trader: dict[str, Any],
    broker: Broker,
    contract: Contract,
    broker_account_id: int,
    *,
    reverse: bool = False,
) -> Any:
    sid, at = await store_signal(pool, trader["rec"])
    account = SubAccount(broker_account_id, f"acct-{broker_account_id}")
    item = WorkItem(
        trader["trader"],
        link(trader["sub"], broker_account_id),
        broker,
        contract,
        close_plan(account, contract.symbol, reverse=reverse),
    )
    return await Dispatcher(pool, ttl_s=30).dispatch(sid, at, [item])


# --- the paper broker --------------------------------------------------------------------------


async def test_a_close_with_a_table_contract_uses_the_held_positions_id(
    pool: asyncpg.Pool, trader: dict[str, Any]
) -> None:
    """The reviewer's case: the resolver's fallback has no id; the position names its own."""
    paper = PaperBroker()
    paper.on_price("MNQZ6", Decimal("21500"))
    real = await paper.find_contract("MNQZ6")
    await paper.place_order(OrderRequest(SubAccount(1, "acct-1"), "MNQZ6", Side.BUY, 2))
    fallback = table_contract("MNQZ6")
    assert fallback.contract_id is None

    res = await dispatch_close(pool, trader, paper, fallback, 1)

    [acct] = res.accounts
    assert (acct.sent, acct.rejected, acct.expired) == (1, 0, 0), acct.messages
    assert [p.net_pos for p in paper.positions(1)] == [0]
    [row] = await intent_rows(pool)
    assert row["state"] == "done"
    assert real.contract_id is not None


async def test_a_close_of_a_position_without_an_id_looks_the_contract_up_at_send_time(
    pool: asyncpg.Pool, trader: dict[str, Any]
) -> None:
    """A paper position restored after a restart names no contract id yet (0): the broker is
    asked for the contract when the close goes out."""
    paper = PaperBroker()
    paper.on_price("MNQZ6", Decimal("21500"))
    paper.restore_position(1, "MNQZ6", 1, Decimal("21490"))
    assert [p.contract_id for p in paper.positions(1)] == [0]

    res = await dispatch_close(pool, trader, paper, table_contract("MNQZ6"), 1)

    assert res.accounts[0].sent == 1, res.accounts[0].messages
    assert [p.net_pos for p in paper.positions(1)] == [0]


class NoLookups(PaperBroker):
    """A paper login whose contract lookups fail as a rate-limited Tradovate's do."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0
        self.liquidations: list[int] = []

    async def find_contract(self, symbol: str) -> Contract:
        self.lookups += 1
        raise TransientBrokerError("contract/find: Tradovate rate limit (429), backing off")

    async def liquidate_position(self, account: SubAccount, contract_id: int) -> None:
        self.liquidations.append(contract_id)
        await super().liquidate_position(account, contract_id)


async def test_without_any_known_id_the_close_is_not_sent_and_says_so(
    pool: asyncpg.Pool, trader: dict[str, Any]
) -> None:
    """No id anywhere and the lookup fails: nothing goes to the broker, the intent is "not
    sent: broker unavailable" (not a rejection: the broker was never asked), and the reversal's
    opening step behind it is not sent either."""
    paper = NoLookups()
    paper.on_price("MNQZ6", Decimal("21500"))
    paper.restore_position(1, "MNQZ6", 1, Decimal("21490"))

    with structlog.testing.capture_logs() as logs:
        res = await dispatch_close(pool, trader, paper, table_contract("MNQZ6"), 1, reverse=True)

    [acct] = res.accounts
    # the close the broker could not be asked for (unavailable), the opening step behind it
    # expired
    counts = (acct.sent, acct.rejected, acct.unknown, acct.expired, acct.unavailable)
    assert counts == (0, 0, 0, 1, 1)
    assert paper.liquidations == []  # never a contractId 0
    assert paper.lookups >= 1
    rows = await intent_rows(pool)
    assert [r["state"] for r in rows] == ["expired", "expired"]
    assert rows[0]["sent_at"] is None
    assert "not sent" in rows[0]["reason"]
    assert "MNQZ6" in rows[0]["reason"]
    assert "rejected" not in rows[0]["reason"]
    assert [p.net_pos for p in paper.positions(1)] == [1]  # still long: honestly so
    assert any(e["event"] == "dispatch.orders_failed" for e in logs)


# --- the simulator, through the real Tradovate client ------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[SimHandle]:
    async with running_sim() as handle:
        yield handle


@pytest.fixture
async def tv(sim: SimHandle) -> AsyncIterator[TradovateBroker]:
    settings = sim_tradovate_defaults(sim, request_timeout_s=5)
    tv_pool = TradovatePool(settings)
    try:
        yield await tv_pool.broker("demo", LOGIN, PASSWORD)
    finally:
        await tv_pool.close()


async def test_a_close_with_a_table_contract_flattens_at_the_simulator(
    pool: asyncpg.Pool, trader: dict[str, Any], sim: SimHandle, tv: TradovateBroker
) -> None:
    front = sim.contract("MNQ")
    await sim.set_price("MNQ", "21500")
    acct = SubAccount(sim.account_id("SIM1"), "SIM1")
    await tv.find_contract(front.name)  # the entry's resolution named the contract in the view
    await tv.place_order(OrderRequest(acct, front.name, Side.BUY, 2, cl_ord_id="liq-open"))
    await until(lambda: [p.net_pos for p in tv.positions(acct.account_id)] == [2])

    res = await dispatch_close(pool, trader, tv, table_contract(front.name), acct.account_id)

    assert res.accounts[0].sent == 1, res.accounts[0].messages
    assert sim.positions("SIM1") in ({}, {front.name: 0})
    [row] = await intent_rows(pool)
    assert row["state"] == "done"


# --- the resolver's fallback after the session comes back --------------------------------------


class Reconnecting(PaperBroker):
    """A login whose session can be down (view unsynced) and whose lookups can fail."""

    def __init__(self) -> None:
        super().__init__()
        self.synced = True
        self.lookups_fail = False
        self.lookups = 0

    def is_synced(self, account_id: int) -> bool:
        return self.synced

    async def find_contract(self, symbol: str) -> Contract:
        self.lookups += 1
        if self.lookups_fail:
            raise TransientBrokerError("Tradovate session demo:x has no connection")
        return await super().find_contract(symbol)


async def test_fallback_contracts_go_once_the_session_is_synced_again(settings: Settings) -> None:
    registry = BrokerRegistry(None, settings)
    broker = Reconnecting()
    lk = link(1, 1)

    # the hourly entry expired while the session reconnects: the table answers, without an id
    broker.synced, broker.lookups_fail = False, True
    assert (await registry.resolve_contract(lk, broker, "MNQZ6")).contract_id is None
    # synced again: the next signal asks the broker at once instead of waiting out the minute
    broker.synced, broker.lookups_fail = True, False
    assert (await registry.resolve_contract(lk, broker, "MNQZ6")).contract_id is not None


async def test_a_refusing_broker_is_not_asked_again_within_the_minute(settings: Settings) -> None:
    """A 429 on a synced session: the fallback stays for its minute (asking again would only
    lengthen the lock), and the close still goes out by the held position's id."""
    registry = BrokerRegistry(None, settings)
    broker = Reconnecting()
    lk = link(1, 1)
    broker.lookups_fail = True
    assert (await registry.resolve_contract(lk, broker, "MNQ1!")).contract_id is None
    asked = broker.lookups
    broker.lookups_fail = False
    assert (await registry.resolve_contract(lk, broker, "MNQ1!")).contract_id is None
    assert broker.lookups == asked
