"""Secrets at the edges: webhook tokens, password hashes, and credential encryption.

Webhook tokens are stored only as their SHA-256 (the token itself is shown once, at creation);
a lookup by hash needs no constant-time compare, but comparing a presented token with a known one
does, so ``tokens_equal`` exists for that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

TOKEN_BYTES = 32


def new_webhook_token() -> str:
    """32 random bytes, URL-safe base64 without padding (43 characters, safe in a URL path)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(TOKEN_BYTES)).rstrip(b"=").decode("ascii")


def hash_token(token: str) -> bytes:
    """SHA-256 of a token: what the database stores and the webhook looks up (32 bytes)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def tokens_equal(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison, so response timing reveals nothing about a token."""
    if isinstance(a, str):
        a = a.encode("utf-8")
    if isinstance(b, str):
        b = b.encode("utf-8")
    return hmac.compare_digest(a, b)
