"""A deletion that overtakes a signal between its plan and its claim: nothing is sent, and
TradingView is asked to re-send (a 503), not told the token is unknown."""

from __future__ import annotations

from typing import Any

import asyncpg

from jtrades.config import Settings
from tests.integration.test_engine import make_paper_account, make_trader
from tests.integration.test_server import serving
from tests.polling import until

# the paper broker fills a market order at the signal's price
ALERT = b'{"action": "buy", "ticker": "MNQ1!", "price": 21500.25, "id": "race-1"}'


def _linked(engine: Any, recorder_id: int) -> list[int]:
    """The sub-accounts the engine's configuration snapshot has the recorder's traders on."""
    rec = engine.config.snapshot.recorders[recorder_id]
    return sorted(link.sub_account_id for t in rec.traders for link in t.links)


async def test_a_sub_account_deleted_after_planning_is_answered_503_and_nothing_is_sent(
    settings: Settings, pool: asyncpg.Pool
) -> None:
    async with serving(settings, pool) as s:
        uid = await pool.fetchval("SELECT user_id FROM recorders WHERE id = $1", s.recorder_id)
        kept, gone = await make_paper_account(pool, uid, "race-paper", subs=2)
        await make_trader(pool, uid, s.recorder_id, [(kept, 1), (gone, 1)])
        engine = s.hooks.engine
        await until(lambda: _linked(engine, s.recorder_id) == [kept, gone])

        # The deletion commits while the snapshot the alert is planned against still links
        # the sub-account, as when it lands between the plan and the claim: the reload it
        # triggers waits on the cache's lock, which the test holds until the alert is answered.
        async with engine.config._lock:
            await pool.execute("DELETE FROM sub_accounts WHERE id = $1", gone)
            status, body = await s.post(ALERT)

        assert status == 503, body
        assert body["error"] == "config_changed"
        assert "removed while it was handled" in body["detail"]
        row = await s.row(body["signal_id"])
        assert (row["verdict"], row["http_status"], row["filter"]) == (
            "rejected",
            503,
            "config_changed",
        )
        assert row["recorder_id"] == s.recorder_id
        # nothing stored for the kept sub-account either: the claim is all or nothing
        assert await pool.fetchval("SELECT count(*) FROM order_intents") == 0
        assert await pool.fetchval("SELECT count(*) FROM signal_keys") == 0

        # TradingView's re-send, once the configuration is read again, trades what is left
        await until(lambda: _linked(engine, s.recorder_id) == [kept])
        status, body = await s.post(ALERT)
        assert status == 200, body
        assert (body["verdict"], body["orders"]) == ("accepted", 1)
        intents = await pool.fetch("SELECT sub_account_id FROM order_intents")
        assert [r["sub_account_id"] for r in intents] == [kept]
