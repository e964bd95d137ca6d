"""Which contract id a liquidation names, and which cached contracts the resolver drops."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from jtrades.broker.base import Contract, Position
from jtrades.engine.instruments import InstrumentResolver, table_contract
from jtrades.engine.liquidation import held_contract_id
from jtrades.errors import TransientBrokerError

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def pos(contract_id: int, symbol: str, net: int) -> Position:
    return Position(1, contract_id, symbol, net, Decimal(21500) if net else None)


def test_a_table_contract_takes_the_id_of_the_held_position() -> None:
    assert held_contract_id([pos(0, "MESZ6", 3), pos(9, "MNQZ6", 2)], table_contract("MNQZ6")) == 9


def test_the_position_is_the_brokers_word_over_the_resolvers() -> None:
    resolved = Contract("MNQZ6", "MNQ", Decimal("0.25"), Decimal(2), contract_id=5)
    assert held_contract_id([pos(9, "MNQZ6", -1)], resolved) == 9
    # the same id wins over a same-named position with another id
    assert held_contract_id([pos(9, "MNQZ6", 1), pos(5, "", 1)], resolved) == 5


def test_no_held_position_no_id() -> None:
    c = table_contract("MNQZ6")
    assert held_contract_id([], c) is None
    assert held_contract_id([pos(9, "MNQZ6", 0)], c) is None  # flat
    assert held_contract_id([pos(0, "MNQZ6", 1)], c) is None  # a position naming no id
    assert held_contract_id([pos(9, "MNQH7", 1), pos(8, "MNQZ", 1)], c) is None
    # whole names only: a micro is never closed for a full-size contract, nor the reverse
    assert held_contract_id([pos(9, "MNQZ6", 1)], table_contract("NQZ6")) is None


class Flaky:
    """A broker's find_contract that fails until told otherwise."""

    def __init__(self, contract_id: int) -> None:
        self.contract_id = contract_id
        self.down = True
        self.calls = 0

    async def find_contract(self, symbol: str) -> Contract:
        self.calls += 1
        if self.down:
            raise TransientBrokerError("429")
        return Contract(symbol, "MNQ", Decimal("0.25"), Decimal(2), contract_id=self.contract_id)


async def test_forgetting_provisional_answers_keeps_the_brokers_own() -> None:
    r = InstrumentResolver(now=lambda: NOW)
    a, b = Flaky(1), Flaky(2)
    b.down = False
    assert (await r.resolve("MNQZ6", a)).contract_id is None  # table fallback
    assert (await r.resolve("MNQZ6", b)).contract_id == 2
    a.down = False
    assert (await r.resolve("MNQZ6", a)).contract_id is None  # cached for its minute
    assert r.forget(a, provisional_only=True) == 1
    assert r.forget(b, provisional_only=True) == 0
    assert (await r.resolve("MNQZ6", a)).contract_id == 1
    calls = b.calls
    assert (await r.resolve("MNQZ6", b)).contract_id == 2
    assert b.calls == calls  # the broker's answer stayed cached
    assert r.forget() == 2
