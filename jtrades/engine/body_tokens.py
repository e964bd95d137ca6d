"""The webhook token in a body that may not parse: found to attribute the delivery, and masked
before the body is stored (and in the parsed signal stored beside it, ``mask_signal``).

The parser finds the token of a body it reads (``Signal.token``, under any of its aliases). A
body it refuses (an unknown action, a bad number) or one cut at the size limit still carries
the token and still has to be stored: found by the exact key ``token`` only, the others were
answered 401 ("no webhook token") instead of their own 4xx, and stored with the token in clear.
Here both work by the parser's own aliases and key spelling (``passphrase``, ``Webhook-Token``,
``token=`` in a text alert), on JSON that decodes, JSON that does not (cut short), and text.

JSON strings may be written with escapes (``"tok\\u0065n":"abc\\u0064…"``, ``\\/``): ``json.loads``
decodes them, so such a token authenticates, and a pattern that stopped at the first backslash
stored the rest of it in clear (money rule 8). Keys and values here take escapes whole, the
whole value is masked, and what is found is decoded as the parser would: a ``\\ud800`` escape
is U+FFFD there too (``parse_values.storable``), where a lone surrogate failed the token's hash
(UTF-8 cannot carry one) and a refusal became a 503.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

from jtrades.engine.parse_values import norm_key, storable
from jtrades.engine.parsing import TOKEN
from jtrades.engine.signal import Signal

MASK = b"***"
_TEXT_MASK = MASK.decode()
# the parser's aliases in its order: of several token-named keys, the parser reads the first
# alias's (``token`` before ``key``), so a refused body is attributed by the same one
_RANK = {norm_key(k): rank for rank, k in enumerate(TOKEN)}
_KEYS = frozenset(_RANK)
# The inside of a JSON string: a backslash takes the next byte with it, so an escape neither
# ends it nor hides what follows. Unrolled and possessive (no backtracking), and a member starts
# at a quote that is not itself escaped, so no scan starts inside another's run of escapes:
# linear in the body (a per-unit alternation with a bounded key cost ~50 ms on 16 KiB of ``"\``).
_STRING = rb'[^"\\]*+(?:\\.[^"\\]*+)*+'
# A JSON member with a string value; the value may be cut off by the size limit, even after
# a backslash.
_JSON_MEMBER = re.compile(
    rb'("(?<!\\")(?P<key>' + _STRING + rb')"\s*:\s*")(?P<value>' + _STRING + rb"\\?)", re.DOTALL
)
# A key is an alias of at most 40 characters, each perhaps a 6-byte ``\uXXXX``.
_MAX_KEY = 240
# a text alert's key=value pair (the separators are parse_text's)
_TEXT_PAIR = re.compile(
    rb"(?:^|(?<=[\s,;]))(?P<key>[A-Za-z_][A-Za-z0-9_.\-]{0,39})=(?P<value>[^\s,;]*)"
)


def _unescape(raw: bytes) -> str:
    """A JSON string's inside as ``json.loads`` reads it; as written if it is cut mid-escape."""
    if b"\\" in raw:
        try:
            decoded = json.loads(b'"' + raw + b'"')
        except ValueError:
            pass
        else:
            if isinstance(decoded, str):
                return storable(decoded)
    return raw.decode("utf-8", errors="replace")


def _is_token_key(key: bytes) -> bool:
    return len(key) <= _MAX_KEY and norm_key(_unescape(key)) in _KEYS


def _rank(key: bytes) -> int | None:
    """The key's place among the parser's token aliases; None when it is not one."""
    return _RANK.get(norm_key(_unescape(key))) if len(key) <= _MAX_KEY else None


def _first_by_alias(found: list[tuple[int, str]]) -> str | None:
    """Of (alias rank, value) in body order, the first value of the first alias, as the
    parser's ``Fields.first`` reads it."""
    return min(found, key=lambda item: item[0])[1] if found else None


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
            found: list[tuple[int, str]] = []
            for key, value in data.items():
                rank = _RANK.get(norm_key(str(key)))
                if rank is None or isinstance(value, bool):
                    continue
                # text or a whole number, as the parser takes it (``parsing._token``)
                text = str(value).strip() if isinstance(value, str | int) else ""
                if text:
                    found.append((rank, storable(text)))
            return _first_by_alias(found)
    raw = stripped.encode()
    found = []
    for m in _JSON_MEMBER.finditer(raw):
        rank = _rank(m.group("key"))
        if rank is not None and (value := _unescape(m.group("value")).strip()):
            found.append((rank, value))
    if found:
        return _first_by_alias(found)
    for m in _TEXT_PAIR.finditer(raw):
        rank = _rank(m.group("key"))
        if rank is not None and m.group("value").strip():
            found.append((rank, m.group("value").strip().decode()))
    return _first_by_alias(found)


def mask_tokens(body: bytes) -> bytes:
    """``body`` with the value of every token-named field masked (JSON members, text pairs):
    the whole value, escapes and all, so no part of the token is left to read."""

    def mask(m: re.Match[bytes]) -> bytes:
        if not _is_token_key(m.group("key")) or not m.group("value"):
            return m.group(0)
        start = m.start("value") - m.start(0)
        return m.group(0)[:start] + MASK

    return _TEXT_PAIR.sub(mask, _JSON_MEMBER.sub(mask, body))


def _mask_text(value: Any, secrets: Sequence[str]) -> Any:
    """``value`` with every secret in its strings (keys too, at any depth) masked; the same
    object when none is there."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, _TEXT_MASK)
        return value
    if isinstance(value, dict):
        return {_mask_text(k, secrets): _mask_text(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask_text(v, secrets) for v in value]
    return value


def mask_signal(signal: Signal, secrets: Sequence[str]) -> Signal:
    """``signal`` with the webhook token masked wherever the alert put it (a ``note`` holding
    the webhook URL, an id): the raw body is masked for storage, and the parsed signal stored
    beside it (its extra fields, alert id, symbol) kept the token in clear (money rule 8).
    Masked once, before the dedup key and the engine see it, so that nothing derived from the
    signal holds it either. ``token`` itself is never stored."""
    if not secrets:
        return signal
    changes: dict[str, Any] = {}
    for f in fields(Signal):
        value = getattr(signal, f.name)
        if f.name == "token" or not isinstance(value, str | dict):
            continue
        masked = _mask_text(value, secrets)
        if masked != value:
            changes[f.name] = masked
    return replace(signal, **changes) if changes else signal
