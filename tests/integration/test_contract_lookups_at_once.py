"""A signal's contract look-ups, where the resolver's cache misses (the daemon's first alert;
for continuous symbols the first after each CME day turn), go to the logins' sessions all at
once (``link_contracts.look_up_misses``). One after another, a recorder with many followers'
logins waited one round trip per login before its first order, and one login whose socket had
gone silent held the others' look-ups behind its request timeout."""

from __future__ import annotations

from decimal import Decimal

from jtrades.config import Settings
from jtrades.engine.signal import Action, Signal
from tests.integration.test_dispatch import sim_engine
from tests.integration.test_engine import store_signal

LOGINS = {"la_tv": ["LA1"], "lb_tv": ["LB1"], "lc_tv": ["LC1"]}


async def test_the_logins_are_asked_for_the_contract_at_once(settings: Settings) -> None:
    async with sim_engine(settings, LOGINS, request_timeout_s=5.0) as (
        engine,
        sim,
        pool,
        rec,
        _subs,
    ):
        sim.fault("delay", ms=300)  # each answer takes a while: asked together, they overlap
        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(
            signal_id=sid,
            recorder_id=rec,
            signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)),
            received_at=at,
        )
        sim.fault("clear")
        assert out.orders == 3, out
        for sub in ("LA1", "LB1", "LC1"):
            assert list(sim.positions(sub).values()) == [1]
        lookups = {
            k: v for k, v in sim.stats()["most_at_once"].items() if k.startswith("contract/")
        }
        assert lookups, sim.stats()["most_at_once"]
        assert max(lookups.values()) == 3, lookups  # one per login, at the same time
