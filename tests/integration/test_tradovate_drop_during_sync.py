"""A connection cut (no close frame) while the session waits for its sync answer is given up at
once: the reader had ended, but the session waited out the sync request's own timer before it
reconnected, an untradeable login for that long on every reconnect of a flapping outage."""

from __future__ import annotations

from jtrades.broker.tradovate.pool import TradovatePool
from tests.conftest import *  # noqa: F403
from tests.polling import until
from tests.sim_worlds import sim_tradovate_defaults
from tests.simutil import LOGIN, PASSWORD, running_sim


async def test_a_socket_cut_while_the_sync_is_pending_reconnects_at_once() -> None:
    async with running_sim() as sim:
        pool = TradovatePool(
            sim_tradovate_defaults(
                sim,
                reconnect_initial_s=0.05,
                reconnect_max_s=0.2,
                # the sync's own timer, and the silence watchdog, far past the wait below
                request_timeout_s=120,
                dead_after_s=120,
            )
        )
        try:
            await pool.broker("demo", LOGIN, PASSWORD)
            sim.fault("delay", ms=120_000)  # the sync answer never comes in time ...
            # ... and the next socket is cut (no close frame) with its 3rd frame: 'o', the
            # authorize answer, then the first heartbeat, while the sync is pending
            sim.faults.drop_new_after = 3
            sim.fault("drop", after=0)
            await until(
                lambda: sim.stats()["websockets_opened"] >= 3,
                within_s=30,
                what="a new socket after the one cut during its sync",
            )
        finally:
            await pool.close()
