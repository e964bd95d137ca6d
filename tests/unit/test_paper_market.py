"""``PaperMarket``: a month held across the roll fills its market orders at the price given for
it, and its resting orders wait for a price of the month's own."""

from __future__ import annotations

from decimal import Decimal

from jtrades.broker.paper_market import PaperMarket


def test_a_contracts_price_serves_both_kinds_of_order() -> None:
    m = PaperMarket()
    assert m.for_market_order(1, "MNQH7") is None
    m.note("MNQH7", Decimal(21500))
    assert m.for_market_order(1, "MNQH7") == m.for_resting(1, "MNQH7") == Decimal(21500)


def test_a_fill_price_is_the_accounts_market_orders_only() -> None:
    m = PaperMarket()
    m.note("MNQH7", Decimal(21500))
    m.fill_at(1, "MNQH7", Decimal(20000))
    assert m.for_market_order(1, "MNQH7") == Decimal(20000)
    assert m.for_resting(1, "MNQH7") is None  # the month's own 21500 is older than the fill
    # another sub-account of the login keeps the month's own market
    assert m.for_market_order(2, "MNQH7") == m.for_resting(2, "MNQH7") == Decimal(21500)


def test_the_months_own_next_price_replaces_the_fill_price() -> None:
    m = PaperMarket()
    m.fill_at(1, "MNQH7", Decimal(20000))
    m.note("MNQH7", Decimal(20150))
    assert m.for_market_order(1, "MNQH7") == m.for_resting(1, "MNQH7") == Decimal(20150)
