"""What one planned step becomes before it is sent: its clOrdId and durable intent, the account
state it is planned against, and the position it makes once it has taken effect.

Pure functions of the plan and the broker's live view; the dispatcher does the I/O.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from datetime import datetime
from decimal import Decimal
from typing import Any

from jtrades.broker.base import (
    Broker,
    Contract,
    OcoRequest,
    OrderRequest,
    OrderType,
    OsoRequest,
    StrategyRequest,
)
from jtrades.engine.planning import AccountState, PlannedOrder
from jtrades.errors import TransientBrokerError
from jtrades.store import intents as intent_store


def cl_ord_prefix(signal_id: int, sub_account_id: int) -> str:
    """Deterministic per (signal, sub-account): the step is appended (``jt-12-3-0``), ≤ 64 chars."""
    return f"jt-{signal_id}-{sub_account_id}"


def flatten_prefix(requested_at: str, sub_account_id: int, symbol: str) -> str:
    """The clOrdIds of one flatten request's liquidations of one contract on one sub-account:
    deterministic, so a run after a crash finds the attempts of the lost run (money rule 2); each
    attempt appends its number (``jt-f3a60f87520da-12-MNQZ6-1``). Within 64 characters for any
    bigint sub-account and attempt < 10**5: a long or unusual symbol is replaced by its hash."""
    req = hashlib.sha256(requested_at.encode()).hexdigest()[:12]
    key = symbol
    if len(symbol) > 20 or not symbol.isascii() or not symbol.isalnum():
        key = "h" + hashlib.sha256(symbol.encode()).hexdigest()[:12]
    return f"jt-f{req}-{sub_account_id}-{key}"


def _in_contract(contract: Contract, symbol: str, contract_id: int | None) -> bool:
    """A position or order of the broker's is in ``contract``: same id when both know it, else
    the same symbol."""
    if contract.contract_id is not None and contract_id == contract.contract_id:
        return True
    return symbol == contract.symbol


def account_state(
    broker: Broker, broker_account_id: int, contract: Contract
) -> AccountState | None:
    """This account's position and working orders in ``contract`` from the broker's live view;
    None when the view is not synced: missing is not flat (rule 6), so nothing is planned."""
    if not broker.is_synced(broker_account_id):
        return None
    try:
        positions = broker.positions(broker_account_id)
        working = broker.working_orders(broker_account_id)
    except TransientBrokerError:
        return None

    net, avg = 0, None
    for p in positions:
        if _in_contract(contract, p.symbol, p.contract_id) and p.net_pos != 0:
            net, avg = p.net_pos, p.net_price
    mine = tuple(
        o for o in working if _in_contract(contract, o.symbol, o.contract_id) and o.status.is_open
    )
    return AccountState(net_pos=net, avg_price=avg, working=mine)


def net_pos(broker: Broker, broker_account_id: int, contract: Contract) -> int | None:
    """The account's net position in ``contract`` (positions only: cheap enough to poll)."""
    try:
        for p in broker.positions(broker_account_id):
            if _in_contract(contract, p.symbol, p.contract_id):
                return p.net_pos
    except TransientBrokerError:
        return None
    return 0


def position_avg(broker: Broker, broker_account_id: int, contract: Contract) -> Decimal | None:
    """The average price of the account's open position in ``contract`` as the broker's live
    view has it; None when flat, unread or not given."""
    try:
        for p in broker.positions(broker_account_id):
            if _in_contract(contract, p.symbol, p.contract_id) and p.net_pos != 0:
                return p.net_price
    except TransientBrokerError:
        return None
    return None


async def position_shows(
    broker: Broker, broker_account_id: int, contract: Contract, expected: int, within_s: float
) -> int | None:
    """Wait until the live view shows the position at ``expected``, at most ``within_s``
    (woken by position events, not a poll); None once it does, else what it shows then."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while (held := net_pos(broker, broker_account_id, contract)) != expected:
        left = deadline - loop.time()
        if left <= 0:
            return held if held is not None else 0
        await broker.position_changed(broker_account_id, left)
    return None


def _with_cl_ord_id(po: PlannedOrder, cl: str) -> PlannedOrder:
    """Make sure what is sent carries the intent's clOrdId (the planner may leave it empty)."""
    req = po.request
    if isinstance(req, OrderRequest) and not req.cl_ord_id:
        req = dataclasses.replace(req, cl_ord_id=cl)
    elif isinstance(req, OcoRequest) and not req.first.cl_ord_id:
        req = OcoRequest(
            dataclasses.replace(req.first, cl_ord_id=cl),
            req.second
            if req.second.cl_ord_id
            else dataclasses.replace(req.second, cl_ord_id=f"{cl}b"),
        )
    elif isinstance(req, (StrategyRequest, OsoRequest)) and not req.entry.cl_ord_id:
        req = dataclasses.replace(req, entry=dataclasses.replace(req.entry, cl_ord_id=cl))
    # the planner names its orders, so this is usually a no-op: no copy then (once per order)
    return po if req is po.request else dataclasses.replace(po, request=req)


def _main_order(po: PlannedOrder) -> OrderRequest | None:
    req = po.request
    if isinstance(req, OrderRequest):
        return req
    if isinstance(req, OcoRequest):
        return req.first
    if isinstance(req, (StrategyRequest, OsoRequest)):
        return req.entry
    return None


def request_doc(po: PlannedOrder) -> dict[str, Any]:
    """What an intent records of its step (``order_intents.request``)."""
    request: dict[str, Any] = {"type": po.kind, "note": po.note}
    if po.request is not None:
        # the jsonb codec (orjson) writes the dataclass as it stands: fields in order, enums as
        # their values, decimals as strings
        request["request"] = po.request
    if po.cancel_order_id is not None:
        request["cancel_order_id"] = po.cancel_order_id
    return request


def main_qty(po: PlannedOrder) -> int | None:
    """The contracts of a step's main order (``order_intents.qty``)."""
    main = _main_order(po)
    return main.qty if main is not None else None


def intent_for(
    po: PlannedOrder,
    *,
    prefix: str,
    signal_id: int | None,
    trader_id: int | None,
    sub_account_id: int,
    symbol: str,
    expires_at: datetime,
) -> tuple[PlannedOrder, intent_store.NewIntent]:
    """The durable record of one planned step (and the step with its clOrdId filled in)."""
    main = _main_order(po)
    cl = main.cl_ord_id if main is not None and main.cl_ord_id else f"{prefix}-{po.step}"
    po = _with_cl_ord_id(po, cl)
    main = _main_order(po)
    request = request_doc(po)
    return po, intent_store.NewIntent(
        signal_id=signal_id,
        trader_id=trader_id,
        sub_account_id=sub_account_id,
        cl_ord_id=cl[:64],
        step=po.step,
        kind=po.kind,
        symbol=main.symbol if main is not None else symbol,
        side=str(main.side) if main is not None else None,
        qty=main.qty if main is not None else None,
        request=request,
        expires_at=expires_at,
    )


def expected_position(position: int, po: PlannedOrder) -> int | None:
    """The position once ``po`` has taken effect, when that shows at once (a market order, a
    liquidation); None when it does not (working orders, cancels)."""
    if po.kind == "liquidate":
        return 0
    main = _main_order(po)
    if main is None or main.order_type is not OrderType.MARKET:
        return None
    return position + main.side.sign * main.qty
