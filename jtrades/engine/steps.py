"""What one planned step becomes before it is sent: its clOrdId and durable intent, the account
state it is planned against (and when it may be: ``ViewGate``), and the position it makes once
it has taken effect.

Pure functions of the plan and the broker's live view; the dispatcher does the I/O, save the
waits on the view (``position_shows``, ``ViewGate``, which asks the store only for an account
whose view has not shown an earlier plan).
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import structlog

from jtrades.broker.base import (
    Broker,
    Contract,
    OcoRequest,
    OrderRequest,
    OrderType,
    OsoRequest,
    StrategyRequest,
)
from jtrades.engine.config_cache import AccountKey
from jtrades.engine.plan_context import VIEW_UNSETTLED, unsettled, unsynced
from jtrades.engine.planning import AccountState, PlannedOrder, Shortfall
from jtrades.engine.view_waits import Placed, shows_orders
from jtrades.errors import TransientBrokerError
from jtrades.store import flatten as flatten_store
from jtrades.store import intents as intent_store

log = structlog.get_logger(__name__)

# An account waiting to be planned (``ViewGate.wait``) looks at its view again at least this
# often (position and session events wake it at once; order events do not), and asks the
# store whether an earlier plan's intents are still open at most this often.
_LOOK_S = 0.05
_ASK_STORE_S = 0.5


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


@dataclass(frozen=True, slots=True)
class Unsettled:
    """What a plan sent to an account at the broker that the view did not show when the
    dispatcher's settle wait gave up (Tradovate's events late): the next plan on the account
    waits for it (``ViewGate``), or plans nothing. Planned from the view without it, a
    reversal opened short 1 from a "flat" that was long 1, and a close sent nothing."""

    sub_account_id: int  # the row its intents were written for
    contract: Contract
    made_pos: int | None  # the position its steps make, when they changed it
    placed: tuple[Placed, ...]
    cancelled: tuple[int, ...]
    # steps whose answer never came: clOrdId, and whether it is a market order
    unknown: tuple[tuple[str, bool], ...]

    def cl_ord_ids(self) -> frozenset[str]:
        """The steps that went (or may have): their intents stay open until the mirror has
        seen their orders' events, or reconciliation has looked them up."""
        return frozenset([*(cl for _, cl in self.placed if cl), *(cl for cl, _ in self.unknown)])


def shows_unsettled(broker: Broker, account_id: int, u: Unsettled) -> bool:
    """Whether the live view now shows what ``u`` sent: the position its steps make, the
    orders it placed (and not those it cancelled), and each step whose answer never came as
    an order, no longer open if it was a market order (one still open is a fill to come).
    Memory only."""
    if u.made_pos is not None and net_pos(broker, account_id, u.contract) != u.made_pos:
        return False
    if not shows_orders(broker, account_id, u.placed, u.cancelled):
        return False
    if not u.unknown:
        return True
    open_ids = {o.cl_ord_id for o in broker.working_orders(account_id)}
    return all(
        broker.knows_order(account_id, None, cl) and not (market and cl in open_ids)
        for cl, market in u.unknown
    )


class ViewGate:
    """Whether an account at the broker may be planned now, its lock held, and the wait until
    it may: its view synced (not mid-reconnect) and showing what the plans before sent to it.
    The dispatcher's settle wait is bounded (2 s); what it gave up on is kept here
    (``note``), in memory: an account with nothing kept costs a plan a look-up, no round
    trip. Missing is not flat: an account that never may within the signal's TTL is not
    planned at all (rule 6)."""

    def __init__(self, pool: asyncpg.Pool, ttl: timedelta, clock: Callable[[], datetime]) -> None:
        self._pool = pool
        self._ttl = ttl
        self._clock = clock
        self._unsettled: dict[AccountKey, Unsettled] = {}

    def note(self, key: AccountKey, u: Unsettled) -> None:
        """The view of ``key`` did not show ``u`` when its settle wait gave up."""
        self._unsettled[key] = u

    def hold_up(self, key: AccountKey, broker: Broker, account_id: int) -> Shortfall | None:
        """Why ``key`` may not be planned now: its view not synced, or not showing what an
        earlier plan sent (forgotten once it does). None for the common account."""
        ttl_s = self._ttl.total_seconds()
        if not broker.is_synced(account_id):
            return unsynced(ttl_s)
        u = self._unsettled.get(key)
        if u is None:
            return None
        try:
            shown = shows_unsettled(broker, account_id, u)
        except TransientBrokerError:  # lost since is_synced
            return unsynced(ttl_s)
        if not shown:
            return unsettled(ttl_s)
        self._unsettled.pop(key, None)
        return None

    async def wait(
        self, key: AccountKey, broker: Broker, account_id: int, received_at: datetime
    ) -> Shortfall | None:
        """Wait until ``key`` may be planned (``hold_up``), at most until the signal's TTL from
        its receipt: a session's reconnect takes about a second, and Tradovate's late events
        come soon after the settle wait gave up. Woken by the view's position and session
        events (``Broker.position_changed``). An earlier plan whose intents the store no
        longer has open (the mirror took their orders' events in) is shown too, whatever the
        position now: a stop that filled since made it other than planned. None once it may
        be planned; else why not."""
        loop = asyncio.get_running_loop()
        now = asked = loop.time()
        deadline = now + (received_at + self._ttl - self._clock()).total_seconds()
        while (why := self.hold_up(key, broker, account_id)) is not None:
            now = loop.time()
            u = self._unsettled.get(key)
            if u is not None and why.cause == VIEW_UNSETTLED and now - asked >= _ASK_STORE_S:
                asked = now
                if await self._settled_in_store(u):
                    self._unsettled.pop(key, None)
                    continue
            if now >= deadline:
                return why
            await broker.position_changed(account_id, min(deadline - now, _LOOK_S))
        return None

    async def _settled_in_store(self, u: Unsettled) -> bool:
        """Whether none of ``u``'s intents is still open (the mirror moves one once it has
        seen its order's events, reconciliation one whose answer never came). A store that
        cannot answer settles nothing."""
        try:
            flying = await flatten_store.in_flight(self._pool, [u.sub_account_id])
        except Exception as exc:
            log.info("dispatch.unsettled_unread", sub_account_id=u.sub_account_id, error=str(exc))
            return False
        mine = u.cl_ord_ids()
        return not any(f.cl_ord_id in mine for f in flying)


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
