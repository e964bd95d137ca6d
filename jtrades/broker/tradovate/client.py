"""The ``Broker`` port over one Tradovate login's session.

Commands go over the WebSocket (every REST endpoint works there with the same name and body, and
the socket is already authorized and warm); reads come from the session's live view. Every order
carries ``isAutomated: true`` (Tradovate requires it for software), ``accountSpec`` (the account
name) and ``accountId``, and our deterministic ``clOrdId``.

A placement that Tradovate refuses answers 200 with ``failureReason``/``failureText`` (orders) or
``errorText`` (strategies): that becomes ``BrokerRejected`` with the broker's words. Prices travel
as JSON numbers converted from ``Decimal`` through ``str`` so a tick-rounded price stays exact.

An order strategy's orders carry no ``clOrdId``: our id travels as the strategy's ``uuid``
(StartOrderStrategy.uuid, ≤ 64 characters, kept on the OrderStrategy entity), and its entry order
is found through the strategy's ``orderStrategyLink`` entities. The live view follows both from
the stream and the snapshot (``strategies``) and gives the entry order that id, so its events
carry it like any order's clOrdId — with no request on the way in, and across reconnects.

The bodies and the reading of answers are pure and live in ``orders_wire``; the rules of contract
names and continuous symbols in ``symbols``. This module is the part that talks to the session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from jtrades import retry
from jtrades.broker.base import (
    BrokerEvent,
    CashBalance,
    Contract,
    Fill,
    OcoRequest,
    OrderRequest,
    OrderType,
    OsoRequest,
    PlaceResult,
    Position,
    StrategyRequest,
    SubAccount,
    WorkingOrder,
)
from jtrades.broker.tradovate.orders_wire import (
    bracket_fields,
    check_prices,
    created_before,
    drop_none,
    num,
    oco_fields,
    order_fields,
    placed_order_id,
    rejected,
    strategy_params,
)
from jtrades.broker.tradovate.outcomes import RateLimited
from jtrades.broker.tradovate.session import Session
from jtrades.broker.tradovate.symbols import CONTINUOUS_SYMBOL, CONTRACT_NAME, MONTHS, front
from jtrades.engine.instruments import past_roll
from jtrades.engine.tradingday import trading_day, until_day_turn
from jtrades.errors import (
    BrokerRejected,
    NotFound,
    OutcomeUnknown,
    TransientBrokerError,
)

__all__ = [
    "CLOCK_SKEW",
    "COMMANDS_PER_READ",
    "CONTINUOUS_TTL_S",
    "MAX_ORDERS_SCANNED",
    "MONTHS",
    "READ_RETRY",
    "TradovateBroker",
    "num",
    "strategy_params",
]

CONTINUOUS_TTL_S = 3600.0  # the front month rolls: look a continuous symbol up again hourly
# order_by_cl_ord_id at the broker: the commands of up to this many candidate orders are read
# (COMMANDS_PER_READ per ``command/ldeps`` request); more candidates than that and the lookup
# says "unknown" rather than "not found" (money rule 2 needs a complete answer).
MAX_ORDERS_SCANNED = 500
COMMANDS_PER_READ = 100
# An order created this long before its intent was written may still be its order (clocks
# differ); older ones cannot be.
CLOCK_SKEW = timedelta(minutes=2)
READ_RETRY = retry.RetryPolicy(attempts=3, total_s=5.0, initial_s=0.2, max_s=1.0)
# OrderStrategy.status values of a strategy the broker refused to run
_STRATEGY_FAILED = frozenset({"ExecutionFailed", "NotEnoughLiquidity"})


class TradovateBroker:
    """``Broker`` for the sub-accounts of one login (``jtrades.broker.base.Broker``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self._contracts: dict[str, tuple[float, Contract]] = {}

    # --- commands ----------------------------------------------------------------------------

    async def _read(self, endpoint: str, query: str = "") -> Any:
        """A query: idempotent, so a transient failure is retried (commands never are).

        Never into a hold (``penalty_hold``): a penalty or a 429 is not retried by the policy,
        and a 429 hold that ends within the policy's ``total_s`` is waited out, then the read
        is tried again; a longer one fails the read at once as "not sent". Retried at the
        policy's pace, a rate-limited read went out twice more within half a second, each
        one more offence. A penalty's hold is never waited out here: the read sent after it
        would have to carry the ticket (TRADOVATE.md), and its callers give up or come back."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + READ_RETRY.total_s
        while True:
            try:
                return await retry.call_with(
                    READ_RETRY, self.session.request, endpoint, query=query
                )
            except RateLimited:
                held = self.session.held()
                if held is None or held.kind != "rate_limit":
                    raise
                if loop.time() + held.left_s > give_up_at:
                    raise
                await asyncio.sleep(held.left_s)

    async def _lookup(self, endpoint: str, query: str = "") -> Any:
        """A read of an intent lookup: a refused read (4xx) leaves the answer unknown, never
        "the broker refused the intent", so it is transient here."""
        try:
            return await self._read(endpoint, query)
        except BrokerRejected as exc:
            raise TransientBrokerError(str(exc)) from None

    async def _send(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        d = await self.session.request(endpoint, body)
        rejected(endpoint, d)
        return d if isinstance(d, dict) else {}

    async def place_order(self, req: OrderRequest) -> PlaceResult:
        d = await self._send("order/placeorder", order_fields(req))
        return PlaceResult(order_id=placed_order_id(d))

    async def place_oso(self, req: OsoRequest) -> PlaceResult:
        body = order_fields(req.entry)
        if req.bracket1 is not None:
            body["bracket1"] = bracket_fields(req.bracket1)
        if req.bracket2 is not None:
            body["bracket2"] = bracket_fields(req.bracket2)
        d = await self._send("order/placeoso", body)
        linked = tuple(int(d[k]) for k in ("oso1Id", "oso2Id") if d.get(k) is not None)
        return PlaceResult(order_id=placed_order_id(d), linked_ids=linked)

    async def place_oco(self, req: OcoRequest) -> PlaceResult:
        body = oco_fields(req.first, req.second)
        d = await self._send("order/placeoco", body)
        linked = (int(d["ocoId"]),) if d.get("ocoId") is not None else ()
        return PlaceResult(order_id=placed_order_id(d), linked_ids=linked)

    async def start_strategy(self, req: StrategyRequest) -> PlaceResult:
        """A multi-bracket order strategy (TP ladder sharing one entry).

        The entry's ``cl_ord_id`` goes as the strategy's ``uuid``: Tradovate keeps it on the
        strategy, so after a lost answer or a crash the strategy is found by it (rule 2). The
        answer carries only the strategy, and this is the only request: the entry order comes
        from the stream (the strategy's link), where the view gives it the uuid as its
        clOrdId, so its events move the intent as an order's do. The result's order id is the
        entry's if its link came before the answer, else 0 (the mirror and reconciliation
        catch up by the uuid)."""
        e = req.entry
        body = drop_none(
            {
                "accountId": e.account.account_id,
                "accountSpec": e.account.name,
                "symbol": e.symbol,
                "action": e.side.value,
                "orderStrategyTypeId": 2,
                "params": strategy_params(req),
                "uuid": e.cl_ord_id or None,
            }
        )
        d = await self._send("orderStrategy/startorderstrategy", body)
        st = d.get("orderStrategy") if isinstance(d.get("orderStrategy"), dict) else d
        assert isinstance(st, dict)
        sid = st.get("id")
        if sid is None:
            # accepted-looking (no errorText) but naming no strategy: it may be live, as an
            # order answered without its orderId may (placed_order_id); found by its uuid
            raise OutcomeUnknown(
                "orderStrategy/startorderstrategy: Tradovate answered without the strategy; "
                "look it up by its uuid"
            )
        view = self.session.view
        if view.strategies.strategy(int(sid)) is None:
            # The answer overtook the strategy's own event (links may have come already):
            # the view learns the uuid now; the event, when it comes, replaces this copy.
            known = {**st, "uuid": st.get("uuid") or e.cl_ord_id}
            self.session.publish(view.absorb("orderStrategy", known))
        entry_id = int(d.get("orderId") or 0) or view.strategies.entry(int(sid)) or 0
        return PlaceResult(order_id=entry_id, linked_ids=(int(sid),), strategy_id=int(sid))

    async def interrupt_strategy(self, strategy_id: int) -> None:
        await self._send("orderStrategy/interruptorderstrategy", {"orderStrategyId": strategy_id})

    async def modify_order(
        self,
        order_id: int,
        *,
        qty: int,
        order_type: OrderType,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> None:
        """Tradovate may answer with a ``commandId`` before the change takes effect: the
        order's next ``props`` event in the view is the confirmation."""
        check_prices(order_type, price, stop_price, None)
        body = drop_none(
            {
                "orderId": order_id,
                "orderQty": qty,
                "orderType": order_type.value,
                "price": num(price),
                "stopPrice": num(stop_price),
                "isAutomated": True,
            }
        )
        await self._send("order/modifyorder", body)

    async def cancel_order(self, order_id: int) -> None:
        await self._send("order/cancelorder", {"orderId": order_id, "isAutomated": True})

    async def liquidate_position(self, account: SubAccount, contract_id: int) -> None:
        """Flatten and cancel that contract's working orders in one call (the right way out)."""
        await self._send(
            "order/liquidateposition",
            {"accountId": account.account_id, "contractId": contract_id, "admin": False},
        )

    # --- live view -----------------------------------------------------------------------------

    def is_synced(self, account_id: int) -> bool:
        return self.session.ready and self.session.view.is_synced(account_id)

    def positions(self, account_id: int) -> list[Position]:
        return self.session.view.positions(account_id)

    def working_orders(self, account_id: int) -> list[WorkingOrder]:
        return self.session.view.working_orders(account_id)

    async def position_changed(self, account_id: int, within_s: float) -> None:
        await self.session.hub.positions.wait(account_id, within_s)

    def knows_order(self, account_id: int, order_id: int | None, cl_ord_id: str | None) -> bool:
        view = self.session.view
        if order_id:
            order = view.order(order_id)
            return order is not None and order.account_id == account_id
        return cl_ord_id is not None and view.order_by_cl_ord_id(account_id, cl_ord_id) is not None

    def fills(self, account_id: int) -> list[Fill]:
        return self.session.view.fills(account_id)

    def filled_qty(self, account_id: int, order_ids: Iterable[int]) -> dict[int, int]:
        return self.session.view.filled_qty(account_id, order_ids)

    def last_fill_id(self, account_id: int) -> int:
        return self.session.view.last_fill_id(account_id)

    def cash(self, account_id: int) -> CashBalance | None:
        return self.session.view.cash(account_id)

    def events(self) -> AsyncIterator[BrokerEvent]:
        sub: AsyncIterator[BrokerEvent] = self.session.hub.subscribe()
        return sub

    async def order_by_cl_ord_id(
        self,
        account_id: int,
        cl_ord_id: str,
        *,
        since: datetime | None = None,
        strategy: bool = False,
    ) -> WorkingOrder | None:
        """Ask the broker, not only the view: after a crash the view may predate the order.

        ``None`` only from complete answers (money rule 2); an answer that cannot be complete
        raises ``TransientBrokerError`` (``BrokerRejected`` only for a strategy the broker
        refused). ``strategy``: the id was a strategy's ``uuid`` and the answer is its entry
        order. ``since``: when the intent was written; older orders are not read."""
        known = self.session.view.order_by_cl_ord_id(account_id, cl_ord_id)
        if known is not None:
            return known
        if strategy:
            return await self.strategy_entry_at_broker(account_id, cl_ord_id)
        return await self.order_by_cl_ord_id_at_broker(account_id, cl_ord_id, since=since)

    async def strategy_entry_at_broker(self, account_id: int, uuid: str) -> WorkingOrder | None:
        """The entry order of the strategy started with ``uuid``, in up to four requests: the
        account's strategies (``orderStrategy/deps``, one complete list) unless the view knows
        the strategy, that strategy's links (``orderStrategyLink/deps``, merged into the view,
        which picks the entry), and the entry order unless the view has it.

        A strategy that failed without an entry order raises ``BrokerRejected``: it reached the
        broker, which refused it. Any other strategy without one raises ``TransientBrokerError``
        (nothing is concluded, as no other failure of a lookup concludes anything)."""
        view = self.session.view
        found = view.strategies.by_uuid(uuid)
        if found is None or int(found.get("accountId") or 0) != account_id:
            strategies = await self._lookup("orderStrategy/deps", f"masterid={account_id}")
            if not isinstance(strategies, list):
                raise TransientBrokerError("orderStrategy/deps: no list in the answer")
            found = next(
                (
                    s
                    for s in strategies
                    if isinstance(s, dict)
                    and s.get("uuid") == uuid
                    and int(s.get("accountId") or account_id) == account_id
                ),
                None,
            )
            if found is None:
                return None  # every strategy of the account, and none with this id: never sent
        sid = int(found["id"])
        if view.strategies.entry(sid) is None:
            links = await self._lookup("orderStrategyLink/deps", f"masterid={sid}")
            events = view.absorb("orderStrategy", {**found, "accountId": account_id})
            for link in links if isinstance(links, list) else ():
                if isinstance(link, dict) and "id" in link and link.get("orderId") is not None:
                    events += view.absorb("orderStrategyLink", {"orderStrategyId": sid, **link})
            self.session.publish(events)  # the entry, if the view has it, now with our id
        entry = view.strategies.entry(sid)
        if entry is None:
            status = str(found.get("status") or "")
            if status in _STRATEGY_FAILED:
                why = found.get("failureMessage") or "no entry order"
                raise BrokerRejected(f"order strategy {sid} {status}: {why}")
            raise TransientBrokerError(f"order strategy {sid} has no entry order yet")
        order = view.order(entry)
        if order is not None and order.account_id == account_id:
            return order
        o = await self._lookup("order/item", f"id={entry}")
        if not isinstance(o, dict) or int(o.get("accountId") or 0) != account_id:
            raise TransientBrokerError(f"order/item: entry order {entry} not readable")
        return await self._order_from_broker(o, None)  # the view gives it the uuid

    async def order_by_cl_ord_id_at_broker(
        self, account_id: int, cl_ord_id: str, *, since: datetime | None = None
    ) -> WorkingOrder | None:
        """The broker round trips of ``order_by_cl_ord_id``, without the view shortcut.

        Tradovate keeps ``clOrdId`` on the order's ``command`` (spec: Command.clOrdId), not on
        the order. The account's orders (``order/list``, all accounts of the token; filtered
        here, and to those not older than ``since``) have their commands read in batches
        (``command/ldeps?masterids=``): one request per hundred orders instead of one per order."""
        orders = await self._lookup("order/list")
        if not isinstance(orders, list):
            raise TransientBrokerError("order/list: no list in the answer")
        floor = since - CLOCK_SKEW if since is not None else None
        mine = {
            int(o["id"]): o
            for o in orders
            if isinstance(o, dict)
            and int(o.get("accountId") or 0) == account_id
            and not created_before(o, floor)
        }
        if len(mine) > MAX_ORDERS_SCANNED:
            raise TransientBrokerError(
                f"{len(mine)} orders to search for {cl_ord_id}: more than {MAX_ORDERS_SCANNED},"
                " so a miss would prove nothing"
            )
        ids = sorted(mine, reverse=True)  # the newest first: the likelier
        for start in range(0, len(ids), COMMANDS_PER_READ):
            batch = ",".join(str(i) for i in ids[start : start + COMMANDS_PER_READ])
            commands = await self._lookup("command/ldeps", f"masterids={batch}")
            if not isinstance(commands, list):
                raise TransientBrokerError("command/ldeps: no list in the answer")
            for c in commands:
                if isinstance(c, dict) and c.get("clOrdId") == cl_ord_id:
                    o = mine.get(int(c.get("orderId") or 0))
                    if o is not None:
                        return await self._order_from_broker(o, cl_ord_id)
        return None

    async def _order_from_broker(self, o: dict[str, Any], cl_ord_id: str | None) -> WorkingOrder:
        """The order ``o`` read from the broker, merged into the view under the stream's rules
        and published as the stream's changes are. The publishing matters for a fill that came
        before its order (it waits in the view without an account): merging the order
        attributes it, and this is its only publication with its account — dropped, the
        mirror never recorded it (P&L missing). Published before the versions are read, so
        that a failed read does not lose it; the clOrdId first, so the order's event has it."""
        view = self.session.view
        if cl_ord_id is not None:
            view.absorb("command", {"id": 0, "orderId": o["id"], "clOrdId": cl_ord_id})
        self.session.publish(view.absorb("order", o))  # same merge rules as the stream
        versions = await self._lookup("orderVersion/deps", f"masterid={o['id']}")
        events: list[BrokerEvent] = []
        for v in versions or ():
            events += view.absorb("orderVersion", v)
        self.session.publish(events)
        order = view.order(int(o["id"]))
        assert order is not None
        return order

    # --- contracts -----------------------------------------------------------------------------

    async def find_contract(self, symbol: str) -> Contract:
        """``MNQZ6`` as is; ``MNQ1!``/``MNQ2!`` → the front / next listed contract through
        ``contract/suggest``; tick size and value per point from ``product/find``. Cached
        (continuous symbols for an hour, since the front month rolls)."""
        key = symbol.upper().strip()
        cached = self._contracts.get(key)
        if cached is not None and (cached[0] == 0 or cached[0] > time.monotonic()):
            return cached[1]
        cont = CONTINUOUS_SYMBOL.match(key)
        if cont is not None:
            root, nth = cont.group(1), int(cont.group(2))
            found = await self._read("contract/suggest", f"t={root}&l=20")
            names = [str(c.get("name")) for c in found or () if isinstance(c, dict)]
            today = trading_day(datetime.now(UTC))  # the session's, not the UTC date
            name = front(names, root, nth, today.year, lambda r, y, m: past_roll(r, y, m, today))
            if name is None:
                raise NotFound(f"no listed contract for {symbol}")
            contract = await self.find_contract(name)
            # until the next day turn at most: the front month rolls at a session's start
            ttl = min(CONTINUOUS_TTL_S, until_day_turn(datetime.now(UTC)))
            self._contracts[key] = (time.monotonic() + ttl, contract)
            return contract
        m = CONTRACT_NAME.match(key)
        if m is None:
            raise NotFound(f"{symbol!r} is not a contract name (like MNQZ6) or MNQ1!")
        root = m.group(1)
        try:
            c = await self._read("contract/find", f"name={key}")
            p = await self._read("product/find", f"name={root}")
        except BrokerRejected as exc:  # 404 "Not found: contract/find"
            raise NotFound(f"Tradovate does not list {key}: {exc}") from None
        if not isinstance(c, dict) or "id" not in c:
            raise NotFound(f"Tradovate does not list {key}")
        if not isinstance(p, dict) or "tickSize" not in p:
            raise NotFound(f"Tradovate has no product {root}")
        contract = Contract(
            symbol=str(c.get("name") or key),
            root=root,
            tick_size=Decimal(str(p["tickSize"])),
            value_per_point=Decimal(str(p["valuePerPoint"])),
            contract_id=int(c["id"]),
        )
        self.session.view.set_contract(contract.contract_id or 0, contract.symbol)
        self._contracts[key] = (0, contract)
        return contract
