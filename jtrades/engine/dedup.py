"""Idempotency keys for webhook deliveries (money rule 3: one alert, one set of orders).

TradingView re-sends a delivery it saw fail or time out, networks repeat requests, and users
paste one alert twice; the key says "this is the same alert", and a window says for how long.

- An explicit ``id`` in the payload is the sender's own statement of identity: the key is the
  id, and a second delivery with that id within ``ID_WINDOW`` (24 h) is a duplicate.
- Without one, the key is a hash of the token's hash and the body normalised (JSON keys sorted,
  the body token removed; text trimmed, whitespace collapsed, lower-cased), and a second delivery
  within ``HASH_WINDOW`` (60 s) of the first is a duplicate. A sliding window, not the calendar
  minute the first draft used: a re-send 5 s after an alert at hh:mm:58 falls into the next
  minute and would have been traded twice.

Keys are scoped to a recorder by the ``signal_keys`` primary key; the token hash inside the
hash keeps keys from before and after a token rotation apart. The one atomic insert that applies
the window is ``signals.claim`` (sql/queries/signals.sql).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson

# Longer explicit ids are hashed so a key stays a small index entry whatever the sender wrote.
MAX_ID_CHARS = 128
ID_WINDOW = timedelta(hours=24)
HASH_WINDOW = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class IdemKey:
    """A delivery's key and how long an equal key marks a duplicate."""

    key: str
    window: timedelta

    @property
    def explicit(self) -> bool:
        return self.key.startswith(("id:", "idh:"))


def normalize_body(body: bytes) -> bytes:
    """The body reduced to what identifies the alert: formatting and the token removed."""
    try:
        value: Any = orjson.loads(body)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if str(k).lower() != "token"}
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        # not JSON, or JSON orjson reads but cannot write back (nested past 255 levels): the
        # body is keyed as text, as a key is owed to every delivery the parser let through
        pass
    text = body.decode("utf-8", errors="replace")
    return " ".join(text.split()).lower().encode("utf-8")


def explicit_key(alert_id: str) -> str | None:
    """The key for a payload ``id``; None when the id is blank."""
    cleaned = alert_id.strip()
    if not cleaned:
        return None
    if len(cleaned) > MAX_ID_CHARS:
        return "idh:" + hashlib.sha256(cleaned.encode("utf-8")).hexdigest()
    return "id:" + cleaned


def body_key(token_hash: bytes, body: bytes) -> str:
    """``h:`` + SHA-256 of the token hash and the normalised body."""
    digest = hashlib.sha256()
    digest.update(token_hash)
    digest.update(b"\x00")
    digest.update(normalize_body(body))
    return "h:" + digest.hexdigest()


def idempotency_key(*, alert_id: str | None, token_hash: bytes, body: bytes) -> IdemKey:
    """The delivery's key: the payload id (24 h window), else the body hash (60 s window)."""
    if alert_id is not None:
        key = explicit_key(alert_id)
        if key is not None:
            return IdemKey(key, ID_WINDOW)
    return IdemKey(body_key(token_hash, body), HASH_WINDOW)
