"""Order planning for entries that are not market orders, and per-alert trailing values.

The alert's ``orderType`` (limit, stop, stop_limit) decides the entry order, the price that exits
given as absolute levels are measured from, and whether a DCA add may re-place the exits at all.
"""

from __future__ import annotations

import dataclasses
import json
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
    StrategyRequest,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.engine.parsing import parse_payload
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings, SameDirection, SlType, parse_tp
from jtrades.engine.signal import Action, ExitSpec, Signal, Units

D = Decimal
ACCT = SubAccount(101, "DEMO101")
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)
GC = Contract("GCZ6", "GC", D("0.1"), D("100"), contract_id=7)
ZB = Contract("ZBZ6", "ZB", D("0.03125"), D("1000"), contract_id=9)
E6 = Contract("6EZ6", "6E", D("0.00005"), D("125000"), contract_id=10)
FLAT = AccountState(0, None)
NO_EXITS = RiskSettings(size=1)
LADDER = RiskSettings(size=3, tp=parse_tp("20:1,40:1,60"), sl=D(40))
DCA = dataclasses.replace(LADDER, same_direction=SameDirection.ADD, dca=True, add_size=1)
KINDS = {"limit": OrderType.LIMIT, "stop": OrderType.STOP, "stop_limit": OrderType.STOP_LIMIT}


def plan(
    sig: Signal,
    s: RiskSettings = NO_EXITS,
    state: AccountState = FLAT,
    *,
    contract: Contract = MNQ,
    price: Decimal | None = None,
) -> AccountPlan:
    return plan_account(
        sig, s, D(1), ACCT, contract, state, signal_price=price, cl_ord_prefix="s1-101"
    )


def plan_body(body: dict[str, Any], s: RiskSettings = NO_EXITS, **kw: Any) -> AccountPlan:
    """The alert as the webhook would parse it, planned with its own price as the signal price."""
    sig = parse_payload(json.dumps(body).encode(), "application/json")
    return plan(sig, s, price=sig.price, **kw)


def entry_of(p: AccountPlan) -> OrderRequest:
    r = p.orders[0].request
    if isinstance(r, StrategyRequest):
        return r.entry
    assert isinstance(r, OrderRequest), p
    return r


def strategy(p: AccountPlan) -> StrategyRequest:
    assert p.orders, p
    r = p.orders[0].request
    assert isinstance(r, StrategyRequest), p
    return r


def entry_signal(
    side: Side, kind: str, limit: Decimal | None, stop: Decimal | None, **kw: Any
) -> Signal:
    action = Action.BUY if side is Side.BUY else Action.SELL
    return Signal(action, order_type=kind, limit_price=limit, stop_price=stop, **kw)


def working(oid: int, side: Side, qty: int, kind: OrderType, **prices: Decimal) -> WorkingOrder:
    return WorkingOrder(
        oid, ACCT.account_id, MNQ.contract_id or 0, MNQ.symbol, side, qty, kind,
        OrderStatus.WORKING, **prices,
    )  # fmt: skip


# --- 1. stop_limit entries ---------------------------------------------------------------


def test_the_reviewers_stop_limit_alert_is_a_stop_limit_order() -> None:
    body = {"ticker": "MNQ1!", "action": "buy", "orderType": "stop_limit", "stopPrice": 21550,
            "limitPrice": 21552, "price": 21500}  # fmt: skip
    p = plan_body(body)
    assert (p.action, [o.kind for o in p.orders]) == (PositionAction.OPEN, ["order"])
    e = entry_of(p)
    assert (e.order_type, e.stop_price, e.price) == (OrderType.STOP_LIMIT, D(21550), D(21552))


@pytest.mark.parametrize(
    ("side", "stop", "limit", "want_stop", "want_limit"),
    [
        # a buy never triggers earlier (stop up) and never pays more (limit down) than asked
        (Side.BUY, "21550.1", "21552.1", "21550.25", "21552.00"),
        # a sell never triggers earlier (stop down) and never sells cheaper (limit up)
        (Side.SELL, "21449.9", "21447.9", "21449.75", "21448.00"),
    ],
)
def test_a_stop_limit_entry_with_exits_is_a_stop_limit_strategy_on_the_tick(
    side: Side, stop: str, limit: str, want_stop: str, want_limit: str
) -> None:
    p = plan(entry_signal(side, "stop_limit", D(limit), D(stop)), LADDER, price=D(21500))
    assert p.action is PositionAction.OPEN
    e = strategy(p).entry
    assert (e.side, e.order_type) == (side, OrderType.STOP_LIMIT)
    assert (e.stop_price, e.price) == (D(want_stop), D(want_limit))
    assert sum(b.qty for b in strategy(p).brackets) == e.qty == 3


@pytest.mark.parametrize(
    ("kind", "limit", "stop"),
    [("stop_limit", None, "21550"), ("stop_limit", "21552", None), ("limit", None, None),
     ("stop", None, None)],
)  # fmt: skip
def test_an_entry_missing_its_price_is_refused_never_sent_at_market(
    kind: str, limit: str | None, stop: str | None
) -> None:
    sig = entry_signal(Side.BUY, kind, D(limit) if limit else None, D(stop) if stop else None)
    for s in (NO_EXITS, LADDER):
        p = plan(sig, s, price=D(21500))
        assert (p.action, p.orders) == (PositionAction.IGNORE, ())
        assert p.reason.startswith("cannot plan")
        assert kind in p.reason


def test_an_unknown_entry_type_is_refused() -> None:
    p = plan(Signal(Action.BUY, order_type="trailing_stop"), price=D(21500))
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())


ticks = st.integers(min_value=1_000, max_value=10_000_000)
fractions = st.decimals(min_value=D(0), max_value=D("0.999"), places=3)


@settings(max_examples=200)
@given(
    contract=st.sampled_from([MNQ, GC, ZB, E6]),
    kind=st.sampled_from(sorted(KINDS)),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    limit_ticks=ticks,
    limit_frac=fractions,
    stop_ticks=ticks,
    stop_frac=fractions,
    with_exits=st.booleans(),
)
def test_non_market_entries_keep_their_type_and_round_in_the_traders_favour(
    contract: Contract,
    kind: str,
    side: Side,
    limit_ticks: int,
    limit_frac: Decimal,
    stop_ticks: int,
    stop_frac: Decimal,
    with_exits: bool,
) -> None:
    tick = contract.tick_size
    limit = (limit_ticks + limit_frac) * tick
    stop = (stop_ticks + stop_frac) * tick
    sig = entry_signal(side, kind, limit, stop)
    s = RiskSettings(size=2, tp=parse_tp("10"), sl=D(10)) if with_exits else NO_EXITS
    p = plan(sig, s, contract=contract)
    assert p.action is PositionAction.OPEN, p.reason
    e = entry_of(p)
    assert e.order_type is KINDS[kind]
    buy = side is Side.BUY
    if kind in ("limit", "stop_limit"):
        assert e.price is not None
        assert e.price % tick == 0
        assert 0 <= (limit - e.price if buy else e.price - limit) < tick  # never worse
    else:
        assert e.price is None
    if kind in ("stop", "stop_limit"):
        assert e.stop_price is not None
        assert e.stop_price % tick == 0
        assert 0 <= (e.stop_price - stop if buy else stop - e.stop_price) < tick  # never earlier
    else:
        assert e.stop_price is None


# --- 2. price-level exits are measured from the entry's own price ------------------------


def test_price_level_exits_of_a_limit_entry_are_measured_from_the_limit_price() -> None:
    body = {"ticker": "MNQ1!", "action": "buy", "orderType": "limit", "limitPrice": 21450,
            "signalPrice": 21500, "stopLoss": {"stopPrice": 21440},
            "takeProfit": {"limitPrice": 21510}}  # fmt: skip
    p = plan_body(body)
    assert p.action is PositionAction.OPEN, p.reason
    (b,) = strategy(p).brackets
    assert (b.stop_loss, b.profit_target) == (D(-10), D(60))


def test_a_sell_stop_entry_measures_its_stop_loss_from_the_stop_price() -> None:
    body = {"ticker": "MNQ1!", "action": "sell", "orderType": "stop", "stopPrice": 21400,
            "signalPrice": 21500, "stopLoss": {"stopPrice": 21420},
            "takeProfit": {"limitPrice": 21300}}  # fmt: skip
    p = plan_body(body)
    assert p.action is PositionAction.OPEN, p.reason
    (b,) = strategy(p).brackets
    assert (b.stop_loss, b.profit_target) == (D(20), D(-100))


@pytest.mark.parametrize(
    ("side", "stop", "limit", "sl", "tp", "want_sl", "want_tp"),
    [
        # buy, limit above the stop: it fills around the stop (the limit only caps slippage)
        (Side.BUY, "21550", "21552", "21540", "21600", "-10", "50"),
        # buy, limit below the stop: it waits for the pull-back to the limit
        (Side.BUY, "21550", "21545", "21535", "21600", "-10", "55"),
        (Side.SELL, "21450", "21448", "21460", "21400", "10", "-50"),
        (Side.SELL, "21450", "21455", "21465", "21400", "10", "-55"),
    ],
)
def test_a_stop_limit_entry_measures_price_levels_from_its_expected_fill(
    side: Side, stop: str, limit: str, sl: str, tp: str, want_sl: str, want_tp: str
) -> None:
    sig = entry_signal(
        side, "stop_limit", D(limit), D(stop),
        take_profit=(ExitSpec(D(tp), Units.PRICE),), stop_loss=ExitSpec(D(sl), Units.PRICE),
    )  # fmt: skip
    (b,) = strategy(plan(sig, price=D(21500))).brackets
    assert (b.stop_loss, b.profit_target) == (D(want_sl), D(want_tp))


def test_percent_exits_of_a_limit_entry_are_a_percent_of_the_limit_price() -> None:
    sig = entry_signal(Side.BUY, "limit", D(20000), None,
                       take_profit=(ExitSpec(D(1), Units.PERCENT),))  # fmt: skip
    (b,) = strategy(plan(sig, price=D(21500))).brackets
    assert b.profit_target == D(200)  # 1 % of 20000, not of 21500


@settings(max_examples=200)
@given(
    contract=st.sampled_from([MNQ, GC, ZB, E6]),
    kind=st.sampled_from(sorted(KINDS)),
    side=st.sampled_from([Side.BUY, Side.SELL]),
    entry_ticks=st.integers(min_value=10_000, max_value=1_000_000),
    limit_gap=st.integers(min_value=-20, max_value=20),
    tp_ticks=st.integers(min_value=1, max_value=400),
    sl_ticks=st.integers(min_value=1, max_value=400),
    signal_ticks=st.one_of(st.none(), st.integers(min_value=-500, max_value=500)),
)
def test_price_level_exits_land_on_the_alerts_levels_from_the_entry(
    contract: Contract,
    kind: str,
    side: Side,
    entry_ticks: int,
    limit_gap: int,
    tp_ticks: int,
    sl_ticks: int,
    signal_ticks: int | None,
) -> None:
    """Whatever the signal price (or none), an entry filling where it is expected to puts the
    stop and target on the alert's levels, within a tick toward the entry."""
    tick, d = contract.tick_size, side.sign
    stop = entry_ticks * tick
    limit = stop + limit_gap * tick if kind == "stop_limit" else stop
    price = None if signal_ticks is None else stop + signal_ticks * tick
    if kind == "stop_limit":  # it fills at the stop, or waits for the limit if that is better
        fill = min(stop, limit) if side is Side.BUY else max(stop, limit)
    elif kind == "limit" and price is not None:  # at the market when that is better
        fill = min(limit, price) if side is Side.BUY else max(limit, price)
    else:
        fill = limit if kind == "limit" else stop
    tp_level, sl_level = fill + d * tp_ticks * tick, fill - d * sl_ticks * tick
    sig = entry_signal(
        side, kind, limit if kind != "stop" else None, stop if kind != "limit" else None,
        take_profit=(ExitSpec(tp_level, Units.PRICE),),
        stop_loss=ExitSpec(sl_level, Units.PRICE),
    )  # fmt: skip
    p = plan(sig, contract=contract, price=price)
    assert p.action is PositionAction.OPEN, p.reason
    (b,) = strategy(p).brackets
    assert b.profit_target is not None
    assert b.stop_loss is not None
    assert fill + b.profit_target == tp_level
    assert fill + b.stop_loss == sl_level


# --- 3. a DCA add that is not a market order ---------------------------------------------


@pytest.mark.parametrize("kind", ["limit", "stop", "stop_limit"])
def test_a_dca_add_that_may_not_fill_never_re_places_exits(kind: str) -> None:
    """Exits for the averaged position (long 2 + 1 = 3) placed before the add fills would sell
    3 against a long of 2 if the price moved away: refuse the add, keep the old exits."""
    tp = working(11, Side.SELL, 2, OrderType.LIMIT, price=D(21520))
    sl = working(12, Side.SELL, 2, OrderType.STOP, stop_price=D(21480))
    sig = entry_signal(Side.BUY, kind, D(21450), D(21450))
    for s in (DCA, dataclasses.replace(DCA, tp=(), sl=D(0))):  # configured, or only working
        p = plan(sig, s, AccountState(2, D(21500), (tp, sl)), price=D(21500))
        assert (p.action, p.orders) == (PositionAction.IGNORE, ()), p
        assert p.reason.startswith("cannot plan")
        assert "market" in p.reason


def test_a_limit_add_without_any_exits_is_a_plain_limit_order() -> None:
    s = RiskSettings(same_direction=SameDirection.ADD, add_size=2)
    p = plan(entry_signal(Side.BUY, "limit", D(21450), None), s, AccountState(1, D(21500)))
    assert (p.action, [o.kind for o in p.orders]) == (PositionAction.ADD, ["order"])
    assert (entry_of(p).order_type, entry_of(p).qty) == (OrderType.LIMIT, 2)


def _exit_qty(p: AccountPlan, exit_side: Side) -> int:
    """Contracts the plan's new GTC exits would close if they all filled (an OCO closes one leg)."""
    total = 0
    for o in p.orders:
        r = o.request
        if isinstance(r, OcoRequest):
            r = r.first
        if (
            isinstance(r, OrderRequest)
            and r.side is exit_side
            and r.time_in_force is TimeInForce.GTC
        ):
            total += r.qty
    return total


@settings(max_examples=300)
@given(
    kind=st.sampled_from(["market", "limit", "stop", "stop_limit"]),
    is_long=st.booleans(),
    pos=st.integers(min_value=1, max_value=10),
    add=st.integers(min_value=1, max_value=5),
    tp=st.sampled_from(["", "20", "20:1,40"]),
    sl=st.sampled_from([0, 40]),
    trailing=st.booleans(),
    old_exits=st.booleans(),
    action=st.sampled_from([Action.BUY, Action.SELL, Action.ADD]),
)
def test_exits_never_exceed_the_position_once_the_market_orders_fill(
    kind: str,
    is_long: bool,
    pos: int,
    add: int,
    tp: str,
    sl: int,
    trailing: bool,
    old_exits: bool,
    action: Action,
) -> None:
    side = Side.BUY if is_long else Side.SELL
    s = RiskSettings(
        size=1, add_size=add, tp=parse_tp(tp), sl=D(sl), dca=True,
        sl_type=SlType.TRAILING if trailing and sl else SlType.FIXED,
        same_direction=SameDirection.ADD,
    )  # fmt: skip
    held = (working(9, side.opposite, pos, OrderType.STOP, stop_price=D(21500 - side.sign * 30)),)
    state = AccountState(side.sign * pos, D(21500), held if old_exits else ())
    sig = dataclasses.replace(
        entry_signal(side, kind, D(21490), D(21510)), action=action, quantity=None
    )
    p = plan(sig, s, state, price=D(21500))
    after = pos  # the position once every market order of the plan has filled
    for o in p.orders:
        r = o.request
        if o.kind == "liquidate":
            after = 0
        elif isinstance(r, OrderRequest) and r.order_type is OrderType.MARKET:
            after += r.qty if r.side is side else -r.qty
    if after > 0:
        assert _exit_qty(p, side.opposite) <= after, p


# --- 4. per-alert trailing trigger and frequency -----------------------------------------


def test_per_alert_trail_trigger_and_freq_override_the_settings() -> None:
    body = {"symbol": "MNQ1!", "data": "buy", "price": 21500, "trail": 1, "trail_stop": 10,
            "trail_trigger": 20, "trail_freq": 2}  # fmt: skip
    configured = RiskSettings(size=1, sl=D(40), sl_type=SlType.TRAILING,
                              trail_trigger=D(8), trail_freq=D(4))  # fmt: skip
    for s in (NO_EXITS, configured):
        (b,) = strategy(plan_body(body, s)).brackets
        assert b.trailing_stop
        assert (b.stop_loss, b.trail_trigger, b.trail_freq) == (D(-10), D(20), D(2))


def test_per_alert_trailing_values_are_read_in_the_alerts_units() -> None:
    spec = ExitSpec(D(100), Units.DOLLARS, trailing=True, trail_trigger=D(40), trail_freq=D(5))
    (b,) = strategy(plan(Signal(Action.BUY, stop_loss=spec), price=D(21500))).brackets
    # MNQ is $2 a point: 100 $ = 50 points, 40 $ = 20 points, 5 $ = 2.5 points
    assert (b.stop_loss, b.trail_trigger, b.trail_freq) == (D(-50), D(20), D("2.5"))


def test_a_per_alert_trailing_stop_without_trigger_keeps_the_configured_one() -> None:
    s = RiskSettings(size=1, sl=D(40), sl_type=SlType.TRAILING, trail_trigger=D(8),
                     trail_freq=D(4))  # fmt: skip
    spec = ExitSpec(D(10), Units.POINTS, trailing=True, trail_freq=D("1.5"))
    (b,) = strategy(plan(Signal(Action.BUY, stop_loss=spec), s, price=D(21500))).brackets
    assert (b.stop_loss, b.trail_trigger, b.trail_freq) == (D(-10), D(2), D("1.5"))


@pytest.mark.parametrize("configured", [None, D(8)])
def test_a_trail_trigger_without_a_frequency_steps_one_tick(configured: Decimal | None) -> None:
    """Tradovate's autoTrail takes trigger and freq together; PickMyTrade's template sends
    ``trail_freq: 0`` (unset) next to a trigger, so the step defaults to one tick."""
    body = {"symbol": "MNQ1!", "data": "buy", "price": 21500, "trail": 1, "trail_stop": 10,
            "trail_trigger": 20, "trail_freq": 0}  # fmt: skip
    s = RiskSettings(size=1, trail_trigger=configured)
    (b,) = strategy(plan_body(body, s)).brackets
    assert (b.trail_trigger, b.trail_freq) == (D(20), D("0.25"))
