"""Exits re-placed for a resized position (DCA add, reduce) are checked against the market.

They are priced from the average, and the average can sit on the far side of the market from
a stop or a take-profit priced off it: a stop at or past the market stops the position out at
once (or is refused after the old one was cancelled: naked), a take-profit at or past it fills
at once and undoes the add. The market is the signal's price (what a market add fills at).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jtrades.broker.base import (
    Contract,
    OcoRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    SubAccount,
    WorkingOrder,
)
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings, SameDirection, SlType, parse_tp
from jtrades.engine.signal import Action, MarketPosition, Signal

D = Decimal
ACCT = SubAccount(101, "DEMO101")
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)


def working(
    oid: int, side: Side, qty: int, kind: OrderType, *, price: str | None = None,
    stop: str | None = None,
) -> WorkingOrder:  # fmt: skip
    return WorkingOrder(
        oid, 101, 42, "MNQZ6", side, qty, kind, OrderStatus.WORKING,
        price=D(price) if price else None, stop_price=D(stop) if stop else None,
    )  # fmt: skip


def plan(
    sig: Signal, s: RiskSettings, state: AccountState, market: Decimal | None, mult: str = "1"
) -> AccountPlan:
    return plan_account(
        sig, s, D(mult), ACCT, MNQ, state, signal_price=market, cl_ord_prefix="s1-101"
    )


def stops(p: AccountPlan) -> list[OrderRequest]:
    out = []
    for o in p.orders:
        r = o.request
        if isinstance(r, OcoRequest):
            out.append(r.second)
        elif isinstance(r, OrderRequest) and r.order_type in (
            OrderType.STOP,
            OrderType.TRAILING_STOP,
            OrderType.STOP_LIMIT,
        ):
            out.append(r)
    return out


def take_profits(p: AccountPlan) -> list[OrderRequest]:
    out = []
    for o in p.orders:
        r = o.request
        if isinstance(r, OcoRequest):
            out.append(r.first)
        elif (
            isinstance(r, OrderRequest)
            and r.order_type is OrderType.LIMIT
            and r.cl_ord_id is not None
            and "x" in r.cl_ord_id
        ):
            out.append(r)
    return out


def dca(**kw: Any) -> RiskSettings:
    """Settings that add to a held position and re-place its exits (``--dca``)."""
    return RiskSettings(dca=True, same_direction=SameDirection.ADD, **kw)


def test_dca_add_keeps_the_working_stop_when_the_configured_one_is_past_the_market() -> None:
    """Long 1 @ 21500, the entry alert's stop at 21400 still working, market 21480, --sl 20
    ticks: the add averages 21490, whose stop (21485) is above the market. The working stop,
    below it, goes on for the 2-lot instead."""
    s = dca(size=1, sl=D(20), tp=parse_tp("80"))
    state = AccountState(1, D(21500), (working(12, Side.SELL, 1, OrderType.STOP, stop="21400"),))
    market = D(21480)
    p = plan(Signal(Action.BUY, price=market), s, state, market)
    assert p.action is PositionAction.ADD, p.reason
    (sl,) = stops(p)
    assert (sl.side, sl.qty, sl.order_type, sl.stop_price) == (
        Side.SELL,
        2,
        OrderType.STOP,
        D(21400),
    )
    (tp,) = take_profits(p)
    assert (tp.qty, tp.price) == (2, D(21510))
    assert [o.cancel_order_id for o in p.orders if o.kind == "cancel"] == [12]
    assert "21485" in p.reason
    assert "market 21480" in p.reason


def test_reduce_keeps_the_working_stop_when_the_configured_one_is_past_the_market() -> None:
    s = RiskSettings(size=1, sl=D(20))
    state = AccountState(3, D(21500), (working(12, Side.SELL, 3, OrderType.STOP, stop="21400"),))
    market = D(21480)
    sig = Signal(Action.SELL, quantity=1, price=market, market_position=MarketPosition.LONG)
    p = plan(sig, s, state, market)
    assert p.action is PositionAction.REDUCE, p.reason
    (sl,) = stops(p)
    assert (sl.qty, sl.stop_price) == (2, D(21400))


def test_a_short_keeps_its_working_stop_too() -> None:
    s = dca(size=1, sl=D(20))
    state = AccountState(-1, D(21500), (working(12, Side.BUY, 1, OrderType.STOP, stop="21600"),))
    market = D(21520)  # average 21510, its stop 21515 below the market: a buy stop fills at once
    p = plan(Signal(Action.SELL, price=market), s, state, market)
    assert p.action is PositionAction.ADD, p.reason
    (sl,) = stops(p)
    assert (sl.side, sl.qty, sl.stop_price) == (Side.BUY, 2, D(21600))


@pytest.mark.parametrize(
    "working_stop",
    [
        None,  # nothing to fall back on
        "21485",  # a working stop itself at or past the market (its trigger not seen yet)
    ],
)
def test_without_a_working_stop_short_of_the_market_the_plan_is_refused(
    working_stop: str | None,
) -> None:
    """Nothing is cancelled, nothing is sent: the position keeps what it has."""
    s = dca(size=1, sl=D(20))
    held = (working(12, Side.SELL, 1, OrderType.STOP, stop=working_stop),) if working_stop else ()
    market = D(21480)
    p = plan(Signal(Action.BUY, price=market), s, AccountState(1, D(21500), held), market)
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert p.reason.startswith("cannot plan")
    assert "market 21480" in p.reason


def test_a_carried_stop_past_the_market_refuses_the_reduce() -> None:
    """No stop configured: the working one is carried over, and checked like a computed one."""
    state = AccountState(3, D(21500), (working(12, Side.SELL, 3, OrderType.STOP, stop="21490"),))
    sig = Signal(Action.SELL, quantity=1, price=D(21480), market_position=MarketPosition.LONG)
    p = plan(sig, RiskSettings(size=1), state, D(21480))
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert "market 21480" in p.reason


def test_a_take_profit_already_reached_gives_its_contracts_to_the_next_leg() -> None:
    """--tp 20:1,40:1,60 ticks. Long 3 @ 21500, TP1 filled → long 2 with TP2/TP3 working;
    market 21508 and the strategy adds 1: the average 21502.67 puts the rebuilt TP1 at 21507.50,
    below the market. Its contract goes to the next leg; the ladder still sums to 3."""
    s = dca(size=3, tp=parse_tp("20:1,40:1,60"), sl=D(40))
    held = (
        working(11, Side.SELL, 1, OrderType.LIMIT, price="21510"),
        working(12, Side.SELL, 1, OrderType.LIMIT, price="21515"),
        working(13, Side.SELL, 2, OrderType.STOP, stop="21490"),
    )
    market = D(21508)
    p = plan(Signal(Action.BUY, quantity=1, price=market), s, AccountState(2, D(21500), held),
             market)  # fmt: skip
    assert p.action is PositionAction.ADD, p.reason
    legs = [o.request for o in p.orders if isinstance(o.request, OcoRequest)]
    assert [(x.first.qty, x.first.price) for x in legs] == [(2, D("21512.50")), (1, D("21517.50"))]
    assert {x.second.stop_price for x in legs} == {D("21492.75")}
    assert all(x.first.qty == x.second.qty for x in legs)
    assert "21507.50" in p.reason


def test_the_last_leg_already_reached_goes_to_the_one_before() -> None:
    """A ladder need not run outward: a leg past the market goes to the live leg the market
    reaches first, wherever it is in the ladder."""
    s = dca(size=2, tp=parse_tp("60:1,20"), sl=D(40))
    market = D(21508)
    p = plan(Signal(Action.BUY, quantity=1, price=market), s, AccountState(2, D(21500)), market)
    assert p.action is PositionAction.ADD, p.reason
    assert [(t.qty, t.price) for t in take_profits(p)] == [(3, D("21517.50"))]


def test_every_take_profit_reached_refuses_the_plan() -> None:
    s = dca(size=1, tp=parse_tp("20"), sl=D(40))
    market = D(21520)
    p = plan(Signal(Action.BUY, price=market), s, AccountState(1, D(21500)), market)
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert "take-profit" in p.reason
    assert "market 21520" in p.reason


def test_a_reduce_without_a_signal_price_is_planned_as_before() -> None:
    """No market to check against (an alert without a price): priced from the average alone."""
    s = RiskSettings(size=1, sl=D(20))
    state = AccountState(3, D(21500), (working(12, Side.SELL, 3, OrderType.STOP, stop="21400"),))
    sig = Signal(Action.SELL, quantity=1, market_position=MarketPosition.LONG)
    p = plan(sig, s, state, None)
    assert p.action is PositionAction.REDUCE, p.reason
    (sl,) = stops(p)
    assert sl.stop_price == D(21495)


@settings(max_examples=200)
@given(
    pos=st.integers(min_value=1, max_value=8),
    add=st.integers(min_value=1, max_value=4),
    avg_ticks=st.integers(min_value=-40, max_value=40),
    move_ticks=st.integers(min_value=-120, max_value=120),
    tp=st.sampled_from(["", "20", "20:1,40:1,60", "60:1,20", "8:2,30"]),
    sl=st.sampled_from([0, 10, 40]),
    trailing=st.booleans(),
    old_stop_ticks=st.one_of(st.none(), st.integers(min_value=-80, max_value=80)),
    is_long=st.booleans(),
    reduce=st.booleans(),
    mult=st.sampled_from(["0.5", "1", "2"]),
)
def test_no_re_placed_exit_is_at_or_past_the_market(
    pos: int,
    add: int,
    avg_ticks: int,
    move_ticks: int,
    tp: str,
    sl: int,
    trailing: bool,
    old_stop_ticks: int | None,
    is_long: bool,
    reduce: bool,
    mult: str,
) -> None:
    """Whatever the average, the market and the stop still working: every stop a resize plan
    places is short of the market, every take-profit beyond it, on the tick, and the ladder
    covers the position; or nothing is planned at all."""
    tick = MNQ.tick_size
    side = Side.BUY if is_long else Side.SELL
    d = side.sign
    avg = D(21500) + avg_ticks * tick + D("0.083")
    market = D(21500) + move_ticks * tick
    s = dca(
        size=1, add_size=add, tp=parse_tp(tp), sl=D(sl),
        sl_type=SlType.TRAILING if trailing and sl else SlType.FIXED,
    )  # fmt: skip
    held: tuple[WorkingOrder, ...] = ()
    if old_stop_ticks is not None:
        stop = str(D(21500) - d * old_stop_ticks * tick)
        held = (working(9, side.opposite, pos * 2, OrderType.STOP, stop=stop),)
    if reduce:
        target = MarketPosition.LONG if is_long else MarketPosition.SHORT
        sig = Signal(Action(side.opposite.value.lower()), quantity=1, price=market,
                     market_position=target)  # fmt: skip
    else:
        sig = Signal(Action(side.value.lower()), price=market)
    p = plan(sig, s, AccountState(d * (pos * 2), avg, held), market, mult)
    if p.action is PositionAction.IGNORE:
        assert p.orders == ()
        assert p.reason.startswith("cannot plan"), p.reason
        return
    assert p.action in (PositionAction.ADD, PositionAction.REDUCE, PositionAction.CLOSE), p.reason
    for x in stops(p):
        assert x.stop_price is not None
        assert x.stop_price % tick == 0
        assert (market - x.stop_price) * d > 0, (x, market, p.reason)
    tps = take_profits(p)
    for x in tps:
        assert x.price is not None
        assert x.price % tick == 0
        assert (x.price - market) * d > 0, (x, market, p.reason)
    if tps:
        held_after = pos * 2
        for o in p.orders:
            r = o.request
            if isinstance(r, OrderRequest) and r.order_type is OrderType.MARKET:
                held_after += r.qty if r.side is side else -r.qty
        assert sum(x.qty for x in tps) == held_after
