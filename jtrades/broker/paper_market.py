"""The paper broker's market: the prices alerts gave, and what each kind of order reads of them.

A contract's market is the last price an alert naming it gave (``note``): market orders fill at
it, and resting orders (limits, stops, trailing stops) trigger on it. After the roll one price
serves two purposes that part ways: a continuous alert (``MNQ1!``) names the new month, and a
sub-account still holding the old one is acted on in that month (``fanout._contract``). The
paper broker fills at the signal price, so that sub-account's market orders of the held month (a
close, a reversal, a flatten) fill at the alert's price (``fill_at``); but the alert's price is
the new month's chart, a calendar spread away, and is no market for the held month's resting
orders: it filled a take-profit the held month had not traded at, and averaged an add 100 points
off. Kept as one price, a held month had no market again once the alerts stopped naming it: a
close filled at its last pre-roll price (days old), and after a restart every close and flatten
of it was refused for want of a price, for good.
"""

from __future__ import annotations

from decimal import Decimal


class PaperMarket:
    """Prices by contract symbol, and the market-order prices a sub-account was given for a
    month the alerts no longer name (by symbol, then broker account id)."""

    def __init__(self) -> None:
        self._last: dict[str, Decimal] = {}
        self._signal: dict[str, dict[int, Decimal]] = {}

    def note(self, symbol: str, price: Decimal) -> None:
        """An alert's price for the contract it names: the market of every account. Newer
        than any price ``fill_at`` gave for the contract, which it therefore replaces."""
        self._last[symbol] = price
        self._signal.pop(symbol, None)

    def fill_at(self, account_id: int, symbol: str, price: Decimal) -> None:
        """The price ``account_id``'s market orders of ``symbol`` fill at from now on (until the
        contract has a market of its own again: ``note``); not a market its resting orders are
        checked against."""
        self._signal.setdefault(symbol, {})[account_id] = price

    def for_market_order(self, account_id: int, symbol: str) -> Decimal | None:
        """What a market order of ``account_id`` in ``symbol`` fills at; None: no price yet."""
        given = self._signal.get(symbol)
        if given is not None and account_id in given:
            return given[account_id]
        return self._last.get(symbol)

    def for_resting(self, account_id: int, symbol: str) -> Decimal | None:
        """The market a resting order of ``account_id`` in ``symbol`` is checked against when
        it starts working; None: it waits for the contract's next price. None too while the
        account's market orders fill at a price ``fill_at`` gave: the contract's own last price
        is older than the fill (from before the roll), and a reversal's stop, priced from the
        alert's fill 40 points away, filled at once at a price 1,500 points off."""
        given = self._signal.get(symbol)
        if given is not None and account_id in given:
            return None
        return self._last.get(symbol)
