"""Dollars as people read them: two decimals, half a cent up (as a statement rounds), never
"-0.00". One rule for every place that shows money (the CLI's tables, a filter's reason):
with two, a ZN tick's $15.625 read 15.63 in ``trades list`` and 15.62 in the daily-loss
refusal of the same loss."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def cents(value: Decimal) -> str:
    text = f"{value.quantize(CENT, ROUND_HALF_UP):f}"
    return "0.00" if text == "-0.00" else text
