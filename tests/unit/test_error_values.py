"""A refused alert's reason (the 422 answer and the stored row) names the value as the alert
sent it (JSON), not as Python holds it: "got Decimal('1.5')" read as a fault of ours."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jtrades.engine.parse_values import short
from jtrades.engine.parsing import parse_payload
from jtrades.errors import InvalidSignal


@pytest.mark.parametrize(
    ("value", "said"),
    [(Decimal("1.5"), "1.5"), (True, "true"), (None, "null"), ([1, 2], "[1,2]"), ("x", "x")],
)
def test_a_value_is_said_in_json(value: object, said: str) -> None:
    assert short(value) == said


def test_a_fractional_quantity_is_refused_in_the_alerts_own_words() -> None:
    with pytest.raises(InvalidSignal) as refused:
        parse_payload(b'{"action": "buy", "ticker": "MNQ1!", "quantity": 1.5}', "application/json")
    assert "got 1.5" in str(refused.value), str(refused.value)
