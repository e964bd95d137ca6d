"""A paper login's open orders put back after a restart: the paper broker keeps them in memory,
and without this its take-profits and stops were gone while ``orders`` still said Working.

The mirror wrote every order event into ``orders``; a row has the order's id, type, side,
quantity, prices, status, clOrdId and parent/OCO links, all a plain limit or stop needs. The ids
are kept (the intents and the mirror's rows refer to them); the broker numbers on above them
(``PaperBroker.number_after``). What the paper broker keeps beyond the row is read from the
request of the intent the order came from (the engine's request, as sent):
- a trailing stop's distance: ``peg_difference`` of an order or OSO bracket, ``stop_loss`` of a
  strategy bracket;
- a strategy leg's autoTrail trigger and step and its breakeven trigger and offset, measured
  from the entry's fill (the parent's ``fills`` row);
- the offsets a strategy leg still waiting for its entry (Suspended) is priced from;
- an order's time in force, and (the intent's ``created_at``) the session it was placed in.
Strategy and OSO legs are matched to their brackets by id: the paper broker numbers an entry's
legs right after it, in bracket order (``PaperBroker.start_strategy`` and ``place_oso``).

When that is missing (the intent was deleted with its signal, or the request does not fit the
order), the choice is what is safest for the position:
- a trailing stop works on as a plain Stop at its last stop price, and its row says Stop. It
  never moved against the position, so it protects at least what it did; cancelled, the
  position would be naked until the protector placed a stop again, at the configured distance
  from the entry (giving back what the trail had locked in), and only if a stop is configured;
- a leg without its autoTrail or breakeven settings works on as a plain stop at its price;
- a leg waiting for its entry could not be priced when the entry fills: the entry and all its
  legs are cancelled, as an entry filled without its exits would open a naked position;
- an order whose contract the paper broker does not know, or whose row it could not work (a
  limit without a price), is cancelled;
- an order whose time in force is not stored works on until it is filled or cancelled.
A cancelled order's row is written Canceled and its intent cancelled, with the reason, so that
nothing the broker does not have stays Working. Each degraded or cancelled order is logged.

A DAY order (the engine's entries) placed in an earlier session than the current one is not put
back: Tradovate expired it when that session ended (17:00 Chicago, ``paper_day``), and put back
it filled on a later day. Its row is written Expired, with those of the legs waiting for it, its
intent cancelled saying so, and it is logged as the orders not restored are. A DAY order of the
current session is put back with its session and expires at its end, as if no restart happened.

A stop-limit whose stop had traded (its limit working) comes back waiting for its stop again:
whether it had traded is not stored. It triggers again the next time the price reaches the stop.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from jtrades.broker.base import (
    OrderStatus,
    OrderType,
    Side,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.broker.paper_day import expires, utc_now
from jtrades.engine.tradingday import session_start
from jtrades.errors import BrokerRejected
from jtrades.store import Executor
from jtrades.store import mirror as mirror_store
from jtrades.store import trading as trading_store

if TYPE_CHECKING:
    from jtrades.broker.paper import PaperBroker

log = structlog.get_logger(__name__)

_OPEN_STATUSES = [str(s) for s in OrderStatus if s.is_open]
_STOPS = (OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP)


@dataclass(frozen=True, slots=True)
class RestoredOrder:
    """One order as the paper broker keeps it (``PaperBroker.restore_order``)."""

    id: int
    account: SubAccount
    symbol: str
    side: Side
    qty: int
    order_type: OrderType
    status: OrderStatus
    price: Decimal | None = None
    stop_price: Decimal | None = None
    cl_ord_id: str | None = None
    parent_id: int | None = None
    oco_id: int | None = None
    peg: Decimal | None = None
    trail_trigger: Decimal | None = None
    trail_freq: Decimal | None = None
    anchor: Decimal | None = None
    tp_offset: Decimal | None = None
    sl_offset: Decimal | None = None
    be_trigger: Decimal | None = None
    be_offset: Decimal = Decimal(0)
    be_at: Decimal | None = None
    be_stop: Decimal | None = None
    time_in_force: TimeInForce | None = None
    session: datetime | None = None


@dataclass(frozen=True, slots=True)
class _Leg:
    """What an order's request says beyond its row; ``oco_id``: its bracket partner's id (a
    waiting leg's row may lack it: the broker links the pair after publishing its legs)."""

    oco_id: int | None = None
    peg: Decimal | None = None
    trail_trigger: Decimal | None = None
    trail_freq: Decimal | None = None
    tp_offset: Decimal | None = None
    sl_offset: Decimal | None = None
    be_trigger: Decimal | None = None
    be_offset: Decimal = Decimal(0)
    # an OSO bracket whose request has no stop price: the entry's fill sets it (a waiting one's
    # row from before that was so may carry one set from the market when it was placed)
    stop_from_fill: bool = False


@dataclass(slots=True)
class Plan:
    """The orders to put back; the rows that cannot be, with why; of those, the ids of the
    ones that expired (a DAY order of an earlier session and its waiting legs; the others are
    cancelled); the orders put back with less than they had (what is missing)."""

    orders: list[RestoredOrder] = field(default_factory=list)
    lost: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    degraded: list[tuple[RestoredOrder, str]] = field(default_factory=list)
    expired: set[int] = field(default_factory=set)


_EXPIRED = "a DAY order of an earlier session: Tradovate expired it at that session's end"


def _dec(value: Any) -> Decimal | None:
    return abs(Decimal(str(value))) if value is not None else None


def _strategy_leg(
    brackets: list[dict[str, Any]], parent_id: int, index: int, kind: OrderType
) -> _Leg | None:
    """The ``index``-th leg of a strategy: each bracket gives its target, then its stop, and
    the two are OCO partners."""
    slots = [
        (n, b, which)
        for n, b in enumerate(brackets)
        for which in ("tp", "sl")
        if b.get("profit_target" if which == "tp" else "stop_loss") is not None
    ]
    if not 0 <= index < len(slots):
        return None
    n, b, which = slots[index]
    partner = [i for i, s in enumerate(slots) if s[0] == n and i != index]
    oco_id = parent_id + 1 + partner[0] if partner else None
    if which == "tp":
        if kind is not OrderType.LIMIT:
            return None
        return _Leg(oco_id=oco_id, tp_offset=_dec(b["profit_target"]))
    if kind not in _STOPS:
        return None
    sl, trigger = _dec(b["stop_loss"]), _dec(b.get("trail_trigger"))
    return _Leg(
        oco_id=oco_id,
        peg=sl if b.get("trailing_stop") or trigger is not None else None,
        sl_offset=sl,
        trail_trigger=trigger,
        trail_freq=_dec(b.get("trail_freq")) if trigger is not None else None,
        be_trigger=_dec(b.get("breakeven")),
        be_offset=_dec(b.get("breakeven_offset")) or Decimal(0),
    )


def _leg(row: Mapping[str, Any], kind: OrderType) -> _Leg | None:
    """What the request behind ``row`` says of it; None when it says nothing (no intent, or a
    request that does not fit the order)."""
    parent = row["parent_request"]
    if row["parent_id"] is not None:
        if not isinstance(parent, dict) or not isinstance(parent.get("request"), dict):
            return None
        body, parent_id = parent["request"], int(row["parent_id"])
        index = int(row["broker_order_id"]) - parent_id - 1
        if parent.get("type") == "strategy":
            return _strategy_leg(body.get("brackets") or [], parent_id, index, kind)
        legs = [b for b in (body.get("bracket1"), body.get("bracket2")) if isinstance(b, dict)]
        if parent.get("type") == "oso" and 0 <= index < len(legs):
            oco_id = parent_id + 2 - index if len(legs) == 2 else None  # two legs: a pair
            b = legs[index]
            return _Leg(oco_id=oco_id, peg=_dec(b.get("peg_difference")),
                        stop_from_fill=b.get("stop_price") is None)  # fmt: skip
        return None
    own = _own_request(row)
    return _Leg(peg=_dec(own.get("peg_difference"))) if own is not None else None


def _own_request(row: Mapping[str, Any]) -> dict[str, Any] | None:
    """The request of the order ``row`` was placed by, not a parent's (found by clOrdId: an
    order, an OCO's legs, the entry of a strategy or an OSO); None when none is stored."""
    req = row["request"]
    body = req.get("request") if isinstance(req, dict) else None
    if not isinstance(body, dict) or not row["cl_ord_id"]:
        return None
    for r in (body, body.get("first"), body.get("second"), body.get("entry")):
        if isinstance(r, dict) and r.get("cl_ord_id") == row["cl_ord_id"]:
            return r
    return None


def _day(row: Mapping[str, Any]) -> tuple[TimeInForce | None, datetime | None, bool]:
    """The time in force of the order ``row`` was placed as and the session it was placed in
    (when DAY); the last: whether its request is stored. A leg has none: it waits for its entry
    and ends with it, or works once its entry has filled."""
    if row["parent_id"] is not None:
        return None, None, True
    own = _own_request(row)
    try:
        tif = TimeInForce(own["time_in_force"]) if own and own.get("time_in_force") else None
    except ValueError:
        tif = None
    placed = row["placed_at"]
    session = session_start(placed) if tif is TimeInForce.DAY and placed is not None else None
    return tif, session, own is not None


def _order(
    row: Mapping[str, Any], account: SubAccount, current: datetime
) -> tuple[RestoredOrder | None, str]:
    """One row as the order to put back, and what it lost on the way (or why it cannot be);
    ``current``: the start of the session under way."""
    try:
        side, kind = Side(row["side"]), OrderType(row["order_type"])
    except ValueError:
        return None, f"not an order the paper broker works ({row['side']} {row['order_type']})"
    if kind is OrderType.MARKET:
        return None, "a market order never rests"
    tif, session, stored = _day(row)
    if expires(tif, session, current):
        return None, _EXPIRED
    suspended = row["status"] == OrderStatus.SUSPENDED
    leg = _leg(row, kind) or _Leg()
    stop = row["stop_price"]
    if suspended and kind is OrderType.TRAILING_STOP and leg.stop_from_fill:
        stop = None
    o = RestoredOrder(
        id=int(row["broker_order_id"]),
        account=account,
        symbol=row["symbol"],
        side=side,
        qty=int(row["qty"]),
        order_type=kind,
        status=OrderStatus.SUSPENDED if suspended else OrderStatus.WORKING,
        price=row["price"],
        stop_price=stop,
        cl_ord_id=row["cl_ord_id"],
        parent_id=row["parent_id"],
        oco_id=row["oco_id"] if row["oco_id"] is not None else leg.oco_id,
        peg=leg.peg,
        trail_trigger=leg.trail_trigger,
        trail_freq=leg.trail_freq,
        tp_offset=leg.tp_offset,
        sl_offset=leg.sl_offset,
        be_trigger=leg.be_trigger,
        be_offset=leg.be_offset,
        time_in_force=tif,
        session=session,
    )
    # a waiting strategy leg is priced when its entry fills, from its offset
    priced = o.price is not None or (suspended and o.tp_offset is not None)
    stopped = o.stop_price is not None or (suspended and o.sl_offset is not None)
    if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) and not priced:
        return None, "its limit price is not stored"
    if kind in (OrderType.STOP, OrderType.STOP_LIMIT) and not stopped:
        return None, "its stop price is not stored"
    lost: list[str] = []
    if not stored:
        lost.append("time in force: works until filled or cancelled")
    if kind is OrderType.TRAILING_STOP and o.peg is None:
        if o.stop_price is None:
            return None, "a trailing stop with neither its stop price nor its distance"
        o = replace(o, order_type=OrderType.STOP)
        lost.append("trailing distance: a plain stop at its last price")
    if suspended:
        return o, "; ".join(lost)
    anchor = row["parent_fill_price"]
    if anchor is None and (o.trail_trigger is not None or o.be_trigger is not None):
        lost.append("autoTrail/breakeven: no fill of its entry stored")
        o = replace(o, trail_trigger=None, trail_freq=None, be_trigger=None)
    o = replace(o, anchor=anchor)
    if anchor is not None and o.be_trigger is not None:  # as the entry's fill arms it
        sign = -side.sign  # the entry's side
        o = replace(o, be_at=anchor + sign * o.be_trigger, be_stop=anchor + sign * o.be_offset)
    return o, "; ".join(lost)


def plan(
    rows: list[dict[str, Any]],
    accounts: Mapping[int, SubAccount],
    known: Callable[[str], bool],
    now: datetime | None = None,
) -> Plan:
    """What to put back of ``rows`` (open orders, by id) for the sub-accounts ``accounts``
    (sub_accounts.id → the broker's account) at ``now``; ``known``: whether a symbol can be
    traded."""
    out = Plan()
    current = session_start(now or utc_now())
    kept: dict[int, RestoredOrder] = {}
    by_id = {int(r["broker_order_id"]): r for r in rows}
    why: dict[int, str] = {}
    for r in rows:
        oid = int(r["broker_order_id"])
        if not known(r["symbol"]):
            why[oid] = f"the paper broker does not know {r['symbol']}"
            continue
        o, note = _order(r, accounts[r["sub_account_id"]], current)
        if o is None:
            why[oid] = note
            if note == _EXPIRED:
                out.expired.add(oid)
            continue
        kept[oid] = o
        if note:
            out.degraded.append((o, note))
    # A waiting leg needs its entry working, and an entry every leg it had: the group goes whole.
    changed = True
    while changed:
        changed = False
        for oid, o in list(kept.items()):
            if o.status is not OrderStatus.SUSPENDED:
                continue
            parent = kept.get(o.parent_id) if o.parent_id is not None else None
            if o.parent_id in out.expired:
                why[oid] = f"it waited for an entry that expired ({_EXPIRED})"
                out.expired.add(oid)
                del kept[oid]
                changed = True
            elif parent is None or parent.status is not OrderStatus.WORKING:
                why[oid] = "it waited for an entry that is not restored"
                del kept[oid]
                changed = True
        for oid in list(why):
            row = by_id[oid]
            parent_id = row["parent_id"]
            if row["status"] == OrderStatus.SUSPENDED and parent_id in kept:
                why[parent_id] = f"its leg {oid} could not be restored"
                del kept[parent_id]
                changed = True
    out.orders = sorted(kept.values(), key=lambda o: o.id)
    out.degraded = [(o, note) for o, note in out.degraded if o.id in kept]
    out.lost = [(by_id[oid], reason) for oid, reason in sorted(why.items())]
    return out


def _row(sub: int, o: WorkingOrder) -> mirror_store.OrderRow:
    return (
        sub, o.order_id, o.cl_ord_id, o.symbol, str(o.side), o.qty, str(o.order_type), o.price,
        o.stop_price, str(o.status), o.parent_id, o.oco_id,
    )  # fmt: skip


def _differs(row: Mapping[str, Any], o: WorkingOrder) -> bool:
    stored = (row["order_type"], row["status"], row["price"], row["stop_price"], row["oco_id"])
    return stored != (str(o.order_type), str(o.status), o.price, o.stop_price, o.oco_id)


async def restore_orders(
    broker: PaperBroker, ex: Executor, accounts: Mapping[int, SubAccount]
) -> Plan:
    """Put back the open orders of ``accounts`` (sub_accounts.id → the broker's account) into
    ``broker``, and write the rows that no longer say what the broker has: the orders that
    could not be put back as Canceled (their intents cancelled), the ones put back otherwise
    (a trailing stop now a Stop) as they are. Call before the broker trades for them."""
    rows = await trading_store.paper_open_orders(ex, list(accounts), _OPEN_STATUSES)
    if not rows:
        return Plan()
    known: set[str] = set()
    for symbol in {r["symbol"] for r in rows}:
        try:
            await broker.find_contract(symbol)  # its tick, and the contract id its orders carry
        except BrokerRejected:
            continue
        known.add(symbol)
    p = plan(rows, accounts, known.__contains__, broker.clock.now())
    batch = mirror_store.Batch()
    by_id = {(r["sub_account_id"], r["broker_order_id"]): r for r in rows}
    subs = {a.account_id: sub for sub, a in accounts.items()}
    for o in p.orders:
        view = broker.restore_order(o)
        sub = subs[o.account.account_id]
        if _differs(by_id[(sub, o.id)], view):
            batch.orders.append(_row(sub, view))
    for o, note in p.degraded:
        log.warning("paper.order_restored_degraded", order_id=o.id, symbol=o.symbol,
                    order_type=str(o.order_type), stop_price=str(o.stop_price), lost=note)  # fmt: skip
    for row, reason in p.lost:
        expired = row["broker_order_id"] in p.expired
        status = OrderStatus.EXPIRED if expired else OrderStatus.CANCELED
        log.warning("paper.order_not_restored", order_id=row["broker_order_id"],
                    symbol=row["symbol"], order_type=row["order_type"], status=str(status),
                    reason=reason)  # fmt: skip
        batch.orders.append(
            (
                row["sub_account_id"], row["broker_order_id"], row["cl_ord_id"], row["symbol"],
                row["side"], row["qty"], row["order_type"], row["price"], row["stop_price"],
                str(status), row["parent_id"], row["oco_id"],
            )
        )  # fmt: skip
        if row["cl_ord_id"]:
            done = "expired" if expired else "not restored"
            text = f"paper broker restarted: {done} ({reason})"
            batch.intents.append((row["cl_ord_id"], "cancelled", row["broker_order_id"], text))
    if batch:
        await mirror_store.write_batch(ex, batch)
    log.info("paper.orders_restored", restored=len(p.orders), degraded=len(p.degraded),
             cancelled=len(p.lost) - len(p.expired), expired=len(p.expired))  # fmt: skip
    return p
