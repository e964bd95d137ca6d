"""The webhook token in a body that may not parse: found to attribute the delivery, and masked
before the body is stored.

The parser finds the token of a body it reads (``Signal.token``, under any of its aliases). A
body it refuses (an unknown action, a bad number) or one cut at the size limit still carries
the token and still has to be stored: found by the exact key ``token`` only, the others were
answered 401 ("no webhook token") instead of their own 4xx, and stored with the token in clear.
Here both work by the parser's own aliases and key spelling (``passphrase``, ``Webhook-Token``,
``token=`` in a text alert), on JSON that decodes, JSON that does not (cut short), and text.
"""

from __future__ import annotations

import json
import re

from jtrades.engine.parse_values import norm_key
from jtrades.engine.parsing import TOKEN

MASK = b"***"
_KEYS = frozenset(norm_key(k) for k in TOKEN)
# a JSON member with a string value (the value may be cut off by the size limit)
_JSON_MEMBER = re.compile(rb'("(?P<key>[^"\\]{1,40})"\s*:\s*")(?P<value>[^"\\]*)')
# a text alert's key=value pair (the separators are parse_text's)
_TEXT_PAIR = re.compile(
    rb"(?:^|(?<=[\s,;]))(?P<key>[A-Za-z_][A-Za-z0-9_.\-]{0,39})=(?P<value>[^\s,;]*)"
)


def _is_token_key(key: bytes) -> bool:
    return norm_key(key.decode("utf-8", errors="replace")) in _KEYS


def find_token(body: bytes) -> str | None:
    """The token a body carries under any of the parser's aliases, whether or not it parses."""
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    stripped = text.lstrip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except (ValueError, RecursionError):
            data = None
        if isinstance(data, dict):
            for key, value in data.items():
                if norm_key(str(key)) in _KEYS and isinstance(value, str) and value.strip():
                    return value.strip()
            return None
    raw = stripped.encode()
    for pattern in (_JSON_MEMBER, _TEXT_PAIR):
        for m in pattern.finditer(raw):
            if _is_token_key(m.group("key")) and m.group("value").strip():
                return m.group("value").strip().decode()
    return None


def mask_tokens(body: bytes) -> bytes:
    """``body`` with the value of every token-named field masked (JSON members, text pairs)."""

    def mask(m: re.Match[bytes]) -> bytes:
        if not _is_token_key(m.group("key")) or not m.group("value"):
            return m.group(0)
        start = m.start("value") - m.start(0)
        return m.group(0)[:start] + MASK

    return _TEXT_PAIR.sub(mask, _JSON_MEMBER.sub(mask, body))
