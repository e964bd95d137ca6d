"""A DCA add whose socket drops right after its two exit cancels went: long 2, no stop. The
dispatch asks for a protection pass at once (``Reconciler.protect_soon``), but that pass ran
while the session was reconnecting, failed on the unsynced view, and nothing ran it again when
the view came back 0.3 s later: the position stayed naked for a whole ``reconcile_interval_s``
(30 s). The pass is now tried each second while a suspect's view cannot be read, up to that
interval. So is one whose re-placed exits met a 429: the session holds every request 10 s, the
pass and its in-pass retries fell inside the hold, and nothing ran one when it ended. Real
Tradovate client, the simulator over real sockets, Postgres (reviewed 2026-12-01)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.sim import ws as sim_ws
from jtrades.sim.faults import Refusal
from tests.cut_short_world import deliver, delivery, sim_world
from tests.integration.test_engine import buy

RISK: dict[str, Any] = {
    "size": 1,
    "add_size": 1,
    "dca": True,
    "same_direction": "add",
    "tp": [{"target": "20"}],
    "sl": Decimal(40),
}


async def _seconds_to_stop(w: Any, qty: int, limit: float) -> float | None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        await w.sim.flush()
        if w.stop_qty("KA") >= qty:
            return time.monotonic() - t0
        await asyncio.sleep(0.1)
    return None


async def test_a_position_left_naked_by_a_dropped_socket_is_stopped_within_seconds(
    database: Database, settings: Settings, monkeypatch: Any
) -> None:
    assert settings.trading.reconcile_interval_s >= 30  # the regular pass is far off
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        await w.start()
        out = await deliver(w, await delivery(w, buy("21500"), "e1"))
        assert out.orders == 1, out
        await w.view_net("KA", 1)
        await w.view_orders("KA", 2)
        real = sim_ws.WsConn._frame
        cancels = {"n": 0}

        async def frame(self: Any, text: str) -> None:
            if text.split("\n", 1)[0].lower().endswith("cancelorder"):
                cancels["n"] += 1
                if cancels["n"] == 2:  # both cancels carried out, then the socket dies
                    await self._call(sim_ws.parse_request(text))
                    self.abort()
                    return
            await real(self, text)

        monkeypatch.setattr(sim_ws.WsConn, "_frame", frame)
        await deliver(w, await delivery(w, buy("21500"), "a1"))  # the DCA add
        monkeypatch.undo()
        # well short of the 30 s interval (it takes ~2 s), with room for a busy machine
        took = await _seconds_to_stop(w, 2, 15)
        assert took is not None, f"long 2 still without a stop after 15 s: {w.orders('KA')}"


async def test_a_position_left_naked_by_a_429_is_stopped_once_the_hold_ends(
    database: Database, settings: Settings
) -> None:
    tr = settings.trading.model_copy(update={"reconcile_interval_s": 90})
    settings = settings.model_copy(update={"trading": tr})
    async with sim_world(database, settings, ["KA"], **RISK) as w:
        await w.start()
        out = await deliver(w, await delivery(w, buy("21500"), "e1"))
        assert out.orders == 1, out
        await w.view_net("KA", 1)
        await w.view_orders("KA", 2)
        w.sim.faults.refusals.append(Refusal("order/placeoco", 429))  # the re-placed exits
        await deliver(w, await delivery(w, buy("21500"), "a1"))  # the DCA add
        await w.view_net("KA", 2)
        assert w.stop_qty("KA") == 0  # naked: its exits were cancelled, their re-place 429'd
        held = w.broker.session.held()
        assert held is not None
        assert held.kind == "rate_limit"
        # the hold is 10 s; a pass after it ends stops the position within seconds
        took = await _seconds_to_stop(w, 2, held.left_s + 8)
        assert took is not None, (
            f"long 2 still without a stop {held.left_s + 8:.0f} s after a 10 s hold began:"
            f" {w.orders('KA')}"
        )
