"""A partial exit (``engine.trim``): a sell of fewer contracts than the long held, with no
market position (nor TradersPost's ``sentiment``), trims the long and opens nothing, as
TradersPost does; read as the table's reversal, TradersPost's own example message closed the
long 10 and opened a short 5."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from jtrades.broker.base import OrderRequest, Side, StrategyRequest
from jtrades.engine.parsing import parse_payload
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Signal
from jtrades.engine.sizing import scale_qty
from jtrades.engine.trim import TRIM
from tests.unit.test_resize_market import ACCT, MNQ, plan

D = Decimal
SETTINGS = RiskSettings(size=1)
PRICE = D(21500)


def _tp(body: str) -> Signal:
    sig = parse_payload(body.encode(), "application/json")
    assert sig.source == "traderspost"
    return sig


SELL_5 = '{"ticker":"MNQ1!","action":"sell","quantity":5,"quantityType":"fixed_quantity"}'


def _market_orders(p: AccountPlan) -> list[tuple[Side, int]]:
    return [
        (r.side, r.qty)
        for o in p.orders
        if isinstance(r := o.request, OrderRequest) and o.kind == "order"
    ]


@pytest.mark.parametrize(("held", "mult", "left"), [(10, "1", 5), (20, "2", 10), (-10, "1", None)])
def test_a_sell_of_fewer_than_the_long_held_trims_it(
    held: int, mult: str, left: int | None
) -> None:
    p = plan(_tp(SELL_5), SETTINGS, AccountState(held, D(21490)), PRICE, mult)
    if left is None:  # short 10: a sell adds (or is ignored), as any sell while short
        assert p.action is not PositionAction.REDUCE
        return
    assert p.action is PositionAction.REDUCE, p.reason
    assert _market_orders(p) == [(Side.SELL, held - left)]
    assert not any(isinstance(o.request, StrategyRequest) for o in p.orders)  # nothing opens
    assert p.short is not None
    assert p.short.cause == TRIM
    assert "trims it" in p.reason


def test_a_buy_of_fewer_than_the_short_held_trims_it() -> None:
    body = '{"ticker":"MNQ1!","action":"buy","quantity":2,"quantityType":"fixed_quantity"}'
    p = plan(_tp(body), SETTINGS, AccountState(-3, D(21510)), PRICE)
    assert p.action is PositionAction.REDUCE, p.reason
    assert _market_orders(p) == [(Side.BUY, 2)]


@pytest.mark.parametrize("held", [5, 3])
def test_as_many_contracts_as_held_or_more_still_reverse(held: int) -> None:
    p = plan(_tp(SELL_5), SETTINGS, AccountState(held, D(21490)), PRICE)
    assert p.action is PositionAction.REVERSE, p.reason
    assert p.short is None


def test_from_flat_it_opens() -> None:
    p = plan(_tp(SELL_5), SETTINGS, AccountState(0, None), PRICE)
    assert p.action is PositionAction.OPEN, p.reason
    r = p.orders[-1].request
    assert isinstance(r, OrderRequest)
    assert (r.side, r.qty) == (Side.SELL, 5)


@pytest.mark.parametrize(
    ("body", "want"),
    [
        # TradersPost's own example, which is jtrades' format too, and plain text: a trim
        ('{"ticker":"MNQ1!","action":"sell","quantity":5}', PositionAction.REDUCE),
        ("sell MNQ1! 5", PositionAction.REDUCE),
        # PickMyTrade's dialect keeps its reading
        ('{"symbol":"MNQ1!","data":"sell","quantity":5}', PositionAction.REVERSE),
        # a market position says what the order leaves: short is the reversal
        (
            '{"ticker":"MNQ1!","action":"sell","quantity":5,"market_position":"short"}',
            PositionAction.REVERSE,
        ),
        # a sentiment says the position after the order: still long is a reduce, short a reversal
        (
            '{"ticker":"MNQ1!","action":"sell","quantity":5,"sentiment":"long"}',
            PositionAction.REDUCE,
        ),
        (
            '{"ticker":"MNQ1!","action":"sell","quantity":5,"sentiment":"short"}',
            PositionAction.REVERSE,
        ),
        # no quantity: TradersPost exits the whole long and enters the other side
        (
            '{"ticker":"MNQ1!","action":"sell","quantityType":"fixed_quantity"}',
            PositionAction.REVERSE,
        ),
    ],
)
def test_other_messages_keep_their_reading(body: str, want: PositionAction) -> None:
    kind = "application/json" if body.startswith("{") else "text/plain"
    sig = parse_payload(body.encode(), kind)
    p = plan(sig, SETTINGS, AccountState(10, D(21490)), PRICE)
    assert p.action is want, p.reason
    if want is PositionAction.REDUCE:  # a trim, or (a sentiment) the strategy's own reduce
        assert (p.short.cause if p.short else None) == (None if "sentiment" in body else TRIM)


def test_a_refused_entry_trims_rather_than_closes() -> None:
    """A filter refused the signal's entry (a window): a reversal's close half would still go;
    a trim is all the exit there is, so it goes, carrying the refusal."""
    p = plan_account(
        _tp(SELL_5), SETTINGS, D(1), ACCT, MNQ, AccountState(10, D(21490)),
        signal_price=PRICE, cl_ord_prefix="s1-101", entry_refused="window: outside 08:30-15:00",
    )  # fmt: skip
    assert p.action is PositionAction.REDUCE, p.reason
    assert _market_orders(p) == [(Side.SELL, 5)]
    assert p.short is not None
    assert p.short.cause == "window"


@pytest.mark.parametrize(("mult", "sell", "want"), [("0.5", 1, "close"), ("0.3", 2, "close")])
def test_a_fractional_follower_compares_the_unrounded_quantity(
    mult: str, sell: int, want: str
) -> None:
    """A ×0.5 follower's long 1 of the chart's long 2: a sell of 1 is half a contract, less
    than held, so a partial exit (it closes: a contract is whole). Floored to at least 1 it
    equalled the 1 held, and the follower reversed to short while the chart was long."""
    body = '{"ticker":"MNQ1!","action":"sell","quantity":%d,"quantityType":"fixed_quantity"}'
    p = plan(_tp(body % sell), SETTINGS, AccountState(1, D(21490)), PRICE, mult)
    assert str(p.action) == want, p.reason
    assert not any(isinstance(o.request, StrategyRequest) for o in p.orders)
    assert p.short is not None
    assert p.short.no_entry


MULTIPLIERS = ["0.3", "0.5", "1", "1.5", "2", "3"]


def _side_after(p: AccountPlan, held: int) -> int:
    """The sign of the position the plan leaves (a liquidation flattens; market orders move
    it; an opening strategy's entry too)."""
    pos = held
    for o in p.orders:
        r = o.request
        if o.kind == "liquidate":
            pos = 0
        elif isinstance(r, StrategyRequest):
            pos += r.entry.side.sign * r.entry.qty
        elif isinstance(r, OrderRequest) and o.kind == "order":
            pos += r.side.sign * r.qty
    return (pos > 0) - (pos < 0)


@given(
    chart=st.integers(1, 12),
    sold=st.integers(1, 12),
    mult=st.sampled_from(MULTIPLIERS),
)
@example(chart=3, sold=2, mult="0.5")
@example(chart=5, sold=4, mult="0.5")
def test_a_partial_exit_never_leaves_a_follower_on_the_side_opposite_the_chart(
    chart: int, sold: int, mult: str
) -> None:
    """The chart long ``chart`` sells fewer contracts than it holds (still long): a follower
    holding its share never ends short. A ×0.5 follower's long 1 of the chart's long 3, sold 2,
    was reversed to short 1 (2 × 0.5 was not less than the 1 held)."""
    assume(sold < chart)
    held = scale_qty(chart, D(mult))
    body = '{"ticker":"MNQ1!","action":"sell","quantity":%d,"quantityType":"fixed_quantity"}'
    p = plan(_tp(body % sold), SETTINGS, AccountState(held, D(21490)), PRICE, mult)
    assert _side_after(p, held) >= 0, (p.action, p.reason)


@pytest.mark.parametrize(
    ("mult", "held", "sold", "want"),
    [
        ("1", 3, 2, "reduce"),
        ("1", 3, 3, "reverse"),
        ("0.5", 1, 2, "close"),  # the chart's long 1, 2 or 3: a trim (it closes)
        ("0.5", 1, 3, "reverse"),  # the chart held at most 3: selling 3 or more reverses
        ("2", 4, 1, "reduce"),
        ("2", 4, 2, "reverse"),
    ],
)
def test_a_trim_is_read_against_the_most_the_chart_may_hold(
    mult: str, held: int, sold: int, want: str
) -> None:
    body = '{"ticker":"MNQ1!","action":"sell","quantity":%d,"quantityType":"fixed_quantity"}'
    p = plan(_tp(body % sold), SETTINGS, AccountState(held, D(21490)), PRICE, mult)
    assert str(p.action) == want, p.reason


@given(
    chart=st.integers(2, 40),
    sold=st.integers(1, 39),
    held_off=st.integers(-2, 0),
    mult=st.sampled_from(MULTIPLIERS),
)
def test_a_reduce_that_says_what_the_chart_still_holds_leaves_the_follower_its_share(
    chart: int, sold: int, held_off: int, mult: str
) -> None:
    """``{{strategy.market_position_size}}`` with the reduce: the follower keeps what an entry
    of that many gives it, or what it holds when that is less (a take-profit of its own
    filled). Sized from the order × multiplier, a ×1.5 follower's long 3 sold 1 of the chart's
    2 kept 2, twice its share of the chart's 1."""
    assume(sold < chart)
    m = D(mult)
    held = max(1, scale_qty(chart, m) + held_off)
    body = (
        f'{{"ticker":"MNQ1!","action":"sell","quantity":{sold},"market_position":"long",'
        f'"market_position_size":{chart - sold}}}'
    )
    p = plan(
        parse_payload(body.encode(), "application/json"),
        SETTINGS,
        AccountState(held, PRICE),
        PRICE,
        mult,
    )
    left = held - sum(q for s, q in _market_orders(p) if s is Side.SELL)
    if any(o.kind == "liquidate" for o in p.orders):
        left = 0
    assert left == min(held, scale_qty(chart - sold, m)), p.reason
