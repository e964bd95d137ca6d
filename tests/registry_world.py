"""One Tradovate login on the simulator, stored as a jtrades account and linked, with the
registry that would trade it: the world the registry's session tests start from.

    sim.add_login(LOGIN, PW, ["SUB1"])
    w = await registry_world(database, settings, sim, "xy", LOGIN, PW, "SUB1")
    await w.registry.reach([w.link])

Settings point at the simulator and reconnect fast; ``tradovate`` adds overrides. The account
is labelled ``{name}-demo`` for a user ``name``; ``password=None`` stores it without one (an
OAuth-connected account, whose token the test stores itself)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.config_cache import LinkConfig
from jtrades.security import SecretBox, load_secret_box
from jtrades.store import accounts as account_store
from tests.integration.test_engine import make_user
from tests.sim_worlds import FAST_RECONNECT, with_sim
from tests.simutil import SimHandle


@dataclass
class RegistryWorld:
    settings: Settings
    box: SecretBox
    user_id: int
    account_id: int
    link: LinkConfig
    registry: BrokerRegistry
    broker_account_id: int  # the sub-account's id at the simulator


async def registry_world(
    database: Database,
    settings: Settings,
    sim: SimHandle,
    name: str,
    login: str,
    password: str | None,
    sub: str,
    *,
    tradovate: dict[str, Any] | None = None,
) -> RegistryWorld:
    st = with_sim(settings, sim, **{**FAST_RECONNECT, **(tradovate or {})})
    box = load_secret_box(st, create=True)
    pool = database.pool
    u = await make_user(pool, name)
    label = f"{name}-demo"
    if password is None:
        account_id = int(
            await pool.fetchval(
                "INSERT INTO accounts (user_id, label, env, username) VALUES ($1,$2,'demo',$3)"
                " RETURNING id",
                u,
                label,
                login,
            )
        )
    else:
        acct = await account_store.create(
            pool,
            user_id=u,
            label=label,
            env="demo",
            username=login,
            password=box.seal(password, account_store.password_context("demo", login)),
        )
        account_id = acct.id
    bid = sim.account_id(sub)
    link = LinkConfig(0, 0, Decimal(1), account_id, "demo", bid, sub, label, u, False)
    registry = BrokerRegistry(database, st)
    return RegistryWorld(st, box, u, account_id, link, registry, bid)
