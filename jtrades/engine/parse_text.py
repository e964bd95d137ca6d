"""Plain-text alerts: ``buy``, ``sell MNQ1! 2``, ``buy 3 MNQ1! @ 21500.25``, ``close``.

Text is turned into the same fields a JSON alert would carry and then read by the one JSON
path, so a word means the same thing in both. Three shapes are understood:

- words: an action first, then at most one symbol, one whole number (contracts) and
  ``@ PRICE`` in any order;
- ``key=value`` pairs (not ``key:value``, which would read ``CME_MINI:MNQ1!`` as a pair), mixed freely with the words: ``buy qty=2 ticker=MNQ1!``;
- TradingView's default strategy message, ``… order buy @ 2 filled on MNQ1!. New strategy
  position is 2``, whose position size becomes the market position (0 = flat); ``key=value``
  pairs may stand beside it.
"""

from __future__ import annotations

import re
from typing import Any

from jtrades.engine.parse_values import (
    ACTION_WORDS,
    PLAIN_NUMBER,
    find_placeholder,
    short,
    to_decimal,
)
from jtrades.errors import InvalidSignal

TextFields = dict[str, Any]

_DEFAULT_STRATEGY_MESSAGE = re.compile(
    r"order\s+(?P<action>buy|sell)\s+@\s+(?P<contracts>\S+)\s+filled\s+on\s+(?P<ticker>\S+?)\.?"
    r"\s+new\s+strategy\s+position\s+is\s+(?P<position>\S+?)\.?\s*$",
    re.IGNORECASE,
)
_PAIR = re.compile(r"^(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)=(?P<value>.*)$")
_SYMBOL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_:.!/\-]*$")
_MAX_TEXT = 1000
# Commas and semicolons separate words ("sell, MNQ1!, 2"), but not a comma between two digits:
# "@ 21,500" split there read as price 21 and 500 contracts; kept whole, it is refused (422).
_SEPARATOR = re.compile(r";|(?<!\d),|,(?!\d)")


def parse_text(text: str) -> TextFields:
    """The fields a text alert spells out; raises ``InvalidSignal`` (422) when it is not one."""
    if len(text) > _MAX_TEXT:
        raise InvalidSignal(f"text alert longer than {_MAX_TEXT} characters")
    # before the words are read: "{{ticker}}" is no symbol, and "cannot read" said nothing of
    # the template sent as is
    found = find_placeholder(text, "")
    if found:
        raise InvalidSignal(
            f"text alert: the TradingView placeholder {short(found[1])} was not substituted"
            " (it is only filled in by a strategy alert, or it is misspelt)"
        )
    # ``key=value`` pairs beside the default message (``token=…``, DESIGN §4) go with it: read
    # as the message alone, the token was dropped and the alert answered 401 "no token"
    parts = text.split()
    rest = " ".join(w for w in parts if not _PAIR.match(w))
    default = _DEFAULT_STRATEGY_MESSAGE.search(rest)
    if default:
        beside = _from_default_message(default)
        for kv in filter(None, map(_PAIR.match, parts)):
            _put(beside, kv.group("key"), kv.group("value"))
        return beside
    fields: TextFields = {}
    words: list[str] = []
    for token in _SEPARATOR.sub(" ", text).split():
        pair = _PAIR.match(token)
        if pair:
            _put(fields, pair.group("key"), pair.group("value"))
        elif "=" in token:
            raise InvalidSignal(f"text alert: cannot read {short(token)}")
        else:
            words.append(token)
    if words:
        _read_words(words, fields)
    return fields


def _put(fields: TextFields, key: str, value: Any) -> None:
    # the same text twice is one value; another (``qty=3`` beside the word ``2`` is another
    # key, refused by the alias groups' own check)
    if key in fields and fields[key] != value:
        raise InvalidSignal(f"text alert: {key!r} given twice")
    fields[key] = value


def _read_words(words: list[str], fields: TextFields) -> None:
    first = words[0].lower()
    if first not in ACTION_WORDS:
        raise InvalidSignal(
            f"text alert must start with an action (buy, sell, close, …), got {short(words[0])}"
        )
    _put(fields, "action", first)
    rest = iter(words[1:])
    for word in rest:
        if word == "@":
            price = next(rest, None)
            if price is None:
                raise InvalidSignal("text alert: '@' must be followed by a price")
            _put(fields, "price", price)
        elif word.startswith("@") and len(word) > 1:
            _put(fields, "price", word[1:])
        elif PLAIN_NUMBER.fullmatch(word):
            _put(fields, "quantity", word)
        elif _SYMBOL.match(word):
            _put(fields, "ticker", word)
        else:
            raise InvalidSignal(f"text alert: cannot read {short(word)}")


def _from_default_message(match: re.Match[str]) -> TextFields:
    ticker = match.group("ticker")
    # bounded like any number read (an exponent past the context raised Overflow from abs())
    size = to_decimal("position size", match.group("position"))
    assert size is not None  # the pattern's \S+ is never blank
    position = "long" if size > 0 else "short" if size < 0 else "flat"
    fields: TextFields = {
        "action": match.group("action").lower(),
        "quantity": match.group("contracts"),
        "ticker": ticker,
        "market_position": position,
    }
    if size:
        # the order's contracts count a reversal's closing ones too (long 1 → short 1 is an
        # order of 2): the new position's size is what a reversal opens (planning)
        fields["market_position_size"] = str(abs(size))
    return fields
