"""On a 401 authorize Tradovate (and the simulator) answers 401 and closes the socket; the
session forgets the refused token (memory and its stored row) and logs in afresh. The step
must not be cut short by the socket's end: a cancelled delete left the refused token stored,
reloaded by every next connect and refused again, the login never logging in.

``db_slower_than_close`` stands in for a database round trip a little slower than the
socket's close (another host, a loaded pool); ``natural`` runs it unpatched."""

from __future__ import annotations

import asyncio

import pytest

from jtrades.broker.tradovate import tokens as tokens_mod
from jtrades.config import Settings
from jtrades.db import Database
from tests.conftest import *  # noqa: F403
from tests.polling import until
from tests.registry_world import registry_world
from tests.simutil import running_sim

LOGIN, PW = "ri_tv", "pw-ri"


@pytest.mark.parametrize("slow_delete", [False, True], ids=["natural", "db_slower_than_close"])
async def test_refused_token_is_forgotten_and_a_new_login_follows(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch, slow_delete: bool
) -> None:
    if slow_delete:
        real = tokens_mod.store.delete

        async def delete(*a, **kw):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.2)
            return await real(*a, **kw)

        monkeypatch.setattr(tokens_mod.store, "delete", delete)
    async with running_sim() as sim:
        sim.add_login(LOGIN, PW, ["RI1"])
        w = await registry_world(database, settings, sim, "ri", LOGIN, PW, "RI1")
        registry, link = w.registry, w.link
        try:
            await registry.reach([link])
            session = registry.broker_for(link).session  # type: ignore[attr-defined]
            assert session.ready
            logins = sim.stats()["access_token_requests"]
            # Tradovate revokes the token (the person logged out everywhere): the socket drops
            sim.fault("unauthorized", token=session._token.token)
            sim.fault("drop", after=0)
            await until(
                lambda: sim.stats()["access_token_requests"] > logins and session.ready,
                within_s=30,
                what="READY again after a new login",
            )
            assert sim.stats()["access_token_requests"] == logins + 1
        finally:
            await registry.close()
