"""Plan review fixes: a reduce after a take-profit filled, ``quantity 0`` beside the chart's
position size, a marketable limit entry's price-level stop, and the working take-profit of a
position whose exits are re-placed (DCA add, reduce) without one configured.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from jtrades.broker.base import (
    OcoRequest,
    OrderRequest,
    OrderType,
    Side,
    StrategyRequest,
    WorkingOrder,
)
from jtrades.engine.parsing import parse_payload
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction
from jtrades.engine.risk import RiskSettings, SameDirection, parse_tp
from jtrades.engine.signal import Action, ExitSpec, MarketPosition, Signal, Units
from tests.unit.test_resize_market import plan, working

D = Decimal


def take_profits(p: AccountPlan) -> list[tuple[int, Decimal | None]]:
    """(contracts, price) of each take-profit the plan places, in order."""
    out = []
    for o in p.orders:
        r = o.request
        if isinstance(r, OcoRequest):
            out.append((r.first.qty, r.first.price))
        elif isinstance(r, OrderRequest) and r.order_type is OrderType.LIMIT:
            out.append((r.qty, r.price))
    return out


def stops(p: AccountPlan) -> list[tuple[int, Decimal | None]]:
    """(contracts, stop price) of each stop the plan places, in order."""
    out = []
    for o in p.orders:
        r = o.request
        if isinstance(r, OcoRequest):
            out.append((r.second.qty, r.second.stop_price))
        elif isinstance(r, OrderRequest) and r.order_type is OrderType.STOP:
            out.append((r.qty, r.stop_price))
    return out


def cancelled(p: AccountPlan) -> list[int | None]:
    return sorted(o.cancel_order_id or 0 for o in p.orders if o.kind == "cancel")


# --- 1. a reduce keeps the far end of the ladder ----------------------------------------------

# --size 3 --tp 20:1,40:1,60 (5/10/15 points on MNQ) --sl 30 ticks (7.5 points).
LADDER = RiskSettings(size=3, tp=parse_tp("20:1,40:1,60"), sl=D(30)).validate()


def after_tp1(side: Side) -> AccountState:
    """3 entered at 21500; TP1 (5 points) filled: 2 left, TP2 and TP3 still working."""
    d = side.sign
    exit_side = side.opposite
    return AccountState(
        2 * d,
        D(21500),
        (
            working(1, exit_side, 1, OrderType.LIMIT, price=str(21500 + d * 10)),
            working(2, exit_side, 1, OrderType.STOP, stop=str(D(21500) - d * D("7.5"))),
            working(3, exit_side, 1, OrderType.LIMIT, price=str(21500 + d * 15)),
            working(4, exit_side, 1, OrderType.STOP, stop=str(D(21500) - d * D("7.5"))),
        ),
    )


def trim(side: Side, market: Decimal, qty: int = 1) -> Signal:
    """The strategy sells ``qty`` of its long (buys back of its short), still holding some."""
    target = MarketPosition.LONG if side is Side.BUY else MarketPosition.SHORT
    action = Action.SELL if side is Side.BUY else Action.BUY
    return Signal(action, quantity=qty, market_position=target, price=market)


@pytest.mark.parametrize(
    ("side", "market", "tp", "sl"),
    [
        (Side.BUY, "21507", "21515", "21492.50"),
        (Side.BUY, "21503", "21515", "21492.50"),
        (Side.SELL, "21493", "21485", "21507.50"),
        (Side.SELL, "21497", "21485", "21507.50"),
    ],
)
def test_a_partial_exit_after_tp1_filled_keeps_the_far_leg_for_what_is_left(
    side: Side, market: str, tp: str, sl: str
) -> None:
    """Before: the ladder was laid out again from its first leg for the 1 contract left, at
    TP1 (21505), which had already filled: past the market (21507) the whole reduce was refused
    (the follower kept 2 while the strategy held 1); short of it (21503) the last contract's
    target was moved back from 21510/21515 to 21505."""
    p = plan(trim(side, D(market)), LADDER, after_tp1(side), D(market))
    assert p.action is PositionAction.REDUCE, p.reason
    assert cancelled(p) == [1, 2, 3, 4]
    (trimmed,) = [
        o.request
        for o in p.orders
        if isinstance(o.request, OrderRequest) and o.request.order_type is OrderType.MARKET
    ]
    assert (trimmed.side, trimmed.qty) == (side.opposite, 1)
    assert take_profits(p) == [(1, D(tp))]
    assert stops(p) == [(1, D(sl))]


def test_a_partial_exit_of_a_whole_ladder_keeps_its_far_legs() -> None:
    """Long 3, no take-profit filled yet, the strategy trims 1: the near leg is the one that
    would have filled first; the 2 left keep TP2 and TP3."""
    state = AccountState(3, D(21500))
    p = plan(trim(Side.BUY, D(21502)), LADDER, state, D(21502))
    assert p.action is PositionAction.REDUCE, p.reason
    assert take_profits(p) == [(1, D(21510)), (1, D(21515))]
    assert sum(q for q, _ in stops(p)) == 2


def test_a_partial_exit_past_every_take_profit_still_trims_and_keeps_the_stop() -> None:
    """Every leg left for the position is at or past the market: the trim still goes (the
    strategy trimmed), the take-profits are dropped, the rest keeps its stop."""
    p = plan(trim(Side.BUY, D(21516)), LADDER, after_tp1(Side.BUY), D(21516))
    assert p.action is PositionAction.REDUCE, p.reason
    assert take_profits(p) == []
    assert stops(p) == [(1, D("21492.50"))]
    assert "21515" in p.reason
    assert "market 21516" in p.reason


def test_a_dca_add_still_lays_its_ladder_from_the_first_leg() -> None:
    """A growing position gets the whole ladder again for its new average (DESIGN §2)."""
    s = RiskSettings(
        size=3, tp=parse_tp("20:1,40:1,60"), sl=D(30), dca=True, same_direction=SameDirection.ADD
    ).validate()
    p = plan(Signal(Action.BUY, quantity=1, price=D(21500)), s, AccountState(2, D(21500)), D(21500))
    assert p.action is PositionAction.ADD, p.reason
    assert take_profits(p) == [(1, D(21505)), (1, D(21510)), (1, D(21515))]


# --- 2. quantity 0 is the configured size, whatever the chart's position size ----------------


def test_quantity_zero_opens_the_configured_size_beside_the_position_size() -> None:
    """The alert asks for the configured size ("quantity": 0); the strategy on the chart holds
    37. Before: the position size replaced any quantity, so --size 1 opened 37."""
    body = (
        b'{"action":"buy","ticker":"MNQ1!","price":21500.25,"quantity":0,'
        b'"market_position":"long","prev_market_position":"flat","market_position_size":37}'
    )
    sig = parse_payload(body, "application/json")
    assert sig.quantity is None
    p = plan(sig, RiskSettings(size=1, sl=D(40)), AccountState(0, None), D("21500.25"))
    assert p.action is PositionAction.OPEN, p.reason
    r = p.orders[0].request
    assert isinstance(r, StrategyRequest)
    assert r.entry.qty == 1


def test_a_reversal_without_a_quantity_opens_the_configured_size_times_the_multiplier() -> None:
    """Long 2 → short: the chart's short is 37, the follower opens --size 2 × 3."""
    sig = Signal(
        Action.SELL, price=D(21500), market_position=MarketPosition.SHORT,
        prev_market_position=MarketPosition.LONG, extra={"market_position_size": "37"},
    )  # fmt: skip
    p = plan(sig, RiskSettings(size=2, sl=D(40)), AccountState(2, D(21490)), D(21500), "3")
    assert p.action is PositionAction.REVERSE, p.reason
    r = p.orders[-1].request
    assert isinstance(r, StrategyRequest)
    assert (r.entry.side, r.entry.qty) == (Side.SELL, 6)


def test_an_explicit_reversal_quantity_is_still_corrected_by_the_position_size() -> None:
    """TradingView's order of 2 for long 1 → short 1: the position size (1) is what opens."""
    sig = Signal(
        Action.SELL, quantity=2, price=D(21500), market_position=MarketPosition.SHORT,
        prev_market_position=MarketPosition.LONG, extra={"market_position_size": "1"},
    )  # fmt: skip
    p = plan(sig, RiskSettings(size=3, sl=D(40)), AccountState(1, D(21490)), D(21500))
    r = p.orders[-1].request
    assert isinstance(r, StrategyRequest)
    assert r.entry.qty == 1


# --- 3. a marketable limit entry measures price levels from the market ------------------------


@pytest.mark.parametrize(
    ("action", "limit", "sl", "tp", "want_sl", "want_tp"),
    [
        # buy limit above the market (a slippage cap): fills about the market 21500
        (Action.BUY, "21510", "21480", "21540", "-20", "40"),
        # sell limit below the market: the same, mirrored
        (Action.SELL, "21490", "21520", "21460", "20", "-40"),
        # a limit resting away from the market still fills at its limit
        (Action.BUY, "21450", "21440", "21510", "-10", "60"),
        (Action.SELL, "21550", "21560", "21490", "10", "-60"),
    ],
)
def test_a_limit_entry_measures_price_levels_from_where_it_fills(
    action: Action, limit: str, sl: str, tp: str, want_sl: str, want_tp: str
) -> None:
    """Before: always from the limit; a buy limit 21510 with the market at 21500 and the
    alert's stop at 21480 got a 30-point stop offset, which from the fill (≈21500) put the
    stop at 21470, 10 points past the alert's level."""
    sig = Signal(
        action, quantity=1, price=D(21500), order_type="limit", limit_price=D(limit),
        take_profit=(ExitSpec(D(tp), Units.PRICE),), stop_loss=ExitSpec(D(sl), Units.PRICE),
    )  # fmt: skip
    p = plan(sig, RiskSettings(size=1), AccountState(0, None), D(21500))
    assert p.action is PositionAction.OPEN, p.reason
    r = p.orders[0].request
    assert isinstance(r, StrategyRequest)
    assert r.entry.price == D(limit)
    (b,) = r.brackets
    assert (b.stop_loss, b.profit_target) == (D(want_sl), D(want_tp))


# --- 4. the working take-profit goes on when none is configured -------------------------------

DCA = RiskSettings(size=1, dca=True, same_direction=SameDirection.ADD).validate()


def alert_exits(n: int, tp: str = "21540", sl: str = "21480") -> tuple[WorkingOrder, ...]:
    """The entry alert's own take-profit and stop for a long ``n``."""
    return (
        working(1, Side.SELL, n, OrderType.LIMIT, price=tp),
        working(2, Side.SELL, n, OrderType.STOP, stop=sl),
    )


def test_a_dca_add_carries_the_working_take_profit_for_the_averaged_position() -> None:
    """Before: both exits were cancelled, the stop carried over for 2, no take-profit put back
    (DESIGN §2: TP/SL re-placed for the whole averaged position)."""
    state = AccountState(1, D(21500), alert_exits(1))
    p = plan(Signal(Action.BUY, quantity=1, price=D(21495)), DCA, state, D(21495))
    assert p.action is PositionAction.ADD, p.reason
    assert cancelled(p) == [1, 2]
    assert take_profits(p) == [(2, D(21540))]
    assert stops(p) == [(2, D(21480))]


def test_a_reduce_carries_the_working_take_profit_for_what_is_left() -> None:
    state = AccountState(3, D(21500), alert_exits(3))
    p = plan(trim(Side.BUY, D(21505)), RiskSettings(size=1), state, D(21505))
    assert p.action is PositionAction.REDUCE, p.reason
    assert take_profits(p) == [(2, D(21540))]
    assert stops(p) == [(2, D(21480))]


def test_carried_take_profits_shrink_from_the_nearest_and_grow_at_the_farthest() -> None:
    """Two working take-profits (an alert with two levels): a reduce takes its contracts off
    the near one first, an add gives its contracts to the far one; they add up to the
    position (DESIGN §5.4)."""
    held = (
        working(1, Side.SELL, 1, OrderType.LIMIT, price="21520"),
        working(2, Side.SELL, 2, OrderType.LIMIT, price="21540"),
        working(3, Side.SELL, 3, OrderType.STOP, stop="21480"),
    )
    state = AccountState(3, D(21500), held)
    reduced = plan(trim(Side.BUY, D(21505), 2), RiskSettings(size=1), state, D(21505))
    assert take_profits(reduced) == [(1, D(21540))]
    added = plan(Signal(Action.BUY, quantity=2, price=D(21505)), DCA, state, D(21505))
    assert take_profits(added) == [(1, D(21520)), (4, D(21540))]
    assert sum(q for q, _ in stops(added)) == 5


def test_a_carried_take_profit_past_the_market_is_dropped_not_a_refusal() -> None:
    """The alert's take-profit 21540, the market (a stale alert) at 21545: the reduce still
    goes, what is left keeps its stop."""
    state = AccountState(3, D(21500), alert_exits(3))
    p = plan(trim(Side.BUY, D(21545)), RiskSettings(size=1), state, D(21545))
    assert p.action is PositionAction.REDUCE, p.reason
    assert take_profits(p) == []
    assert stops(p) == [(2, D(21480))]
    assert "21540" in p.reason


def test_a_configured_take_profit_replaces_the_working_one() -> None:
    """Configured levels are what re-placed exits are priced from, as before."""
    s = RiskSettings(size=1, tp=parse_tp("40"), dca=True, same_direction=SameDirection.ADD)
    state = AccountState(1, D(21500), alert_exits(1))
    p = plan(Signal(Action.BUY, quantity=1, price=D(21500)), s, state, D(21500))
    assert take_profits(p) == [(2, D(21510))]


# --- per-alert percent exits of 100 % or more ---------------------------------------------------


@pytest.mark.parametrize(
    "exits",
    [
        {"stopLoss": {"type": "stop", "percent": 100}},
        {"takeProfit": {"percent": 150}},
        {"stopLoss": {"type": "trailing_stop", "trailPercent": 100}},
        {"percentage_sl": 100},
        {"percentage_tp": 250},
    ],
)
def test_a_percent_exit_of_100_or_more_is_refused(exits: dict[str, object]) -> None:
    """Refused like ``--sl``/``--tp`` in percent: before, a 100 % stop was planned at a price
    of 0 (or below), a short's 150 % target likewise."""
    import json

    from jtrades.errors import InvalidSignal

    body = {"action": "sell", "ticker": "MNQ1!", "price": 21500, **exits}
    with pytest.raises(InvalidSignal, match="at or past zero"):
        parse_payload(json.dumps(body).encode(), "application/json")


def test_a_percent_exit_under_100_is_read() -> None:
    body = b'{"action":"sell","ticker":"MNQ1!","stopLoss":{"type":"stop","percent":99.9}}'
    sig = parse_payload(body, "application/json")
    assert sig.stop_loss == ExitSpec(D("99.9"), Units.PERCENT)


def test_no_quantity_and_no_configured_size_opens_nothing() -> None:
    """Settings are validated (--size ≥ 1); were a size of 0 ever to reach the planner, an
    alert without a quantity is refused with a reason rather than sized by a guess (neither
    the chart's position size nor a crash)."""
    sig = Signal(
        Action.BUY, price=D(21500), market_position=MarketPosition.LONG,
        extra={"market_position_size": "37"},
    )  # fmt: skip
    p = plan(sig, RiskSettings(size=0, sl=D(40)), AccountState(0, None), D(21500))
    assert (p.action, p.orders) == (PositionAction.IGNORE, ())
    assert "no quantity" in p.reason


def test_a_carried_take_profit_is_re_priced_as_planned() -> None:
    """The broker's average moves computed levels, not a carried take-profit's price: the
    re-priced exits keep it (and its steps), so the dispatcher sends what was planned."""
    from jtrades.engine.resize import AddPlan, reprice_add

    state = AccountState(1, D(21500), alert_exits(1))
    p = plan(Signal(Action.BUY, quantity=1, price=D(21495)), DCA, state, D(21495))
    assert isinstance(p, AddPlan)
    a = p.add_exits
    assert reprice_add(a, a.estimate).orders == a.exits
    moved = reprice_add(a, D("21498.5"))  # the add filled at 21497
    assert moved.orders == a.exits


# --- the far end of a ladder --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tp", "mult", "total", "laid_for", "want"),
    [
        ("20:1,40:1,60", "1", 1, 3, [(60, 1)]),
        ("20:1,40:1,60", "1", 2, 3, [(40, 1), (60, 1)]),
        ("20:1,40:1,60", "1", 4, 5, [(40, 1), (60, 3)]),
        ("20:1,40:1,60", "1", 1, 2, [(40, 1)]),  # a 2-lot never had the 60 leg
        ("20:1,40:1,60", "3", 3, 9, [(60, 3)]),
        ("20:2,40", "1", 3, 1, [(20, 2), (40, 1)]),  # laid for less: the whole ladder
    ],
)
def test_ladder_tail_is_the_far_end_of_the_ladder_as_laid(
    tp: str, mult: str, total: int, laid_for: int, want: list[tuple[int, int]]
) -> None:
    from jtrades.engine.sizing import ladder_tail

    legs = ladder_tail(parse_tp(tp), total, D(mult), laid_for)
    assert [(int(leg.target), q) for leg, q in legs] == want
    assert sum(q for _, q in legs) == total


# A reduce keeps the working take-profits: the ladder laid for the entry is not known when the
# entry alert set its quantity (a second review found the guess from --size wrong).


def test_reduce_after_tp1_and_tp2_filled_of_an_alert_sized_entry_keeps_tp3() -> None:
    """--tp 20:1,40:1,60 (5/10/15 points on MNQ), --sl 30, --size 3. The entry alert
    asked for 5: TP1 1 @21505, TP2 1 @21510, TP3 3 @21515. TP1 and TP2 filled: long 3, TP3 3
    working. The market came back to 21508; the strategy trims 1. The 2 left are TP3's: they
    must stay at 21515, not go back onto TP2 (21510), a level that already filled."""
    s = RiskSettings(size=3, tp=parse_tp("20:1,40:1,60"), sl=D(30)).validate()
    state = AccountState(
        3,
        D(21500),
        (
            working(5, Side.SELL, 3, OrderType.LIMIT, price="21515"),
            working(6, Side.SELL, 3, OrderType.STOP, stop="21492.50"),
        ),
    )
    p = plan(trim(Side.BUY, D(21508)), s, state, D(21508))
    assert p.action is PositionAction.REDUCE, p.reason
    assert take_profits(p) == [(2, D(21515))], p.reason


def test_reduce_after_tp1_filled_of_an_alert_sized_entry_keeps_the_far_legs_short() -> None:
    """Short mirror, the alert asked for 3 (--size 2): TP1 1 @21495 filled; TP2 1 @21490 and
    TP3 1 @21485 work. The strategy buys back 1: the contract left is TP3's (21485)."""
    s = RiskSettings(size=2, tp=parse_tp("20:1,40:1,60"), sl=D(30)).validate()
    state = AccountState(
        -2,
        D(21500),
        (
            working(1, Side.BUY, 1, OrderType.LIMIT, price="21490"),
            working(2, Side.BUY, 1, OrderType.STOP, stop="21507.50"),
            working(3, Side.BUY, 1, OrderType.LIMIT, price="21485"),
            working(4, Side.BUY, 1, OrderType.STOP, stop="21507.50"),
        ),
    )
    p = plan(trim(Side.SELL, D(21497)), s, state, D(21497))
    assert p.action is PositionAction.REDUCE, p.reason
    assert take_profits(p) == [(1, D(21485))], p.reason
    assert stops(p) == [(1, D("21507.50"))]


def test_reduce_of_an_alert_sized_2_lot_keeps_its_own_far_leg_not_a_third() -> None:
    """--size 3 --tp 20:1,40:1,60. The entry alert asked for 2: its ladder is TP1 1 @21505,
    TP2 1 @21510 (a 2-lot never has the 60 leg: ``ladder``). Nothing filled; the strategy
    trims 1. The contract left is TP2's (21510): it must not get a 15-point target (21515)
    the position never had, laid for the --size 3 the alert did not use."""
    s = RiskSettings(size=3, tp=parse_tp("20:1,40:1,60"), sl=D(30)).validate()
    state = AccountState(
        2,
        D(21500),
        (
            working(1, Side.SELL, 1, OrderType.LIMIT, price="21505"),
            working(2, Side.SELL, 1, OrderType.STOP, stop="21492.50"),
            working(3, Side.SELL, 1, OrderType.LIMIT, price="21510"),
            working(4, Side.SELL, 1, OrderType.STOP, stop="21492.50"),
        ),
    )
    p = plan(trim(Side.BUY, D(21502)), s, state, D(21502))
    assert p.action is PositionAction.REDUCE, p.reason
    assert take_profits(p) == [(1, D(21510))], p.reason


# --- the position size corrects a reversal's quantity, and never raises another entry's -------


def _pyramid_add() -> Signal:
    """The chart is long 9 and buys 1 more: an order of 1, a position of 10 after it."""
    return Signal(
        Action.BUY, quantity=1, price=D(21500), market_position=MarketPosition.LONG,
        prev_market_position=MarketPosition.LONG, extra={"market_position_size": "10"},
    )  # fmt: skip


def test_a_pyramid_add_opens_its_order_on_a_flat_follower_not_the_charts_position() -> None:
    """The follower's own take-profit left it flat while the strategy kept adding: the add
    opens 1 (× the multiplier), not the 10 the chart now holds."""
    p = plan(_pyramid_add(), RiskSettings(size=1, sl=D(40)), AccountState(0, None), D(21500), "2")
    assert p.action is PositionAction.OPEN, p.reason
    r = p.orders[-1].request
    assert isinstance(r, StrategyRequest)
    assert r.entry.qty == 2


def test_tradingviews_default_message_for_a_pyramid_add_opens_its_order() -> None:
    body = b"My Strategy (14): order buy @ 1 filled on MNQ1!. New strategy position is 10"
    sig = parse_payload(body, "text/plain")
    p = plan(sig, RiskSettings(size=1, sl=D(40)), AccountState(0, None), D(21500))
    r = p.orders[-1].request
    assert isinstance(r, StrategyRequest)
    assert r.entry.qty == 1


def test_a_reentry_on_a_pyramid_add_opens_its_order() -> None:
    s = RiskSettings(size=1, sl=D(40), same_direction=SameDirection.REENTER)
    p = plan(_pyramid_add(), s, AccountState(1, D(21490)), D(21500))
    assert p.action is PositionAction.REENTER, p.reason
    r = p.orders[-1].request
    assert isinstance(r, StrategyRequest)
    assert r.entry.qty == 1
