"""parse_payload: every dialect we promise to accept, every refusal we promise to give."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jtrades.engine.parse_values import norm_key
from jtrades.engine.parsing import parse_payload
from jtrades.engine.signal import Action, ExitSpec, MarketPosition, Signal, Units
from jtrades.errors import InvalidSignal

ALERTS = Path(__file__).resolve().parents[2] / "contrib" / "alerts"


def parse(payload: Any, content_type: str | None = "application/json") -> Signal:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return parse_payload(body, content_type)


def refused(payload: Any, match: str, status: int = 422) -> InvalidSignal:
    with pytest.raises(InvalidSignal, match=match) as info:
        parse(payload)
    assert info.value.status == status
    assert "\n" not in str(info.value)
    return info.value


# --- native JSON ----------------------------------------------------------------------------


def test_native_json_reads_every_field() -> None:
    signal = parse(
        {
            "action": "buy",
            "ticker": "MNQ1!",
            "price": 21500.25,
            "quantity": 2,
            "id": "abc-1",
            "market_position": "long",
            "prev_market_position": "flat",
        }
    )
    assert signal == Signal(
        action=Action.BUY,
        ticker="MNQ1!",
        quantity=2,
        price=Decimal("21500.25"),
        market_position=MarketPosition.LONG,
        prev_market_position=MarketPosition.FLAT,
        alert_id="abc-1",
        source="native",
    )


def test_prices_stay_exact_decimals() -> None:
    signal = parse(b'{"action":"buy","price":0.1,"limitPrice":"4500.30","orderType":"limit"}')
    assert signal.price == Decimal("0.1")
    assert signal.limit_price == Decimal("4500.30")


@pytest.mark.parametrize(
    ("word", "action"),
    [
        ("buy", Action.BUY),
        ("long", Action.BUY),
        ("BUY", Action.BUY),
        (" Sell ", Action.SELL),
        ("short", Action.SELL),
        ("close", Action.CLOSE),
        ("exit", Action.CLOSE),
        ("flat", Action.CLOSE),
        ("add", Action.ADD),
        ("cancel", Action.CANCEL),
    ],
)
def test_action_words(word: str, action: Action) -> None:
    assert parse({"action": word}).action is action


@pytest.mark.parametrize(
    "key", ["action", "Action", "ACTION", "side", "signal", "data", "order_action"]
)
def test_action_aliases_any_case(key: str) -> None:
    assert parse({key: "sell"}).action is Action.SELL


@pytest.mark.parametrize("key", ["ticker", "symbol", "instrument", "Ticker", "SYMBOL"])
def test_ticker_aliases(key: str) -> None:
    assert parse({"action": "buy", key: " MES1! "}).ticker == "MES1!"


@pytest.mark.parametrize("key", ["quantity", "contracts", "qty", "Qty", "size"])
def test_quantity_aliases(key: str) -> None:
    assert parse({"action": "buy", key: "3"}).quantity == 3


@pytest.mark.parametrize("key", ["price", "close", "signalPrice", "signal_price"])
def test_price_aliases(key: str) -> None:
    assert parse({"action": "buy", key: "100.5"}).price == Decimal("100.5")


@pytest.mark.parametrize(
    "key", ["market_position", "marketPosition", "MarketPosition", "market-position"]
)
def test_market_position_spellings(key: str) -> None:
    assert parse({"action": "sell", key: "flat"}).market_position is MarketPosition.FLAT


def test_prev_market_position_camel_case() -> None:
    signal = parse({"action": "sell", "prevMarketPosition": "long"})
    assert signal.prev_market_position is MarketPosition.LONG


@pytest.mark.parametrize("key", ["id", "alert_id", "alertId"])
def test_alert_id_aliases(key: str) -> None:
    assert parse({"action": "buy", key: 42}).alert_id == "42"


def test_flat_target_makes_a_close_signal() -> None:
    signal = parse({"action": "buy", "market_position": "flat"})
    assert signal.action is Action.BUY
    assert signal.is_close


def test_target_position_alone_is_an_instruction() -> None:
    assert parse({"market_position": "long"}).action is Action.BUY
    assert parse({"market_position": "short"}).action is Action.SELL
    assert parse({"market_position": "flat"}).action is Action.CLOSE


def test_quantity_zero_or_absent_means_configured_size() -> None:
    assert parse({"action": "buy", "quantity": 0}).quantity is None
    assert parse({"action": "buy", "quantity": ""}).quantity is None
    assert parse({"action": "buy", "quantity": None}).quantity is None
    assert parse({"action": "buy"}).quantity is None


def test_whole_decimal_quantity_is_accepted() -> None:
    assert parse(b'{"action":"buy","quantity":2.0}').quantity == 2
    assert parse({"action": "buy", "quantity": "2.00"}).quantity == 2


@pytest.mark.parametrize(
    ("quantity", "match"),
    [
        (-1, "negative"),
        ("-2", "negative"),
        (1.5, "whole contracts"),
        ("2.5", "whole contracts"),
        ("two", "must be a number"),
        (True, "must be a number"),
        ([1], "must be a number"),
        ("1e9", "larger than"),
        ("NaN", "must be a number"),
        ("Infinity", "must be a number"),
        ("1,000", "must be a number"),
    ],
)
def test_bad_quantities_are_refused(quantity: Any, match: str) -> None:
    refused({"action": "buy", "quantity": quantity}, match)


@pytest.mark.parametrize(
    "number", ["2_0", "1_000", "\u0662", "\uff12", "1\u0660", "0x10", "1e", "+-1", ". 5"]
)
@pytest.mark.parametrize("field", ["quantity", "price", "risk_percentage"])
def test_numeric_strings_are_plain_ascii_numbers(field: str, number: str) -> None:
    """Python's Decimal() also reads digit-group underscores and any script's digits: "2_0"
    traded 20 contracts and "\u0662" (Arabic-Indic) 2, while "1,000" was refused and the
    text path refused "2_0". A number is written in ASCII, or it is refused."""
    refused({"action": "buy", field: number}, f"{field}.*must be a number")


@pytest.mark.parametrize("number", ["\u0662", "\uff12"])
def test_text_alerts_read_ascii_digits_only(number: str) -> None:
    with pytest.raises(InvalidSignal):
        parse_payload(f"sell MNQ1! {number}".encode(), "text/plain")
    with pytest.raises(InvalidSignal, match="position size"):
        parse_payload(
            f"order buy @ 1 filled on MNQ1!. New strategy position is {number}".encode(), None
        )


@pytest.mark.parametrize(
    ("number", "value"),
    [(" 2 ", 2), ("+3", 3), ("2.", 2), ("1e1", 10), ("20E-1", 2), ("4.0", 4)],
)
def test_ascii_numeric_strings_still_read(number: str, value: int) -> None:
    assert parse({"action": "buy", "quantity": number}).quantity == value


@pytest.mark.parametrize("price", [0, -1, "-3.5", "abc", {"a": 1}, "1e20", "1.00000000000001"])
def test_bad_prices_are_refused(price: Any) -> None:
    refused({"action": "buy", "price": price}, "price")


@pytest.mark.parametrize(
    "body",
    [
        b'{"action":"buy","ticker":"MNQ1!","price":1e999999999}',
        b'{"action":"buy","ticker":"MNQ1!","price":"1e999999999"}',
        b'{"action":"buy","ticker":"MNQ1!","quantity":"1E+1000000"}',
        b'{"action":"buy","ticker":"MNQ1!","takeProfit":{"amount":1e1000000}}',
        b'{"data":"buy","symbol":"NQ1!","dollar_sl":1e1000000}',
        b"buy MNQ1! @ 1e1000000",
        b"buy qty=1e1000000",
        b"order buy @ 1 filled on MNQ1!. New strategy position is 1e999999999",
    ],
)
def test_numbers_past_the_decimal_context_are_refused(body: bytes) -> None:
    """An exponent beyond what arithmetic allows (abs() raised decimal.Overflow, which the
    webhook answered 503, and TradingView sent again) is an unusable number: a 4xx."""
    with pytest.raises(InvalidSignal) as info:
        parse_payload(body, None)
    assert info.value.status in (400, 422)


@pytest.mark.parametrize("field", ["update_tp", "update_sl"])
def test_a_pickmytrade_exit_update_is_refused_not_traded_as_an_entry(field: str) -> None:
    """PickMyTrade's update_tp / update_sl ask to move the open position's exit. Read as an
    entry, the alert bought another contract (with DCA) or did nothing; false is ordinary."""
    body = {"symbol": "NQ1!", "data": "buy", "quantity": 1, "sl": 21400, field: True}
    with pytest.raises(InvalidSignal, match=f"{field}.*not supported") as info:
        parse(body)
    assert info.value.status == 422
    assert parse({**body, field: False}).action is Action.BUY
    assert parse({**body, field: "false"}).action is Action.BUY


def test_token_in_body_is_lifted_and_never_kept() -> None:
    for key in ("token", "Token", "key", "secret", "passphrase"):
        signal = parse({"action": "buy", key: "s3cret"})
        assert signal.token == "s3cret"
        assert "s3cret" not in repr(signal.extra)


def test_unknown_fields_are_kept_as_plain_json() -> None:
    signal = parse(b'{"action":"buy","interval":"5","strategy":{"name":"x","atr":1.25},"n":3}')
    assert signal.extra == {"interval": "5", "strategy": {"name": "x", "atr": 1.25}, "n": 3}
    json.dumps(signal.extra)  # storable as is


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        (b"123456789012345678901234", "123456789012345678901234"),
        (b"-9223372036854775809", "-9223372036854775809"),
        (b"9223372036854775807", 9223372036854775807),
        (b"-9223372036854775808", -9223372036854775808),
        (b"1e30", "1E+30"),
        (b"1e999999999", "1E+999999999"),
        (b"-2.0", -2),
        (b"1" * 400 + b".5", "1" * 400 + ".5"),
        (b"2.5", 2.5),
    ],
)
def test_unread_numbers_are_kept_as_what_jsonb_parameters_can_carry(raw: bytes, kept: Any) -> None:
    """The jsonb encoder (orjson) refuses an int beyond 64 bits: a valid alert with a big
    volume or 1e30 in a field we do not read failed its insert and was answered 503. Such a
    number is kept as its text (the raw body keeps it as sent); so is one no float holds."""
    signal = parse_payload(b'{"action":"buy","n":' + raw + b',"deep":[[' + raw + b"]]}", None)
    assert signal.extra == {"n": kept, "deep": [[kept]]}
    assert type(signal.extra["n"]) is type(kept)
    orjson.dumps(signal.extra)


def test_nested_tokens_are_scrubbed_from_extra() -> None:
    signal = parse(
        {"data": "buy", "multiple_accounts": [{"token": "t1", "account_id": "A"}], "token": "t0"}
    )
    assert signal.extra == {"multiple_accounts": [{"account_id": "A"}]}
    assert signal.token == "t0"


def test_content_type_does_not_matter() -> None:
    body = b'{"action":"sell","ticker":"ES1!"}'
    results = [parse_payload(body, ct) for ct in (None, "text/plain", "application/json", "x/y")]
    assert all(r == results[0] for r in results)


def test_utf8_bom_is_ignored() -> None:
    assert parse('\ufeff{"action": "buy"}'.encode()).action is Action.BUY


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"   ", b"\n\t"])
def test_empty_body_is_400(body: bytes) -> None:
    refused(body, "empty body", status=400)


@pytest.mark.parametrize("body", [b'{"action": "buy"', b"{action: buy}", b'{"a":1,}', b"[1,"])
def test_malformed_json_is_400(body: bytes) -> None:
    refused(body, "malformed JSON", status=400)


def test_nan_literal_is_malformed() -> None:
    refused(b'{"action":"buy","price":NaN}', "malformed JSON", status=400)


def test_invalid_utf8_is_400() -> None:
    refused(b"\xff\xfebuy", "UTF-8", status=400)


def test_json_array_is_422() -> None:
    refused(b'[{"action":"buy"}]', "JSON object")


def test_missing_action_is_422() -> None:
    refused({"ticker": "MNQ1!", "quantity": 1}, "missing action")


def test_unknown_action_names_the_field_and_value() -> None:
    err = refused({"side": "purchase"}, "unknown action")
    assert "'side'" in str(err)
    assert "purchase" in str(err)


def test_conflicting_action_aliases_are_refused() -> None:
    refused({"action": "buy", "side": "sell"}, "conflicting actions")


def test_agreeing_action_aliases_are_fine() -> None:
    assert parse({"action": "buy", "side": "long"}).action is Action.BUY


def test_unknown_market_position_is_refused() -> None:
    refused({"action": "buy", "market_position": "sideways"}, "market position")


@pytest.mark.parametrize(
    "payload",
    [
        {"action": "{{strategy.order.action}}", "ticker": "MNQ1!"},
        {"action": "buy", "quantity": "{{strategy.order.contracts}}"},
        {"action": "buy", "comment": "entry {{strategy.order.comment}}"},
        {"action": "buy", "nested": {"deep": ["{{plot_0}}"]}},
    ],
)
def test_unsubstituted_placeholders_are_422_naming_the_field(payload: dict[str, Any]) -> None:
    err = refused(payload, "placeholder")
    assert "{{" in str(err)


def test_unquoted_placeholder_is_422_not_400() -> None:
    err = refused(b'{"action":"buy","price":{{close}}}', "placeholder")
    assert "{{close}}" in str(err)


def test_placeholder_in_text_is_refused() -> None:
    refused(b"{{strategy.order.action}} MNQ1! 1", "placeholder")


# --- plain text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "action", "ticker", "qty", "price"),
    [
        ("buy", Action.BUY, None, None, None),
        ("close", Action.CLOSE, None, None, None),
        ("sell MNQ1! 2", Action.SELL, "MNQ1!", 2, None),
        ("buy 3 MNQ1!", Action.BUY, "MNQ1!", 3, None),
        ("BUY mes1! 1", Action.BUY, "mes1!", 1, None),
        ("long CME_MINI:NQ1! 1 @ 21500.25", Action.BUY, "CME_MINI:NQ1!", 1, Decimal("21500.25")),
        ("exit MNQZ6", Action.CLOSE, "MNQZ6", None, None),
        ("sell, MNQ1!, 2\n", Action.SELL, "MNQ1!", 2, None),
        ("buy qty=2 ticker=MNQ1!", Action.BUY, "MNQ1!", 2, None),
        ("action=sell symbol=ES1! contracts=4 price=5000", Action.SELL, "ES1!", 4, Decimal(5000)),
    ],
)
def test_plain_text(
    text: str, action: Action, ticker: str | None, qty: int | None, price: Decimal | None
) -> None:
    signal = parse_payload(text.encode(), "text/plain")
    assert (signal.action, signal.ticker, signal.quantity, signal.price) == (
        action,
        ticker,
        qty,
        price,
    )
    assert signal.source == "text"


def test_text_token_pair() -> None:
    signal = parse_payload(b"buy MNQ1! 1 token=abc", "text/plain")
    assert signal.token == "abc"
    assert signal.extra == {}


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_token_pair_beside_the_default_strategy_message_is_read(where: str) -> None:
    """Dropped with the message read alone: the alert was answered 401 "no webhook token"."""
    message = "My Strategy (10, 20): order buy @ 1 filled on MNQ1!. New strategy position is 1"
    body = f"token=abc {message}" if where == "before" else f"{message} token=abc"
    signal = parse_payload(body.encode(), "text/plain")
    assert signal.token == "abc"
    assert (signal.action, signal.quantity, signal.market_position) == (
        Action.BUY,
        1,
        MarketPosition.LONG,
    )


def test_tradingview_default_strategy_message() -> None:
    body = b"My Strategy (14, 2): order sell @ 2 filled on MNQ1!. New strategy position is -2"
    signal = parse_payload(body, "text/plain")
    assert (signal.action, signal.quantity, signal.ticker, signal.market_position) == (
        Action.SELL,
        2,
        "MNQ1!",
        MarketPosition.SHORT,
    )
    flat = parse_payload(b"order buy @ 1 filled on ES1!. New strategy position is 0", "text/plain")
    assert flat.is_close


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("purchase MNQ1!", "must start with an action"),
        ("MNQ1! buy", "must start with an action"),
        ("buy MNQ1! 2 3", "given twice"),
        ("buy MNQ1! MES1!", "given twice"),
        ("buy MNQ1! 1.5", "whole contracts"),
        ("buy MNQ1! -1", "negative"),
        ("buy MNQ1! @", "followed by a price"),
        ("buy ###", "cannot read"),
        # a comma inside a number is not a separator: split, "@ 21,500" was 500 contracts at 21
        ("buy MNQ1! @ 21,500", "price"),
        ("sell MNQ1! @21,500", "price"),
        ("buy ticker=MNQ1! price=21,500", "price"),
        ("buy MNQ1! @ 21500,25", "price"),
        ("buy MNQ1! 1,5", "cannot read"),
    ],
)
def test_bad_text(text: str, match: str) -> None:
    with pytest.raises(InvalidSignal, match=match) as info:
        parse_payload(text.encode(), "text/plain")
    assert info.value.status == 422


# --- properties -------------------------------------------------------------------------------

VOCABULARY = [
    "action", "Action", "side", "signal", "data", "sentiment", "ticker", "symbol", "instrument",
    "quantity", "contracts", "qty", "QTY", "price", "close", "signalPrice", "id", "alert_id",
    "market_position", "marketPosition", "prev_market_position", "token", "key", "secret",
    "passphrase", "quantityType", "orderType", "order_type", "limitPrice", "stopPrice",
    "takeProfit", "stopLoss", "tp", "sl", "dollar_tp", "dollar_sl", "percentage_tp",
    "percentage_sl", "trail", "trail_stop", "trail_trigger", "trail_freq", "risk_percentage",
    "multiple_accounts", "type", "percent", "amount", "trailAmount", "trailPercent",
    "pnlAmount", "time", "date",
]  # fmt: skip
WORDS = [
    "buy", "sell", "long", "short", "close", "exit", "flat", "add", "cancel", "bullish",
    "bearish", "MNQ1!", "market", "limit", "stop", "stop_limit", "trailing_stop",
    "fixed_quantity", "dollar_amount", "MKT", "LMT", "true", "1", "0", "-1", "2.5", "",
    "{{close}}", "NaN", "1e400",
]  # fmt: skip
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(WORDS)
    | st.text(max_size=12)
    | st.sampled_from(["a\x00b", "\ud800", "x\udfffy", "\x00"])  # what JSON escapes can carry
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([*VOCABULARY, "k\x00", "\udc80"]) | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=8,
)
objects = st.dictionaries(st.sampled_from(VOCABULARY), values, max_size=8)


def _valid(signal: Signal) -> None:
    assert isinstance(signal.action, Action)
    assert signal.quantity is None or (isinstance(signal.quantity, int) and signal.quantity > 0)
    for price in (signal.price, signal.limit_price, signal.stop_price):
        assert price is None or (isinstance(price, Decimal) and price > 0)
    for spec in (*signal.take_profit, signal.stop_loss):
        assert spec is None or (isinstance(spec, ExitSpec) and spec.value > 0)
    json.dumps(signal.extra)
    assert not _credential_keys(signal.extra)
    for text in _strings(dataclasses.asdict(signal)):
        text.encode("utf-8")  # no lone surrogate: Postgres, UTF-8 and our logs refuse them
        assert "\x00" not in text  # Postgres text and jsonb refuse NUL


def _strings(value: Any) -> list[str]:
    """Every string in ``value``, keys included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def _credential_keys(value: Any) -> list[str]:
    """Keys anywhere in ``value`` that name a credential (they must never reach ``extra``)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if norm_key(key) in {"token", "key", "secret", "passphrase", "password"}:
                found.append(key)
            found.extend(_credential_keys(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(_credential_keys(item))
    return found


def _parse_or_refuse(body: bytes) -> None:
    error: InvalidSignal | None = None
    try:
        signal = parse_payload(body, None)
    except InvalidSignal as exc:
        error = exc
    if error is None:
        _valid(signal)
    else:
        assert error.status in (400, 422)
        assert str(error)


@pytest.mark.parametrize(
    ("body", "alert_id", "ticker", "extra"),
    [
        (b'{"action":"buy","ticker":"MNQ1!","id":"a\\u0000b"}', "a\ufffdb", "MNQ1!", {}),
        (b'{"action":"buy","ticker":"MNQ1!","id":"a\\ud800b"}', "a\ufffdb", "MNQ1!", {}),
        (b'{"action":"buy","ticker":"MNQ\\udfff1!"}', None, "MNQ\ufffd1!", {}),
        (b'{"action":"buy","ticker":"MNQ1!","n\\u0000":"\\ud83d\\ude00\\ud800"}', None,
         "MNQ1!", {"n\ufffd": "\U0001f600\ufffd"}),
    ],
)  # fmt: skip
def test_nul_and_lone_surrogates_become_the_replacement_character(
    body: bytes, alert_id: str | None, ticker: str, extra: dict[str, str]
) -> None:
    """JSON escapes can carry what Postgres cannot store (and UTF-8 cannot encode): left in,
    the delivery's insert failed and it was answered 503, so TradingView re-sent it, and it
    was never stored. A valid surrogate pair stays the character it encodes."""
    signal = parse_payload(body, None)
    assert (signal.alert_id, signal.ticker, signal.extra) == (alert_id, ticker, extra)


@pytest.mark.parametrize("depth", [64, 300, 600, 990, 5000])
@pytest.mark.parametrize("wrap", [("[", "]"), ('{"a":', "}")])
def test_json_nested_deeper_than_64_levels_is_a_400(depth: int, wrap: tuple[str, str]) -> None:
    """``json.loads`` goes deeper than the recursive walks over its result can (a
    RecursionError escaped as a 503), and deeper than orjson, which encodes the dedup key,
    goes (255 levels: 300 were a 503). No alert needs more than a few levels."""
    opening, closing = wrap
    body = f'{{"action":"buy","ticker":"MNQ1!","x":{opening * depth}"\\u0000"{closing * depth}}}'
    with pytest.raises(InvalidSignal) as caught:
        parse_payload(body.encode(), None)
    assert (caught.value.status, str(caught.value)) == (400, "JSON nested more than 64 levels deep")


@pytest.mark.parametrize("text", ["[" * 63 + "]" * 63, '"' + "[{" * 200 + '"'])
def test_json_up_to_64_levels_parses(text: str) -> None:
    signal = parse_payload(f'{{"action":"buy","x":{text}}}'.encode(), None)
    assert signal.extra["x"] == json.loads(text)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_refuse(body: bytes) -> None:
    _parse_or_refuse(body)


@settings(max_examples=500)
@given(objects)
def test_arbitrary_alias_objects_parse_or_refuse(obj: dict[str, Any]) -> None:
    _parse_or_refuse(json.dumps(obj).encode())


@settings(max_examples=300)
@given(st.lists(st.sampled_from([*WORDS, "@", "x=1", "qty=2", "=", "MNQZ6", "3"]), max_size=6))
def test_arbitrary_word_texts_parse_or_refuse(words: list[str]) -> None:
    _parse_or_refuse(" ".join(words).encode())


@given(st.sampled_from(sorted({"buy", "sell", "close"})), st.integers(1, 1000))
def test_json_and_text_agree(action: str, qty: int) -> None:
    from_json = parse({"action": action, "ticker": "MNQ1!", "quantity": qty})
    from_text = parse_payload(f"{action} MNQ1! {qty}".encode(), "text/plain")
    assert (from_json.action, from_json.ticker, from_json.quantity) == (
        from_text.action,
        from_text.ticker,
        from_text.quantity,
    )


# --- TradersPost ------------------------------------------------------------------------------


def test_traderspost_docs_example() -> None:
    signal = parse(
        {
            "ticker": "AMD",
            "action": "buy",
            "signalPrice": 143.12,
            "quantity": 1,
            "takeProfit": {"percent": 10},
            "stopLoss": {"type": "stop", "percent": 5},
        }
    )
    assert signal.source == "traderspost"
    assert signal.price == Decimal("143.12")
    assert signal.take_profit == (ExitSpec(Decimal(10), Units.PERCENT),)
    assert signal.stop_loss == ExitSpec(Decimal(5), Units.PERCENT)


def test_traderspost_strategy_sentiment_is_the_target_position() -> None:
    signal = parse({"ticker": "MNQ1!", "action": "buy", "sentiment": "flat", "quantity": "1"})
    assert signal.action is Action.BUY
    assert signal.market_position is MarketPosition.FLAT
    assert signal.is_close
    assert parse({"ticker": "X", "action": "sell", "sentiment": "bearish"}).market_position is (
        MarketPosition.SHORT
    )


def test_traderspost_sentiment_flat_names_the_side_a_close_may_exit() -> None:
    assert parse({"ticker": "X", "action": "buy", "sentiment": "flat"}).closes_only is (
        MarketPosition.SHORT
    )
    assert parse({"ticker": "X", "action": "sell", "sentiment": "flat"}).closes_only is (
        MarketPosition.LONG
    )
    for body in (
        {"ticker": "X", "action": "exit", "sentiment": "flat"},
        {"ticker": "X", "sentiment": "flat"},
        {"ticker": "X", "action": "buy", "market_position": "flat"},
        {"ticker": "X", "action": "buy", "market_position": "flat", "sentiment": "flat"},
    ):
        assert parse(body).closes_only is None, body


def test_traderspost_stop_loss_type_alone_asks_for_a_plain_stop() -> None:
    for kind in ("stop", "stop_limit", "STOP"):
        signal = parse({"ticker": "X", "action": "buy", "stopLoss": {"type": kind}})
        assert (signal.stop_loss, signal.plain_stop) == (None, True), kind
    for stop_loss in ({"type": "stop", "amount": 5}, {}, {"amount": 5}):
        assert not parse({"ticker": "X", "action": "buy", "stopLoss": stop_loss}).plain_stop
    assert not parse({"ticker": "X", "action": "buy"}).plain_stop


def test_traderspost_sentiment_alone() -> None:
    assert parse({"ticker": "X", "sentiment": "bullish"}).action is Action.BUY
    assert parse({"ticker": "X", "sentiment": "flat"}).action is Action.CLOSE


def test_traderspost_exit_add_cancel() -> None:
    assert parse({"ticker": "X", "action": "exit"}).action is Action.CLOSE
    assert parse({"ticker": "X", "action": "add"}).action is Action.ADD
    assert parse({"ticker": "X", "action": "cancel"}).action is Action.CANCEL


def test_traderspost_explicit_market_position_wins_over_sentiment() -> None:
    signal = parse({"action": "sell", "sentiment": "flat", "marketPosition": "short"})
    assert signal.market_position is MarketPosition.SHORT


@pytest.mark.parametrize(
    ("take_profit", "spec"),
    [
        ({"limitPrice": 110}, ExitSpec(Decimal(110), Units.PRICE)),
        ({"percent": "1.5"}, ExitSpec(Decimal("1.5"), Units.PERCENT)),
        ({"amount": 10}, ExitSpec(Decimal(10), Units.POINTS)),
        ({"pnlAmount": 100}, ExitSpec(Decimal(100), Units.POSITION_DOLLARS)),
        ({"LimitPrice": 110}, ExitSpec(Decimal(110), Units.PRICE)),
    ],
)
def test_traderspost_take_profit(take_profit: dict[str, Any], spec: ExitSpec) -> None:
    assert parse({"action": "buy", "takeProfit": take_profit}).take_profit == (spec,)


@pytest.mark.parametrize(
    ("stop_loss", "spec"),
    [
        ({"type": "stop", "stopPrice": 90}, ExitSpec(Decimal(90), Units.PRICE)),
        ({"stopPrice": "90"}, ExitSpec(Decimal(90), Units.PRICE)),
        ({"type": "stop", "amount": 10}, ExitSpec(Decimal(10), Units.POINTS)),
        ({"type": "stop", "percent": 2}, ExitSpec(Decimal(2), Units.PERCENT)),
        ({"type": "stop", "pnlAmount": 300}, ExitSpec(Decimal(300), Units.POSITION_DOLLARS)),
        (
            {"type": "stop_limit", "stopPrice": 90, "limitPrice": 89},
            ExitSpec(Decimal(90), Units.PRICE),
        ),
        ({"type": "trailing_stop", "trailAmount": 20}, ExitSpec(Decimal(20), Units.POINTS, True)),
        ({"type": "trailing_stop", "trailPercent": 1}, ExitSpec(Decimal(1), Units.PERCENT, True)),
    ],
)
def test_traderspost_stop_loss(stop_loss: dict[str, Any], spec: ExitSpec) -> None:
    assert parse({"action": "buy", "stopLoss": stop_loss}).stop_loss == spec


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        ({"takeProfit": {"percent": 1, "amount": 2}}, "only one of"),
        ({"takeProfit": {"foo": 1}}, "needs one of limitPrice"),
        ({"takeProfit": 20}, "must be an object"),
        ({"takeProfit": {"percent": -1}}, "negative"),
        ({"stopLoss": {"type": "stop", "trailAmount": 5}}, "needs stopLoss.type trailing_stop"),
        ({"stopLoss": {"type": "trailing_stop"}}, "trailAmount or trailPercent"),
        ({"stopLoss": {"type": "trailing_stop", "stopPrice": 90}}, "trailing stop takes"),
        ({"stopLoss": {"type": "trailing_stop", "pnlAmount": 300}}, "not trailing_stop"),
        ({"stopLoss": {"type": "stop", "pnlAmount": 300, "amount": 5}}, "only one of"),
        ({"stopLoss": {"type": "oco", "stopPrice": 90}}, "stopLoss.type must be"),
        ({"stopLoss": {"type": "stop", "percent": 1, "amount": 3}}, "only one of"),
        ({"quantityType": "dollar_amount", "quantity": 1000}, "not supported for futures"),
        ({"quantityType": "percent_of_position", "quantity": 50}, "not supported for futures"),
        ({"quantityType": "risk_dollar_amount", "quantity": 100}, "not supported for futures"),
        ({"orderType": "limit"}, "needs limitPrice"),
        ({"orderType": "stop"}, "needs stopPrice"),
        ({"orderType": "stop_limit", "stopPrice": 5}, "needs limitPrice"),
        ({"orderType": "trailing_stop", "trailAmount": 2}, "not supported"),
        ({"orderType": "iceberg"}, "unknown order type"),
    ],
)
def test_traderspost_refusals(payload: dict[str, Any], match: str) -> None:
    refused({"ticker": "MNQ1!", "action": "buy", **payload}, match)


def test_traderspost_fixed_quantity_is_fine() -> None:
    signal = parse({"action": "buy", "quantityType": "fixed_quantity", "quantity": 3})
    assert signal.quantity == 3
    assert "quantityType" not in signal.extra


@pytest.mark.parametrize(
    ("payload", "kind", "limit", "stop"),
    [
        ({"orderType": "market"}, "market", None, None),
        ({"orderType": "LIMIT", "limitPrice": 100}, "limit", Decimal(100), None),
        ({"orderType": "limit", "price": 101}, "limit", Decimal(101), None),
        ({"orderType": "stop", "stopPrice": 99}, "stop", None, Decimal(99)),
        (
            {"orderType": "stop_limit", "stopPrice": 99, "limitPrice": 98},
            "stop_limit",
            Decimal(98),
            Decimal(99),
        ),
        ({"order_type": "MKT"}, "market", None, None),
        ({"order_type": "LMT", "price": 5}, "limit", Decimal(5), None),
    ],
)
def test_order_types(
    payload: dict[str, Any], kind: str, limit: Decimal | None, stop: Decimal | None
) -> None:
    signal = parse({"action": "buy", **payload})
    assert (signal.order_type, signal.limit_price, signal.stop_price) == (kind, limit, stop)


# --- PickMyTrade ------------------------------------------------------------------------------

PMT_DEFAULTS: dict[str, Any] = {
    "symbol": "NQ",
    "date": "2026-11-25T14:30:00Z",
    "data": "buy",
    "quantity": "1",
    "risk_percentage": 0,
    "price": "21500.25",
    "tp": 0,
    "percentage_tp": 0,
    "dollar_tp": 0,
    "sl": 0,
    "dollar_sl": 0,
    "percentage_sl": 0,
    "trail": 0,
    "trail_stop": 0,
    "trail_trigger": 0,
    "trail_freq": 0,
    "update_tp": False,
    "update_sl": False,
    "token": "pmt-token",
    "pyramid": True,
    "reverse_order_close": False,
}


def pmt(**overrides: Any) -> Signal:
    return parse({**PMT_DEFAULTS, **overrides})


def test_pickmytrade_all_zero_template() -> None:
    signal = pmt()
    assert signal.source == "pickmytrade"
    assert (signal.action, signal.ticker, signal.quantity) == (Action.BUY, "NQ", 1)
    assert signal.price == Decimal("21500.25")
    assert signal.take_profit == ()
    assert signal.stop_loss is None
    assert signal.token == "pmt-token"
    assert signal.extra["date"] == "2026-11-25T14:30:00Z"
    assert signal.extra["pyramid"] is True


@pytest.mark.parametrize("data", ["buy", "sell", "close", "Close"])
def test_pickmytrade_data(data: str) -> None:
    assert pmt(data=data).action.value == data.lower()


@pytest.mark.parametrize(
    ("overrides", "tp", "sl"),
    [
        (
            {"tp": 21600, "sl": "21450.5"},
            ExitSpec(Decimal(21600), Units.PRICE),
            ExitSpec(Decimal("21450.5"), Units.PRICE),
        ),
        (
            {"dollar_tp": 200, "dollar_sl": "100"},
            ExitSpec(Decimal(200), Units.DOLLARS),
            ExitSpec(Decimal(100), Units.DOLLARS),
        ),
        (
            {"percentage_tp": 1, "percentage_sl": 0.5},
            ExitSpec(Decimal(1), Units.PERCENT),
            ExitSpec(Decimal("0.5"), Units.PERCENT),
        ),
    ],
)
def test_pickmytrade_exits(overrides: dict[str, Any], tp: ExitSpec, sl: ExitSpec) -> None:
    signal = pmt(**overrides)
    assert signal.take_profit == (tp,)
    assert signal.stop_loss == sl


def test_pickmytrade_trailing_stop() -> None:
    signal = pmt(trail=1, trail_stop=20, trail_trigger=10, trail_freq="2.5")
    assert signal.stop_loss == ExitSpec(
        Decimal(20), Units.POINTS, True, trail_trigger=Decimal(10), trail_freq=Decimal("2.5")
    )


def test_pickmytrade_trail_uses_the_stop_distance_when_no_trail_stop() -> None:
    signal = pmt(trail="true", dollar_sl=150)
    assert signal.stop_loss == ExitSpec(Decimal(150), Units.DOLLARS, True)


def test_pickmytrade_trail_off_ignores_trail_values() -> None:
    assert pmt(trail=0, trail_stop=20).stop_loss is None


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"tp": 21600, "dollar_tp": 100}, "only one take profit"),
        ({"sl": 21400, "percentage_sl": 1}, "only one stop loss"),
        ({"trail": 1}, "no trail_stop"),
        ({"trail": 1, "trail_stop": 5, "dollar_sl": 50}, "not both"),
        ({"trail": 1, "sl": 21400}, "needs a distance"),
        ({"trail": "maybe"}, "true or false"),
        ({"risk_percentage": 2, "quantity": 0}, "account risk is not supported"),
        ({"data": "reverse"}, "unknown action"),
        ({"dollar_sl": -5}, "negative"),
        ({"takeProfit": {"percent": 1}, "tp": 21600}, "take profit once"),
        ({"stopLoss": {"stopPrice": 1}, "sl": 21400}, "stop loss once"),
    ],
)
def test_pickmytrade_refusals(overrides: dict[str, Any], match: str) -> None:
    refused({**PMT_DEFAULTS, **overrides}, match)


# --- contrib/alerts: the examples we ship must work ------------------------------------------


def test_contrib_native() -> None:
    signal = parse_payload((ALERTS / "native.json").read_bytes(), "application/json")
    assert (signal.action, signal.ticker, signal.quantity) == (Action.BUY, "MNQ1!", 2)


def test_contrib_plain_text() -> None:
    signal = parse_payload((ALERTS / "plain.txt").read_bytes(), "text/plain")
    assert (signal.action, signal.ticker, signal.quantity) == (Action.SELL, "MNQ1!", 2)


def test_contrib_traderspost() -> None:
    signal = parse_payload((ALERTS / "traderspost.json").read_bytes(), "application/json")
    assert signal.source == "traderspost"
    assert (signal.action, signal.ticker, signal.quantity) == (Action.BUY, "MNQZ2026", 1)
    assert (signal.order_type, signal.limit_price) == ("limit", Decimal("21499.75"))
    assert signal.take_profit == (ExitSpec(Decimal(40), Units.POINTS),)
    assert signal.stop_loss == ExitSpec(Decimal(20), Units.POINTS, trailing=True)


def test_contrib_pickmytrade() -> None:
    signal = parse_payload((ALERTS / "pickmytrade.json").read_bytes(), "text/plain")
    assert signal.source == "pickmytrade"
    assert (signal.action, signal.ticker, signal.quantity) == (Action.SELL, "NQ1!", 2)
    assert signal.take_profit == (ExitSpec(Decimal(200), Units.DOLLARS),)
    assert signal.stop_loss == ExitSpec(Decimal("21540.5"), Units.PRICE)
    assert "your_pickmytrade_token" not in json.dumps(signal.extra)


def test_the_cli_prints_the_readmes_alert_message() -> None:
    """Two templates drifted apart: the one ``recorder create`` prints lacked the order's
    contracts and the position size after it, so a partial exit closed everything."""
    from jtrades.cli.recorder import EXAMPLE_ALERT

    readme = (ALERTS.parents[1] / "README.md").read_text()
    assert f"```json\n{EXAMPLE_ALERT}\n```" in readme


SUBSTITUTIONS = {
    "{{strategy.order.action}}": "sell",
    "{{ticker}}": "MNQ1!",
    "{{close}}": "21500.25",
    "{{strategy.order.contracts}}": "3",
    "{{strategy.market_position}}": "flat",
    "{{strategy.market_position_size}}": "0",
    "{{strategy.prev_market_position}}": "long",
    "{{strategy.order.id}}": "Exit Long",
    "{{timenow}}": "2026-11-25T14:30:00Z",
}


def test_contrib_template_unfilled_is_refused() -> None:
    with pytest.raises(InvalidSignal, match="placeholder") as info:
        parse_payload((ALERTS / "tradingview-strategy-template.json").read_bytes(), "text/plain")
    assert info.value.status == 422


def test_contrib_template_filled_in_by_tradingview_parses() -> None:
    text = (ALERTS / "tradingview-strategy-template.json").read_text()
    for placeholder, value in SUBSTITUTIONS.items():
        text = text.replace(placeholder, value)
    signal = parse_payload(text.encode(), "application/json")
    assert signal.action is Action.SELL
    assert signal.quantity == 3
    assert signal.price == Decimal("21500.25")
    assert signal.market_position is MarketPosition.FLAT
    assert signal.prev_market_position is MarketPosition.LONG
    assert signal.is_close
    assert signal.alert_id == "Exit Long-2026-11-25T14:30:00Z"
    assert signal.extra == {"market_position_size": "0", "time": "2026-11-25T14:30:00Z"}


ACTION_KEYS = ["action", "Action", "side", "signal", "data", "order_action"]
TICKER_KEYS = ["ticker", "symbol", "instrument", "Ticker"]
QTY_KEYS = ["quantity", "contracts", "qty", "Qty", "size"]
PRICE_KEYS = ["price", "close", "signalPrice", "signal_price"]
good_prices = st.decimals(min_value=Decimal("0.00001"), max_value=Decimal(10**9), places=5)


@given(
    st.sampled_from(ACTION_KEYS),
    st.sampled_from(["buy", "sell", "long", "short", "close", "exit", "flat", "add", "cancel"]),
    st.sampled_from(TICKER_KEYS),
    st.sampled_from(["MNQ1!", "ES1!", "CME_MINI:NQ1!", "GCZ2026", "6EH7"]),
    st.sampled_from(QTY_KEYS),
    st.integers(0, 10_000),
    st.booleans(),
    st.sampled_from(PRICE_KEYS),
    good_prices,
    st.booleans(),
)
def test_well_formed_alerts_always_parse_to_what_they_say(
    action_key: str,
    action: str,
    ticker_key: str,
    ticker: str,
    qty_key: str,
    qty: int,
    qty_as_text: bool,
    price_key: str,
    price: Decimal,
    price_as_text: bool,
) -> None:
    body = json.dumps(
        {
            action_key: action,
            ticker_key: ticker,
            qty_key: str(qty) if qty_as_text else qty,
            price_key: str(price) if price_as_text else float(price),
        }
    ).encode()
    signal = parse_payload(body, None)
    expected_action = {"long": "buy", "short": "sell", "exit": "close", "flat": "close"}
    assert signal.action.value == expected_action.get(action, action)
    assert signal.ticker == ticker
    assert signal.quantity == (qty or None)
    assert signal.price == (price if price_as_text else Decimal(str(float(price))))


@pytest.mark.parametrize(
    "body",
    [
        b"Xk2p9QmZ7rT4vW8yB1nC5dF0\nbuy MNQ1! 1",
        b'{"action": "Xk2p9QmZ7rT4vW8yB1nC5dF0"}',
        b'{"action": "buy", "orderType": "Xk2p9QmZ7rT4vW8yB1nC5dF0"}',
        b'{"action": "buy", "quantity": "Xk2p9QmZ7rT4vW8yB1nC5dF0"}',
    ],
)
def test_a_secret_in_the_wrong_place_is_not_echoed(body: bytes) -> None:
    with pytest.raises(InvalidSignal) as info:
        parse_payload(body, None)
    assert "Xk2p9" not in str(info.value)
    assert "24-character value" in str(info.value)
