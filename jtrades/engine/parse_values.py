"""Reading one webhook field: keys matched loosely, numbers and words checked strictly.

Alert messages are typed by people into TradingView's alert box, so keys come in every spelling
(``marketPosition``, ``market_position``, ``Market-Position``) and numbers arrive as JSON numbers or
as strings (``"{{close}}"`` is a string once TradingView substitutes it). Each helper here either
returns a clean value or raises ``InvalidSignal`` naming the field, so a bad alert is answered 422
with a reason the trader can act on, never with a traceback or a guessed order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from jtrades.engine.signal import Action, MarketPosition
from jtrades.errors import InvalidSignal

# Bounds that no real futures alert comes near; they keep absurd input from reaching the planner.
MAX_QUANTITY = 100_000
_MAX_DIGITS = 12  # |number| < 10**12
_MAX_DECIMALS = 10

_PLACEHOLDER = re.compile(r"\{\{[^{}]*\}\}")

# A number as people and TradingView write one, in ASCII. Decimal() alone also reads digit-group
# underscores and any script's digits ("2_0" is 20, "\u0662" is 2), where a typo or a stray
# character must be refused, not traded. ``PLAIN_NUMBER`` (no exponent) is what a text alert's
# word must be to count as contracts: "6E1" there is a symbol, not 60.
_PLAIN = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
PLAIN_NUMBER = re.compile(_PLAIN, re.ASCII)
NUMBER = re.compile(_PLAIN + r"(?:[eE][+-]?[0-9]+)?", re.ASCII)

ACTION_WORDS: dict[str, Action] = {
    "buy": Action.BUY,
    "long": Action.BUY,
    "sell": Action.SELL,
    "short": Action.SELL,
    "close": Action.CLOSE,
    "exit": Action.CLOSE,
    "flat": Action.CLOSE,
    "flatten": Action.CLOSE,
    "add": Action.ADD,
    "cancel": Action.CANCEL,
}

# TradersPost ``sentiment`` says bullish/bearish; TradingView's market_position says long/short.
POSITION_WORDS: dict[str, MarketPosition] = {
    "long": MarketPosition.LONG,
    "bullish": MarketPosition.LONG,
    "short": MarketPosition.SHORT,
    "bearish": MarketPosition.SHORT,
    "flat": MarketPosition.FLAT,
}


_KEY_SEPARATORS = str.maketrans("", "", "_- .")


_NORMALIZED: dict[str, str] = {}


def norm_key(key: str) -> str:
    """``marketPosition``, ``market_position`` and ``Market-Position`` are the same field."""
    # A parse reads ~60 aliases: a plain dict is the cheapest memo. Bounded, and only short
    # keys (our aliases and real field names, not arbitrary junk) are kept.
    norm = _NORMALIZED.get(key)
    if norm is None:
        norm = key.lower().translate(_KEY_SEPARATORS)
        if len(key) <= 40 and len(_NORMALIZED) < 4096:
            _NORMALIZED[key] = norm
    return norm


_GROUPS: dict[tuple[str, ...], tuple[tuple[str, ...], frozenset[str]]] = {}


def _normalized(aliases: tuple[str, ...]) -> tuple[tuple[str, ...], frozenset[str]]:
    """An alias group's keys after ``norm_key``, each once, in alias order, and as a set: the
    groups are the parser's constants, read ~30 times per alert, most of them absent, and
    normalising each alias every time was most of a small alert's parse."""
    group = _GROUPS.get(aliases)
    if group is None:
        norms = tuple(dict.fromkeys(norm_key(a) for a in aliases))
        group = (norms, frozenset(norms))
        if len(_GROUPS) < 256:
            _GROUPS[aliases] = group
    return group


def short(value: Any, limit: int = 20) -> str:
    """A value as it may appear in an error message (stored with the signal, logged, answered).

    Long values are described, not echoed: a token pasted into the wrong field (or on the first
    line of a text alert, as some services want it) must not travel on in an error message."""
    text = value if isinstance(value, str) else _as_json(value)
    text = " ".join(text.split())
    if len(text) <= limit or _PLACEHOLDER.fullmatch(text):
        return text
    return f"(a {len(text)}-character value)"


def _as_json(value: Any) -> str:
    """A parsed value in the alert's own words (JSON): ``1.5``, ``true``, ``null``, never
    Python's ``Decimal('1.5')`` or ``True``."""
    if isinstance(value, Decimal):
        return str(value)
    try:
        return orjson.dumps(value, default=str).decode()
    except (TypeError, orjson.JSONEncodeError):
        return repr(value)


def find_placeholder(value: Any, path: str) -> tuple[str, str] | None:
    """The first ``{{…}}`` TradingView left unsubstituted, with the field it sits in."""
    if isinstance(value, str):
        match = _PLACEHOLDER.search(value)
        return (path, match.group(0)) if match else None
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = find_placeholder(item, f"{path}.{key}" if path else str(key))
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = find_placeholder(item, f"{path}[{index}]")
            if found:
                return found
    return None


def check_placeholders(fields: Mapping[str, Any]) -> None:
    """Reject an alert template sent as is: its orders would be guesses."""
    found = find_placeholder(fields, "")
    if found:
        path, placeholder = found
        raise InvalidSignal(
            f"field {path!r} still holds the TradingView placeholder {short(placeholder)}: "
            "it is only filled in by a strategy alert (or the placeholder is misspelt)"
        )


# What Postgres cannot hold in text or jsonb: NUL, and the lone surrogates a JSON ``\ud800``
# escape decodes to (not even UTF-8 can carry those).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with NUL and lone surrogates replaced by U+FFFD. Done once, where untrusted text
    comes in, so that no column, key, jsonb value or log line downstream meets them: one would
    fail the signal's insert, and a delivery that cannot be stored is answered 5xx, which
    TradingView retries (the raw body keeps the original bytes)."""
    if text.isascii() and "\x00" not in text:
        return text
    return _UNSTORABLE.sub("\ufffd", text)


def storable_tree(value: Any) -> Any:
    """``storable`` applied to every string (keys too) of a parsed JSON value."""
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, dict):
        return {storable(k): storable_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [storable_tree(v) for v in value]
    return value


def is_blank(value: Any) -> bool:
    """JSON null and empty strings mean "not given" (templates often leave fields empty)."""
    return value is None or (isinstance(value, str) and not value.strip())


def _comparable(value: Any) -> Any:
    """What two values of one field are compared by: numbers by value (``"2"``, 2, 2.0 and
    ``2e0`` are one quantity), text stripped and case-folded (symbols are looked up in upper
    case, words in lower), anything else as it is."""
    if isinstance(value, bool):
        return ("flag", value)
    try:
        if isinstance(value, int | Decimal | float):
            return ("number", Decimal(str(value)))
        if isinstance(value, str):
            text = value.strip()
            if NUMBER.fullmatch(text):
                return ("number", Decimal(text))
            return ("text", text.casefold())
    except ArithmeticError:  # an exponent past Decimal's range: compared as written
        return ("text", str(value).strip().casefold())
    return ("other", value)


def same_value(a: Any, b: Any) -> bool:
    """Whether two values given for one field say the same thing."""
    return bool(_comparable(a) == _comparable(b))


def to_decimal(field: str, value: Any) -> Decimal | None:
    """A finite, sane number from a JSON number or a numeric string; None when blank."""
    if is_blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float | str):
        raise InvalidSignal(f"field {field!r} must be a number, got {short(value)}")
    if isinstance(value, str):
        value = value.strip()
        if not NUMBER.fullmatch(value):
            raise InvalidSignal(f"field {field!r} must be a number, got {short(value)}")
    try:
        number = Decimal(value if isinstance(value, str) else str(value))
    except (InvalidOperation, ValueError):
        raise InvalidSignal(f"field {field!r} must be a number, got {short(value)}") from None
    # adjusted() reads the exponent without arithmetic: abs() of 1e999999999 raises Overflow
    if not number.is_finite() or number.adjusted() >= _MAX_DIGITS:
        raise InvalidSignal(f"field {field!r} is not a usable number: {short(value)}")
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        raise InvalidSignal(f"field {field!r} has too many decimal places: {short(value)}")
    return number + 0  # drops a negative zero's sign


def to_quantity(field: str, value: Any) -> int | None:
    """Whole contracts; 0 or absent means "use the configured size" (None)."""
    number = to_decimal(field, value)
    if number is None or number == 0:
        return None
    if number < 0:
        raise InvalidSignal(f"field {field!r} must not be negative, got {short(value)}")
    if number != number.to_integral_value():
        raise InvalidSignal(f"field {field!r} must be whole contracts, got {short(value)}")
    if number > MAX_QUANTITY:
        raise InvalidSignal(f"field {field!r} is larger than {MAX_QUANTITY} contracts")
    return int(number)


def to_price(field: str, value: Any) -> Decimal | None:
    """A price: positive; None when blank."""
    number = to_decimal(field, value)
    if number is not None and number <= 0:
        raise InvalidSignal(f"field {field!r} must be a positive price, got {short(value)}")
    return number


def to_distance(field: str, value: Any) -> Decimal | None:
    """A TP/SL size or level where 0 means "not set" (PickMyTrade's templates send zeros)."""
    number = to_decimal(field, value)
    if number is None or number == 0:
        return None
    if number < 0:
        raise InvalidSignal(f"field {field!r} must not be negative, got {short(value)}")
    return number


def to_flag(field: str, value: Any) -> bool:
    """PickMyTrade booleans arrive as true/false, 1/0 or their strings."""
    if is_blank(value):
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower() if isinstance(value, int | str) else None
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise InvalidSignal(f"field {field!r} must be true or false, got {short(value)}")


def to_word(field: str, value: Any) -> str | None:
    """A lower-case word, or None when blank."""
    if is_blank(value):
        return None
    if not isinstance(value, str):
        raise InvalidSignal(f"field {field!r} must be text, got {short(value)}")
    return value.strip().lower()


def to_action(field: str, value: Any) -> Action | None:
    """buy/long, sell/short, close/exit/flat, add, cancel."""
    word = to_word(field, value)
    if word is None:
        return None
    action = ACTION_WORDS.get(word)
    if action is None:
        raise InvalidSignal(
            f"field {field!r}: unknown action {short(value)} "
            "(expected buy, sell, long, short, close, exit, flat, add or cancel)"
        )
    return action


def to_position(field: str, value: Any) -> MarketPosition | None:
    """long/bullish, short/bearish, flat."""
    word = to_word(field, value)
    if word is None:
        return None
    position = POSITION_WORDS.get(word)
    if position is None:
        raise InvalidSignal(
            f"field {field!r}: unknown market position {short(value)} (expected long, short or flat)"
        )
    return position


def to_text(field: str, value: Any, limit: int = 200) -> str | None:
    """A short identifier (ticker, id): strings and plain numbers, stripped."""
    if is_blank(value):
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise InvalidSignal(f"field {field!r} must be text, got {short(value)}")
    text = str(value).strip()
    if len(text) > limit:
        raise InvalidSignal(f"field {field!r} is longer than {limit} characters")
    return text


class Fields:
    """A JSON object read by alias; what nobody asked for is what ``rest`` returns.

    Keys are compared after ``norm_key``; the first alias present wins and the other aliases of
    the same group are consumed too, so they do not reappear in ``Signal.extra``.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._by_norm: dict[str, list[str]] = {}
        for key in data:
            self._by_norm.setdefault(norm_key(key), []).append(key)
        self._data = data
        self._used: set[str] = set()

    def has(self, *aliases: str) -> bool:
        return not self._by_norm.keys().isdisjoint(_normalized(aliases)[1])

    def all(self, *aliases: str) -> list[tuple[str, Any]]:
        """Every (original key, value) of the group, in alias order; marks them used."""
        by_norm = self._by_norm
        norms, present = _normalized(aliases)
        if by_norm.keys().isdisjoint(present):
            return []
        found: list[tuple[str, Any]] = []
        for norm in norms:
            keys = by_norm.get(norm)
            if keys:
                for key in keys:
                    self._used.add(key)
                    found.append((key, self._data[key]))
        return found

    def get(self, *aliases: str, same: Callable[[Any, Any], bool] = same_value) -> tuple[str, Any]:
        """The one non-blank (key, value) of the group, or (first alias, None).

        Two keys of the group with different values (``quantity`` 2 and ``contracts`` 6,
        ``ticker`` MNQ1! and ``symbol`` MES1!) are refused: taking the first alias was a
        guess with the trader's money. The same value twice ("2" and 2.0; by ``same``) is one
        value."""
        given = [(k, v) for k, v in self.all(*aliases) if not is_blank(v)]
        if not given:
            return aliases[0], None
        first_key, first_value = given[0]
        for key, value in given[1:]:
            if not same(first_value, value):
                raise InvalidSignal(
                    f"conflicting {aliases[0]}: {short(first_key, 40)}={short(first_value)},"
                    f" {short(key, 40)}={short(value)}"
                )
        return first_key, first_value

    def first(self, *aliases: str) -> tuple[str, Any]:
        """The first non-blank (key, value) of the group in alias order, others unchecked:
        for a field several of whose aliases are also ordinary words (the token's ``key``)."""
        for key, value in self.all(*aliases):
            if not is_blank(value):
                return key, value
        return aliases[0], None

    def rest(self, drop: Iterable[str] = ()) -> dict[str, Any]:
        """The fields nobody read, minus ``drop`` (by normalised key)."""
        dropped = {norm_key(k) for k in drop}
        return {
            k: v
            for k, v in self._data.items()
            if k not in self._used and norm_key(k) not in dropped
        }
