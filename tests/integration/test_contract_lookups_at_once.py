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


async def test_a_silent_login_holds_no_one_past_the_look_up_bound(settings: Settings) -> None:
    """One login's socket silent (not yet declared dead) at a cache miss: at once, the others
    still waited for its whole request timeout (10 s) before the claim, under the recorder's
    turn: the webhook's answer past TradingView's 3 s, every follower's orders 10 s late.
    Past ``LOOKUP_WAIT_S`` the silent one is not traded for this signal, and says why."""
    async with sim_engine(settings, LOGINS, request_timeout_s=10.0) as (
        engine,
        sim,
        pool,
        rec,
        _subs,
    ):
        sim.fault("zombie", login="lc_tv")
        sid, at = await store_signal(pool, rec)
        out = await engine.on_signal(
            signal_id=sid,
            recorder_id=rec,
            signal=Signal(Action.BUY, ticker="MNQ1!", price=Decimal(21500)),
            received_at=at,
        )
        assert out.orders == 2, out
        assert [list(sim.positions(s).values()) for s in ("LA1", "LB1")] == [[1], [1]]
        # the bound (2 s) said so, not the 10 s request timeout
        assert "took longer than 2 s" in str(out.detail), out.detail
