"""Once the engine has stored a delivery with orders to send, the webhook never answers 5xx,
even when the engine then fails and the database cannot be asked whether the row is there:
TradingView re-sends a 5xx, and a re-send past the dedup window is a new signal whose orders
go out a second time (issue 4, item 3)."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from jtrades.config import Settings
from jtrades.db import _init_connection
from jtrades.errors import StorageUnavailable
from jtrades.store import signals as signal_store
from tests.integration.test_server import ALERT, FakeEngine, serving


class FailsAfterOrdersWent(FakeEngine):
    """Stores the delivery as the dispatcher does (and says so through ``Delivery.claimed``),
    then loses the webhook's database and fails with ``error``."""

    def __init__(self, pool: asyncpg.Pool, own: asyncpg.Pool, error: Exception) -> None:
        super().__init__(pool)
        self.own = own
        self.error = error

    async def on_signal(self, *, delivery: signal_store.Delivery, **_kw: Any) -> Any:
        claim = await signal_store.claim_delivery(self.pool, delivery)
        assert claim.duplicate_of is None
        assert delivery.claimed is not None
        delivery.claimed.set()  # stored, orders on their way
        await self.own.close()  # the webhook's pool: nothing can be asked of it now
        raise self.error


async def _post_losing_the_database(
    settings: Settings, pool: asyncpg.Pool, db_url: str, error: Exception
) -> tuple[int, Any]:
    own = await asyncpg.create_pool(db_url, min_size=1, max_size=2, init=_init_connection)
    assert own is not None
    try:
        async with serving(settings, own, engine=FailsAfterOrdersWent(pool, own, error)) as s:
            return await s.post(ALERT)
    finally:
        own.terminate()


@pytest.mark.parametrize(
    "error",
    [RuntimeError("boom after the orders went"), StorageUnavailable("lost after the claim")],
    ids=["internal-error", "database-lost"],
)
async def test_a_failure_after_the_claim_is_200_when_the_database_cannot_confirm_it(
    settings: Settings, pool: asyncpg.Pool, db_url: str, error: Exception
) -> None:
    status, body = await _post_losing_the_database(settings, pool, db_url, error)
    assert status == 200, body
    assert body["verdict"] == "accepted"
    assert type(error).__name__ in body["error"]
    # stored: TradingView must not send it again
    assert await pool.fetchval("SELECT count(*) FROM signals WHERE id = $1", body["signal_id"]) == 1
