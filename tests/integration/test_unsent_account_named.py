"""A disconnect mid fan-out: OK1's order went, then DR1's login dropped its socket just before
DR1's order was sent. DR1's intent says "not sent: broker unavailable" (right), but the signal
is stored "accepted" with no reason at all: the owner's row, the webhook answer and `signals
list` do not say that DR1 never traded (its position is not the strategy's). The verdict's own
contract is that an accepted signal some account followed "not at all" says so in its reason."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.engine.signal import Action, Signal
from tests.integration.test_dispatch import sim_engine
from tests.integration.test_engine import store_signal
from tests.polling import until


async def test_an_account_whose_login_dropped_before_its_order_is_named_on_the_row(
    settings: Settings,
) -> None:
    async with sim_engine(settings, {"ok_tv": ["OK1"], "dr_tv": ["DR1"]}) as (
        engine,
        sim,
        pool,
        rec,
        subs,
    ):
        warm, at = await store_signal(pool, rec)  # contracts resolved on both sessions
        await engine.on_signal(
            signal_id=warm,
            recorder_id=rec,
            signal=Signal(Action.CLOSE, ticker="MNQ1!"),
            received_at=at,
        )
        link = engine.config.snapshot.links_by_sub[subs["DR1"]]
        broker = engine.brokers.broker_for(link)
        real = broker.place_order

        async def socket_drops_first(req: Any) -> Any:  # the drop lands right before the send
            sim.fault("drop", login="dr_tv", after=0)
            await until(lambda: not broker.session.ready, what="dr_tv's socket dropped")
            return await real(req)

        broker.place_order = socket_drops_first
        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(
            signal_id=sid,
            recorder_id=rec,
            signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)),
            received_at=at,
        )
        dr = out.detail["accounts"][str(subs["DR1"])]
        assert (dr["sent"], dr["unavailable"]) == (0, 1)  # the account's own record is right
        assert list(sim.positions("OK1").values()) == [1]
        assert sim.positions("DR1") == {}
        # the signal's row must say DR1 did not trade
        assert "DR1: not traded: the broker did not take its orders" in (out.reason or ""), (
            out.verdict,
            out.reason,
        )
