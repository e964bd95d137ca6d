"""What must hold of any paper strategy on any price path. ``test_paper_matching`` compares
market-entry strategies with one bracket against the simulator. These properties also cover
limit and stop entries, breakeven, and ladders of several brackets. On every path the position
is the sum of the fills and never flips against the entry, an exit stop never loosens, at most
one leg of an OCO pair fills, another sub-account's position and orders are left alone, and
the realized P&L is the closed quantity's."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from jtrades.broker.base import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
)
from jtrades.broker.paper import PaperBroker
from jtrades.broker.paper_ledger import Holding, apply_fill

D = Decimal
A = SubAccount(11, "A")
B = SubAccount(12, "B")
SYM = "MNQZ6"
WORKING = OrderStatus.WORKING
START = D("21500")
TICK = D("0.25")


def ticks(lo: int, hi: int) -> st.SearchStrategy[Decimal]:
    return st.integers(lo, hi).map(lambda k: k * TICK)


sides = st.sampled_from([Side.BUY, Side.SELL])
entry_kinds = st.sampled_from([OrderType.MARKET, OrderType.LIMIT, OrderType.STOP])
paths = st.lists(st.integers(-80, 80).map(lambda k: START + k * TICK), min_size=1, max_size=25)


def entry_order(side: Side, kind: OrderType, qty: int, at: Decimal) -> OrderRequest:
    if kind is OrderType.LIMIT:
        return OrderRequest(A, SYM, side, qty, kind, price=at)
    if kind is OrderType.STOP:
        return OrderRequest(A, SYM, side, qty, kind, stop_price=at)
    return OrderRequest(A, SYM, side, qty)


async def paper_world() -> PaperBroker:
    p = PaperBroker()
    await p.find_contract(SYM)
    p.on_price(SYM, START)
    return p


def assert_position_follows_the_fills(p: PaperBroker, side: Side) -> None:
    net = sum(f.side.sign * f.qty for f in p.fills(A.account_id))
    assert {q.symbol: q.net_pos for q in p.positions(A.account_id)}.get(SYM, 0) == net
    assert net * side.sign >= 0, p.fills(A.account_id)  # exits never overshoot


@given(
    side=sides,
    kind=entry_kinds,
    entry_off=ticks(-20, 20),
    tp=st.none() | ticks(1, 60),
    sl=ticks(1, 60),
    trailing=st.booleans(),
    trigger=st.none() | ticks(0, 40),
    freq=st.none() | ticks(1, 8),
    be=st.none() | ticks(1, 40),
    be_off=ticks(0, 8),
    path=paths,
)
def test_a_strategy_stop_never_loosens_and_one_exit_fills(
    side: Side,
    kind: OrderType,
    entry_off: Decimal,
    tp: Decimal | None,
    sl: Decimal,
    trailing: bool,
    trigger: Decimal | None,
    freq: Decimal | None,
    be: Decimal | None,
    be_off: Decimal,
    path: list[Decimal],
) -> None:
    d = side.sign
    if be is not None and be_off >= be:
        be_off = D(0)
    bracket = StrategyBracket(
        2, profit_target=None if tp is None else d * tp, stop_loss=-d * sl,
        trailing_stop=trailing, trail_trigger=trigger,
        trail_freq=freq if trigger is not None else None, breakeven=be, breakeven_offset=be_off,
    )  # fmt: skip

    async def run() -> None:
        p = await paper_world()
        entry = entry_order(side, kind, 2, START + entry_off)
        await p.start_strategy(StrategyRequest(entry, (bracket,)))
        last_stop: Decimal | None = None
        for px in path:
            p.on_price(SYM, px)
            for s in p.working_orders(A.account_id):
                if s.parent_id is not None and s.stop_price is not None and s.status is WORKING:
                    if last_stop is not None:
                        assert (s.stop_price - last_stop) * d >= 0, (last_stop, s, px)
                    last_stop = s.stop_price
            assert_position_follows_the_fills(p, side)
        exits = [
            o
            for o in p.all_orders(A.account_id)
            if o.parent_id is not None and o.status is OrderStatus.FILLED
        ]
        assert len(exits) <= 1

    asyncio.run(run())


legs = st.tuples(
    st.integers(1, 3), st.none() | ticks(1, 60), st.none() | ticks(1, 60), st.booleans(),
    st.none() | ticks(1, 40),
)  # fmt: skip


@given(
    side=sides,
    kind=entry_kinds,
    entry_off=ticks(-20, 20),
    ladder=st.lists(legs, min_size=1, max_size=3),
    path=paths,
)
def test_a_ladder_closes_what_it_opened_and_leaves_other_accounts_alone(
    side: Side,
    kind: OrderType,
    entry_off: Decimal,
    ladder: list[tuple[int, Decimal | None, Decimal | None, bool, Decimal | None]],
    path: list[Decimal],
) -> None:
    d = side.sign
    brackets = tuple(
        StrategyBracket(
            q, profit_target=None if tp is None else d * tp,
            stop_loss=None if sl is None else -d * sl, trailing_stop=trailing and sl is not None,
            breakeven=be if sl is not None else None,
        )
        for q, tp, sl, trailing, be in ladder
    )  # fmt: skip

    async def run() -> None:
        p = await paper_world()
        await p.place_order(OrderRequest(B, SYM, Side.BUY, 5))
        await p.place_order(OrderRequest(B, SYM, Side.SELL, 5, OrderType.LIMIT, price=START + 999))
        qty = sum(q for q, *_ in ladder)
        await p.start_strategy(StrategyRequest(entry_order(side, kind, qty, START + entry_off),
                                               brackets))  # fmt: skip
        for px in path:
            p.on_price(SYM, px)
            assert_position_follows_the_fills(p, side)
            orders = {o.order_id: o for o in p.all_orders(A.account_id)}
            for o in orders.values():
                if o.oco_id is not None and o.status is OrderStatus.FILLED:
                    assert orders[o.oco_id].status is not OrderStatus.FILLED
        assert {q.symbol: q.net_pos for q in p.positions(B.account_id)} == {SYM: 5}
        assert len(p.fills(B.account_id)) == 1
        assert len(p.working_orders(B.account_id)) == 1
        fills = p.fills(A.account_id)
        opened = [f for f in fills if f.side is side]
        closed = [f for f in fills if f.side is not side]
        if opened:  # one entry order: one fill, at one price
            (entry,) = opened
            pnl = sum((f.price - entry.price) * f.qty * d * 2 for f in closed)  # MNQ: $2 a point
            cash = p.cash(A.account_id)
            assert cash is not None
            assert cash.realized_pnl == pnl

    asyncio.run(run())


@given(
    st.lists(st.tuples(st.integers(1, 50), st.integers(80_000, 90_000)), min_size=1, max_size=12),
    st.integers(0, 12),
)
def test_the_average_is_the_fills_exact_average_through_adds_and_trims(
    buys: list[tuple[int, int]], trim_after: int
) -> None:
    """Any buys on MNQ's quarter-point ticks: the average is sum(qty × price) / qty held,
    exactly where that ends within 12 places; a trim leaves it as it was."""
    pos, cost, held = Holding(), Fraction(0), 0
    for n, (qty, ticks) in enumerate(buys):
        price = D(ticks) / 4
        apply_fill(pos, qty, price, D(2))
        cost, held = cost + Fraction(price) * qty, held + qty
        exact = cost / held
        assert pos.avg is not None
        assert abs(Fraction(pos.avg) - exact) < Fraction(1, 10**12)
        if exact.denominator in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024):
            assert Fraction(pos.avg) == exact
        if n == trim_after and held > 1:
            before = pos.avg
            apply_fill(pos, -1, price, D(2))
            held -= 1
            cost = exact * held
            assert pos.avg == before
