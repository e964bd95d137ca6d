"""A paper broker: the ``Broker`` port in memory, for accounts with env ``paper`` (dry runs).

The market is the signals' prices: ``on_price`` is called with each signal's price, market
orders fill at the last known price, and working limit/stop/trailing orders trigger on later
prices by Tradovate's rules as the simulator models them (``jtrades.broker.matching``). A month
held across the roll, which alerts no longer name, fills its market orders at the price of the
latest alert acting on it, and its resting orders wait for a price of its own (``fill_at``,
``paper_market``). OSO brackets and strategy legs wait (Suspended) until their entry fills,
then work as OCO pairs priced from the fill, which is how the Tradovate simulator behaves.
Prices are its clock too: a DAY order expires at the first price after its session ends
(``paper_day``). State lives in memory; reconciliation mirrors it into the database through
``events()``, and a restart puts the positions and open orders back from there
(``BrokerRegistry.sync_accounts``, ``paper_restore``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    TimeInForce,
    WorkingOrder,
)
from jtrades.broker.matching import auto_trailed, fill_price, to_tick, touched, trailed
from jtrades.broker.paper_checks import check_bracket, check_oco_pair, check_order
from jtrades.broker.paper_day import SessionClock, expires, utc_now
from jtrades.broker.paper_market import PaperMarket
from jtrades.broker.wakeups import Wakeups
from jtrades.engine.instruments import calendar_contract, split_symbol, table_contract
from jtrades.engine.tradingday import trading_day
from jtrades.errors import BrokerRejected, InvalidSignal, NotPricedYet

if TYPE_CHECKING:
    from jtrades.broker.paper_restore import RestoredOrder


@dataclass(slots=True)
class _Order:
    id: int
    account: SubAccount
    symbol: str
    contract_id: int
    side: Side
    qty: int
    order_type: OrderType
    status: OrderStatus
    price: Decimal | None = None
    stop_price: Decimal | None = None
    peg: Decimal | None = None  # trailing distance (points, positive)
    # autoTrail: trails once ``trail_trigger`` in profit over ``anchor`` (the entry's fill)
    trail_trigger: Decimal | None = None
    trail_freq: Decimal | None = None
    anchor: Decimal | None = None
    # a StopLimit whose stop has traded: now its limit works. Tradovate keeps the type StopLimit.
    triggered: bool = False
    cl_ord_id: str | None = None
    parent_id: int | None = None
    oco_id: int | None = None
    # offsets from the parent's fill for legs priced at activation (strategy brackets)
    tp_offset: Decimal | None = None
    sl_offset: Decimal | None = None
    # breakeven: offsets from the parent's fill, then (once active) the price that triggers it
    be_trigger: Decimal | None = None
    be_offset: Decimal = Decimal(0)
    be_at: Decimal | None = None
    be_stop: Decimal | None = None
    # a DAY order expires when the session it was placed in ends (``paper_day``); legs have none:
    # they end with their entry, or once active work until filled or cancelled
    time_in_force: TimeInForce | None = None
    session: datetime | None = None
    children: list[int] = field(default_factory=list)

    def view(self) -> WorkingOrder:
        return WorkingOrder(
            order_id=self.id,
            account_id=self.account.account_id,
            contract_id=self.contract_id,
            symbol=self.symbol,
            side=self.side,
            qty=self.qty,
            order_type=self.order_type,
            status=self.status,
            price=self.price,
            stop_price=self.stop_price,
            cl_ord_id=self.cl_ord_id,
            parent_id=self.parent_id,
            oco_id=self.oco_id,
            trail=self.peg if self.order_type is OrderType.TRAILING_STOP else None,
        )


@dataclass(slots=True)
class _Pos:
    net: int = 0
    avg: Decimal | None = None


class PaperBroker:
    """One paper login: all its sub-accounts, their orders, positions, fills and P&L."""

    def __init__(self, now: Callable[[], datetime] = utc_now) -> None:
        self.clock = SessionClock(now)
        self._last_id = 0  # orders and fills are numbered on from it
        self._market = PaperMarket()
        self._contracts: dict[str, Contract] = {}
        self._orders: dict[int, _Order] = {}
        self._positions: dict[tuple[int, str], _Pos] = {}
        self._fills: dict[int, list[Fill]] = {}
        self._realized: dict[int, Decimal] = {}
        self._subscribers: list[asyncio.Queue[BrokerEvent | None]] = []
        self._position_waiters = Wakeups()

    # --- market ---------------------------------------------------------------------------

    def on_price(self, symbol: str, price: Decimal) -> None:
        """A new market price: the working orders of ``symbol`` that it reaches fill. It is
        also the paper broker's clock: the DAY orders of a session over by now expire first,
        whatever their contract, as Tradovate expires them all at the session's end."""
        self._market.note(symbol, price)
        session = self.clock.session()
        for o in [o for o in self._orders.values() if o.status is OrderStatus.WORKING]:
            if o.status is not OrderStatus.WORKING:  # OCO: maybe cancelled meanwhile
                continue
            if expires(o.time_in_force, o.session, session):
                self._cancel(o, OrderStatus.EXPIRED)
            elif o.symbol == symbol:
                self._check(o, price, placing=False)

    def fill_at(self, account_id: int, symbol: str, price: Decimal) -> None:
        """The price ``account_id``'s market orders of ``symbol`` fill at, which triggers none
        of its resting orders: an alert's price for a month held across the roll, which the
        alert does not name (``paper_market``)."""
        self._market.fill_at(account_id, symbol, price)

    def _check(self, o: _Order, px: Decimal, placing: bool) -> None:
        """Move ``o``'s stop as the price ``px`` says, then fill it if ``px`` reaches it.
        ``placing``: ``o`` starts working now (placed, modified, activated by its entry)."""
        if o.be_at is not None and o.be_stop is not None and (px - o.be_at) * -o.side.sign >= 0:
            # The trade reached its breakeven trigger: the stop never gives back the entry.
            if o.stop_price is None or (o.be_stop - o.stop_price) * -o.side.sign > 0:
                o.stop_price = o.be_stop
                self._publish_order(o)
            o.be_at = o.be_stop = None
        if o.order_type in (OrderType.STOP, OrderType.TRAILING_STOP):
            stop = self._trailed(o, px)
            if stop != o.stop_price:
                o.stop_price = stop
                self._publish_order(o)
        if o.order_type is OrderType.STOP_LIMIT and not o.triggered:
            if o.stop_price is None or not touched(o.side, px, o.stop_price):
                return
            # Tradovate keeps it a StopLimit (a stop to reconcile); its limit is born now, at px
            o.triggered = placing = True
        fill_at = fill_price(o.order_type, o.side, px, o.price, o.stop_price, placing)
        if fill_at is not None:
            self._fill(o, fill_at)

    def _trailed(self, o: _Order, px: Decimal) -> Decimal | None:
        """``o``'s stop after ``px``; autoTrail first: the engine sends it with ``trailingStop``."""
        tick, stop = self._tick(o.symbol), o.stop_price
        if o.trail_trigger is not None and o.peg and o.anchor is not None and stop is not None:
            return auto_trailed(
                stop, px, o.side, o.anchor, o.peg, o.trail_trigger, o.trail_freq, tick
            )
        if o.order_type is OrderType.TRAILING_STOP and o.peg is not None:
            return trailed(o.stop_price, px, o.side, o.peg, tick)
        return o.stop_price

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
                sl.sl_offset = br.stop_loss
                if br.trailing_stop or br.trail_trigger is not None:
                    sl.peg = abs(br.stop_loss)
                if br.trail_trigger is not None:  # autoTrail: Tradovate gets it with a trigger
                    sl.trail_trigger = abs(br.trail_trigger)
                    sl.trail_freq = abs(br.trail_freq) if br.trail_freq is not None else None
                if br.breakeven is not None:
                    sl.be_trigger, sl.be_offset = abs(br.breakeven), abs(br.breakeven_offset)
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
        symbol = next(
            (c.symbol for c in self._contracts.values() if c.contract_id == contract_id), None
        )
        if symbol is None:
            raise BrokerRejected(f"unknown contract {contract_id}")
        aid = account.account_id
        pos = self._positions.get((aid, symbol))
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
        for o in list(self._orders.values()):
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
        """The contract a real broker would trade: ``MNQ1!`` → today's front month (``MNQZ6``)
        by the calendar rule, with the built-in tick table, so paper positions carry the same
        symbols as Tradovate's. Continuous names are resolved on every call (it is cheap), so the
        paper broker rolls with the calendar like a real one; contracts are cached by name."""
        try:
            parts = split_symbol(symbol)
            name = (
                calendar_contract(parts.root, parts.nth, trading_day(datetime.now(UTC)))
                if parts.nth is not None
                else parts.contract_name
            )
            c = self._contracts.get(name)
            if c is None:
                c = dataclasses.replace(
                    table_contract(name), contract_id=1000 + len(self._contracts)
                )
                self._contracts[name] = c
        except InvalidSignal as exc:
            raise BrokerRejected(f"paper broker: {exc}") from None
        return c

    async def position_changed(self, account_id: int, within_s: float) -> None:
        await self._position_waiters.wait(account_id, within_s)

    def positions(self, account_id: int) -> list[Position]:
        return [
            Position(aid, self._contract_id(sym), sym, p.net, p.avg)
            for (aid, sym), p in self._positions.items()
            if aid == account_id
        ]

    def working_orders(self, account_id: int) -> list[WorkingOrder]:
        return [
            o.view()
            for o in self._orders.values()
            if o.account.account_id == account_id and o.status.is_open
        ]

    def all_orders(self, account_id: int) -> list[WorkingOrder]:
        """Every order of the account, including finished ones (tests and mirroring)."""
        return [o.view() for o in self._orders.values() if o.account.account_id == account_id]

    def knows_order(self, account_id: int, order_id: int | None, cl_ord_id: str | None) -> bool:
        # a paper order is in the view the moment it is placed
        for o in self._orders.values():
            if o.account.account_id == account_id and (
                o.id == order_id if order_id else o.cl_ord_id == cl_ord_id
            ):
                return True
        return False

    def fills(self, account_id: int) -> list[Fill]:
        return list(self._fills.get(account_id, []))

    def filled_qty(self, account_id: int, order_ids: Iterable[int]) -> dict[int, int]:
        wanted, out = set(order_ids), dict[int, int]()
        for f in self._fills.get(account_id, ()):  # one sub-account's fills
            if f.order_id in wanted:
                out[f.order_id] = out.get(f.order_id, 0) + f.qty
        return out

    def last_fill_id(self, account_id: int) -> int:
        fills = self._fills.get(account_id)
        return fills[-1].fill_id if fills else 0  # numbered from one counter, in order

    def cash(self, account_id: int) -> CashBalance | None:
        return CashBalance(account_id, self._realized.get(account_id, Decimal(0)))

    async def order_by_cl_ord_id(
        self,
        account_id: int,
        cl_ord_id: str,
        *,
        since: datetime | None = None,
        strategy: bool = False,
    ) -> WorkingOrder | None:
        # a strategy's entry keeps the clOrdId here: one lookup serves both kinds
        for o in self._orders.values():
            if o.account.account_id == account_id and o.cl_ord_id == cl_ord_id:
                return o.view()
        return None

    def replay(self) -> list[BrokerEvent]:
        """The whole state as events: orders, fills in the order they happened, positions. The
        mirror follows a login a moment after an alert can first trade on it (the broker is
        made on first use; its pump starts once the configuration's sync has run), and what
        was published before it subscribed reached no one: the first fills of a paper login
        added to a running daemon were never recorded, nor their P&L counted."""
        out = [BrokerEvent("order", o.account.account_id, o.view()) for o in self._orders.values()]
        out += [BrokerEvent("fill", aid, f) for aid, fills in self._fills.items() for f in fills]
        for aid in dict.fromkeys(aid for aid, _ in self._positions):
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
        self._positions[(account_id, symbol)] = _Pos(net, avg)
        self._position_waiters.fire(account_id)

    def restore_order(self, r: RestoredOrder) -> WorkingOrder:
        """Put back an order that was open before a restart, with its id (the intents and the
        mirrored rows refer to it); ``paper_restore`` reads it, parents before their legs.
        Its contract must be known (``find_contract``). Nothing is published: the rows it was
        read from already say so, and no price is checked until the next one comes."""
        if (known := self._orders.get(r.id)) is not None:
            return known.view()
        o = _Order(
            id=r.id, account=r.account, symbol=r.symbol, contract_id=self._contract_id(r.symbol),
            side=r.side, qty=r.qty, order_type=r.order_type, status=r.status, price=r.price,
            stop_price=r.stop_price, peg=r.peg, trail_trigger=r.trail_trigger,
            trail_freq=r.trail_freq, anchor=r.anchor, cl_ord_id=r.cl_ord_id,
            parent_id=r.parent_id, oco_id=r.oco_id, tp_offset=r.tp_offset,
            sl_offset=r.sl_offset, be_trigger=r.be_trigger, be_offset=r.be_offset,
            be_at=r.be_at, be_stop=r.be_stop, time_in_force=r.time_in_force, session=r.session,
        )  # fmt: skip
        self._orders[o.id] = o
        if r.parent_id is not None and (parent := self._orders.get(r.parent_id)) is not None:
            parent.children.append(o.id)
        self._last_id = max(self._last_id, o.id)
        return o.view()

    async def close(self) -> None:
        for q in self._subscribers:
            q.put_nowait(None)

    # --- internals ------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def _tick(self, symbol: str) -> Decimal | None:
        return c.tick_size if (c := self._contracts.get(symbol)) is not None else None

    def _contract_id(self, symbol: str) -> int:
        c = self._contracts.get(symbol)
        return c.contract_id if c is not None and c.contract_id is not None else 0

    def _check_request(self, req: OrderRequest) -> None:
        priced = self._market.for_market_order(req.account.account_id, req.symbol) is not None
        check_order(req, priced)

    def _new(self, req: OrderRequest) -> _Order:
        """The order ``req`` asks for, registered (PendingNew); refused before anything changes
        (a group's other orders are checked before its first is made: ``paper_checks``)."""
        self._check_request(req)
        o = _Order(
            id=self._next_id(),
            account=req.account,
            symbol=req.symbol,
            contract_id=self._contract_id(req.symbol),
            side=req.side,
            qty=req.qty,
            order_type=req.order_type,
            status=OrderStatus.PENDING_NEW,
            price=req.price,
            stop_price=req.stop_price,
            peg=abs(req.peg_difference) if req.peg_difference is not None else None,
            cl_ord_id=req.cl_ord_id or None,
            time_in_force=req.time_in_force,
            session=self.clock.session(),
        )
        # no market yet (or only another month's): the contract's next price sets it
        self._start_trail(o, self._market.for_resting(o.account.account_id, o.symbol))
        self._orders[o.id] = o
        return o

    def _start_trail(self, o: _Order, px: Decimal | None) -> None:
        """A trailing stop without a stop price starts ``|peg|`` from ``px``: the market when
        it is placed, or its entry's fill when it is a bracket (it works only from then)."""
        if o.order_type is OrderType.TRAILING_STOP and o.stop_price is None and o.peg and px:
            o.stop_price = to_tick(px + o.side.sign * o.peg, self._tick(o.symbol))

    def _child(self, parent: _Order, side: Side, qty: int, kind: OrderType) -> _Order:
        o = _Order(
            id=self._next_id(),
            account=parent.account,
            symbol=parent.symbol,
            contract_id=parent.contract_id,
            side=side,
            qty=qty,
            order_type=kind,
            status=OrderStatus.SUSPENDED,
            parent_id=parent.id,
        )
        self._orders[o.id] = o
        parent.children.append(o.id)
        self._publish_order(o)
        return o

    def _bracket(self, parent: _Order, b: BracketOrder) -> _Order:
        o = self._child(parent, b.side, parent.qty, b.order_type)
        o.price, o.stop_price, o.cl_ord_id = b.price, b.stop_price, b.cl_ord_id or None
        if b.peg_difference is not None:
            o.peg = abs(b.peg_difference)
        return o

    def _activate(self, o: _Order) -> None:
        o.status = OrderStatus.WORKING
        self._publish_order(o)
        aid = o.account.account_id
        if o.order_type is OrderType.MARKET:
            px = self._market.for_market_order(aid, o.symbol)
            assert px is not None  # checked when it was made (``_check_request``)
            self._fill(o, px)
        elif (last := self._market.for_resting(aid, o.symbol)) is not None:
            self._check(o, last, placing=True)

    def _cancel(self, o: _Order, status: OrderStatus = OrderStatus.CANCELED) -> None:
        """End ``o`` (cancelled, or expired) and the legs still waiting for it the same way."""
        o.status = status
        self._publish_order(o)
        for cid in o.children:
            child = self._orders[cid]
            if child.status.is_open:
                self._cancel(child, status)

    def _fill(self, o: _Order, price: Decimal) -> None:
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
        self._fills.setdefault(aid, []).append(fill)
        o.status = OrderStatus.FILLED
        self._apply_fill(aid, o.symbol, o.side.sign * o.qty, price)
        self._publish(BrokerEvent("fill", aid, fill))
        self._publish_order(o)
        pos = self._positions[(aid, o.symbol)]
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
            if child.status is not OrderStatus.SUSPENDED:
                continue
            if child.tp_offset is not None:
                child.price = price + o.side.sign * abs(child.tp_offset)
            if child.sl_offset is not None:
                child.stop_price = price - o.side.sign * abs(child.sl_offset)
            if child.be_trigger is not None:
                child.be_at = price + o.side.sign * child.be_trigger
                child.be_stop = price + o.side.sign * child.be_offset
            child.anchor = price
            self._start_trail(child, price)  # an OSO trailing bracket without a stop price
            self._activate(child)

    def _apply_fill(self, aid: int, symbol: str, signed: int, price: Decimal) -> None:
        pos = self._positions.setdefault((aid, symbol), _Pos())
        c = self._contracts.get(symbol)
        vpp = c.value_per_point if c is not None else Decimal(1)
        if pos.net == 0 or (pos.net > 0) == (signed > 0):
            total = pos.net + signed
            prev = (pos.avg or Decimal(0)) * abs(pos.net)
            pos.avg = (prev + price * abs(signed)) / abs(total)
            pos.net = total
            return
        closed = min(abs(signed), abs(pos.net))
        assert pos.avg is not None
        direction = 1 if pos.net > 0 else -1
        pnl = (price - pos.avg) * closed * direction * vpp
        self._realized[aid] = self._realized.get(aid, Decimal(0)) + pnl
        rest = signed + direction * closed  # what is left of the fill after closing
        pos.net += direction * -closed
        if pos.net == 0:
            pos.avg = None
        if rest != 0:
            pos.net, pos.avg = rest, price

    def _publish_order(self, o: _Order) -> None:
        self._publish(BrokerEvent("order", o.account.account_id, o.view()))

    def _publish(self, ev: BrokerEvent) -> None:
        for q in self._subscribers:
            q.put_nowait(ev)
        self._position_waiters.on_event(ev)
