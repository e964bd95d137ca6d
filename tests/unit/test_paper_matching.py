"""The paper broker matches orders as the simulator models Tradovate (jtrades/sim/exchange.py):
the same price paths give the same fills and the same stop moves. Plus the autoTrail rules on
their own: a stop never moves before the trigger, moves in whole steps of freq, never loosens."""

from __future__ import annotations

import asyncio
from datetime import date
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from jtrades.broker.base import (
    BracketOrder,
    OrderRequest,
    OrderType,
    OsoRequest,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
)
from jtrades.broker.matching import auto_trailed
from jtrades.broker.paper import PaperBroker
from jtrades.sim.config import Contract, build_contracts
from jtrades.sim.entities import Leg, OrderSpec
from jtrades.sim.exchange import Exchange

D = Decimal
A = SubAccount(11, "A")
SYM = "MNQZ6"
START = D("21500")
TICK = D("0.25")

sides = st.sampled_from([Side.BUY, Side.SELL])
prices = st.integers(-60, 60).map(lambda k: START + k * TICK)
paths = st.lists(prices, min_size=1, max_size=30)
distances = st.integers(1, 40).map(lambda k: k * TICK)


def sim_world() -> tuple[Exchange, Contract]:
    contracts = build_contracts(date(2026, 11, 25))
    ex = Exchange(contracts, {c.id: c.root.start for c in contracts})
    mnq = next(c for c in contracts if c.name == SYM)
    ex.prices[mnq.id] = START
    return ex, mnq


async def paper_world() -> PaperBroker:
    paper = PaperBroker()
    await paper.find_contract(SYM)
    paper.on_price(SYM, START)
    return paper


Trace = list[tuple[str, Decimal, int]]


def sim_fills(ex: Exchange) -> Trace:
    return [(f.action, f.price, f.qty) for f in ex.fills_by_account.get(A.account_id, [])]


def paper_fills(paper: PaperBroker) -> Trace:
    return [(str(f.side), f.price, f.qty) for f in paper.fills(A.account_id)]


Book = list[tuple[str, str, Decimal | None, Decimal | None]]


def sim_book(ex: Exchange) -> Book:
    return sorted(
        (o.spec.action, o.spec.order_type, o.spec.price, o.spec.stop_price)
        for o in ex.open_orders(A.account_id)
    )


def paper_book(paper: PaperBroker, as_stop: bool = False) -> Book:
    """``as_stop``: an autoTrail stop sent with ``trailingStop`` is a TrailingStop order at the
    broker; the simulator only applies autoTrail to a Stop, so that is what it is compared with."""
    return sorted(
        (str(o.side), "Stop" if as_stop else str(o.order_type), o.price, o.stop_price)
        for o in paper.working_orders(A.account_id)
    )


def follow(
    ex: Exchange, mnq: Contract, paper: PaperBroker, path: list[Decimal], as_stop: bool = False
) -> None:
    for px in path:
        ex.set_price(mnq.id, px)
        paper.on_price(SYM, px)
        assert paper_fills(paper) == sim_fills(ex), px
        assert paper_book(paper, as_stop) == sim_book(ex), px


# --- the same paths, the same fills -------------------------------------------------------------


@given(
    side=sides,
    stop=distances,
    trailing=st.booleans(),
    trigger=st.none() | st.integers(0, 60).map(lambda k: k * TICK),
    freq=st.integers(0, 100).map(lambda k: k * D("0.05")),
    path=paths,
)
def test_a_strategy_stop_trails_and_fills_as_in_the_simulator(
    side: Side,
    stop: Decimal,
    trailing: bool,
    trigger: Decimal | None,
    freq: Decimal,
    path: list[Decimal],
) -> None:
    """With a trigger, the broker gets ``autoTrail`` (whatever ``trailingStop`` says): the
    simulator's autoTrail stop. Without one, a trailing or a fixed stop."""
    d = side.sign
    ex, mnq = sim_world()
    auto = None if trigger is None else {"stopLoss": stop, "trigger": trigger, "freq": freq}
    leg = Leg(1, None, -d * stop, trailing=trailing and auto is None, auto_trail=auto)
    ex.start_strategy(A.account_id, mnq, str(side), "{}", OrderSpec(str(side), 1, "Market"), [leg])
    bracket = StrategyBracket(
        1,
        stop_loss=-d * stop,
        trailing_stop=trailing,
        trail_trigger=trigger,
        trail_freq=None if trigger is None else freq,
    )

    async def run() -> None:
        paper = await paper_world()
        await paper.start_strategy(StrategyRequest(OrderRequest(A, SYM, side, 1), (bracket,)))
        assert paper_book(paper, auto is not None) == sim_book(ex)
        follow(ex, mnq, paper, path, auto is not None)

    asyncio.run(run())


@given(
    side=sides,
    kind=st.sampled_from(
        [OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP]
    ),
    price=prices,
    stop=prices,
    with_stop=st.booleans(),
    peg=distances,
    path=paths,
)
def test_a_working_order_fills_as_in_the_simulator(
    side: Side,
    kind: OrderType,
    price: Decimal,
    stop: Decimal,
    with_stop: bool,
    peg: Decimal,
    path: list[Decimal],
) -> None:
    """Marketable when placed: at the market; reached by a move: a limit at its limit, a stop at
    the price; a stop-limit's limit is born when its stop trades."""
    ex, mnq = sim_world()
    limit = price if kind in (OrderType.LIMIT, OrderType.STOP_LIMIT) else None
    trigger = stop if kind in (OrderType.STOP, OrderType.STOP_LIMIT) or with_stop else None
    trail = -side.sign * peg if kind is OrderType.TRAILING_STOP else None
    ex.place(A.account_id, mnq, OrderSpec(str(side), 1, str(kind), limit, trigger, trail))
    req = OrderRequest(A, SYM, side, 1, kind, price=limit, stop_price=trigger, peg_difference=trail)

    async def run() -> None:
        paper = await paper_world()
        await paper.place_order(req)
        assert paper_fills(paper) == sim_fills(ex)
        assert paper_book(paper) == sim_book(ex)
        follow(ex, mnq, paper, path)

    asyncio.run(run())


@given(
    side=sides,
    entry=prices,
    target=prices,
    stop=prices,
    path=paths,
)
def test_oso_brackets_fill_as_in_the_simulator(
    side: Side, entry: Decimal, target: Decimal, stop: Decimal, path: list[Decimal]
) -> None:
    """A bracket marketable when its entry fills fills at the market, as on placement."""
    exit_side = side.opposite
    ex, mnq = sim_world()
    ex.place_oso(
        A.account_id,
        mnq,
        OrderSpec(str(side), 1, "Limit", price=entry),
        [
            OrderSpec(str(exit_side), 1, "Limit", price=target),
            OrderSpec(str(exit_side), 1, "Stop", stop_price=stop),
        ],
    )
    req = OsoRequest(
        OrderRequest(A, SYM, side, 1, OrderType.LIMIT, price=entry),
        BracketOrder(exit_side, OrderType.LIMIT, price=target),
        BracketOrder(exit_side, OrderType.STOP, stop_price=stop),
    )

    async def run() -> None:
        paper = await paper_world()
        await paper.place_oso(req)
        assert paper_fills(paper) == sim_fills(ex)
        follow(ex, mnq, paper, path)

    asyncio.run(run())


# --- autoTrail on its own -----------------------------------------------------------------------


@given(
    side=sides,
    stop=distances,
    trigger=st.integers(0, 60).map(lambda k: k * TICK),
    freq=st.integers(1, 16).map(lambda k: k * TICK),
    path=paths,
)
def test_an_auto_trail_stop_waits_steps_and_never_loosens(
    side: Side, stop: Decimal, trigger: Decimal, freq: Decimal, path: list[Decimal]
) -> None:
    d = side.sign
    bracket = StrategyBracket(
        1, stop_loss=-d * stop, trailing_stop=True, trail_trigger=trigger, trail_freq=freq
    )

    async def run() -> None:
        paper = await paper_world()
        await paper.start_strategy(StrategyRequest(OrderRequest(A, SYM, side, 1), (bracket,)))
        initial = last = START - d * stop
        best = Decimal(0)  # the most profit seen, in points
        for px in path:
            paper.on_price(SYM, px)
            best = max(best, d * (px - START))
            working = paper.working_orders(A.account_id)
            if not working:
                return
            (o,) = working
            assert o.stop_price is not None
            if best < trigger:
                assert o.stop_price == initial
            assert d * (o.stop_price - last) >= 0  # never loosens
            assert (o.stop_price - initial) % freq == 0
            if o.stop_price != last:
                assert d * (px - o.stop_price) >= stop  # never closer than the distance
            last = o.stop_price

    asyncio.run(run())


@given(
    side=sides,
    stop=prices,
    px=prices,
    dist=distances,
    trigger=st.integers(0, 60).map(lambda k: k * TICK),
    freq=st.integers(1, 16).map(lambda k: k * TICK),
)
def test_auto_trailed_moves_only_past_the_trigger_and_by_whole_steps(
    side: Side, stop: Decimal, px: Decimal, dist: Decimal, trigger: Decimal, freq: Decimal
) -> None:
    exit_side = side.opposite
    new = auto_trailed(stop, px, exit_side, START, dist, trigger, freq, TICK)
    profit = side.sign * (px - START)
    if profit < trigger:
        assert new == stop
    assert side.sign * (new - stop) >= 0
    assert (new - stop) % freq == 0
    if new != stop:
        assert side.sign * (px - new) >= dist
        assert side.sign * (px - new) < dist + freq  # as close as whole steps allow


def test_the_simulator_waits_for_the_trigger_of_a_trailing_stop_with_auto_trail() -> None:
    """What planning sends for ``--sl-type trailing --trail-trigger``: ``trailingStop`` and
    ``autoTrail`` together. The simulator trailed such a stop from the fill, as if it had no
    trigger, where Tradovate (and the paper broker) wait for it."""
    ex, mnq = sim_world()
    auto = {"stopLoss": D(5), "trigger": D(10), "freq": D(1)}
    leg = Leg(1, None, D(-5), trailing=True, auto_trail=auto)
    ex.start_strategy(A.account_id, mnq, "Buy", "{}", OrderSpec("Buy", 1, "Market"), [leg])
    stops = [o.spec.stop_price for o in ex.open_orders(A.account_id)]
    ex.set_price(mnq.id, D(21503))  # +3: short of the trigger
    assert [o.spec.stop_price for o in ex.open_orders(A.account_id)] == stops
    ex.set_price(mnq.id, D(21512))  # +12: past it, the stop follows 5 behind in whole points
    assert [o.spec.stop_price for o in ex.open_orders(A.account_id)] == [D(21507)]
