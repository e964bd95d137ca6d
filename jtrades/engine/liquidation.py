"""Which contract id a liquidation names, decided when it is sent.

Tradovate's ``order/liquidateposition`` names its contract by id only, and the instrument
resolver's fallback (a built-in table contract, while the broker's lookup fails) has none: a
made-up id (0) was an ``InvalidContract`` rejection that left the position open.
"""

from __future__ import annotations

from jtrades.broker.base import Broker, Contract, Position
from jtrades.engine.instruments import LOOKUP_FAILURES
from jtrades.errors import TransientBrokerError


def held_contract_id(positions: list[Position], contract: Contract) -> int | None:
    """The broker's id of the contract ``positions`` hold in ``contract``, or None.

    A position in the broker's live view names its contract by the broker's own id, so a close
    of a held position never depends on the instrument resolver having reached the broker (its
    fallback contract has no id). The broker's id matches first; else the symbol; a position
    naming no id (0: a paper position restored after a restart) counts as no answer."""
    by_symbol: int | None = None
    for p in positions:
        if p.net_pos == 0 or p.contract_id <= 0:
            continue
        if contract.contract_id is not None and p.contract_id == contract.contract_id:
            return p.contract_id
        if p.symbol == contract.symbol and by_symbol is None:
            by_symbol = p.contract_id
    return by_symbol


async def liquidation_contract_id(
    broker: Broker, broker_account_id: int, contract: Contract
) -> int:
    """The broker's id of the contract a liquidation on ``broker_account_id`` must name, decided at send time.

    ``order/liquidateposition`` names its contract by id only, and a made-up id (0) is an
    ``InvalidContract`` rejection that leaves the position open. In order: the id of the
    position the live view holds (the broker's own word, whatever the resolver returned), the
    resolved contract's id, and else the broker's lookup now (the session may be back since the
    contract was resolved). When none answers, ``TransientBrokerError``: the step is recorded as
    not sent (the broker was never asked), and the steps behind it are not sent either."""
    try:
        held = held_contract_id(broker.positions(broker_account_id), contract)
    except TransientBrokerError:
        held = None  # the view is being rebuilt: the ids below are as good
    if held is not None:
        return held
    if contract.contract_id is not None and contract.contract_id > 0:
        return contract.contract_id
    try:
        found = await broker.find_contract(contract.symbol)
    except LOOKUP_FAILURES as exc:
        # a lookup that timed out (OutcomeUnknown) or was refused was a query: the
        # liquidation itself never left, so this is "not sent", never "rejected" (``send_step``
        # records it as ``unsent.broker_unavailable``: the reason starts "not sent")
        raise TransientBrokerError(
            f"no contract id for {contract.symbol} (lookup failed: {exc}); liquidation not sent"
        ) from None
    if found.symbol != contract.symbol or found.contract_id is None or found.contract_id <= 0:
        raise TransientBrokerError(
            f"no contract id for {contract.symbol} (the broker answered {found.symbol}"
            f" id {found.contract_id}); liquidation not sent"
        )
    return found.contract_id
