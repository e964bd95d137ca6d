"""Protective stops: one sub-account's failure (its contract cannot be looked up, its view is
lost, the database) must not keep the other sub-accounts from getting their stop."""

from __future__ import annotations

from decimal import Decimal

import structlog.testing

from jtrades.broker.base import Contract, OrderType
from jtrades.broker.paper import PaperBroker
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.engine import Engine
from jtrades.errors import TransientBrokerError
from tests.integration.test_engine import (
    account_of,
    buy,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    send,
)


class NoContracts(PaperBroker):
    """A login whose contract lookups fail once ``broken`` is set."""

    broken = False

    async def find_contract(self, symbol: str) -> Contract:
        if self.broken:
            raise TransientBrokerError("contract lookup: connection reset")
        return await super().find_contract(symbol)


async def test_one_sub_accounts_failure_does_not_leave_the_others_naked(
    database: Database, settings: Settings
) -> None:
    pool = database.pool
    u = await make_user(pool, "pi")
    rec = await make_recorder(pool, u, "rec", size=1)
    (a,) = await make_paper_account(pool, u, "pi-a")
    (b,) = await make_paper_account(pool, u, "pi-b")
    trader = await make_trader(pool, u, rec, [(a, 1), (b, 1)])
    aid_a, bid_a = await account_of(pool, a)
    aid_b, bid_b = await account_of(pool, b)
    brokers = BrokerRegistry(database, settings)
    broken = brokers._paper[aid_a] = NoContracts()
    engine = Engine(database, settings, brokers)
    await engine.start()
    try:
        await send(engine, pool, rec, buy("21500"))  # no stop loss configured yet: naked
        await pool.execute("UPDATE traders SET sl = 40, updated_at = now() WHERE id=$1", trader)
        await engine.config.refresh()
        broken.broken = True
        assert await engine.reconciler.protect_positions() == 0  # first sighting: wait a pass

        with structlog.testing.capture_logs() as logs:
            assert await engine.reconciler.protect_positions() == 1

        (stop,) = brokers.paper(aid_b).working_orders(bid_b)
        assert (stop.order_type, stop.stop_price) == (OrderType.STOP, Decimal("21490"))
        assert broken.working_orders(bid_a) == []
        (failed,) = [e for e in logs if e["event"] == "reconcile.protect_failed"]
        assert failed["log_level"] == "error"
        assert failed["sub_account_id"] == a
        assert "TransientBrokerError" in failed["error"]

        # the failing sub-account is tried again on the next pass, and protected once it can be
        broken.broken = False
        assert await engine.reconciler.protect_positions() == 1
        assert len(broken.working_orders(bid_a)) == 1
    finally:
        await engine.close()
