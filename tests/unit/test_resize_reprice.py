"""A DCA add's exits priced again from the broker's average once the add shows
(``resize.reprice_add``): the plan estimates the average with the alert's price as the add's
fill; the market add fills where the market is. Pure: plans made by ``plan_account``.

MNQ: tick 0.25, $2 a point.
"""

from __future__ import annotations

from decimal import Decimal, localcontext

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
from jtrades.engine.exits import CannotPlan
from jtrades.engine.planning import AccountState, PositionAction, plan_account
from jtrades.engine.resize import AddExits, AddPlan, added_fill, reprice_add
from jtrades.engine.risk import RiskSettings, SameDirection, TpUnits, parse_tp
from jtrades.engine.signal import Action, ExitSpec, Signal, Units

D = Decimal
ACCT = SubAccount(101, "DEMO101")
TICK = D("0.25")
MNQ = Contract("MNQZ6", "MNQ", TICK, D("2"), contract_id=42)


def dca(**kw: object) -> RiskSettings:
    return RiskSettings(dca=True, same_direction=SameDirection.ADD, **kw)  # type: ignore[arg-type]


def stop_at(oid: int, side: Side, qty: int, stop: str) -> WorkingOrder:
    return WorkingOrder(
        oid, 101, 42, "MNQZ6", side, qty, OrderType.STOP, OrderStatus.WORKING,
        stop_price=D(stop),
    )  # fmt: skip


def add_exits(
    s: RiskSettings,
    held: int,
    avg: Decimal,
    alert: Decimal,
    working: tuple[WorkingOrder, ...] = (),
    sig: Signal | None = None,
) -> AddExits:
    side = Action.BUY if held > 0 else Action.SELL
    p = plan_account(
        sig or Signal(side, price=alert), s, D(1), ACCT, MNQ, AccountState(held, avg, working),
        signal_price=alert, cl_ord_prefix="jt-7-3",
    )  # fmt: skip
    assert p.action is PositionAction.ADD, p.reason
    assert isinstance(p, AddPlan)
    return p.add_exits


def legs(orders: tuple[object, ...]) -> list[tuple[Decimal | None, Decimal | None, int]]:
    """(take-profit price, stop price, contracts) per exit step sent."""
    out: list[tuple[Decimal | None, Decimal | None, int]] = []
    for o in orders:
        if o is None:
            continue
        r = o.request  # type: ignore[attr-defined]
        if isinstance(r, OcoRequest):
            out.append((r.first.price, r.second.stop_price, r.first.qty))
        elif isinstance(r, OrderRequest) and r.order_type is OrderType.LIMIT:
            out.append((r.price, None, r.qty))
        else:
            assert isinstance(r, OrderRequest)
            out.append((None, r.stop_price, r.qty))
    return out


def test_the_reviewers_case_stop_and_take_profit_from_the_brokers_average() -> None:
    """Long 1 @ 21500, market 21490, alert 21480: planned from 21490 the stop was 21465 ($120
    at risk for --sl's $100) and the take-profit 21492 (under the real 21495: a loss)."""
    a = add_exits(dca(sl=D(100), tp=parse_tp("8")), 1, D(21500), D(21480))
    assert a.estimate == D(21490)
    assert legs(a.exits) == [(D(21492), D(21465), 2)]
    r = reprice_add(a, D(21495))
    assert legs(r.orders) == [(D(21497), D(21470), 2)]
    # step for step: the same step numbers, kinds and clOrdIds as the intents written
    for new, old in zip(r.orders, a.exits, strict=True):
        assert new is not None
        assert (new.step, new.kind) == (old.step, old.kind)
        assert isinstance(new.request, OcoRequest)
        assert isinstance(old.request, OcoRequest)
        assert new.request.first.cl_ord_id == old.request.first.cl_ord_id
        assert new.request.second.cl_ord_id == old.request.second.cl_ord_id
    assert "21497" in r.summary


def test_a_short_too() -> None:
    a = add_exits(dca(sl=D(100), tp=parse_tp("8")), -1, D(21500), D(21520))
    r = reprice_add(a, D(21505))  # the add filled at 21510
    assert legs(r.orders) == [(D(21503), D(21530), 2)]


def test_the_cancels_before_the_exits_keep_their_numbers() -> None:
    """The working stop is cancelled between the add and the exits: the exits' steps (and
    clOrdIds) are the planned ones."""
    held = (stop_at(12, Side.SELL, 1, "21475"),)
    a = add_exits(dca(sl=D(100)), 1, D(21500), D(21480), held)
    assert [p.kind for p in a.prior] == ["order", "cancel"]
    r = reprice_add(a, D(21495))
    (new,) = r.orders
    assert new is not None
    assert new.step == 3
    assert isinstance(new.request, OrderRequest)
    assert new.request.cl_ord_id == "jt-7-3-3x"
    assert (new.request.stop_price, new.request.qty) == (D(21470), 2)


def test_a_stop_is_checked_against_the_adds_fill_not_the_alerts_stale_price() -> None:
    """Long 1 @ 21500, the market at 21498, the alert (its bar's close) 21474. From the
    estimate (21487) the stop is 21462; from the broker's 21499 (the add filled at 21498) it is
    21474: at the alert's price, yet 24 points under the market the add filled at. Sent; the
    alert's price is no market a stop must be short of any more (it left the added contract
    without a stop when it was)."""
    held = (stop_at(12, Side.SELL, 1, "21475"),)
    a = add_exits(dca(sl=D(100)), 1, D(21500), D(21474), held)
    assert legs(a.exits) == [(None, D(21462), 2)]
    assert added_fill(a, D(21499)) == D(21498)
    assert legs(reprice_add(a, D(21499)).orders) == [(None, D(21474), 2)]


def test_a_short_stop_is_checked_against_the_fill_too() -> None:
    """Short 1 @ 21500, the alert 21526, the add filled at 21502 (average 21501): the stop
    21526 is at the alert's price and 24 points over the market."""
    a = add_exits(dca(sl=D(100)), -1, D(21500), D(21526))
    assert legs(reprice_add(a, D(21501)).orders) == [(None, D(21526), 2)]


def test_no_stop_short_of_the_fill_is_refused() -> None:
    """Long 1 @ 21500 with its stop 21475, the alert 21474; the add filled at 21450 (average
    21475): the stop from it, 21450, is at the fill, and the working 21475 is past it."""
    held = (stop_at(12, Side.SELL, 1, "21475"),)
    a = add_exits(dca(sl=D(100)), 1, D(21500), D(21474), held)
    assert added_fill(a, D(21475)) == D(21450)
    with pytest.raises(CannotPlan, match="market 21450"):
        reprice_add(a, D(21475))


def test_the_working_stop_goes_on_when_only_it_is_short_of_the_fill() -> None:
    """Long 1 @ 21500 with its stop 21440, the alert 21490 (planned stop 21470). The add filled
    at 21450 (average 21475): the stop from it, 21450, is at the fill; the working 21440 is
    short of it and goes on for the whole position."""
    held = (stop_at(12, Side.SELL, 1, "21440"),)
    a = add_exits(dca(sl=D(100)), 1, D(21500), D(21490), held)
    assert legs(a.exits) == [(None, D(21470), 2)]
    r = reprice_add(a, D(21475))
    assert legs(r.orders) == [(None, D(21440), 2)]
    assert "working stop 21440 kept" in r.summary


def test_where_the_add_filled_is_a_market_too() -> None:
    """Short 1 @ 21500, --tp 8 ticks, alert 21510: from the estimate 21505 the take-profit is
    21503. Filled at 21502 (average 21501) it is 21499, short of both the alert and the fill.
    Filled at 21480 (average 21490) it is 21488: above the fill, where a buy limit fills at
    once, though still under the alert's price; with no other leg, refused."""
    a = add_exits(dca(tp=parse_tp("8")), -1, D(21500), D(21510))
    assert legs(a.exits) == [(D(21503), None, 2)]
    assert added_fill(a, D(21501)) == D(21502)
    assert legs(reprice_add(a, D(21501)).orders) == [(D(21499), None, 2)]
    assert added_fill(a, D(21490)) == D(21480)
    with pytest.raises(CannotPlan, match=r"every take-profit .* market 21480"):
        reprice_add(a, D(21490))


def test_a_leg_the_market_passed_at_the_new_prices_hands_its_contracts_on() -> None:
    """Long 1 @ 21500, --tp 8:1,40 (2 and 10 points), alert 21502: from the estimate 21501
    the legs are 21503 and 21511. The add filled at 21496: average 21498, legs 21500 (under
    the alert's 21502: reached) and 21508, which takes both contracts; the first leg's step
    is not sent."""
    a = add_exits(dca(sl=D(100), tp=parse_tp("8:1,40")), 1, D(21500), D(21502))
    assert legs(a.exits) == [(D(21503), D(21476), 1), (D(21511), D(21476), 1)]
    r = reprice_add(a, D(21498))
    assert legs(r.orders) == [(D(21508), D(21473), 2)]
    assert r.orders[1] is None
    first = r.orders[0]
    assert first is not None
    assert first.step == a.exits[0].step
    assert "already reached" in r.summary


def test_a_price_given_take_profit_is_not_moved() -> None:
    """A per-alert take-profit given as a price is absolute: the average moves, it stays."""
    sig = Signal(Action.BUY, price=D(21480), take_profit=(ExitSpec(D(21530), Units.PRICE),))
    a = add_exits(dca(sl=D(100)), 1, D(21500), D(21480), sig=sig)
    r = reprice_add(a, D(21495))
    assert legs(r.orders) == [(D(21530), D(21470), 2)]


def test_a_price_given_take_profit_under_the_real_average_is_refused() -> None:
    sig = Signal(Action.BUY, price=D(21480), take_profit=(ExitSpec(D(21492), Units.PRICE),))
    a = add_exits(dca(sl=D(100)), 1, D(21500), D(21480), sig=sig)
    with pytest.raises(CannotPlan, match="not above the average"):
        reprice_add(a, D(21495))


def test_percent_levels_are_percent_of_the_real_average() -> None:
    s = dca(tp=parse_tp("0.1"), tp_units=TpUnits.PERCENT)
    a = add_exits(s, 1, D(20000), D(19000))  # estimate 19500: 19.5 points
    (planned,) = legs(a.exits)
    assert planned[0] == D("19519.5")
    r = reprice_add(a, D(20000))  # filled at 20000: 20 points from 20000
    assert legs(r.orders) == [(D(20020), None, 2)]


def test_the_estimate_as_the_average_gives_the_plan_back() -> None:
    """What the plan said is what re-pricing says when the fill is the alert's price (the
    paper broker's case)."""
    held = (stop_at(12, Side.SELL, 1, "21400"),)
    a = add_exits(dca(sl=D(100), tp=parse_tp("8:1,40")), 3, D("21500.25"), D(21480), held)
    assert reprice_add(a, a.estimate).orders == a.exits


@st.composite
def _cases(draw: st.DrawFn) -> tuple[int, Decimal, int, Decimal, Decimal, int, int]:
    sign = draw(st.sampled_from((1, -1)))
    held = draw(st.integers(1, 5))
    held_avg = D(21500) + draw(st.integers(-400, 400)) * TICK
    added = draw(st.integers(1, 5))
    alert = D(21500) + draw(st.integers(-200, 200)) * TICK
    fill = alert + draw(st.integers(-80, 80)) * TICK
    sl = draw(st.integers(0, 200))
    tp = draw(st.integers(0, 120))
    return sign * held, held_avg, added, alert, fill, sl, tp


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_every_exit_is_its_offset_from_the_real_average_and_safe(
    case: tuple[int, Decimal, int, Decimal, Decimal, int, int],
) -> None:
    """Whatever the fill: each stop is --sl from the broker's average at most (rounded toward
    it, less than a tick nearer), each take-profit --tp at most, the ladder sums to the
    position, no take-profit is at or past the alert's price or the fill, and no stop at or
    past the fill (the market: the alert's price may be stale): or it is refused."""
    held, held_avg, added, alert, fill, sl, tp = case
    s = dca(add_size=added, sl=D(sl), tp=parse_tp(str(tp)) if tp else ())
    if not sl and not tp:
        return
    side = Action.BUY if held > 0 else Action.SELL
    try:
        p = plan_account(
            Signal(side, price=alert), s, D(1), ACCT, MNQ, AccountState(held, held_avg),
            signal_price=alert, cl_ord_prefix="jt-1-1",
        )  # fmt: skip
    except CannotPlan:
        return
    if not isinstance(p, AddPlan):
        return  # refused at planning: nothing to re-price
    a = p.add_exits
    total = abs(held) + added
    with localcontext() as ctx:
        ctx.prec = 60
        avg = (held_avg * abs(held) + fill * added) / total
    try:
        r = reprice_add(a, avg)
    except CannotPlan:
        return
    d = 1 if held > 0 else -1
    sent = legs(r.orders)
    assert len(r.orders) == len(a.exits)
    if tp:
        assert sum(q for _, _, q in sent) == total
    for tp_price, stop_price, _ in sent:
        if tp_price is not None:
            off = (tp_price - avg) * d
            assert D(tp) * TICK - TICK < off <= D(tp) * TICK
            for m in (alert, fill):
                assert (tp_price - m) * d > 0
        if stop_price is not None:
            off = (avg - stop_price) * d
            assert D(sl) * TICK - TICK < off <= D(sl) * TICK
            assert (fill - stop_price) * d > 0


@settings(max_examples=300, deadline=None)
@given(_cases())
def test_a_stop_is_refused_only_at_or_past_the_fill(
    case: tuple[int, Decimal, int, Decimal, Decimal, int, int],
) -> None:
    """With only a stop (none working): re-pricing refuses it exactly when the stop --sl from
    the broker's average is not short of where the add filled, wherever the alert's price is;
    else the one stop for the whole position goes at that level."""
    held, held_avg, added, alert, fill, sl, _ = case
    if not sl:
        return
    s = dca(add_size=added, sl=D(sl))
    side = Action.BUY if held > 0 else Action.SELL
    try:
        p = plan_account(
            Signal(side, price=alert), s, D(1), ACCT, MNQ, AccountState(held, held_avg),
            signal_price=alert, cl_ord_prefix="jt-1-1",
        )  # fmt: skip
    except CannotPlan:
        return
    if not isinstance(p, AddPlan):
        return
    a = p.add_exits
    total = abs(held) + added
    with localcontext() as ctx:
        ctx.prec = 60
        avg = (held_avg * abs(held) + fill * added) / total
    assert added_fill(a, avg) == fill
    d = 1 if held > 0 else -1
    # the stop's level from the average, rounded toward it (as ``as_price``): ticks away
    level = avg - d * D(sl) * TICK
    ticks = (level / TICK).to_integral_value(rounding="ROUND_CEILING" if d > 0 else "ROUND_FLOOR")
    expected = ticks * TICK
    if (fill - expected) * d > 0:
        assert legs(reprice_add(a, avg).orders) == [(None, expected, total)]
    else:
        with pytest.raises(CannotPlan, match="at or past the market"):
            reprice_add(a, avg)
