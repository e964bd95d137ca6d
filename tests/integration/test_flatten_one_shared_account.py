"""``halt --account alice-demo --flatten`` of the shared account PX1 (alice's stored password
stale, bob's session on the same Tradovate login live): a flatten of everything reached PX1
through bob's row, but a flatten of alice's account alone asked only alice's rows
(``flatten_subs(label)``), so PX1 stayed open under her kill switch."""

from __future__ import annotations

from jtrades.config import Settings
from jtrades.db import Database
from tests.integration.test_engine import wait_for
from tests.integration.test_flatten import flatten_flag, request_flatten
from tests.integration.test_flatten_shared_login import _net, _shared_login


async def test_flatten_of_one_account_reaches_it_through_the_other_users_live_row(
    database: Database, settings: Settings
) -> None:
    async with _shared_login(database, settings, live=("bob",)) as (engine, _, w):
        await request_flatten(engine, database.pool, "alice-demo")

        async def flat() -> bool:
            return _net(w) == 0

        try:
            await wait_for(flat, "flatten of alice-demo closed PX1 through bob's session", 8)
        except AssertionError as exc:
            f = await flatten_flag(database.pool)
            raise AssertionError(
                f"PX1 still long {_net(w)} under alice's kill switch; left:"
                f" {f.get('progress', {}).get('left')}"
            ) from exc
