"""Idempotency keys for webhook deliveries (money rule 3: one alert, one set of orders).

TradingView re-sends a delivery it saw fail, networks repeat requests, and users paste one alert
twice; the key says "this is the same alert". An explicit ``id`` in the payload is the sender's
own statement of identity and wins. Without one, the key is a hash of the token's hash, the body
normalised (JSON keys sorted, the body token removed; text trimmed, whitespace collapsed,
lower-cased) and the minute it arrived in: a re-send a few seconds later matches, the same alert
firing again in a later minute does not.

Keys are scoped to a recorder by the ``signal_keys`` primary key; the token hash inside the
hash keeps keys from before and after a token rotation apart.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import orjson

# Longer explicit ids are hashed so a key stays a small index entry whatever the sender wrote.
MAX_ID_CHARS = 128


def normalize_body(body: bytes) -> bytes:
    """The body reduced to what identifies the alert: formatting and the token removed."""
    try:
        value: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        value = None
    else:
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if str(k).lower() != "token"}
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    text = body.decode("utf-8", errors="replace")
    return " ".join(text.split()).lower().encode("utf-8")


def minute_of(received_at: datetime) -> str:
    """The UTC minute a delivery arrived in, e.g. ``2026-11-25T08:51``."""
    if received_at.tzinfo is None:
        raise ValueError("received_at must be timezone-aware")
    return received_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


def explicit_key(alert_id: str) -> str | None:
    """The key for a payload ``id``; None when the id is blank."""
    cleaned = alert_id.strip()
    if not cleaned:
        return None
    if len(cleaned) > MAX_ID_CHARS:
        return "idh:" + hashlib.sha256(cleaned.encode("utf-8")).hexdigest()
    return "id:" + cleaned


def idempotency_key(
    *, alert_id: str | None, token_hash: bytes, body: bytes, received_at: datetime
) -> str:
    """The delivery's idempotency key: ``id:<payload id>``, else ``h:<sha256 hex>``."""
    if alert_id is not None:
        key = explicit_key(alert_id)
        if key is not None:
            return key
    digest = hashlib.sha256()
    digest.update(token_hash)
    digest.update(b"\x00")
    digest.update(normalize_body(body))
    digest.update(b"\x00")
    digest.update(minute_of(received_at).encode("ascii"))
    return "h:" + digest.hexdigest()
