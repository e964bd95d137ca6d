"""206f2db: ``trading.config_rowless`` no longer names a never-synced login when another row
of its username has sub-accounts. But that other row may be one that only typed the username
(no credential: it never has a session, ``flatten_left.rowless`` and ``account_key`` do not
count it as the login's)."""

from __future__ import annotations

import asyncpg

from jtrades.store import trading as trading_store
from tests.integration.test_engine import make_user
from tests.login_rows import hold_password


async def test_a_credentialless_row_typing_the_username_does_not_hide_a_never_synced_login(
    pool: asyncpg.Pool,
) -> None:
    alice = await make_user(pool, "alice")
    a_aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username)"
        " VALUES ($1, 'alice-demo', 'demo', 'alice_tv') RETURNING id",
        alice,
    )
    await hold_password(pool, a_aid, "al-pw", proven=True)  # added; `accounts sync` never run
    mallory = await make_user(pool, "mallory")
    m_aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username)"
        " VALUES ($1, 'mallory-demo', 'demo', 'ALICE_TV') RETURNING id",
        mallory,
    )  # no password, no OAuth: this row can never open a session
    await pool.execute(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name) VALUES ($1, 4242, 'TYPO')",
        m_aid,
    )

    rows = await trading_store.load_config(pool)

    assert rows.rowless == ["alice-demo"], (
        "alice's never-synced login is taken as reached through mallory's row, which has no"
        " credential and so no session: `halt --flatten` is marked done with it unread"
    )
