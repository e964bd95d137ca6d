"""Stored broker access tokens: one row per (env, login), the token encrypted by the caller.

The store never sees a plaintext token: it keeps the ciphertext and the id of the key that made it.
What the caller seals is ``sealed_text``: the token and the proof of how it was obtained
(``tradovate.tokens``: a keyed digest of the password a login used, or ``oauth``), sealed
together so that a key rotation (``accounts reseal``) moves both and neither is ever in clear.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


def token_context(env: str, username: str) -> str:
    """Associated data: a sealed token opens only as the token of this (env, login)."""
    return f"broker_tokens:{env}:{username}"


# Starts the sealed text of a token stored with its proof: the proof, a newline, the token (a
# bearer token holds no newline). A row written before proofs existed holds the bare token.
_PROOF_MARK = "proof:"


def sealed_text(token: str, proof: str | None) -> str:
    """What ``token_enc`` seals: the token, after its proof when it has one."""
    return token if proof is None else f"{_PROOF_MARK}{proof}\n{token}"


def opened_text(plain: str) -> tuple[str, str | None]:
    """(token, proof) from an opened ``token_enc``; a bare token (stored before proofs) has
    none, and is unproven: no password caller is handed it without a login."""
    if plain.startswith(_PROOF_MARK) and "\n" in plain:
        head, token = plain.split("\n", 1)
        return token, head[len(_PROOF_MARK) :]
    return plain, None


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
