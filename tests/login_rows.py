"""Give a Tradovate login row built by hand in a test the credential ``accounts add`` would
have stored: the engine takes rows of one login for one account at the broker only when they
hold one (``engine.config_cache.account_key``): a password Tradovate accepted, so two users'
rows of a shared login each hold its password, proven, as they would after ``accounts add
--password-stdin`` and a session or sync with it. A password stored and never tried (a new
row's, as ``accounts add`` or ``set-password`` leaves it when no proven row of the login holds
the same) is ``proven=False``.

    await hold_password(pool, account_id, "px-pw", proven=True)

The password is sealed with a key of the test's own, never written where the daemon looks
(``load_secret_box``): the daemon's registry cannot open it and never dials a Tradovate login
with it, so a row keeps exactly the session the test attaches to it (``BrokerRegistry.attach``),
or none, as before."""

from __future__ import annotations

import secrets

import asyncpg

from jtrades.security import SecretBox
from jtrades.store.accounts import password_context

_BOX = SecretBox([secrets.token_bytes(32)], "tests.login_rows")


async def hold_password(
    pool: asyncpg.Pool, account_id: int, password: str, *, proven: bool = False
) -> None:
    """Store ``password`` as the account's Tradovate password (sealed for its login);
    ``proven``: as if Tradovate had accepted it since (``accounts.password_proven_at``)."""
    env, username = await pool.fetchrow(
        "SELECT env, username FROM accounts WHERE id = $1", account_id
    )
    sealed = _BOX.seal(password, password_context(env, username))
    await pool.execute(
        "UPDATE accounts SET password_enc = $2, password_key_id = $3,"
        " password_proven_at = CASE WHEN $4 THEN now() END WHERE id = $1",
        account_id,
        sealed.ciphertext,
        sealed.key_id,
        proven,
    )
