"""How tests reach the Tradovate simulator: one place decides it.

Tests built their Tradovate settings by hand, a copy of the same few keys in each file (the
simulator's REST and WebSocket urls, no connect stagger), so a change to how tests reach the
simulator meant finding every copy. Build them here instead:

    tv = sim_tradovate(settings, sim)                        # settings.tradovate, on the simulator
    st = with_sim(settings, sim, request_timeout_s=1.0)      # the whole Settings, likewise
    tv = sim_tradovate(settings, sim, **FAST_RECONNECT)      # a session that comes back quickly
    tv = sim_tradovate_defaults(sim, request_timeout_s=5)    # no Settings at hand: the defaults

Extra keys are passed through and win over the ones set here.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from jtrades.config import Settings, TradovateSettings
from tests.simutil import SimHandle

# Reconnect timings for tests whose session is cut or restarted and must come back quickly.
FAST_RECONNECT: Mapping[str, float] = MappingProxyType(
    {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.3}
)


def _on_sim(sim: SimHandle) -> dict[str, Any]:
    """The demo endpoints of the simulator, and logins connected without a stagger."""
    return {"demo_rest_url": sim.rest_url, "demo_ws_url": sim.ws_url, "connect_stagger_s": 0}


def sim_tradovate(settings: Settings, sim: SimHandle, **extra: Any) -> TradovateSettings:
    """``settings.tradovate`` pointing at ``sim`` (a copy), with ``extra`` keys on top."""
    return settings.tradovate.model_copy(update={**_on_sim(sim), **extra})


def with_sim(settings: Settings, sim: SimHandle, **extra: Any) -> Settings:
    """``settings`` (a copy) whose Tradovate section is ``sim_tradovate(settings, sim, **extra)``."""
    return settings.model_copy(update={"tradovate": sim_tradovate(settings, sim, **extra)})


def sim_tradovate_defaults(sim: SimHandle, **extra: Any) -> TradovateSettings:
    """Default ``TradovateSettings`` pointing at ``sim``, with ``extra`` keys on top (for tests
    of the Tradovate client that have no ``Settings``)."""
    return TradovateSettings(**{**_on_sim(sim), **extra})
