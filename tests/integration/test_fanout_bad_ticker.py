"""f1a3685 (link_contracts.look_up_misses) asks ``BrokerRegistry.contract_cached`` for every
Tradovate link of the signal *before* the per-link try/except of ``Fanout._links``;
``InstrumentResolver.cached`` parses the ticker (``split_symbol``), which raises InvalidSignal
for a ticker that is no futures symbol but passes the recorder's instrument check (a bare root
outside the built-in table, as PickMyTrade templates send: ``MBT`` to an ``MBT1!`` recorder;
``MNQ!``). Before, each sub-account said "not traded: symbol … is not a futures symbol" and the
row was stored; now ``on_signal`` raises out of the fan-out, nothing is stored and the webhook
answers 503 (TradingView re-sends it three times, each time 503)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.signal import Action, Signal
from tests.integration.test_engine import send
from tests.integration.test_protect_exits_sim import _sim_world


@pytest.mark.parametrize("ticker", ["MNQ!", "CME_MINI:MNQ!"])
async def test_a_ticker_that_is_no_futures_symbol_is_answered_per_sub_account(
    database: Database, settings: Settings, ticker: str
) -> None:
    async with _sim_world(database, settings, size=1) as (_sim, engine, w):
        signal = Signal(Action.BUY, ticker=ticker, price=Decimal(21500))
        try:
            out = await send(engine, database.pool, w["rec"], signal)
        except Exception as exc:
            pytest.fail(f"on_signal raised {type(exc).__name__}: {exc} (no row is stored)")
        assert out.orders == 0, out
        assert "not a futures symbol" in str(out.detail), out.detail


async def test_the_webhook_stores_and_answers_such_an_alert(settings: Settings) -> None:
    from tests.integration.test_webhook_answer_bound import answering

    async with answering(settings, request_timeout_s=2.0) as it:
        async with it.client.post(
            f"/webhook/{it.token}", data=b'{"action":"buy","ticker":"MNQ!"}'
        ) as r:
            status, body = r.status, await r.text()
        rows = await it.pool.fetch(
            "SELECT verdict, reason FROM signals WHERE convert_from(raw_body, 'UTF8') LIKE '%MNQ!%'"
        )
        assert status < 500, f"answered {status} {body}: TradingView re-sends it; rows {rows}"
