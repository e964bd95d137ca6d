"""A paper order, and what a price does to it while it rests.

An order on paper carries more than Tradovate shows of it: a trailing stop's distance, a
strategy leg's autoTrail and breakeven settings and the offsets it is priced from when its
entry fills, a DAY order's session. Those settings, and the rules that move a resting exit on
each price (breakeven first, then the trail) and say whether the price fills it, are decided
here on the order alone. ``paper`` keeps the book: it asks these when a price comes, and
publishes, fills and cancels on the answers. Apart, the rules read without the bookkeeping
around them, and the broker's commands without the fields of every kind of leg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING

from jtrades.broker.base import (
    BracketOrder,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    StrategyBracket,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.broker.matching import auto_trailed, fill_price, to_tick, touched, trailed

if TYPE_CHECKING:
    from jtrades.broker.paper_restore import RestoredOrder


@dataclass(slots=True)
class PaperOrder:
    """One order as the paper broker keeps it: what Tradovate shows (``view``) and the
    settings its rules on paper read."""

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

    @classmethod
    def placed(
        cls, req: OrderRequest, order_id: int, contract_id: int, session: datetime
    ) -> PaperOrder:
        """The order ``req`` asks for, not working yet (PendingNew), placed in ``session``."""
        return cls(
            id=order_id,
            account=req.account,
            symbol=req.symbol,
            contract_id=contract_id,
            side=req.side,
            qty=req.qty,
            order_type=req.order_type,
            status=OrderStatus.PENDING_NEW,
            price=req.price,
            stop_price=req.stop_price,
            peg=abs(req.peg_difference) if req.peg_difference is not None else None,
            cl_ord_id=req.cl_ord_id or None,
            time_in_force=req.time_in_force,
            session=session,
        )

    @classmethod
    def leg(
        cls, parent: PaperOrder, order_id: int, side: Side, qty: int, kind: OrderType
    ) -> PaperOrder:
        """An exit of ``parent``, waiting (Suspended) until it fills; priced by the caller."""
        return cls(
            id=order_id,
            account=parent.account,
            symbol=parent.symbol,
            contract_id=parent.contract_id,
            side=side,
            qty=qty,
            order_type=kind,
            status=OrderStatus.SUSPENDED,
            parent_id=parent.id,
        )

    @classmethod
    def restored(cls, r: RestoredOrder, contract_id: int) -> PaperOrder:
        """An order as it was before a restart (``paper_restore``), with its id."""
        return cls(
            id=r.id, account=r.account, symbol=r.symbol, contract_id=contract_id,
            side=r.side, qty=r.qty, order_type=r.order_type, status=r.status, price=r.price,
            stop_price=r.stop_price, peg=r.peg, trail_trigger=r.trail_trigger,
            trail_freq=r.trail_freq, anchor=r.anchor, cl_ord_id=r.cl_ord_id,
            parent_id=r.parent_id, oco_id=r.oco_id, tp_offset=r.tp_offset,
            sl_offset=r.sl_offset, be_trigger=r.be_trigger, be_offset=r.be_offset,
            be_at=r.be_at, be_stop=r.be_stop, time_in_force=r.time_in_force, session=r.session,
        )  # fmt: skip

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


def arm_bracket(o: PaperOrder, b: BracketOrder) -> None:
    """An OSO bracket's prices, as its request gives them."""
    o.price, o.stop_price, o.cl_ord_id = b.price, b.stop_price, b.cl_ord_id or None
    if b.peg_difference is not None:
        o.peg = abs(b.peg_difference)


def arm_strategy_stop(sl: PaperOrder, br: StrategyBracket) -> None:
    """A strategy leg's stop settings: its offset from the entry's fill, its trail (autoTrail
    when the bracket has a trigger: the engine sends it to Tradovate with one) and breakeven."""
    sl.sl_offset = br.stop_loss
    if br.stop_loss is not None and (br.trailing_stop or br.trail_trigger is not None):
        sl.peg = abs(br.stop_loss)
    if br.trail_trigger is not None:
        sl.trail_trigger = abs(br.trail_trigger)
        sl.trail_freq = abs(br.trail_freq) if br.trail_freq is not None else None
    if br.breakeven is not None:
        sl.be_trigger, sl.be_offset = abs(br.breakeven), abs(br.breakeven_offset)


def start_trail(o: PaperOrder, px: Decimal | None, tick: Decimal | None) -> None:
    """A trailing stop without a stop price starts ``|peg|`` from ``px``: the market when
    it is placed, or its entry's fill when it is a bracket (it works only from then)."""
    if o.order_type is OrderType.TRAILING_STOP and o.stop_price is None and o.peg and px:
        o.stop_price = to_tick(px + o.side.sign * o.peg, tick)


def nearest_tick(value: Decimal, tick: Decimal | None, rounding: str = ROUND_HALF_UP) -> Decimal:
    """``value`` on the tick (``matching.to_tick``; by default the nearest, a half tick away
    from zero), kept as given when it already is (21500, not 21500.00) or the tick is unknown."""
    on = to_tick(value, tick, rounding)
    return value if on == value else on


def onto_tick(o: PaperOrder, tick: Decimal | None) -> None:
    """Put ``o``'s prices on the tick where, against a market on the tick (``PaperBroker.
    on_tick``), it trades exactly when it did off it: a limit at the first tick it accepts (a
    buy's down, a sell's up), a stop and a breakeven stop at the first tick that reaches it (a
    buy's up, a sell's down). Only the price it shows and a limit fills at change. For what the
    engine did not send: a leg priced from a fill and offsets, or a row stored off the tick."""
    buy = o.side is Side.BUY
    limit, stop = (ROUND_FLOOR, ROUND_CEILING) if buy else (ROUND_CEILING, ROUND_FLOOR)
    if o.price is not None:
        o.price = nearest_tick(o.price, tick, limit)
    if o.stop_price is not None:
        o.stop_price = nearest_tick(o.stop_price, tick, stop)
    if o.be_stop is not None:
        o.be_stop = nearest_tick(o.be_stop, tick, stop)


def price_from_entry(
    leg: PaperOrder, entry_side: Side, fill: Decimal, tick: Decimal | None
) -> None:
    """A waiting leg priced from its entry's fill (an ``entry_side`` fill at ``fill``): its
    strategy offsets, its breakeven trigger and stop, and its trail's anchor and start. The
    fill is on the tick (the paper market is) and so are the engine's offsets; the leg is put
    on the tick all the same (``onto_tick``) should an offset not be."""
    if leg.tp_offset is not None:
        leg.price = fill + entry_side.sign * abs(leg.tp_offset)
    if leg.sl_offset is not None:
        leg.stop_price = fill - entry_side.sign * abs(leg.sl_offset)
    if leg.be_trigger is not None:
        leg.be_at = fill + entry_side.sign * leg.be_trigger
        leg.be_stop = fill + entry_side.sign * leg.be_offset
    leg.anchor = fill
    start_trail(leg, fill, tick)  # an OSO trailing bracket without a stop price
    onto_tick(leg, tick)


def reach_breakeven(o: PaperOrder, px: Decimal) -> bool:
    """Once the trade reaches its breakeven trigger, the stop never gives back the entry: it
    moves to the breakeven stop unless it is already past it. True if the stop moved."""
    if o.be_at is None or o.be_stop is None or (px - o.be_at) * -o.side.sign < 0:
        return False
    moved = o.stop_price is None or (o.be_stop - o.stop_price) * -o.side.sign > 0
    if moved:
        o.stop_price = o.be_stop
    o.be_at = o.be_stop = None
    return moved


def trail(o: PaperOrder, px: Decimal, tick: Decimal | None) -> bool:
    """Move a stop as ``px`` says (autoTrail first: the engine sends it with ``trailingStop``).
    True if the stop moved."""
    if o.order_type not in (OrderType.STOP, OrderType.TRAILING_STOP):
        return False
    stop = o.stop_price
    if o.trail_trigger is not None and o.peg and o.anchor is not None and stop is not None:
        stop = auto_trailed(stop, px, o.side, o.anchor, o.peg, o.trail_trigger, o.trail_freq, tick)
    elif o.order_type is OrderType.TRAILING_STOP and o.peg is not None:
        stop = trailed(o.stop_price, px, o.side, o.peg, tick)
    if stop == o.stop_price:
        return False
    o.stop_price = stop
    return True


def matched_price(o: PaperOrder, px: Decimal, placing: bool) -> Decimal | None:
    """The price ``px`` fills ``o`` at, or None; ``placing``: ``o`` starts working now (placed,
    modified, activated by its entry). A stop-limit's limit works once its stop has traded,
    from that price on (Tradovate keeps it a StopLimit: a stop to reconcile)."""
    if o.order_type is OrderType.STOP_LIMIT and not o.triggered:
        if o.stop_price is None or not touched(o.side, px, o.stop_price):
            return None
        o.triggered = placing = True
    return fill_price(o.order_type, o.side, px, o.price, o.stop_price, placing)
