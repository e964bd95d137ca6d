"""Every stored secret re-encrypted under the current key: the last step of a key rotation.

A rotation puts a new key first in the key file (it seals from then on; the older lines still
open what they sealed). ``reseal`` then moves every broker password, OAuth token and cached
access token to the new key in ONE transaction, after which the older lines can be deleted.

A password or OAuth token that does not open (its key is not in the file, or the value was
altered) fails the whole run: nothing is half-moved, and the error names the account and the
key id, never a secret. A cached access token that does not open is deleted instead: it is a
cache, and the daemon logs in again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from jtrades.errors import SecretKeyMissing
from jtrades.queries import q
from jtrades.security import SecretBox
from jtrades.store import translate_errors
from jtrades.store.accounts import oauth_context, password_context
from jtrades.store.broker_tokens import token_context

# a connection, not a pool: the run is one transaction
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


@dataclass(frozen=True, slots=True)
class ResealReport:
    key_id: str  # the key everything was moved to
    passwords: int = 0
    oauth_tokens: int = 0
    access_tokens: int = 0
    access_tokens_dropped: int = 0  # cached tokens that no longer opened
    keys_in_use: dict[str, int] = field(default_factory=dict)  # key id -> secrets, afterwards

    @property
    def others_in_use(self) -> dict[str, int]:
        """Keys other than the current one still sealing something (a daemon started with the
        old key file may have written a token since): those lines must stay for now."""
        return {k: n for k, n in self.keys_in_use.items() if k != self.key_id}


def _move(box: SecretBox, ciphertext: bytes, key_id: str, context: str, what: str) -> bytes:
    try:
        plain = box.open(bytes(ciphertext), key_id, context)
    except SecretKeyMissing as exc:
        raise SecretKeyMissing(f"{what}: {exc}; nothing was re-sealed") from None
    return box.seal(plain, context).ciphertext


async def reseal(conn: Connection, box: SecretBox) -> ResealReport:
    """Move every secret not under ``box``'s current key to it, all or nothing."""
    current = box.current_key_id
    passwords = oauth_tokens = access_tokens = dropped = 0
    with translate_errors():
        async with conn.transaction():
            for r in await conn.fetch(q("secrets.accounts_to_reseal"), current):
                password, password_key = r["password_enc"], r["password_key_id"]
                oauth, oauth_key = r["oauth_token_enc"], r["oauth_key_id"]
                if password is not None and box.needs_reseal(password_key):
                    context = password_context(r["env"], r["username"])
                    what = f"the password of account {r['label']}"
                    password = _move(box, password, password_key, context, what)
                    password_key, passwords = current, passwords + 1
                if oauth is not None and box.needs_reseal(oauth_key):
                    context = oauth_context(r["env"], r["username"])
                    what = f"the OAuth token of account {r['label']}"
                    oauth = _move(box, oauth, oauth_key, context, what)
                    oauth_key, oauth_tokens = current, oauth_tokens + 1
                await conn.execute(
                    q("secrets.set_account"), r["id"], password, password_key, oauth, oauth_key
                )
            for r in await conn.fetch(q("secrets.tokens_to_reseal"), current):
                context = token_context(r["env"], r["username"])
                try:
                    token = _move(box, r["token_enc"], r["key_id"], context, "an access token")
                except SecretKeyMissing:
                    await conn.execute(q("secrets.drop_token"), r["env"], r["username"])
                    dropped += 1
                    continue
                await conn.execute(q("secrets.set_token"), r["env"], r["username"], token, current)
                access_tokens += 1
            in_use = {r["key_id"]: r["secrets"] for r in await conn.fetch(q("secrets.keys_in_use"))}
    return ResealReport(current, passwords, oauth_tokens, access_tokens, dropped, in_use)
