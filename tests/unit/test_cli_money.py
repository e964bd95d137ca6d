"""How CLI tables print dollars and prices (``cli.common.money``/``price``)."""

from __future__ import annotations

from decimal import Decimal

from jtrades.cli.common import money, price
from jtrades.engine.instruments import PRODUCTS


def test_money_rounds_half_up_to_cents() -> None:
    """A ZN tick is $15.625: half-even (Decimal's default) showed a one-tick win as 15.62."""
    zn = PRODUCTS["ZN"]
    one_tick = Decimal(zn.tick_size) * zn.value_per_point
    assert one_tick == Decimal("15.625")
    assert (money(one_tick), money(-one_tick)) == ("15.63", "-15.63")
    assert money(Decimal("0.125")) == "0.13"
    assert money(Decimal("-0.004")) == "0.00"
    assert money(None) is None


def test_prices_print_exactly_without_exponent() -> None:
    assert price(Decimal("1.08505")) == "1.08505"
    assert price(Decimal("0.00005")) == "0.00005"
    assert price(Decimal("2.15E+4")) == "21500"
    assert price(Decimal("21500.250")) == "21500.25"
