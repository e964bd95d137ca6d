"""A position whose only stop is the one its entry alert asked for (the trader configures no
--sl): a DCA add or a reduce cancels that stop to re-place it for the new size. When the
re-placement never goes out — the daemon killed between the cancel and the new stop, or the
WebSocket dropped after the cancel — the position was left with no stop at all, and neither
the restart nor any later reconciliation pass put one back (the protector only stopped
positions whose trader has --sl configured). The stop the daemon planned and never placed is
owed (``engine.owed_stop``) and comes back; a stop removed on purpose, or an older trade's,
does not. (From the crash review's ``test_alert_stop_lost``.)"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.signal import ExitSpec, Units
from jtrades.sim import ws as sim_ws
from tests.cut_short_world import deliver, deliver_and_die_at, delivery, sim_world
from tests.integration.test_engine import buy

D = Decimal
RISK: dict[str, Any] = {"size": 1, "add_size": 1, "dca": True, "same_direction": "add"}
ALERT_STOP = ExitSpec(D(40), Units.TICKS)  # the entry alert's own stop: 10 points


async def _open_with_alert_stop(w: Any) -> None:
    out = await deliver(w, await delivery(w, buy("21500", stop_loss=ALERT_STOP), "e1"))
    assert out.orders == 1, out
    await w.view_net("KA", 1)
    await w.view_orders("KA", 1)
    assert w.stops("KA") == [(21490, 1)]  # the alert's stop protects the long 1


async def test_killed_between_the_dca_cancel_and_the_new_stop_the_stop_comes_back(
    database: Database, settings: Settings
) -> None:
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        await w.start()
        await _open_with_alert_stop(w)
        d = await delivery(w, buy("21500"), "a1")  # add 1: cancel the stop, stop for 2
        went = await deliver_and_die_at(w, d, 3)  # the add and the cancel went; then kill -9
        assert went == ["1:order:sent", "2:cancel:done"], went
        assert w.net("KA") == 2
        assert w.stops("KA") == []

        e = await w.restart()
        await w.view_net("KA", 2)
        for _ in range(3):  # passes of the reconciliation loop
            await e.reconciler.tick()
        await w.sim.flush()
        # long 2 with no stop at all: the stop it held before the add was gone for good
        assert w.stop_qty("KA") == 2, w.orders("KA")
        assert w.stops("KA") == [(21490, 2)]  # at the price planned


async def test_socket_dropped_after_the_dca_cancel_the_stop_comes_back(
    database: Database, settings: Settings, monkeypatch: Any
) -> None:
    """No restart: the WebSocket drops right after the simulator cancelled the stop (its
    answer lost). The new stop is not sent (the step before it is in doubt), and the
    reconciliation passes after the reconnect never stop the position."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await w.start()
        await _open_with_alert_stop(w)
        real = sim_ws.WsConn._frame
        armed = {"on": True}

        async def frame(self: Any, text: str) -> None:
            if armed["on"] and text.split("\n", 1)[0].lower().endswith("cancelorder"):
                armed["on"] = False
                req = sim_ws.parse_request(text)
                await self._call(req)  # the simulator cancels the stop...
                self.abort()  # ...and the socket dies before the answer
                return
            await real(self, text)

        monkeypatch.setattr(sim_ws.WsConn, "_frame", frame)
        await deliver(w, await delivery(w, buy("21500"), "a1"))
        assert w.net("KA") == 2
        assert w.stops("KA") == []
        await w.view_net("KA", 2)  # reconnected
        for _ in range(3):
            await e.reconciler.tick()
        await w.sim.flush()
        assert w.stop_qty("KA") == 2, w.orders("KA")


async def test_killed_between_a_reduces_cancel_and_its_new_stop_the_stop_comes_back(
    database: Database, settings: Settings
) -> None:
    """The same with a reduce (sell 1 of a long 2, the strategy still long): the alert's stop
    is cancelled first, then the reduce, then the stop for what is left; killed after the
    cancel, the long 2 is never stopped again."""
    from jtrades.engine.signal import MarketPosition
    from tests.integration.test_engine import sell

    async with sim_world(database, settings, ["KA"], **{**RISK, "size": 2}) as w:
        await w.start()
        out = await deliver(w, await delivery(w, buy("21500", stop_loss=ALERT_STOP), "e1"))
        assert out.orders == 1, out
        await w.view_net("KA", 2)
        await w.view_orders("KA", 1)
        d = await delivery(w, sell("21500", quantity=1, market_position=MarketPosition.LONG), "r1")
        went = await deliver_and_die_at(w, d, 2)  # the cancel went; then kill -9
        assert went == ["1:cancel:done"], went
        e = await w.restart()
        await w.view_net("KA", 2)
        for _ in range(3):
            await e.reconciler.tick()
        await w.sim.flush()
        assert w.stop_qty("KA") == 2, w.orders("KA")


async def _cut_dca_restarted(w: Any) -> Any:
    """Opened under the alert's stop, a DCA add killed after its cancel, and restarted."""
    await w.start()
    await _open_with_alert_stop(w)
    went = await deliver_and_die_at(w, await delivery(w, buy("21500"), "a1"), 3)
    assert went == ["1:order:sent", "2:cancel:done"], went
    e = await w.restart()
    await w.view_net("KA", 2)
    return e


async def test_the_stop_put_back_then_cancelled_by_hand_stays_cancelled(
    database: Database, settings: Settings
) -> None:
    """Once placed, the owed stop is paid: a person who cancels it at the broker means it."""
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await _cut_dca_restarted(w)
        for _ in range(3):
            await e.reconciler.tick()
        await w.sim.flush()
        assert w.stops("KA") == [(21490, 2)]
        (stop,) = w.orders("KA")
        await w.broker.cancel_order(stop["id"])
        await w.view_orders("KA", 0)
        for _ in range(3):
            await e.reconciler.tick()
        await w.sim.flush()
        assert w.stop_qty("KA") == 0, w.orders("KA")


async def test_the_next_trade_is_not_given_the_cut_trade_s_stop(
    database: Database, settings: Settings
) -> None:
    """The cut trade is closed by an alert before its stop came back; the next one, opened by
    an alert without a stop, is the trader's to leave naked: the old stop never comes back."""
    from tests.integration.test_engine import close

    async with sim_world(database, settings, ["KA"], **RISK) as w:
        e = await _cut_dca_restarted(w)
        await deliver(w, await delivery(w, close("21500"), "c1"))
        await w.view_net("KA", 0)
        out = await deliver(w, await delivery(w, buy("21500"), "e2"))
        assert out.orders == 1, out
        await w.view_net("KA", 1)
        for _ in range(3):
            await e.reconciler.tick()
        await w.sim.flush()
        assert w.net("KA") == 1
        assert w.stop_qty("KA") == 0, w.orders("KA")
