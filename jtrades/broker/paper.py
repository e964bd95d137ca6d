"""A paper broker: the ``Broker`` port in memory, for accounts with env ``paper`` (dry runs).

The market is the signals' prices: ``on_price`` is called with each signal's price, put on the
contract's tick (an exchange trades nothing between ticks; a Heikin Ashi ``{{close}}`` is an
average, 21500.0625 on MNQ: ``PaperBroker.on_tick``), market orders fill at the last known
price, and working limit/stop/trailing orders trigger on later prices by Tradovate's rules as
the simulator models them (``jtrades.broker.matching``). A month held across the roll, which
alerts no longer name, fills its market orders at the price of the latest alert acting on it,
and its resting orders wait for a price of its own (``fill_at``, ``paper_market``). OSO
brackets and strategy legs wait (Suspended) until their entry fills, then work as OCO pairs
priced from the fill, which is how the Tradovate simulator behaves.
Prices are its clock too: a DAY order expires at the first price after its session ends
(``paper_day``). State lives in memory; reconciliation mirrors it into the database through
``events()``, and a restart puts the positions and open orders back from there
(``BrokerRegistry.sync_accounts``, ``paper_restore``).

This module is the ``Broker`` port over that state: it checks and places orders, keeps them, and
on each price asks the order's own rules what happens (``paper_orders``: a stop moved, a fill),
then books the fill (``paper_ledger``: positions, fills, P&L) and publishes every change. Its
contracts, with their ticks and point values, come from ``paper_contracts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from jtrades.broker.base import (
    BracketOrder,
    BrokerEvent,
    CashBalance,
    Contract,
    Fill,
    OcoRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    OsoRequest,
    PlaceResult,
    Position,
    Side,
    StrategyRequest,
    SubAccount,
    WorkingOrder,
)
from jtrades.broker.paper_checks import check_bracket, check_oco_pair, check_order
from jtrades.broker.paper_contracts import PaperContracts
from jtrades.broker.paper_day import SessionClock, expires, utc_now
from jtrades.broker.paper_ledger import PaperLedger
from jtrades.broker.paper_market import PaperMarket
from jtrades.broker.paper_orders import (
    PaperOrder,
    arm_bracket,
    arm_strategy_stop,
    matched_price,
    nearest_tick,
    onto_tick,
    price_from_entry,
    reach_breakeven,
    start_trail,
    trail,
)
from jtrades.broker.wakeups import Wakeups
from jtrades.errors import BrokerRejected, NotPricedYet

if TYPE_CHECKING:
    from jtrades.broker.paper_restore import RestoredOrder


class PaperBroker:
    """One paper login: all its sub-accounts, their orders, positions, fills and P&L."""

    def __init__(self, now: Callable[[], datetime] = utc_now) -> None:
        self.clock = SessionClock(now)
        self._last_id = 0  # orders and fills are numbered on from it
        self._market = PaperMarket()
        self._contracts = PaperContracts()
        self._orders: dict[int, PaperOrder] = {}
        # the orders not finished, and the first order of each (account, clOrdId): a price and
        # each read walked every order the login ever had (100k finished: 22 ms an alert)
        self._live: dict[int, PaperOrder] = {}
        self._by_cl: dict[tuple[int, str], PaperOrder] = {}
        self._ledger = PaperLedger()
        self._subscribers: list[asyncio.Queue[BrokerEvent | None]] = []
        self._position_waiters = Wakeups()

    # --- market ---------------------------------------------------------------------------

    def on_price(self, symbol: str, price: Decimal) -> None:
        """A new market price: the working orders of ``symbol`` that it reaches fill. It is
        also the paper broker's clock: the DAY orders of a session over by now expire first,
        whatever their contract, as Tradovate expires them all at the session's end. ``price``
        is first put on the contract's tick (``on_tick``): fills, triggers and the legs priced
        from a fill then all see the one price an exchange could have traded at."""
        price = self.on_tick(symbol, price)
        self._market.note(symbol, price)
        session = self.clock.session()
        for o in [o for o in self._open_orders() if o.status is OrderStatus.WORKING]:
            if o.status is not OrderStatus.WORKING:  # OCO: maybe cancelled meanwhile
                continue
            if expires(o.time_in_force, o.session, session):
                self._cancel(o, OrderStatus.EXPIRED)
            elif o.symbol == symbol:
                self._check(o, price, placing=False)

    def fill_at(self, account_id: int, symbol: str, price: Decimal) -> None:
        """The price ``account_id``'s market orders of ``symbol`` fill at, which triggers none
        of its resting orders: an alert's price for a month held across the roll, which the
        alert does not name (``paper_market``). On the tick, as ``on_price`` puts it."""
        self._market.fill_at(account_id, symbol, self.on_tick(symbol, price))

    def on_tick(self, symbol: str, price: Decimal) -> Decimal:
        """``price`` as the paper market of ``symbol`` trades it: on the contract's tick (DESIGN
        §5 rule 4). An alert's price need not be: TradingView's ``{{close}}`` on a Heikin Ashi
        chart is (O+H+L+C)/4, 21500.0625 on MNQ (tick 0.25), and a fill there booked P&L no
        exchange can (a round trip of $20.25 where one tick is $0.50).

        The nearest tick; exactly half a tick (21500.125) goes up, away from zero, as
        ``matching.to_tick`` and the engine's ``round_to_tick(..., "nearest")`` round. Not by the
        order's side (a buy up, a sell down, as a book's ask and bid would): the alert's price is
        a chart's, not a quote with a spread, and it is one market for every order of the
        contract, the market orders of both sides and the triggers of resting stops and limits
        alike. Side by side, a buy and a sell filled by one alert would be a tick apart, and a
        stop would trigger at a price the market order next to it did not fill at. A price
        already on the tick is kept as given; unchanged when the contract was never looked up
        (``find_contract``, as every order's is), its tick unknown."""
        return nearest_tick(price, self._contracts.tick(symbol))

    def _check(self, o: PaperOrder, px: Decimal, placing: bool) -> None:
        """Move ``o``'s stop as the price ``px`` says, then fill it if ``px`` reaches it.
        ``placing``: ``o`` starts working now (placed, modified, activated by its entry)."""
        if reach_breakeven(o, px):
            self._publish_order(o)
        if trail(o, px, self._contracts.tick(o.symbol)):
            self._publish_order(o)
        if (at := matched_price(o, px, placing)) is not None:
            self._fill(o, at)

    # --- commands -------------------------------------------------------------------------

    async def place_order(self, req: OrderRequest) -> PlaceResult:
        o = self._new(req)
        self._activate(o)
        return PlaceResult(o.id)

    async def place_oso(self, req: OsoRequest) -> PlaceResult:
        brackets = [b for b in (req.bracket1, req.bracket2) if b is not None]
        self._check_request(req.entry)
        for b in brackets:
            check_bracket(b)
        entry = self._new(req.entry)
        kids = [self._bracket(entry, b) for b in brackets]
        if len(kids) == 2:
            kids[0].oco_id, kids[1].oco_id = kids[1].id, kids[0].id
            for k in kids:  # published unlinked by ``_child``: the mirrored row gets the link
                self._publish_order(k)
        self._activate(entry)
        return PlaceResult(entry.id, tuple(k.id for k in kids))

    async def place_oco(self, req: OcoRequest) -> PlaceResult:
        if req.first.order_type is OrderType.MARKET or req.second.order_type is OrderType.MARKET:
            raise BrokerRejected("an OCO pair must be two working orders")
        self._check_request(req.first)
        self._check_request(req.second)
        check_oco_pair(req.first, req.second)
        a, b = self._new(req.first), self._new(req.second)
        a.oco_id, b.oco_id = b.id, a.id
        self._activate(a)
        if b.status is OrderStatus.PENDING_NEW:
            self._activate(b)
        return PlaceResult(a.id, (b.id,))

    async def start_strategy(self, req: StrategyRequest) -> PlaceResult:
        if sum(br.qty for br in req.brackets) > req.entry.qty:
            raise BrokerRejected("bracket quantities exceed the entry quantity")
        entry = self._new(req.entry)
        exit_side = entry.side.opposite
        ids: list[int] = []
        for br in req.brackets:
            tp = sl = None
            if br.profit_target is not None:
                tp = self._child(entry, exit_side, br.qty, OrderType.LIMIT)
                tp.tp_offset = br.profit_target
            if br.stop_loss is not None:
                kind = OrderType.TRAILING_STOP if br.trailing_stop else OrderType.STOP
                sl = self._child(entry, exit_side, br.qty, kind)
                arm_strategy_stop(sl, br)
            if tp is not None and sl is not None:
                tp.oco_id, sl.oco_id = sl.id, tp.id
                self._publish_order(tp)  # published unlinked by ``_child``: the rows get the link
                self._publish_order(sl)
            ids.extend(o.id for o in (tp, sl) if o is not None)
        self._activate(entry)
        return PlaceResult(entry.id, tuple(ids), strategy_id=entry.id)

    async def modify_order(
        self,
        order_id: int,
        *,
        qty: int,
        order_type: OrderType,
        price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> None:
        o = self._orders.get(order_id)
        if o is None or not o.status.is_open:
            raise BrokerRejected(f"order {order_id} is not working")
        if qty < 1:
            raise BrokerRejected("quantity must be ≥ 1")
        o.qty, o.order_type, o.price, o.stop_price = qty, order_type, price, stop_price
        o.triggered = False  # a modified stop-limit waits for its (new) stop again
        self._publish_order(o)
        last = self._market.for_resting(o.account.account_id, o.symbol)
        if last is not None and o.status is OrderStatus.WORKING:
            self._check(o, last, placing=True)

    async def cancel_order(self, order_id: int) -> None:
        o = self._orders.get(order_id)
        if o is None:
            raise BrokerRejected(f"order {order_id} not found")
        if not o.status.is_open:
            raise BrokerRejected(f"order {order_id} is {o.status}, not working")
        self._cancel(o)

    async def liquidate_position(self, account: SubAccount, contract_id: int) -> None:
        symbol = self._contracts.symbol_of(contract_id)
        if symbol is None:
            raise BrokerRejected(f"unknown contract {contract_id}")
        aid = account.account_id
        pos = self._ledger.holding(aid, symbol)
        if pos is not None and pos.net and self._market.for_market_order(aid, symbol) is None:
            # Refused before the cancels: a restart keeps no market price, and cancelling first
            # left the restored position open without its stop. No mark is made up from the
            # stored entry or last fill: it may be days old, and would fill every later market
            # order without a price of its own at it; the next priced alert gives one. Not a
            # refusal (``NotPricedYet``): a flatten counted it as one and gave up after ten.
            raise NotPricedYet(
                f"paper broker: no price yet for {symbol} since the daemon started: waits for"
                " the next alert with a price; nothing changed"
            )
        for o in self._open_orders():
            mine = o.account.account_id == account.account_id and o.symbol == symbol
            if mine and o.status.is_open:
                self._cancel(o)
        if pos is not None and pos.net != 0:
            side = Side.SELL if pos.net > 0 else Side.BUY
            o = self._new(OrderRequest(account, symbol, side, abs(pos.net)))
            self._activate(o)

    # --- live view ------------------------------------------------------------------------

    def is_synced(self, account_id: int) -> bool:
        return True

    async def find_contract(self, symbol: str) -> Contract:
        """The contract a real broker would trade: ``MNQ1!`` → today's front month (``MNQZ6``),
        so paper positions carry the same symbols as Tradovate's (``paper_contracts``)."""
        return self._contracts.find(symbol)

    async def position_changed(self, account_id: int, within_s: float) -> None:
        await self._position_waiters.wait(account_id, within_s)

    def positions(self, account_id: int) -> list[Position]:
        return [
            Position(account_id, self._contracts.contract_id(sym), sym, p.net, p.avg)
            for sym, p in self._ledger.held(account_id)
        ]

    def working_orders(self, account_id: int) -> list[WorkingOrder]:
        return [o.view() for o in self._open_orders() if o.account.account_id == account_id]

    def all_orders(self, account_id: int) -> list[WorkingOrder]:
        """Every order of the account, including finished ones (tests and mirroring)."""
        return [o.view() for o in self._orders.values() if o.account.account_id == account_id]

    def knows_order(self, account_id: int, order_id: int | None, cl_ord_id: str | None) -> bool:
        # a paper order is in the view the moment it is placed
        if order_id:
            o = self._orders.get(order_id)
            return o is not None and o.account.account_id == account_id
        return cl_ord_id is not None and (account_id, cl_ord_id) in self._by_cl

    def fills(self, account_id: int) -> list[Fill]:
        return self._ledger.fills(account_id)

    def filled_qty(self, account_id: int, order_ids: Iterable[int]) -> dict[int, int]:
        return self._ledger.filled_qty(account_id, order_ids)

    def last_fill_id(self, account_id: int) -> int:
        return self._ledger.last_fill_id(account_id)

    def cash(self, account_id: int) -> CashBalance | None:
        return self._ledger.cash(account_id)

    async def order_by_cl_ord_id(
        self,
        account_id: int,
        cl_ord_id: str,
        *,
        since: datetime | None = None,
        strategy: bool = False,
    ) -> WorkingOrder | None:
        # a strategy's entry keeps the clOrdId here: one lookup serves both kinds
        o = self._by_cl.get((account_id, cl_ord_id))
        return o.view() if o is not None else None

    def replay(self) -> list[BrokerEvent]:
        """The whole state as events: orders, fills in the order they happened, positions. The
        mirror follows a login a moment after an alert can first trade on it (the broker is
        made on first use; its pump starts once the configuration's sync has run), and what
        was published before it subscribed reached no one: the first fills of a paper login
        added to a running daemon were never recorded, nor their P&L counted."""
        out = [BrokerEvent("order", o.account.account_id, o.view()) for o in self._orders.values()]
        out += [BrokerEvent("fill", aid, f) for aid, f in self._ledger.all_fills()]
        for aid in self._ledger.accounts_held():
            out += [BrokerEvent("position", aid, held) for held in self.positions(aid)]
        return out

    async def events(self) -> AsyncIterator[BrokerEvent]:
        queue: asyncio.Queue[BrokerEvent | None] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                ev = await queue.get()
                if ev is None:
                    return
                yield ev
        finally:
            self._subscribers.remove(queue)

    def number_after(self, used: int) -> None:
        """Give orders and fills ids above ``used``, the highest a previous run gave: from 1
        again, a restart's fills took stored ones' ids and the mirror dropped them as known."""
        self._last_id = max(used, self._last_id)

    def restore_position(self, account_id: int, symbol: str, net: int, avg: Decimal | None) -> None:
        """Put back a position mirrored before a restart (paper state is in memory)."""
        self._ledger.restore(account_id, symbol, net, avg)
        self._position_waiters.fire(account_id)

    def restore_order(self, r: RestoredOrder) -> WorkingOrder:
        """Put back an order that was open before a restart, with its id (the intents and the
        mirrored rows refer to it); ``paper_restore`` reads it, parents before their legs.
        Its contract must be known (``find_contract``). Nothing is published: the rows it was
        read from already say so, and no price is checked until the next one comes."""
        if (known := self._orders.get(r.id)) is not None:
            return known.view()
        o = PaperOrder.restored(r, self._contracts.contract_id(r.symbol))
        # a row stored before paper kept to the tick (a leg priced from a fill off it) goes on
        # the tick it triggers at; ``paper_restore`` writes the row anew when it moved
        onto_tick(o, self._contracts.tick(r.symbol))
        self._register(o)
        if r.parent_id is not None and (parent := self._orders.get(r.parent_id)) is not None:
            parent.children.append(o.id)
        self._last_id = max(self._last_id, o.id)
        return o.view()

    async def close(self) -> None:
        for q in self._subscribers:
            q.put_nowait(None)

    # --- internals ------------------------------------------------------------------------

    def _register(self, o: PaperOrder) -> None:
        self._orders[o.id] = o
        self._live[o.id] = o
        self._name(o)

    def _name(self, o: PaperOrder) -> None:
        """Index ``o`` by its clOrdId (the first order of one keeps it, as a scan found it)."""
        if o.cl_ord_id:
            self._by_cl.setdefault((o.account.account_id, o.cl_ord_id), o)

    def _open_orders(self) -> list[PaperOrder]:
        """The orders not finished, in the order they were made; those finished since the last
        call leave the index (an order never opens again once finished)."""
        live = [o for o in self._live.values() if o.status.is_open]
        if len(live) != len(self._live):
            self._live = {o.id: o for o in live}
        return live

    def _next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _check_request(self, req: OrderRequest) -> None:
        priced = self._market.for_market_order(req.account.account_id, req.symbol) is not None
        check_order(req, priced)

    def _new(self, req: OrderRequest) -> PaperOrder:
        """The order ``req`` asks for, registered (PendingNew); refused before anything changes
        (a group's other orders are checked before its first is made: ``paper_checks``)."""
        self._check_request(req)
        o = PaperOrder.placed(
            req, self._next_id(), self._contracts.contract_id(req.symbol), self.clock.session()
        )
        # no market yet (or only another month's): the contract's next price sets it
        last = self._market.for_resting(o.account.account_id, o.symbol)
        start_trail(o, last, self._contracts.tick(o.symbol))
        self._register(o)
        return o

    def _child(self, parent: PaperOrder, side: Side, qty: int, kind: OrderType) -> PaperOrder:
        o = PaperOrder.leg(parent, self._next_id(), side, qty, kind)
        self._register(o)
        parent.children.append(o.id)
        self._publish_order(o)
        return o

    def _bracket(self, parent: PaperOrder, b: BracketOrder) -> PaperOrder:
        o = self._child(parent, b.side, parent.qty, b.order_type)
        arm_bracket(o, b)
        self._name(o)  # named only now: ``_child`` registered it unnamed
        return o

    def _activate(self, o: PaperOrder) -> None:
        o.status = OrderStatus.WORKING
        self._publish_order(o)
        aid = o.account.account_id
        if o.order_type is OrderType.MARKET:
            px = self._market.for_market_order(aid, o.symbol)
            assert px is not None  # checked when it was made (``_check_request``)
            self._fill(o, px)
        elif (last := self._market.for_resting(aid, o.symbol)) is not None:
            self._check(o, last, placing=True)

    def _cancel(self, o: PaperOrder, status: OrderStatus = OrderStatus.CANCELED) -> None:
        """End ``o`` (cancelled, or expired) and the legs still waiting for it the same way."""
        o.status = status
        self._publish_order(o)
        for cid in o.children:
            child = self._orders[cid]
            if child.status.is_open:
                self._cancel(child, status)

    def _fill(self, o: PaperOrder, price: Decimal) -> None:
        """``o`` fills at ``price``: booked, published, its OCO partner cancelled and its
        waiting legs priced from the fill and set working."""
        aid = o.account.account_id
        fill = Fill(
            fill_id=self._next_id(),
            order_id=o.id,
            account_id=aid,
            contract_id=o.contract_id,
            symbol=o.symbol,
            side=o.side,
            qty=o.qty,
            price=price,
            timestamp=self.clock.now(),
        )
        o.status = OrderStatus.FILLED
        pos = self._ledger.record(fill, self._contracts.value_per_point(o.symbol))
        self._publish(BrokerEvent("fill", aid, fill))
        self._publish_order(o)
        self._publish(
            BrokerEvent("position", aid, Position(aid, o.contract_id, o.symbol, pos.net, pos.avg))
        )
        self._publish(BrokerEvent("cash", aid, self.cash(aid)))
        if o.oco_id is not None:
            other = self._orders.get(o.oco_id)
            if other is not None and other.status.is_open:
                self._cancel(other)
        for cid in o.children:
            child = self._orders[cid]
            if child.status is OrderStatus.SUSPENDED:
                price_from_entry(child, o.side, price, self._contracts.tick(child.symbol))
                self._activate(child)

    def _publish_order(self, o: PaperOrder) -> None:
        self._publish(BrokerEvent("order", o.account.account_id, o.view()))

    def _publish(self, ev: BrokerEvent) -> None:
        for q in self._subscribers:
            q.put_nowait(ev)
        self._position_waiters.on_event(ev)
