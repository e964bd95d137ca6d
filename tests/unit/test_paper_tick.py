"""The paper market is on the contract's tick (DESIGN.md §5 rule 4), whatever the alert's price.

TradingView's ``{{close}}`` on a Heikin Ashi chart is (O+H+L+C)/4: 21500.0625 on MNQ (tick
0.25). Paper used to fill a market order there, price its take-profit and stop from that fill
(21505.0625 / 21490.0625) and book a round trip of $20.25 where one MNQ tick is $0.50. The price
of each alert is now put on the nearest tick (a half tick up) before anything fills or triggers
at it, so fills, the legs priced from them and the P&L are whole ticks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from jtrades.broker.base import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
    WorkingOrder,
)
from jtrades.broker.paper import PaperBroker
from jtrades.broker.paper_orders import PaperOrder, price_from_entry
from jtrades.broker.paper_restore import RestoredOrder
from jtrades.engine.instruments import table_contract

D = Decimal
A = SubAccount(11, "A")
B = SubAccount(12, "B")
SYM = "MNQZ6"
TICK = D("0.25")

# contracts with ticks of every shape: quarter, 1/32, cents, a whole point, 0.00005, 0.001
CONTRACTS = ["MNQZ6", "ZBZ6", "CLZ6", "YMZ6", "6EZ6", "NGZ6"]
START = {"MNQZ6": D(21500), "ZBZ6": D(115), "CLZ6": D(70), "YMZ6": D(44000),
         "6EZ6": D("1.1"), "NGZ6": D(3)}  # fmt: skip


async def paper_at(price: str, symbol: str = SYM) -> PaperBroker:
    p = PaperBroker()
    await p.find_contract(symbol)
    p.on_price(symbol, D(price))
    return p


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(coro)


def realized(p: PaperBroker) -> Decimal:
    cash = p.cash(A.account_id)
    assert cash is not None
    return cash.realized_pnl


def on_tick(value: Decimal | None, tick: Decimal) -> bool:
    return value is None or value % tick == 0


# --- the market price -----------------------------------------------------------------------


def test_a_heikin_ashi_close_fills_on_the_nearest_tick_and_so_do_its_legs() -> None:
    async def go() -> None:
        p = await paper_at("21500.0625")
        entry = OrderRequest(A, SYM, Side.BUY, 1)
        bracket = StrategyBracket(1, profit_target=D(5), stop_loss=D(-10))
        await p.start_strategy(StrategyRequest(entry, (bracket,)))
        assert [f.price for f in p.fills(A.account_id)] == [D("21500.00")]
        legs = {(o.price, o.stop_price) for o in p.working_orders(A.account_id)}
        assert legs == {(D("21505.00"), None), (None, D("21490.00"))}

    run(go())


def test_a_half_tick_goes_up_for_a_buy_and_a_sell_alike() -> None:
    """One market price for every order: 21500.125 is 21500.25 to both sides."""

    async def go() -> None:
        p = await paper_at("21500.125")
        await p.place_order(OrderRequest(A, SYM, Side.BUY, 1))
        await p.place_order(OrderRequest(B, SYM, Side.SELL, 1))
        assert [f.price for f in p.fills(A.account_id)] == [D("21500.25")]
        assert [f.price for f in p.fills(B.account_id)] == [D("21500.25")]

    run(go())


async def _found(symbol: str = SYM) -> PaperBroker:
    p = PaperBroker()
    await p.find_contract(symbol)
    return p


def test_on_tick_is_the_nearest_tick_and_keeps_a_price_already_on_it() -> None:
    p = asyncio.run(_found())
    assert p.on_tick(SYM, D("21500.0625")) == D("21500.00")
    assert p.on_tick(SYM, D("21500.2")) == D("21500.25")
    assert p.on_tick(SYM, D("21500.1249")) == D("21500.00")
    assert p.on_tick(SYM, D("21500.375")) == D("21500.50")  # half a tick: up
    assert str(p.on_tick(SYM, D("21500"))) == "21500"  # as given
    assert str(p.on_tick(SYM, D("21500.75"))) == "21500.75"
    # a contract never looked up: its tick is unknown, the price left as it is
    assert p.on_tick("MNQH7", D("21500.0625")) == D("21500.0625")


def test_a_stop_triggers_on_the_rounded_price_and_fills_there() -> None:
    async def go() -> None:
        p = await paper_at("21500")
        await p.place_order(OrderRequest(A, SYM, Side.BUY, 1))
        await p.place_order(
            OrderRequest(A, SYM, Side.SELL, 1, OrderType.STOP, stop_price=D("21490"))
        )
        p.on_price(SYM, D("21490.13"))  # 21490.25: above the stop
        assert [o.stop_price for o in p.working_orders(A.account_id)] == [D("21490")]
        p.on_price(SYM, D("21490.1"))  # 21490.00: the stop's price
        assert [f.price for f in p.fills(A.account_id)] == [D("21500"), D("21490.00")]
        assert p.working_orders(A.account_id) == []

    run(go())


def test_a_resting_limit_reached_by_a_rounded_price_fills_at_its_limit() -> None:
    async def go() -> None:
        p = await paper_at("21500")
        await p.place_order(OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("21490")))
        p.on_price(SYM, D("21490.12"))  # 21490.00
        assert [f.price for f in p.fills(A.account_id)] == [D("21490")]

    run(go())


def test_a_held_months_fill_price_is_on_the_tick_too() -> None:
    async def go() -> None:
        p = await _found()
        p.fill_at(A.account_id, SYM, D("20000.0625"))
        await p.place_order(OrderRequest(A, SYM, Side.BUY, 1))
        assert [f.price for f in p.fills(A.account_id)] == [D("20000.00")]

    run(go())


# --- legs and restored orders ---------------------------------------------------------------


def _leg(side: Side) -> PaperOrder:
    """A take-profit (a limit) of an entry of the other side, waiting for it."""
    entry = PaperOrder.placed(
        OrderRequest(A, SYM, side.opposite, 1), 1, 1000, datetime(2026, 12, 1, tzinfo=UTC)
    )
    return PaperOrder.leg(entry, 2, side, 1, OrderType.LIMIT)


def test_a_leg_priced_from_offsets_off_the_tick_goes_where_it_triggers() -> None:
    """Not from the engine (its offsets are on the tick), but put on it all the same: a limit
    at the first tick it accepts, a stop at the first that reaches it."""
    tp = _leg(Side.SELL)
    tp.tp_offset = D("5.1")
    price_from_entry(tp, Side.BUY, D(21500), TICK)
    assert tp.price == D("21505.25")
    sl = _leg(Side.SELL)
    sl.order_type, sl.sl_offset = OrderType.STOP, D("9.9")
    sl.be_trigger, sl.be_offset = D(8), D("0.1")
    price_from_entry(sl, Side.BUY, D(21500), TICK)
    assert (sl.stop_price, sl.be_stop) == (D("21490.00"), D("21500.00"))
    short_sl = _leg(Side.BUY)
    short_sl.order_type, short_sl.sl_offset = OrderType.STOP, D("9.9")
    price_from_entry(short_sl, Side.SELL, D(21500), TICK)
    assert short_sl.stop_price == D("21510.00")


def _restored(
    p: PaperBroker,
    oid: int,
    side: Side,
    kind: OrderType,
    price: Decimal | None = None,
    stop_price: Decimal | None = None,
) -> WorkingOrder:
    r = RestoredOrder(oid, A, SYM, side, 1, kind, OrderStatus.WORKING, price, stop_price)
    return p.restore_order(r)


def test_a_row_stored_off_the_tick_is_put_back_on_it() -> None:
    """Legs priced before paper kept to the tick (21505.0625 / 21490.0625) come back on the
    tick they trigger at, so the row is written anew and a limit fills on the tick."""

    async def go() -> None:
        p = await _found()
        sell = Side.SELL
        assert _restored(p, 5, sell, OrderType.LIMIT, price=D("21505.0625")).price == D("21505.25")
        stop = _restored(p, 6, sell, OrderType.STOP, stop_price=D("21490.0625"))
        assert stop.stop_price == D("21490.00")
        assert _restored(p, 7, Side.BUY, OrderType.LIMIT, price=D("21494.9")).price == D("21494.75")
        buy_stop = _restored(p, 8, Side.BUY, OrderType.STOP, stop_price=D("21510.1"))
        assert buy_stop.stop_price == D("21510.25")
        kept = _restored(p, 9, sell, OrderType.LIMIT, price=D("21520"))
        assert str(kept.price) == "21520"  # on the tick: as stored

    run(go())


# --- properties -----------------------------------------------------------------------------

# an alert's price: the contract's start, then any number of ticks and any fraction of one
alert_ticks = st.decimals(min_value=-200, max_value=200, places=4, allow_nan=False,
                          allow_infinity=False)  # fmt: skip
sides = st.sampled_from([Side.BUY, Side.SELL])
leg_ticks = st.integers(1, 60)
ladder = st.lists(
    st.tuples(st.integers(1, 2), st.none() | leg_ticks, st.none() | leg_ticks, st.booleans(),
              st.none() | st.integers(1, 30)),
    min_size=1, max_size=3,
)  # fmt: skip


def assert_on_the_tick(p: PaperBroker, tick: Decimal) -> None:
    for f in p.fills(A.account_id):
        assert on_tick(f.price, tick), f
    for o in p.working_orders(A.account_id):
        assert on_tick(o.price, tick), o
        assert on_tick(o.stop_price, tick), o


@given(
    symbol=st.sampled_from(CONTRACTS),
    side=sides,
    entry_at=alert_ticks,
    legs=ladder,
    path=st.lists(alert_ticks, min_size=0, max_size=20),
    last=alert_ticks,
)
@example(symbol=SYM, side=Side.BUY, entry_at=D("0.25"), legs=[(1, 20, 40, False, None)],
         path=[], last=D("40.75"))  # fmt: skip  # 21500.0625 in, 21510.1875 out
@example(symbol=SYM, side=Side.SELL, entry_at=D("0.5"), legs=[(1, 20, 40, True, 8)],
         path=[D("-8.5"), D("-30.5")], last=D("2.5"))  # fmt: skip  # half ticks
def test_any_alert_price_fills_prices_legs_and_books_pnl_in_whole_ticks(
    symbol: str,
    side: Side,
    entry_at: Decimal,
    legs: list[tuple[int, int | None, int | None, bool, int | None]],
    path: list[Decimal],
    last: Decimal,
) -> None:
    c = table_contract(symbol)
    tick, start = c.tick_size, START[symbol]
    d = side.sign
    brackets = tuple(
        StrategyBracket(
            q,
            profit_target=None if tp is None else d * tp * tick,
            stop_loss=None if sl is None else -d * sl * tick,
            trailing_stop=trailing and sl is not None,
            breakeven=None if be is None or sl is None else be * tick,
        )
        for q, tp, sl, trailing, be in legs
    )
    qty = sum(b.qty for b in brackets)

    async def go() -> None:
        p = PaperBroker()
        await p.find_contract(symbol)
        p.on_price(symbol, start + entry_at * tick)
        await p.start_strategy(StrategyRequest(OrderRequest(A, symbol, side, qty), brackets))
        (entry,) = p.fills(A.account_id)
        assert on_tick(entry.price, tick)
        assert abs(entry.price - (start + entry_at * tick)) <= tick / 2
        assert_on_the_tick(p, tick)
        for k in path:
            p.on_price(symbol, start + k * tick)
            assert_on_the_tick(p, tick)
        p.on_price(symbol, start + last * tick)
        await p.liquidate_position(A, (await p.find_contract(symbol)).contract_id or 0)
        assert_on_the_tick(p, tick)
        assert [q.net_pos for q in p.positions(A.account_id)] == [0]
        pnl = realized(p)
        assert pnl % (tick * c.value_per_point) == 0, (pnl, p.fills(A.account_id))

    run(go())


@given(
    symbol=st.sampled_from(CONTRACTS),
    side=sides,
    qty=st.integers(1, 5),
    entry_at=alert_ticks,
    exit_at=alert_ticks,
)
@example(symbol=SYM, side=Side.BUY, qty=1, entry_at=D("0.25"), exit_at=D("40.75"))
def test_a_round_trip_books_a_whole_number_of_tick_values(
    symbol: str, side: Side, qty: int, entry_at: Decimal, exit_at: Decimal
) -> None:
    c = table_contract(symbol)
    tick, start = c.tick_size, START[symbol]

    async def go() -> None:
        p = PaperBroker()
        await p.find_contract(symbol)
        p.on_price(symbol, start + entry_at * tick)
        await p.place_order(OrderRequest(A, symbol, side, qty))
        p.on_price(symbol, start + exit_at * tick)
        await p.place_order(OrderRequest(A, symbol, side.opposite, qty))
        into, out = (f.price for f in p.fills(A.account_id))
        ticks = (out - into) / tick
        assert ticks == ticks.to_integral_value()
        pnl = realized(p)
        assert pnl == ticks * side.sign * qty * tick * c.value_per_point
        assert pnl % c.tick_value == 0

    run(go())
