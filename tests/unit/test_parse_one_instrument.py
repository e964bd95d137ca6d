"""Two names of one instrument in one alert (an exchange prefix, PickMyTrade's bare root,
``ES1`` for ``ES1!``) are one value: the check that refuses two different values of one field
compared symbols as text at first, and refused alerts that had always traded."""

from __future__ import annotations

import pytest

from jtrades.engine.instruments import split_symbol
from jtrades.engine.parsing import parse_payload
from jtrades.errors import InvalidSignal


@pytest.mark.parametrize(
    "body",
    [
        # {{ticker}} and {{exchange}}:{{ticker}} of one chart
        b'{"action":"buy","ticker":"MNQ1!","symbol":"CME_MINI:MNQ1!","price":21500.25}',
        # a bare root is the front month (split_symbol), as PickMyTrade sends it
        b'{"data":"buy","symbol":"NQ","ticker":"NQ1!","quantity":1,"price":21500.25}',
        # "ES1" is read as "ES1!" (a continuous symbol missing its "!")
        b'{"action":"sell","ticker":"ES1!","instrument":"ES1","price":6000}',
    ],
)
def test_one_instrument_under_two_names_is_one_value(body: bytes) -> None:
    try:
        signal = parse_payload(body, "application/json")
    except InvalidSignal as exc:
        pytest.fail(f"refused, though both names are one instrument: {exc}")
    assert signal.ticker is not None
    assert split_symbol(signal.ticker).root in ("MNQ", "NQ", "ES")
