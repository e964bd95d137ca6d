"""Stored broker access tokens: one row per (env, login), the token encrypted by the caller.

The store never sees a plaintext token: it keeps the ciphertext and the id of the key that made it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


def token_context(env: str, username: str) -> str:
    """Associated data: a sealed token opens only as the token of this (env, login)."""
    return f"broker_tokens:{env}:{username}"


@dataclass(frozen=True, slots=True)
class StoredToken:
    env: str
    username: str
    token_enc: bytes
    key_id: str
    expires_at: datetime
    broker_user_id: int | None
    updated_at: datetime

    def __repr__(self) -> str:
        return f"StoredToken({self.env}/{self.username}, expires_at={self.expires_at.isoformat()})"


async def get(ex: Executor, env: str, username: str) -> StoredToken | None:
    with translate_errors():
        row = await ex.fetchrow(q("broker_tokens.get"), env, username)
    if row is None:
        return None
    return StoredToken(
        env=row["env"],
        username=row["username"],
        token_enc=bytes(row["token_enc"]),
        key_id=row["key_id"],
        expires_at=row["expires_at"],
        broker_user_id=row["broker_user_id"],
        updated_at=row["updated_at"],
    )


async def upsert(
    ex: Executor,
    env: str,
    username: str,
    token_enc: bytes,
    key_id: str,
    expires_at: datetime,
    broker_user_id: int | None,
) -> None:
    with translate_errors():
        await ex.execute(
            q("broker_tokens.upsert"), env, username, token_enc, key_id, expires_at, broker_user_id
        )


async def delete(ex: Executor, env: str, username: str) -> None:
    with translate_errors():
        await ex.execute(q("broker_tokens.delete"), env, username)
