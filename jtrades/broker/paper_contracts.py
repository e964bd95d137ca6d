"""The contracts a paper login trades: what a real broker would give, without asking one.

The paper broker has no contract service. Its positions must still carry the symbols Tradovate's
would (``MNQZ6``, not ``MNQ1!``), and its trailing stops and P&L need each contract's tick and
value per point. A continuous name is resolved to today's front month by the calendar rule on
every lookup (it is cheap), so paper rolls with the calendar like a real broker; a contract is
built from the built-in tick table once, cached by name and numbered from 1000.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from decimal import Decimal

from jtrades.broker.base import Contract
from jtrades.engine.instruments import calendar_contract, split_symbol, table_contract
from jtrades.engine.tradingday import trading_day
from jtrades.errors import BrokerRejected, InvalidSignal


class PaperContracts:
    """The contracts looked up so far, by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, Contract] = {}

    def find(self, symbol: str) -> Contract:
        """The contract a real broker would trade: ``MNQ1!`` → today's front month
        (``MNQZ6``); an unknown or malformed name is refused (``BrokerRejected``)."""
        try:
            parts = split_symbol(symbol)
            name = (
                calendar_contract(parts.root, parts.nth, trading_day(datetime.now(UTC)))
                if parts.nth is not None
                else parts.contract_name
            )
            c = self._by_name.get(name)
            if c is None:
                c = dataclasses.replace(table_contract(name), contract_id=1000 + len(self._by_name))
                self._by_name[name] = c
        except InvalidSignal as exc:
            raise BrokerRejected(f"paper broker: {exc}") from None
        return c

    def symbol_of(self, contract_id: int) -> str | None:
        return next(
            (c.symbol for c in self._by_name.values() if c.contract_id == contract_id), None
        )

    def contract_id(self, symbol: str) -> int:
        """``symbol``'s id; 0 for a contract never looked up."""
        c = self._by_name.get(symbol)
        return c.contract_id if c is not None and c.contract_id is not None else 0

    def tick(self, symbol: str) -> Decimal | None:
        return c.tick_size if (c := self._by_name.get(symbol)) is not None else None

    def value_per_point(self, symbol: str) -> Decimal:
        """What a point is worth; 1 for a contract never looked up."""
        c = self._by_name.get(symbol)
        return c.value_per_point if c is not None else Decimal(1)
