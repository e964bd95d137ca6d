"""Order planning: every cell of DESIGN.md's position table, and the cases that burned the old system."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

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
    StrategyRequest,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.engine.parsing import parse_payload
from jtrades.engine.planning import (
    AccountPlan,
    AccountState,
    PlannedOrder,
    PositionAction,
    plan_account,
)
from jtrades.engine.risk import (
    Direction,
    RiskSettings,
    SameDirection,
    SlType,
    SlUnits,
    TpUnits,
    parse_tp,
)
from jtrades.engine.signal import Action, ExitSpec, MarketPosition, Signal, Units

D = Decimal
ACCT = SubAccount(101, "DEMO101")
OTHER = SubAccount(202, "DEMO202")
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)
GC = Contract("GCZ6", "GC", D("0.1"), D("100"), contract_id=7)
MGC = Contract("MGCZ6", "MGC", D("0.1"), D("10"), contract_id=8)
ZB = Contract("ZBZ6", "ZB", D("0.03125"), D("1000"), contract_id=9)
PRICE = D("21500.25")

FLAT = AccountState(0, None)
LADDER = RiskSettings(size=3, tp=parse_tp("20:1,40:1,60"), sl=D(40))

BUY = Signal(Action.BUY, price=PRICE)
SELL = Signal(Action.SELL, price=PRICE)
CLOSE = Signal(Action.CLOSE)


def plan(
    signal: Signal,
    s: RiskSettings = LADDER,
    state: AccountState = FLAT,
    *,
    mult: str = "1",
    contract: Contract = MNQ,
    price: Decimal | None = PRICE,
    prefix: str = "s1-101",
    refused: str | None = None,
) -> AccountPlan:
    return plan_account(
        signal,
        s,
        D(mult),
        ACCT,
        contract,
        state,
        signal_price=price,
        cl_ord_prefix=prefix,
        entry_refused=refused,
    )


def kinds(p: AccountPlan) -> list[str]:
    return [o.kind for o in p.orders]


def strategy(o: PlannedOrder) -> StrategyRequest:
    assert isinstance(o.request, StrategyRequest)
    return o.request


def order(o: PlannedOrder) -> OrderRequest:
    assert isinstance(o.request, OrderRequest)
    return o.request


def oco(o: PlannedOrder) -> OcoRequest:
    assert isinstance(o.request, OcoRequest)
    return o.request


def long(n: int, avg: str = "21500", working: tuple[WorkingOrder, ...] = ()) -> AccountState:
    return AccountState(n, D(avg), working)


def short(n: int, avg: str = "21500", working: tuple[WorkingOrder, ...] = ()) -> AccountState:
    return AccountState(-n, D(avg), working)


def working(
    oid: int,
    side: Side,
    qty: int,
    kind: OrderType,
    *,
    price: str | None = None,
    stop: str | None = None,
    account: SubAccount = ACCT,
    contract: Contract = MNQ,
) -> WorkingOrder:
    return WorkingOrder(
        oid,
        account.account_id,
        contract.contract_id or 0,
        contract.symbol,
        side,
        qty,
        kind,
        OrderStatus.WORKING,
        price=D(price) if price else None,
        stop_price=D(stop) if stop else None,
    )


def ours(order: WorkingOrder, signal: int = 90) -> WorkingOrder:
    """``order`` as jtrades placed it (an entry's clOrdId): an order placed by hand is left."""
    return dataclasses.replace(order, cl_ord_id=f"jt-{signal}-{order.account_id}-1")


# --- flat ---------------------------------------------------------------------------------


def test_a_closed_long_s_exits_are_cancelled_not_counted_when_opening_short() -> None:
    """Flat after a long closed by hand: its sell take-profit and stop (brackets of a filled
    entry) still work. Opening short, they were counted as working short entries (refused at
    --max-contracts 1) and left to add to the short; they are cancelled like the other side's."""
    tp = dataclasses.replace(working(11, Side.SELL, 1, OrderType.LIMIT, price="21505"), parent_id=1)
    sl = dataclasses.replace(working(12, Side.SELL, 1, OrderType.STOP, stop="21490"), parent_id=1)
    entry = ours(working(13, Side.SELL, 1, OrderType.LIMIT, price="21520"))  # resting short
    s = RiskSettings(size=1, max_contracts=2)
    p = plan(SELL, s, AccountState(0, None, (tp, sl, entry)))
    assert p.action is PositionAction.OPEN
    # the exits of no position, and the short entry still resting (replaced by this one)
    assert [o.cancel_order_id for o in p.orders if o.kind == "cancel"] == [11, 12, 13]
    assert "replaces 1 resting short entry" in p.reason
    capped = plan(SELL, dataclasses.replace(s, max_contracts=1), AccountState(0, None, (tp, sl)))
    assert capped.action is PositionAction.OPEN


def test_flat_buy_opens_long_with_ladder_and_stop() -> None:
    p = plan(BUY)
    assert p.action is PositionAction.OPEN
    assert kinds(p) == ["strategy"]
    req = strategy(p.orders[0])
    assert (req.entry.side, req.entry.qty, req.entry.order_type) == (Side.BUY, 3, OrderType.MARKET)
    assert (req.entry.account, req.entry.symbol, req.entry.cl_ord_id) == (ACCT, "MNQZ6", "s1-101-1")
    assert [(b.qty, b.profit_target, b.stop_loss) for b in req.brackets] == [
        (1, D(5), D(-10)),
        (1, D(10), D(-10)),
        (1, D(15), D(-10)),
    ]
    assert not any(b.trailing_stop for b in req.brackets)


def test_flat_sell_opens_short_with_signed_offsets() -> None:
    p = plan(SELL)
    assert p.action is PositionAction.OPEN
    req = strategy(p.orders[0])
    assert req.entry.side is Side.SELL
    assert [(b.profit_target, b.stop_loss) for b in req.brackets] == [
        (D(-5), D(10)),
        (D(-10), D(10)),
        (D(-15), D(10)),
    ]


def test_no_tp_and_no_sl_is_a_plain_market_order() -> None:
    p = plan(BUY, RiskSettings(size=2))
    assert kinds(p) == ["order"]
    o = order(p.orders[0])
    assert (o.side, o.qty, o.order_type, o.cl_ord_id) == (Side.BUY, 2, OrderType.MARKET, "s1-101-1")


def test_sl_zero_means_no_stop() -> None:
    p = plan(BUY, RiskSettings(size=2, tp=parse_tp("8")))
    (b,) = strategy(p.orders[0]).brackets
    assert (b.qty, b.profit_target, b.stop_loss) == (2, D(2), None)


def test_a_trail_step_without_a_trigger_trails_in_those_steps_from_the_first_tick() -> None:
    """Tradovate's autoTrail takes trigger and freq together: a step alone (PickMyTrade's
    ``trail_trigger`` 0 beside ``trail_freq`` 5, or ``--trail-freq`` alone) was dropped, and the
    stop followed every tick. Its trigger is one tick; a trigger alone steps by one tick."""
    trailing = RiskSettings(size=1, sl=D(20), sl_type=SlType.TRAILING, sl_units=SlUnits.POINTS)
    step_only = dataclasses.replace(trailing, trail_freq=D(5))
    (b,) = strategy(plan(BUY, step_only).orders[0]).brackets
    assert (b.trailing_stop, b.trail_trigger, b.trail_freq) == (True, D("0.25"), D(5))
    trigger_only = dataclasses.replace(trailing, trail_trigger=D(8))
    (b,) = strategy(plan(BUY, trigger_only).orders[0]).brackets
    assert (b.trail_trigger, b.trail_freq) == (D(8), D("0.25"))
    alert = Signal(
        Action.BUY,
        price=PRICE,
        stop_loss=ExitSpec(D(20), Units.POINTS, trailing=True, trail_freq=D(5)),
    )
    (b,) = strategy(plan(alert, RiskSettings(size=1)).orders[0]).brackets
    assert (b.trailing_stop, b.trail_trigger, b.trail_freq) == (True, D("0.25"), D(5))
    neither = strategy(plan(BUY, trailing).orders[0]).brackets[0]
    assert (neither.trail_trigger, neither.trail_freq) == (None, None)


def test_a_plain_stop_asked_by_the_alert_is_the_configured_distance_not_trailing() -> None:
    """TradersPost ``stopLoss: {"type": "stop"}`` chooses the leg's type: the recorder's
    trailing stop became a trailing leg, where ``{"type": "trailing_stop"}`` alone is refused."""
    trailing = RiskSettings(size=1, sl=D(30), sl_type=SlType.TRAILING, sl_units=SlUnits.POINTS)
    asked = dataclasses.replace(BUY, plain_stop=True)
    (b,) = strategy(plan(asked, trailing).orders[0]).brackets
    assert (b.trailing_stop, b.stop_loss) == (False, D(-30))
    (b,) = strategy(plan(BUY, trailing).orders[0]).brackets
    assert (b.trailing_stop, b.stop_loss) == (True, D(-30))
    assert kinds(plan(asked, RiskSettings(size=1))) == ["order"]  # no stop configured: none


def test_stop_without_tp_is_one_bracket_for_the_whole_position() -> None:
    p = plan(SELL, RiskSettings(size=4, sl=D(12), sl_units=SlUnits.POINTS))
    (b,) = strategy(p.orders[0]).brackets
    assert (b.qty, b.profit_target, b.stop_loss) == (4, None, D(12))


def test_trailing_stop_and_breakeven() -> None:
    s = dataclasses.replace(
        LADDER,
        sl_type=SlType.TRAILING,
        trail_trigger=D(8),
        trail_freq=D(2),
        breakeven_trigger=D(16),
        breakeven_offset=D(2),
    )
    for b in strategy(plan(BUY, s).orders[0]).brackets:
        assert b.trailing_stop
        assert (b.trail_trigger, b.trail_freq, b.breakeven) == (D(2), D("0.5"), D(4))
        assert b.breakeven_offset == D("0.5")  # 2 ticks of MNQ, in points
        assert b.stop_loss == D(-10)
    no_offset = dataclasses.replace(s, breakeven_offset=D(0))
    for b in strategy(plan(BUY, no_offset).orders[0]).brackets:
        assert b.breakeven_offset == 0


def test_zero_quantity_means_the_configured_size() -> None:
    p = plan(dataclasses.replace(BUY, quantity=0))
    assert strategy(p.orders[0]).entry.qty == 3
    p = plan(dataclasses.replace(BUY, quantity=5))
    req = strategy(p.orders[0])
    assert req.entry.qty == 5
    assert [b.qty for b in req.brackets] == [1, 1, 3]


def test_multiplier_scales_the_entry_and_the_trim_legs() -> None:
    req = strategy(plan(BUY, mult="3").orders[0])
    assert req.entry.qty == 9
    assert [b.qty for b in req.brackets] == [3, 3, 3]
    half = strategy(plan(BUY, mult="0.5").orders[0])
    assert half.entry.qty == 1
    assert [(b.qty, b.profit_target) for b in half.brackets] == [(1, D(15))]  # trims dropped


def test_max_contracts_caps_the_entry() -> None:
    s = dataclasses.replace(LADDER, max_contracts=4)
    req = strategy(plan(BUY, s, mult="3").orders[0])
    assert req.entry.qty == 4
    assert sum(b.qty for b in req.brackets) == 4


def test_gc_and_mgc_use_their_own_contract() -> None:
    s = RiskSettings(size=1, tp=parse_tp("20"), sl=D(200), sl_units=SlUnits.DOLLARS)
    gc = strategy(plan(BUY, s, contract=GC, price=D("2650.3")).orders[0])
    mgc = strategy(plan(BUY, s, contract=MGC, price=D("2650.3")).orders[0])
    assert (gc.entry.symbol, mgc.entry.symbol) == ("GCZ6", "MGCZ6")
    assert gc.brackets[0].profit_target == mgc.brackets[0].profit_target == D(2)  # 20 × 0.1
    assert gc.brackets[0].stop_loss == D(-2)  # $200 / $100 a point
    assert mgc.brackets[0].stop_loss == D(-20)  # $200 / $10 a point


def test_percent_targets_use_the_signal_price() -> None:
    s = RiskSettings(size=1, tp=parse_tp("1"), tp_units=TpUnits.PERCENT)
    (b,) = strategy(plan(BUY, s).orders[0]).brackets
    assert b.profit_target == D("215.00")  # 1 % of 21500.25 = 215.0025, toward the entry
    p = plan(BUY, s, price=None)
    assert p.action is PositionAction.IGNORE
    assert p.orders == ()
    assert p.reason.startswith("cannot plan")
    assert "percent" in p.reason


def test_per_alert_exits_override_the_settings() -> None:
    sig = dataclasses.replace(
        BUY,
        take_profit=(ExitSpec(D(30), Units.POINTS),),
        stop_loss=ExitSpec(D("21490.1"), Units.PRICE),
    )
    (b,) = strategy(plan(sig).orders[0]).brackets
    assert (b.qty, b.profit_target, b.stop_loss) == (3, D(30), D("-10.00"))  # 10.15 → 10.00


def test_per_alert_multiple_targets_split_the_position() -> None:
    sig = dataclasses.replace(
        BUY, take_profit=(ExitSpec(D(10), Units.TICKS), ExitSpec(D(20), Units.TICKS))
    )
    bs = strategy(plan(sig, mult="1").orders[0]).brackets
    assert [(b.qty, b.profit_target) for b in bs] == [(1, D("2.5")), (2, D(5))]


def test_per_alert_trailing_stop_and_zero_stop() -> None:
    trailing = dataclasses.replace(BUY, stop_loss=ExitSpec(D(20), Units.TICKS, trailing=True))
    assert all(b.trailing_stop for b in strategy(plan(trailing).orders[0]).brackets)
    no_stop = dataclasses.replace(BUY, stop_loss=ExitSpec(D(0), Units.TICKS))
    assert all(b.stop_loss is None for b in strategy(plan(no_stop).orders[0]).brackets)


def test_a_price_level_on_the_wrong_side_is_refused() -> None:
    sig = dataclasses.replace(BUY, stop_loss=ExitSpec(D("21600"), Units.PRICE))
    p = plan(sig)
    assert p.action is PositionAction.IGNORE
    assert "below" in p.reason
    assert plan(sig, price=None).reason.startswith("cannot plan")


def test_limit_and_stop_entries_round_in_the_traders_favour() -> None:
    lim = dataclasses.replace(BUY, order_type="limit", limit_price=D("21500.40"))
    e = strategy(plan(lim).orders[0]).entry
    assert (e.order_type, e.price) == (OrderType.LIMIT, D("21500.25"))
    lim_sell = dataclasses.replace(SELL, order_type="limit", limit_price=D("21500.40"))
    assert strategy(plan(lim_sell).orders[0]).entry.price == D("21500.50")
    stp = dataclasses.replace(BUY, order_type="stop", stop_price=D("21500.40"))
    e = strategy(plan(stp).orders[0]).entry
    assert (e.order_type, e.stop_price) == (OrderType.STOP, D("21500.50"))


def test_direction_forbids_opening_that_side() -> None:
    p = plan(SELL, dataclasses.replace(LADDER, direction=Direction.LONG))
    assert p.action is PositionAction.IGNORE
    assert p.orders == ()
    assert p.reason.startswith("direction")


def test_a_side_the_direction_forbids_when_flat_still_cancels_the_other_sides_orders() -> None:
    """A sell the planner refuses on a long-only trader (no position information reached the
    filter): the strategy went short, so a buy limit still resting would open a long it left."""
    resting = working(11, Side.BUY, 1, OrderType.LIMIT, price="21400")
    p = plan(
        SELL,
        dataclasses.replace(LADDER, direction=Direction.LONG),
        AccountState(0, None, (resting,)),
    )
    assert p.action is PositionAction.CANCEL
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [("cancel", 11)]
    assert p.reason.startswith("direction")


def test_inverse_swaps_before_the_table() -> None:
    p = plan(BUY, dataclasses.replace(LADDER, inverse=True))
    assert p.action is PositionAction.OPEN
    assert strategy(p.orders[0]).entry.side is Side.SELL
    p = plan(BUY, dataclasses.replace(LADDER, inverse=True, direction=Direction.LONG))
    assert p.action is PositionAction.IGNORE


# --- close -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sig",
    [
        CLOSE,
        Signal(Action.SELL, market_position=MarketPosition.FLAT),
        Signal(Action.BUY, market_position=MarketPosition.FLAT),
    ],
)
def test_close(sig: Signal) -> None:
    p = plan(sig)
    assert (p.action, p.orders, p.reason) == (PositionAction.NOTHING, (), "already flat")
    p = plan(sig, state=long(3))
    assert p.action is PositionAction.CLOSE
    assert kinds(p) == ["liquidate"]
    liq = order(p.orders[0])
    assert (liq.side, liq.qty, liq.account, liq.symbol) == (Side.SELL, 3, ACCT, "MNQZ6")
    p = plan(sig, state=short(2))
    assert p.action is PositionAction.CLOSE
    assert (order(p.orders[0]).side, order(p.orders[0]).qty) == (Side.BUY, 2)


def test_close_ignores_entry_settings() -> None:
    s = dataclasses.replace(LADDER, direction=Direction.SHORT, inverse=True)
    assert plan(CLOSE, s, long(1)).action is PositionAction.CLOSE


# --- same direction ------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "state"), [(BUY, long(3)), (SELL, short(3))])
def test_same_direction_ignore(sig: Signal, state: AccountState) -> None:
    p = plan(sig, LADDER, state)
    assert p.action is PositionAction.IGNORE
    assert p.orders == ()
    assert "already" in p.reason


@pytest.mark.parametrize(("sig", "state"), [(BUY, long(3)), (SELL, short(3))])
def test_same_direction_reenter_closes_and_opens_fresh(sig: Signal, state: AccountState) -> None:
    s = dataclasses.replace(LADDER, same_direction=SameDirection.REENTER)
    p = plan(sig, s, state)
    assert p.action is PositionAction.REENTER
    assert kinds(p) == ["liquidate", "strategy"]
    assert order(p.orders[0]).qty == 3
    assert order(p.orders[0]).side is not strategy(p.orders[1]).entry.side
    assert strategy(p.orders[1]).entry.cl_ord_id == "s1-101-2"


DCA = dataclasses.replace(LADDER, same_direction=SameDirection.ADD, dca=True, add_size=1)


def test_dca_add_re_places_exits_for_the_averaged_position() -> None:
    tp = working(11, Side.SELL, 3, OrderType.LIMIT, price="21505")
    sl = working(12, Side.SELL, 3, OrderType.STOP, stop="21490")
    foreign = working(13, Side.SELL, 3, OrderType.LIMIT, price="21505", account=OTHER)
    other_contract = working(14, Side.SELL, 1, OrderType.LIMIT, price="2700", contract=GC)
    state = long(3, "21500", (tp, sl, foreign, other_contract))
    p = plan(BUY, DCA, state, price=D("21490.5"))
    assert p.action is PositionAction.ADD
    assert kinds(p) == ["order", "cancel", "cancel", "oco", "oco", "oco"]
    add = order(p.orders[0])
    assert (add.side, add.qty, add.order_type) == (Side.BUY, 1, OrderType.MARKET)
    assert [o.cancel_order_id for o in p.orders[1:3]] == [11, 12]  # never 13 or 14
    # average = (21500×3 + 21490.5×1) / 4 = 21497.625, off the tick
    legs = [oco(o) for o in p.orders[3:]]
    assert [(x.first.qty, x.first.price) for x in legs] == [
        (1, D("21502.50")),  # 21502.625 rounded toward the average
        (1, D("21507.50")),
        (2, D("21512.50")),
    ]
    assert all(x.second.stop_price == D("21487.75") for x in legs)  # 21487.625 → toward it
    assert all(x.second.qty == x.first.qty for x in legs)
    assert sum(x.first.qty for x in legs) == 4
    for x in legs:
        assert (x.first.side, x.first.order_type, x.first.time_in_force) == (
            Side.SELL,
            OrderType.LIMIT,
            TimeInForce.GTC,
        )
        assert (x.second.side, x.second.order_type) == (Side.SELL, OrderType.STOP)
    assert "21497.625" in p.reason


def test_dca_short_with_a_multiplier_rounds_toward_the_average() -> None:
    p = plan(SELL, DCA, short(3, "21500"), mult="2", price=D("21510.1"))
    assert p.action is PositionAction.ADD
    assert order(p.orders[0]).qty == 2
    legs = [oco(o) for o in p.orders[1:]]
    # average = (21500×3 + 21510.1×2) / 5 = 21504.04
    assert [x.first.price for x in legs] == [D("21499.25"), D("21494.25"), D("21489.25")]
    assert [x.first.qty for x in legs] == [2, 2, 1]  # trims scaled by the multiplier
    assert {x.second.stop_price for x in legs} == {D("21514.00")}  # 21514.04 → toward it
    assert all(x.first.side is Side.BUY for x in legs)


def test_dca_without_a_stop_places_plain_limits() -> None:
    s = dataclasses.replace(DCA, sl=D(0))
    p = plan(BUY, s, long(1, "100.1"), contract=ZB, price=D("100.3"))
    assert kinds(p) == ["order", "order", "order"]  # the add, then two legs for 2 contracts
    # average 100.2, 20 ticks of 1/32 = 0.625 → 100.825 rounds down to 100.8125
    tps = [order(o) for o in p.orders[1:]]
    assert [(t.order_type, t.qty, t.price) for t in tps] == [
        (OrderType.LIMIT, 1, D("100.81250")),
        (OrderType.LIMIT, 1, D("101.43750")),
    ]


def test_dca_needs_the_signal_price() -> None:
    p = plan(BUY, DCA, long(3), price=None)
    assert p.action is PositionAction.IGNORE
    assert p.orders == ()
    assert p.reason.startswith("cannot plan")


def test_add_without_dca_is_ignored_when_the_position_has_exits() -> None:
    s = dataclasses.replace(DCA, dca=False)
    p = plan(BUY, s, long(3))
    assert p.action is PositionAction.IGNORE
    assert "--dca" in p.reason
    bare = RiskSettings(same_direction=SameDirection.ADD, add_size=2)
    p = plan(BUY, bare, long(1))
    assert p.action is PositionAction.ADD
    assert kinds(p) == ["order"]
    assert order(p.orders[0]).qty == 2


def test_add_respects_max_contracts_for_the_whole_position() -> None:
    s = dataclasses.replace(DCA, add_size=3, max_contracts=5)
    p = plan(BUY, s, long(4))
    assert order(p.orders[0]).qty == 1
    assert sum(oco(o).first.qty for o in p.orders if o.kind == "oco") == 5
    p = plan(BUY, s, long(5))
    assert p.action is PositionAction.IGNORE
    assert "max-contracts" in p.reason


def test_a_flat_entry_replaces_the_entries_still_working_and_is_capped_alone() -> None:
    """A limit entry not filled yet, flat: the next entry of its side replaces it (a strategy
    moving its limit entry sends the alert again; TradersPost cancels the open orders before
    an entry with no position), so the cap sizes the new entry alone. Each one left resting
    made a --size 1 follower long 3 once the market fell through them."""
    s = dataclasses.replace(LADDER, size=3, max_contracts=5)
    pending = (ours(working(1, Side.BUY, 3, OrderType.LIMIT, price="21490")),)
    p = plan(BUY, s, AccountState(0, None, pending))
    assert p.action is PositionAction.OPEN
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [("cancel", 1), ("strategy", None)]
    assert strategy(p.orders[1]).entry.qty == 3
    assert "replaces 1 resting long entry" in p.reason
    full = (ours(working(1, Side.BUY, 5, OrderType.LIMIT, price="21490")),)
    p = plan(BUY, dataclasses.replace(s, size=7), AccountState(0, None, full))
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [("cancel", 1), ("strategy", None)]
    assert strategy(p.orders[1]).entry.qty == 5  # capped, the replaced entry not counted
    # a sell entry working, or another sub-account's buy, is not on this side of this account
    others = (
        working(2, Side.SELL, 5, OrderType.LIMIT, price="21510"),
        working(3, Side.BUY, 5, OrderType.LIMIT, price="21490", account=OTHER),
    )
    p = plan(BUY, s, AccountState(0, None, others))
    assert strategy(p.orders[-1]).entry.qty == 3
    assert [o.cancel_order_id for o in p.orders[:-1]] == [2]  # the other side's, cancelled
    # without a cap, nothing is counted
    uncapped = dataclasses.replace(s, max_contracts=None)
    assert strategy(plan(BUY, uncapped, AccountState(0, None, full)).orders[-1]).entry.qty == 3
    # an entry placed by hand (not our clOrdId) is not ours to replace: it stays, and counts
    by_hand = (working(1, Side.BUY, 3, OrderType.LIMIT, price="21490"),)
    p = plan(BUY, s, AccountState(0, None, by_hand))
    assert [o.kind for o in p.orders] == ["strategy"]
    assert strategy(p.orders[0]).entry.qty == 2  # 3 working by hand + 2 within --max-contracts 5


def _resting_buy_with_brackets(qty: int) -> tuple[WorkingOrder, ...]:
    """A buy limit entry not filled yet, its sell take-profit and stop suspended under it."""
    entry = working(11, Side.BUY, qty, OrderType.LIMIT, price="21400")
    tp = working(12, Side.SELL, qty, OrderType.LIMIT, price="21450")
    sl = working(13, Side.SELL, qty, OrderType.STOP, stop="21350")
    held = (dataclasses.replace(o, status=OrderStatus.SUSPENDED, parent_id=11) for o in (tp, sl))
    return (entry, *held)


@pytest.mark.parametrize("cap", [2, 5])
def test_suspended_brackets_of_the_other_side_are_not_entries_under_the_cap(cap: int) -> None:
    """Flat with a buy limit resting and its sell brackets suspended, the strategy goes short:
    the brackets exit what the buy would add and go with it when it is cancelled. Counted as
    short entries working, they refused the sell at a cap of 2 (leaving the buy limit working
    to open a long later) and shrank it at 5 (short 1 where the strategy asked for 2)."""
    s = dataclasses.replace(LADDER, size=2, tp=(), max_contracts=cap)
    p = plan(SELL, s, AccountState(0, None, _resting_buy_with_brackets(2)))
    assert p.action is PositionAction.OPEN, p.reason
    assert [o.cancel_order_id for o in p.orders[:-1]] == [11]
    assert strategy(p.orders[-1]).entry.qty == 2


def test_an_add_does_not_count_the_other_sides_suspended_brackets() -> None:
    """Long 2 with a sell limit entry resting (a reversal not filled) and its buy brackets
    suspended: they exit what the sell would open, they do not add to the long."""
    s = dataclasses.replace(DCA, add_size=2, max_contracts=4)
    sell = working(21, Side.SELL, 2, OrderType.LIMIT, price="21600")
    brackets = tuple(
        dataclasses.replace(o, status=OrderStatus.SUSPENDED, parent_id=21)
        for o in (
            working(22, Side.BUY, 2, OrderType.LIMIT, price="21550"),
            working(23, Side.BUY, 2, OrderType.STOP, stop="21650"),
        )
    )
    p = plan(BUY, s, long(2, working=(sell, *brackets)))
    assert p.action is PositionAction.ADD, p.reason
    assert order(p.orders[0]).qty == 2


def test_an_add_counts_working_adds_but_not_the_exits() -> None:
    s = dataclasses.replace(DCA, add_size=3, max_contracts=5)
    orders = (
        working(1, Side.BUY, 1, OrderType.LIMIT, price="21480"),  # a DCA add not filled yet
        working(2, Side.SELL, 2, OrderType.LIMIT, price="21520"),  # the take-profit
        working(3, Side.SELL, 2, OrderType.STOP, stop="21460"),  # the stop
    )
    p = plan(BUY, s, long(2, working=orders))
    assert p.action is PositionAction.ADD
    assert order(p.orders[0]).qty == 2
    p = plan(BUY, s, long(4, working=orders))
    assert p.action is PositionAction.IGNORE
    assert "1 working" in p.reason


@settings(max_examples=300)
@given(
    pos=st.integers(min_value=-8, max_value=8),
    pending=st.integers(min_value=0, max_value=8),
    pending_side=st.sampled_from([Side.BUY, Side.SELL]),
    action=st.sampled_from([Action.BUY, Action.SELL, Action.ADD]),
    size=st.integers(min_value=1, max_value=6),
    mult=st.sampled_from(["0.5", "1", "2", "3"]),
    cap=st.integers(min_value=1, max_value=12),
)
def test_the_position_with_working_entries_never_passes_the_cap(
    pos: int, pending: int, pending_side: Side, action: Action, size: int, mult: str, cap: int
) -> None:
    """Whatever the position and the entries working: once everything planned and working on
    the new position's side has filled, it is within --max-contracts (or no bigger than it was)."""
    s = RiskSettings(
        size=size, add_size=size, same_direction=SameDirection.ADD, dca=True, max_contracts=cap
    )
    held = (working(9, pending_side, pending, OrderType.LIMIT, price="21400"),) if pending else ()
    state = AccountState(pos, D("21500") if pos else None, held)
    p = plan(Signal(action, price=PRICE), s, state, mult=mult)
    if p.action not in (PositionAction.OPEN, PositionAction.ADD, PositionAction.REVERSE):
        return
    entries = [o for o in p.orders if o.kind in ("order", "strategy")]
    if not entries:
        return
    first = entries[0].request
    entry = first.entry if isinstance(first, StrategyRequest) else first
    assert isinstance(entry, OrderRequest)
    if p.action is PositionAction.REVERSE or pos == 0:
        # the liquidation cancels the contract's working orders; flat, the entries still
        # resting are replaced
        before = 0
    else:
        before = abs(pos) + (pending if pending_side is entry.side else 0)
    assert entry.qty >= 1
    assert before + entry.qty <= max(cap, before)


def test_traderspost_add_follows_the_position() -> None:
    add = Signal(Action.ADD, price=PRICE)
    assert plan(add, DCA).action is PositionAction.IGNORE
    p = plan(add, DCA, short(2))
    assert p.action is PositionAction.ADD
    assert order(p.orders[0]).side is Side.SELL
    p = plan(add, dataclasses.replace(DCA, direction=Direction.LONG), short(2))
    assert p.action is PositionAction.IGNORE
    assert p.reason.startswith("direction")


def test_dca_carries_the_existing_stop_when_nothing_is_configured() -> None:
    s = RiskSettings(same_direction=SameDirection.ADD, dca=True)
    sl = working(12, Side.SELL, 2, OrderType.STOP, stop="21480")
    tighter = working(15, Side.SELL, 2, OrderType.STOP, stop="21490")
    p = plan(BUY, s, long(2, "21500", (sl, tighter)))
    assert kinds(p) == ["order", "cancel", "cancel", "order"]
    carried = order(p.orders[3])
    assert (carried.qty, carried.stop_price, carried.order_type) == (3, D(21490), OrderType.STOP)


def test_a_carried_trailing_stop_goes_back_as_a_plain_stop() -> None:
    trail = working(12, Side.BUY, 2, OrderType.TRAILING_STOP, stop="21510")
    p = plan(REDUCE_SHORT, RiskSettings(), short(2, "21500", (trail,)))
    assert kinds(p) == ["cancel", "order", "order"]
    carried = order(p.orders[2])
    assert (carried.side, carried.qty, carried.order_type, carried.stop_price) == (
        Side.BUY,
        1,
        OrderType.STOP,
        D(21510),
    )
    assert carried.time_in_force is TimeInForce.GTC


@pytest.mark.parametrize("action", ["add", "reduce"])
def test_a_working_stop_goes_on_beside_take_profits_when_no_stop_is_configured(
    action: str,
) -> None:
    """Only a take-profit configured, the stop from the entry alert (TradersPost stopLoss): a
    DCA add or a partial exit cancelled every exit and re-placed the take-profit alone,
    leaving the position without a stop."""
    s = RiskSettings(size=1, tp=parse_tp("40"), same_direction=SameDirection.ADD, dca=True)
    tp = working(11, Side.SELL, 2, OrderType.LIMIT, price="21510")
    sl = working(12, Side.SELL, 2, OrderType.STOP, stop="21480")
    signal = BUY if action == "add" else Signal(Action.SELL, quantity=1, price=PRICE,
                                                market_position=MarketPosition.LONG)  # fmt: skip
    p = plan(signal, s, long(2, "21500", (tp, sl)))
    held = 3 if action == "add" else 1
    (leg,) = [oco(o) for o in p.orders if o.kind == "oco"]
    assert (leg.first.order_type, leg.first.qty) == (OrderType.LIMIT, held)
    assert (leg.second.order_type, leg.second.qty) == (OrderType.STOP, held)
    assert leg.second.stop_price == D(21480)
    assert sorted(o.cancel_order_id for o in p.orders if o.kind == "cancel") == [11, 12]


# --- reverse -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sig", "state", "new_side"), [(SELL, long(2), Side.SELL), (BUY, short(2), Side.BUY)]
)
def test_reverse_closes_and_opens_the_other_side(
    sig: Signal, state: AccountState, new_side: Side
) -> None:
    p = plan(sig, LADDER, state, mult="2")
    assert p.action is PositionAction.REVERSE
    assert kinds(p) == ["liquidate", "strategy"]
    liq, entry = order(p.orders[0]), strategy(p.orders[1]).entry
    assert (liq.side, liq.qty) == (new_side, 2)
    assert (entry.side, entry.qty) == (new_side, 6)
    assert [liq.cl_ord_id, entry.cl_ord_id] == ["s1-101-1", "s1-101-2"]


def test_a_tradingview_reversal_opens_the_position_size_not_the_order_size() -> None:
    # long 1 → short 1: TradingView's order is 2 contracts; the position after it is 1.
    sig = Signal(
        Action.SELL,
        quantity=2,
        price=PRICE,
        market_position=MarketPosition.SHORT,
        prev_market_position=MarketPosition.LONG,
        extra={"market_position_size": "1"},
    )
    p = plan(sig, LADDER, long(1), mult="2")
    assert p.action is PositionAction.REVERSE
    assert (order(p.orders[0]).qty, strategy(p.orders[1]).entry.qty) == (1, 2)
    other_spelling = dataclasses.replace(sig, extra={"strategy.position_size": -1})
    assert strategy(plan(other_spelling, LADDER, long(1)).orders[1]).entry.qty == 1
    no_target = dataclasses.replace(sig, market_position=None)
    assert strategy(plan(no_target, LADDER, long(1)).orders[1]).entry.qty == 2


def test_tradingviews_default_message_on_a_reversal_opens_the_new_position_size() -> None:
    """Its "New strategy position is -1" gave only the side: long 1 → short 1 (an order of 2)
    opened short 2."""
    body = b"My Strategy (14): order sell @ 2 filled on MNQ1!. New strategy position is -1"
    sig = dataclasses.replace(parse_payload(body, "text/plain"), price=PRICE)
    p = plan(sig, LADDER, long(1))
    assert p.action is PositionAction.REVERSE
    assert (order(p.orders[0]).qty, strategy(p.orders[1]).entry.qty) == (1, 1)


@pytest.mark.parametrize("size", ["250000", "1e5000"])
def test_a_position_size_past_the_quantity_bound_is_refused(size: str) -> None:
    """``quantity`` is bounded at parsing (100,000 contracts); the position size, read from
    the raw fields here, opened 250,000."""
    sig = Signal(
        Action.BUY,
        quantity=1,
        price=PRICE,
        market_position=MarketPosition.LONG,
        prev_market_position=MarketPosition.FLAT,
        extra={"market_position_size": size},
    )
    p = plan(sig, LADDER, FLAT)
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert "larger than 100000" in p.reason


@pytest.mark.parametrize("size", ["2_0", "\u0662", "\uff12"])
def test_a_position_size_that_is_no_plain_number_is_refused(size: str) -> None:
    """Python's Decimal reads "2_0" as 20 and Arabic-Indic or full-width digits as digits: the
    quantity is refused for them at parsing, and this size opened 20 contracts."""
    sig = Signal(
        Action.BUY,
        quantity=1,
        price=PRICE,
        market_position=MarketPosition.LONG,
        prev_market_position=MarketPosition.FLAT,
        extra={"market_position_size": size},
    )
    p = plan(sig, LADDER, FLAT)
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert "not a plain number" in p.reason


@pytest.mark.parametrize("extra", [{}, {"positionSize": "n/a", "other": 7}])
def test_a_reversal_alert_without_its_position_size_only_closes(extra: dict[str, object]) -> None:
    """Its quantity counts the closing contracts too (long 1 → short 1 is an order of 2): opening
    that many doubled the position (the shipped template lacked the size field)."""
    sig = Signal(
        Action.SELL,
        quantity=2,
        price=PRICE,
        market_position=MarketPosition.SHORT,
        prev_market_position=MarketPosition.LONG,
        extra=extra,
    )
    p = plan(sig, LADDER, long(1))
    assert p.action is PositionAction.CLOSE
    assert kinds(p) == ["liquidate"]
    assert "market_position_size" in p.reason
    flat = plan(sig, LADDER, FLAT)
    assert (flat.action, flat.orders) == (PositionAction.IGNORE, ())
    assert "market_position_size" in flat.reason
    same_side_before = dataclasses.replace(sig, prev_market_position=MarketPosition.FLAT)
    assert strategy(plan(same_side_before, LADDER, FLAT).orders[0]).entry.qty == 2


def test_reverse_into_a_forbidden_side_only_closes() -> None:
    s = dataclasses.replace(LADDER, direction=Direction.LONG)
    p = plan(SELL, s, long(2))
    assert p.action is PositionAction.CLOSE
    assert kinds(p) == ["liquidate"]
    assert "off" in p.reason


def test_a_reversal_that_cannot_open_still_closes() -> None:
    s = dataclasses.replace(LADDER, tp_units=TpUnits.PERCENT, tp=parse_tp("1"))
    p = plan(SELL, s, long(2), price=None)
    assert p.action is PositionAction.CLOSE
    assert kinds(p) == ["liquidate"]
    assert "cannot plan" in p.reason


REFUSED = "window: 17:05 America/Chicago is outside the trading window(s) 08:30-15:00"


@pytest.mark.parametrize(
    ("sig", "state", "exit_side"), [(SELL, long(2), Side.SELL), (BUY, short(2), Side.BUY)]
)
def test_a_reversal_whose_entry_a_filter_refused_only_closes(
    sig: Signal, state: AccountState, exit_side: Side
) -> None:
    """The strategy left that position: keeping it would hold a side nobody follows any more
    (DESIGN: closes are never blocked by entry filters; a reversal's first half is a close)."""
    p = plan(sig, LADDER, state, mult="2", refused=REFUSED)
    assert p.action is PositionAction.CLOSE
    assert kinds(p) == ["liquidate"]
    liq = order(p.orders[0])
    assert (liq.side, liq.qty, liq.cl_ord_id) == (exit_side, 2, "s1-101-1")
    assert REFUSED in p.reason


@pytest.mark.parametrize(
    ("sig", "state"),
    [
        (BUY, FLAT),
        (SELL, FLAT),
        (BUY, long(2)),
        (SELL, short(2)),
        (Signal(Action.ADD, price=PRICE), long(2)),
    ],
)
def test_a_refused_entry_opens_and_adds_nothing(sig: Signal, state: AccountState) -> None:
    s = dataclasses.replace(LADDER, same_direction=SameDirection.ADD, dca=True)
    p = plan(sig, s, state, refused=REFUSED)
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert REFUSED in p.reason


def test_a_refused_entry_when_flat_cancels_the_other_sides_resting_orders() -> None:
    """The strategy moved to the new side (a filter refused following it): a buy limit still
    resting from the old side would open a position the strategy no longer wants."""
    resting = working(11, Side.BUY, 2, OrderType.LIMIT, price="21400")
    same = working(12, Side.SELL, 1, OrderType.LIMIT, price="21600")
    p = plan(SELL, LADDER, AccountState(0, None, (resting, same)), refused=REFUSED)
    assert p.action is PositionAction.CANCEL
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [("cancel", 11)]
    assert REFUSED in p.reason


@given(
    action=st.sampled_from([Action.BUY, Action.SELL, Action.ADD]),
    pos=st.integers(-20, 20),
    same=st.sampled_from(list(SameDirection)),
    inverse=st.booleans(),
    mult=st.sampled_from(["0.5", "1", "3"]),
)
@settings(max_examples=200, deadline=None)
def test_a_refused_entry_never_adds_exposure(
    action: Action, pos: int, same: SameDirection, inverse: bool, mult: str
) -> None:
    s = dataclasses.replace(LADDER, same_direction=same, inverse=inverse, dca=True)
    state = AccountState(pos, PRICE if pos else None)
    p = plan(Signal(action, price=PRICE), s, state, mult=mult, refused=REFUSED)
    if p.orders:
        assert kinds(p) == ["liquidate"]
        assert order(p.orders[0]).qty == abs(pos)
    else:
        assert p.action is PositionAction.IGNORE


# --- reduce --------------------------------------------------------------------------------

REDUCE_LONG = Signal(Action.SELL, quantity=1, market_position=MarketPosition.LONG, price=PRICE)
REDUCE_SHORT = Signal(Action.BUY, quantity=1, market_position=MarketPosition.SHORT, price=PRICE)


def test_reduce_cancels_exits_then_trims_then_re_places() -> None:
    """What is left keeps the working take-profits farthest from the market: the near one
    fills first, and the ladder's size at entry is not known here (the alert's quantity may
    have set it), so it is not laid out again."""
    tps = tuple(
        working(11 + i, Side.SELL, 1, OrderType.LIMIT, price=px)
        for i, px in enumerate(("21505", "21510", "21515"))
    )
    p = plan(REDUCE_LONG, LADDER, long(3, "21500", tps))
    assert p.action is PositionAction.REDUCE
    assert kinds(p) == ["cancel", "cancel", "cancel", "order", "oco", "oco"]
    assert [o.cancel_order_id for o in p.orders[:3]] == [11, 12, 13]
    trim = order(p.orders[3])
    assert (trim.side, trim.qty, trim.order_type) == (Side.SELL, 1, OrderType.MARKET)
    legs = [oco(o) for o in p.orders[4:]]
    assert [(x.first.qty, x.first.price) for x in legs] == [(1, D(21510)), (1, D(21515))]
    assert sum(x.second.qty for x in legs) == 2


def test_reduce_without_working_take_profits_keeps_the_ladders_far_legs() -> None:
    """Nothing working to keep (the exits were cancelled by hand): the configured ladder, its
    far legs for what is left."""
    p = plan(REDUCE_LONG, LADDER, long(3, "21500"))
    assert p.action is PositionAction.REDUCE
    legs = [oco(o) for o in p.orders if o.kind == "oco"]
    assert [(x.first.qty, x.first.price) for x in legs] == [(1, D(21510)), (1, D(21515))]


def test_reduce_short_with_multiplier() -> None:
    p = plan(REDUCE_SHORT, LADDER, short(6), mult="3")
    assert p.action is PositionAction.REDUCE
    trim = order(next(o for o in p.orders if o.kind == "order"))
    assert (trim.side, trim.qty) == (Side.BUY, 3)
    assert sum(oco(o).first.qty for o in p.orders if o.kind == "oco") == 3


def test_reduce_never_flips_through_zero() -> None:
    p = plan(dataclasses.replace(REDUCE_LONG, quantity=5), LADDER, long(3))
    assert p.action is PositionAction.CLOSE
    assert kinds(p) == ["liquidate"]
    assert order(p.orders[0]).qty == 3


@pytest.mark.parametrize(("sig", "state"), [(REDUCE_LONG, FLAT), (REDUCE_LONG, short(2))])
def test_reduce_of_the_wrong_position_does_nothing(sig: Signal, state: AccountState) -> None:
    p = plan(sig, LADDER, state)
    assert p.action is PositionAction.NOTHING
    assert p.orders == ()


def test_reduce_without_exits_is_a_plain_order() -> None:
    p = plan(REDUCE_LONG, RiskSettings(), long(3))
    assert kinds(p) == ["order"]


def test_the_cli_templates_partial_exit_reduces_by_the_strategys_order() -> None:
    """``recorder create`` prints the alert message to paste into TradingView. Filled in for a
    strategy long 2 that takes 1 off (order sell 1, still long 1), it keeps 1, as the strategy
    does. Without the order's contracts the sell fell back to --size 2 and closed the lot."""
    from jtrades.cli.recorder import EXAMPLE_ALERT

    tradingview = {
        "strategy.order.action": "sell",
        "ticker": "MNQ1!",
        "strategy.order.contracts": "1",
        "close": "21510",
        "strategy.market_position": "long",
        "strategy.prev_market_position": "long",
        "strategy.market_position_size": "1",
        "strategy.order.id": "TP1",
        "timenow": "2026-11-25T14:30:00Z",
    }
    body = EXAMPLE_ALERT
    for name, value in tradingview.items():
        body = body.replace("{{" + name + "}}", value)
    assert "{{" not in body
    signal = parse_payload(body.encode(), "text/plain")
    p = plan(signal, RiskSettings(size=2), long(2), price=signal.price)
    assert p.action is PositionAction.REDUCE, p.reason
    assert [(order(o).side, order(o).qty) for o in p.orders] == [(Side.SELL, 1)]


@pytest.mark.parametrize(
    ("action", "mp", "state", "expected"),
    [
        (Action.BUY, MarketPosition.LONG, FLAT, PositionAction.OPEN),
        (Action.SELL, MarketPosition.SHORT, FLAT, PositionAction.OPEN),
        (Action.SELL, MarketPosition.SHORT, long(2), PositionAction.REVERSE),
        (Action.BUY, MarketPosition.LONG, short(2), PositionAction.REVERSE),
        (Action.BUY, MarketPosition.LONG, long(2), PositionAction.IGNORE),
    ],
)
def test_a_target_on_the_actions_side_acts_as_the_action_says(
    action: Action, mp: MarketPosition, state: AccountState, expected: PositionAction
) -> None:
    assert plan(Signal(action, market_position=mp), LADDER, state).action is expected


# --- cancel --------------------------------------------------------------------------------


def test_opening_from_flat_cancels_the_other_sides_orders_first() -> None:
    """A sell limit entry still resting (or a take-profit left from a closed long) would fill
    against the long this buy opens: cancelled first. A buy entry still resting is replaced."""
    other = working(11, Side.SELL, 2, OrderType.LIMIT, price="21600")
    mine = ours(working(12, Side.BUY, 1, OrderType.LIMIT, price="21400"))
    bracket = dataclasses.replace(
        working(13, Side.SELL, 1, OrderType.STOP, stop="21350"), status=OrderStatus.SUSPENDED
    )
    foreign = working(14, Side.SELL, 1, OrderType.LIMIT, price="21600", account=OTHER)
    p = plan(BUY, LADDER, AccountState(0, None, (other, mine, bracket, foreign)))
    assert p.action is PositionAction.OPEN
    # the other side's, then the resting buy this one replaces (its bracket goes with it)
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [
        ("cancel", 11),
        ("cancel", 12),
        ("strategy", None),
    ]
    assert strategy(p.orders[2]).entry.qty == 3
    assert "cancel 1" in p.reason
    assert "replaces 1 resting long entry" in p.reason


@pytest.mark.parametrize("sig", [CLOSE, Signal(Action.SELL, market_position=MarketPosition.FLAT)])
def test_a_close_when_flat_cancels_entries_still_working(sig: Signal) -> None:
    """The strategy is flat: a limit entry resting at the broker would open a position after it
    (and a left-over exit would open the other side). Another account's or contract's stay."""
    entry = working(11, Side.BUY, 2, OrderType.LIMIT, price="21490")
    bracket = dataclasses.replace(
        working(12, Side.SELL, 2, OrderType.STOP, stop="21450"), status=OrderStatus.SUSPENDED
    )
    foreign = working(13, Side.BUY, 1, OrderType.LIMIT, price="21490", account=OTHER)
    gc = working(14, Side.BUY, 1, OrderType.LIMIT, price="2700", contract=GC)
    p = plan(sig, state=AccountState(0, None, (entry, bracket, foreign, gc)))
    assert p.action is PositionAction.CANCEL
    # the entry; its suspended bracket goes with it at the broker (a cancel of its own came
    # after, refused as finished: reported as a failure, its later steps unsent)
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [("cancel", 11)]
    assert p.reason.startswith("already flat")
    assert plan(sig, state=AccountState(0, None, (foreign, gc))).action is PositionAction.NOTHING


def test_cancel_touches_only_this_accounts_orders_on_this_contract() -> None:
    mine = working(11, Side.SELL, 1, OrderType.LIMIT, price="21505")
    done = dataclasses.replace(mine, order_id=16, status=OrderStatus.FILLED)
    foreign = working(13, Side.SELL, 1, OrderType.LIMIT, price="21505", account=OTHER)
    gc = working(14, Side.SELL, 1, OrderType.LIMIT, price="2700", contract=GC)
    p = plan(Signal(Action.CANCEL), state=long(1, "21500", (mine, done, foreign, gc)))
    assert p.action is PositionAction.CANCEL
    assert [(o.kind, o.cancel_order_id) for o in p.orders] == [("cancel", 11)]
    assert plan(Signal(Action.CANCEL)).action is PositionAction.NOTHING


# --- ids -----------------------------------------------------------------------------------


def test_cl_ord_ids_are_deterministic_unique_and_bounded() -> None:
    tp = working(11, Side.SELL, 3, OrderType.LIMIT, price="21505")
    args = (BUY, DCA, long(3, "21500", (tp,)))
    a, b = plan(*args), plan(*args)
    assert a == b
    ids = all_cl_ord_ids(a)
    assert len(ids) == len(set(ids))
    # the DCA add, then its re-placed exits, marked as exits (``orphans``); the step between
    # them cancels the old take-profit
    expected = ["s1-101-1", "s1-101-3x", "s1-101-3xb", "s1-101-4x", "s1-101-4xb", "s1-101-5x"]
    assert ids == [*expected, "s1-101-5xb"]
    assert [o.step for o in a.orders] == list(range(1, len(a.orders) + 1))
    with pytest.raises(ValueError, match="64"):
        plan(BUY, prefix="x" * 63)
    assert strategy(plan(BUY, prefix="x" * 62).orders[0]).entry.cl_ord_id == "x" * 62 + "-1"
    with pytest.raises(ValueError, match="multiplier"):
        plan(BUY, mult="0")


def all_cl_ord_ids(p: AccountPlan) -> list[str]:
    ids: list[str] = []
    for o in p.orders:
        r = o.request
        if isinstance(r, OrderRequest):
            ids.append(r.cl_ord_id)
        elif isinstance(r, StrategyRequest):
            ids.append(r.entry.cl_ord_id)
        elif isinstance(r, OcoRequest):
            ids += [r.first.cl_ord_id, r.second.cl_ord_id]
    return ids


def all_prices(p: AccountPlan) -> list[Decimal]:
    out: list[Decimal] = []
    reqs: list[OrderRequest] = []
    for o in p.orders:
        r = o.request
        if isinstance(r, OrderRequest):
            reqs.append(r)
        elif isinstance(r, OcoRequest):
            reqs += [r.first, r.second]
        elif isinstance(r, StrategyRequest):
            reqs.append(r.entry)
            for b in r.brackets:
                out += [
                    v
                    for v in (b.profit_target, b.stop_loss, b.trail_trigger, b.trail_freq)
                    if v is not None
                ]
    for r in reqs:
        out += [v for v in (r.price, r.stop_price, r.peg_difference) if v is not None]
    return out


# --- properties ----------------------------------------------------------------------------

contracts = st.sampled_from([MNQ, GC, MGC, ZB])
multipliers = st.decimals(min_value=D("0.1"), max_value=D("10"), places=1)
ladders = st.sampled_from(["", "20", "20:1,40:1,60", "10:2,30", "8:1,16:1,24:1,48"])


@settings(max_examples=200)
@given(
    contract=contracts,
    mult=multipliers,
    tp=ladders,
    sl=st.integers(min_value=0, max_value=80),
    trailing=st.booleans(),
    pos=st.integers(min_value=-20, max_value=20),
    avg=st.decimals(min_value=D("50"), max_value=D("30000"), places=4),
    move=st.decimals(min_value=D("-5"), max_value=D("5"), places=3),
    action=st.sampled_from([Action.BUY, Action.SELL, Action.CLOSE, Action.ADD]),
    mp=st.sampled_from([None, MarketPosition.LONG, MarketPosition.SHORT]),
    qty=st.one_of(st.none(), st.integers(min_value=0, max_value=10)),
    same=st.sampled_from(list(SameDirection)),
    max_contracts=st.one_of(st.none(), st.integers(min_value=1, max_value=30)),
)
def test_every_plan_is_on_tick_sized_and_bounded(
    contract: Contract,
    mult: Decimal,
    tp: str,
    sl: int,
    trailing: bool,
    pos: int,
    avg: Decimal,
    move: Decimal,
    action: Action,
    mp: MarketPosition | None,
    qty: int | None,
    same: SameDirection,
    max_contracts: int | None,
) -> None:
    legs = parse_tp(tp)
    size = max(3, sum(leg.qty or 0 for leg in legs))
    s = RiskSettings(
        size=size,
        tp=legs,
        sl=D(sl),
        sl_type=SlType.TRAILING if trailing and sl else SlType.FIXED,
        trail_trigger=D(4) if trailing and sl else None,
        trail_freq=D(1) if trailing and sl else None,
        dca=True,
        same_direction=same,
        max_contracts=max_contracts,
    ).validate()
    price = avg + move
    state = AccountState(pos, avg if pos else None)
    sig = Signal(action, quantity=qty, price=price, market_position=mp)
    p = plan(sig, s, state, mult=str(mult), contract=contract, price=price)
    for v in all_prices(p):
        assert v % contract.tick_size == 0, (v, p)
    ids = all_cl_ord_ids(p)
    assert len(ids) == len(set(ids))
    exposure = abs(pos)
    for o in p.orders:
        r = o.request
        if isinstance(r, StrategyRequest):
            assert r.entry.qty >= 1
            assert sum(b.qty for b in r.brackets) == r.entry.qty
            assert all(b.qty >= 1 for b in r.brackets)
            if max_contracts is not None:
                assert r.entry.qty <= max_contracts
        if o.kind == "liquidate":
            assert isinstance(r, OrderRequest)
            assert r.qty == abs(pos)
            exposure = 0
    if p.action is PositionAction.ADD and any(o.kind == "oco" for o in p.orders):
        added = order(p.orders[0]).qty
        assert sum(oco(o).first.qty for o in p.orders if o.kind == "oco") == abs(pos) + added
        if max_contracts is not None:
            assert abs(pos) + added <= max(max_contracts, abs(pos))
    if p.action is PositionAction.REDUCE:
        trim = order(next(o for o in p.orders if o.kind == "order"))
        assert 1 <= trim.qty < abs(pos)
        exits = [oco(o).first.qty for o in p.orders if o.kind == "oco"]
        assert not exits or sum(exits) == abs(pos) - trim.qty
    assert exposure in (0, abs(pos))


E6 = Contract("6EZ6", "6E", D("0.00005"), D("125000"), contract_id=10)


@settings(max_examples=200)
@given(
    contract=st.sampled_from([MNQ, GC, MGC, ZB, E6]),
    pos=st.integers(min_value=1, max_value=15),
    add=st.integers(min_value=1, max_value=6),
    avg_ticks=st.integers(min_value=1_000, max_value=5_000_000),
    avg_frac=st.decimals(min_value=D(0), max_value=D("0.999"), places=3),
    move_ticks=st.integers(min_value=-200, max_value=200),
    tp_ticks=st.integers(min_value=1, max_value=100),
    sl_ticks=st.integers(min_value=1, max_value=100),
    is_long=st.booleans(),
    mult=st.sampled_from(["0.5", "1", "2", "3"]),
)
def test_dca_exits_bracket_the_fractional_average(
    contract: Contract,
    pos: int,
    add: int,
    avg_ticks: int,
    avg_frac: Decimal,
    move_ticks: int,
    tp_ticks: int,
    sl_ticks: int,
    is_long: bool,
    mult: str,
) -> None:
    tick = contract.tick_size
    avg = (avg_ticks + avg_frac) * tick  # an average is anywhere, usually off the tick
    price = avg_ticks * tick + move_ticks * tick
    s = RiskSettings(
        size=3,
        add_size=add,
        tp=(parse_tp(f"{tp_ticks}:1,{tp_ticks * 2}")),
        sl=D(sl_ticks),
        dca=True,
        same_direction=SameDirection.ADD,
    )
    state = AccountState(pos if is_long else -pos, avg)
    p = plan(Signal(Action.BUY if is_long else Action.SELL), s, state, mult=mult, contract=contract,
             price=price)  # fmt: skip
    if p.action is PositionAction.IGNORE:
        # a stop at or past the market (the add's fill), or every take-profit already passed:
        # refused, nothing cancelled (test_resize_market)
        assert p.orders == ()
        assert p.reason.startswith("cannot plan"), p.reason
        assert "market" in p.reason, p.reason
        return
    assert p.action is PositionAction.ADD
    added = order(p.orders[0]).qty
    total = pos + added
    new_avg = (avg * pos + price * added) / total
    d = 1 if is_long else -1
    legs = [oco(o) for o in p.orders if o.kind == "oco"]
    assert sum(x.first.qty for x in legs) == total
    for x in legs:
        tp, sl = x.first.price, x.second.stop_price
        assert tp is not None
        assert sl is not None
        assert tp % tick == 0
        assert sl % tick == 0
        assert (tp - new_avg) * d > 0  # a take-profit beyond the average
        assert (new_avg - sl) * d > 0  # a stop on the losing side
        assert (tp - price) * d > 0  # neither at or past the market: none fills at once
        assert (price - sl) * d > 0
        assert abs(new_avg - sl) <= sl_ticks * tick  # never wider than configured
        assert abs(tp - new_avg) <= 2 * tp_ticks * tick
