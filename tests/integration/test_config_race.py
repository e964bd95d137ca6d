"""A deletion that overtakes a signal between its plan and its claim: nothing is sent, and
TradingView is asked to re-send (a 503), not told the token is unknown."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from jtrades.config import Settings
from jtrades.store import trading as trading_store
from tests.integration.test_engine import make_paper_account, make_trader
from tests.integration.test_server import add_paper_trader, make_recorder, serving
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


async def test_a_new_recorders_first_alert_is_traded_when_a_concurrent_reload_wins(
    settings: Settings, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine, not knowing the recorder, refreshes; the reload the CLI's change notice
    started lands while it compares fingerprints, so its refresh finds nothing new and said
    False, and the engine went on with the snapshot it had read before: "unknown_recorder",
    answered 200, the entry lost for every follower."""
    async with serving(settings, pool) as s:
        engine = s.hooks.engine
        # Hold the NOTIFY-driven reload back so it can be made to land at the racy moment.
        for t in engine._tasks:
            if t.get_name() == "engine.config":
                t.cancel()
        await asyncio.sleep(0)
        token, rid = await make_recorder(pool, "fresh")
        await add_paper_trader(pool, rid)

        real = trading_store.config_fingerprint
        state = {"armed": True}

        async def fingerprint(ex: Any) -> Any:  # meanwhile the change notice's reload lands
            if state["armed"]:
                state["armed"] = False
                await engine.config.load()
            return await real(ex)

        monkeypatch.setattr(trading_store, "config_fingerprint", fingerprint)
        async with s.client.post(
            f"/webhook/{token}",
            data=b'{"action":"buy","ticker":"MNQ1!","quantity":1,"price":21500.25,"id":"first"}',
        ) as r:
            status, body = r.status, await r.json()
        assert rid in engine.config.snapshot.recorders  # the recorder is loaded
        assert status == 200
        assert body["verdict"] == "accepted", body
        assert body["orders"] >= 1, body
