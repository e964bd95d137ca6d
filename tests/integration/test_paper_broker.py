"""The paper broker: fills at the signal price, working orders triggered by later prices,
OSO/OCO/strategy semantics, liquidation, realized P&L, lookups by clOrdId, the event stream."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from jtrades.broker.base import (
    BracketOrder,
    Broker,
    OcoRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    OsoRequest,
    Side,
    StrategyBracket,
    StrategyRequest,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.broker.paper import PaperBroker
from jtrades.engine.reconcile import needs_stop
from jtrades.engine.tradingday import trading_day
from jtrades.errors import BrokerRejected

A = SubAccount(1, "A")
B = SubAccount(2, "B")
SYM = "MNQZ6"


@pytest.fixture
async def paper() -> PaperBroker:
    p = PaperBroker()
    await p.find_contract(SYM)
    p.on_price(SYM, Decimal("100"))
    return p


def D(x: str) -> Decimal:
    return Decimal(x)


async def test_it_is_a_broker() -> None:
    assert isinstance(PaperBroker(), Broker)


async def test_market_fills_at_the_last_price(paper: PaperBroker) -> None:
    r = await paper.place_order(OrderRequest(A, SYM, Side.BUY, 2, cl_ord_id="x1"))
    (pos,) = paper.positions(1)
    assert (pos.net_pos, pos.net_price) == (2, D("100"))
    (fill,) = paper.fills(1)
    assert (fill.order_id, fill.qty, fill.price) == (r.order_id, 2, D("100"))
    found = await paper.order_by_cl_ord_id(1, "x1")
    assert found is not None
    assert found.status is OrderStatus.FILLED
    assert await paper.order_by_cl_ord_id(2, "x1") is None  # other account: not visible


async def test_market_without_a_price_is_rejected() -> None:
    p = PaperBroker()
    with pytest.raises(BrokerRejected, match="no price"):
        await p.place_order(OrderRequest(A, SYM, Side.BUY, 1))


async def test_limit_and_stop_trigger_on_later_prices(paper: PaperBroker) -> None:
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("99")))
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1, OrderType.STOP, stop_price=D("102")))
    paper.on_price(SYM, D("100.5"))
    assert paper.positions(1) == []
    paper.on_price(SYM, D("98.75"))
    assert paper.positions(1)[0].net_pos == 1
    assert paper.fills(1)[0].price == D("99")  # a limit fills at its price
    paper.on_price(SYM, D("102.25"))
    assert paper.positions(1)[0].net_pos == 2
    assert paper.working_orders(1) == []


async def test_strategy_ladder_with_oco_stops(paper: PaperBroker) -> None:
    entry = OrderRequest(A, SYM, Side.BUY, 3, cl_ord_id="s1")
    legs = tuple(StrategyBracket(1, profit_target=D(t), stop_loss=D("-5")) for t in ("2", "4", "6"))
    await paper.start_strategy(StrategyRequest(entry, legs))

    work = paper.working_orders(1)
    assert sorted(o.price for o in work if o.order_type is OrderType.LIMIT) == [
        D(102),
        D(104),
        D(106),
    ]
    assert {o.stop_price for o in work if o.order_type is OrderType.STOP} == {D(95)}
    paper.on_price(SYM, D("102"))  # first leg fills, its stop goes
    assert paper.positions(1)[0].net_pos == 2
    assert sum(o.qty for o in paper.working_orders(1) if o.order_type is OrderType.STOP) == 2
    paper.on_price(SYM, D("95"))  # the rest stops out
    assert paper.positions(1)[0].net_pos == 0
    assert paper.working_orders(1) == []
    cash = paper.cash(1)
    assert cash is not None
    assert cash.realized_pnl == (2 * 1 - 5 * 2) * D(2)  # MNQ: $2 a point


async def test_oso_brackets_wait_for_the_entry(paper: PaperBroker) -> None:
    entry = OrderRequest(A, SYM, Side.SELL, 1, OrderType.LIMIT, price=D("101"))
    await paper.place_oso(
        OsoRequest(
            entry,
            BracketOrder(Side.BUY, OrderType.LIMIT, price=D("97")),
            BracketOrder(Side.BUY, OrderType.STOP, stop_price=D("103")),
        )
    )
    statuses = sorted(str(o.status) for o in paper.working_orders(1))
    assert statuses == ["Suspended", "Suspended", "Working"]
    paper.on_price(SYM, D("101"))
    assert paper.positions(1)[0].net_pos == -1
    paper.on_price(SYM, D("97"))
    assert paper.positions(1)[0].net_pos == 0
    assert paper.working_orders(1) == []


async def test_oco_one_fill_cancels_the_other(paper: PaperBroker) -> None:
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    await paper.place_oco(
        OcoRequest(
            OrderRequest(A, SYM, Side.SELL, 1, OrderType.LIMIT, price=D("105")),
            OrderRequest(A, SYM, Side.SELL, 1, OrderType.STOP, stop_price=D("95")),
        )
    )
    paper.on_price(SYM, D("105"))
    assert paper.positions(1)[0].net_pos == 0
    assert paper.working_orders(1) == []


async def test_liquidate_flattens_and_cancels_only_that_account(paper: PaperBroker) -> None:
    c = await paper.find_contract(SYM)
    assert c.contract_id is not None
    for acct in (A, B):
        await paper.place_order(OrderRequest(acct, SYM, Side.BUY, 2))
        await paper.place_order(
            OrderRequest(acct, SYM, Side.SELL, 2, OrderType.STOP, stop_price=D(90))
        )
    await paper.liquidate_position(A, c.contract_id)
    assert paper.positions(1)[0].net_pos == 0
    assert paper.working_orders(1) == []
    assert paper.positions(2)[0].net_pos == 2
    assert len(paper.working_orders(2)) == 1


async def test_reversal_through_zero_keeps_the_average_right(paper: PaperBroker) -> None:
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    paper.on_price(SYM, D("110"))
    await paper.place_order(OrderRequest(A, SYM, Side.SELL, 3))
    (pos,) = paper.positions(1)
    assert (pos.net_pos, pos.net_price) == (-2, D("110"))
    cash = paper.cash(1)
    assert cash is not None
    assert cash.realized_pnl == D(20)


async def test_trailing_stop_follows_the_price(paper: PaperBroker) -> None:
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    await paper.place_order(
        OrderRequest(
            A, SYM, Side.SELL, 1, OrderType.TRAILING_STOP, stop_price=D(95), peg_difference=D(-5)
        )
    )
    paper.on_price(SYM, D("110"))
    (stop,) = paper.working_orders(1)
    assert stop.stop_price == D("105")
    paper.on_price(SYM, D("107"))  # a pullback does not loosen it
    assert paper.working_orders(1)[0].stop_price == D("105")
    paper.on_price(SYM, D("104.5"))
    assert paper.positions(1)[0].net_pos == 0


async def test_modify_and_cancel(paper: PaperBroker) -> None:
    r = await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("90")))
    await paper.modify_order(r.order_id, qty=2, order_type=OrderType.LIMIT, price=D("100"))
    assert paper.positions(1)[0].net_pos == 2  # modified onto the market: fills
    r2 = await paper.place_order(
        OrderRequest(A, SYM, Side.SELL, 1, OrderType.LIMIT, price=D("120"))
    )
    await paper.cancel_order(r2.order_id)
    with pytest.raises(BrokerRejected):
        await paper.cancel_order(r2.order_id)
    assert paper.working_orders(1) == []


async def test_events_stream_orders_fills_positions(paper: PaperBroker) -> None:
    seen: list[str] = []

    async def consume() -> None:
        async for ev in paper.events():
            seen.append(ev.kind)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    await asyncio.sleep(0)
    await paper.close()
    await task
    assert {"order", "fill", "position", "cash"} <= set(seen)


async def test_unknown_product_is_refused() -> None:
    with pytest.raises(BrokerRejected, match="unknown instrument root"):
        await PaperBroker().find_contract("XYZ1!")
    with pytest.raises(BrokerRejected, match="unknown instrument root"):
        await PaperBroker().find_contract("XYZZ6")
    gc, mgc = await PaperBroker().find_contract("GC1!"), await PaperBroker().find_contract("MGCZ6")
    assert (gc.root, gc.value_per_point, mgc.root, mgc.value_per_point) == (
        "GC",
        D(100),
        "MGC",
        D(10),
    )


async def test_continuous_symbols_resolve_to_the_front_contract_like_a_real_broker() -> None:
    from datetime import UTC, datetime

    from jtrades.engine.instruments import calendar_contract

    broker = PaperBroker()
    front = await broker.find_contract("CME_MINI:MNQ1!")
    assert front.symbol == calendar_contract("MNQ", 1, trading_day(datetime.now(UTC)))
    assert front.tick_size == Decimal("0.25")
    # The continuous name and the contract name are one contract, with one id.
    assert (await broker.find_contract(front.symbol)).contract_id == front.contract_id
    assert (await broker.find_contract("MNQ2!")).symbol != front.symbol


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
async def test_breakeven_moves_the_stop_to_entry_plus_offset(
    paper: PaperBroker, side: Side
) -> None:
    d = side.sign
    bracket = StrategyBracket(
        qty=1, stop_loss=D("-10") * d, breakeven=D("5") * d, breakeven_offset=D("1") * d
    )
    await paper.start_strategy(StrategyRequest(OrderRequest(A, SYM, side, 1), (bracket,)))
    (stop,) = paper.working_orders(1)
    assert stop.stop_price == D("100") - 10 * d
    paper.on_price(SYM, D("104") if d > 0 else D("96"))  # not yet at the trigger
    assert paper.working_orders(1)[0].stop_price == D("100") - 10 * d
    paper.on_price(SYM, D("105") if d > 0 else D("95"))
    assert paper.working_orders(1)[0].stop_price == D("100") + 1 * d
    paper.on_price(SYM, D("101") if d > 0 else D("99"))  # back to the moved stop: out
    assert paper.positions(1)[0].net_pos == 0
    assert paper.cash(1) is not None
    assert paper.cash(1).realized_pnl > 0  # type: ignore[union-attr]


# --- Tradovate's matching, as the simulator models it (jtrades/sim/exchange.py) -----------------


def _stop_price(paper: PaperBroker) -> Decimal | None:
    (stop,) = paper.working_orders(1)
    return stop.stop_price


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
async def test_auto_trail_waits_for_the_trigger_then_moves_in_steps_of_freq(
    paper: PaperBroker, side: Side
) -> None:
    """autoTrail: stop 5, trigger 10, freq 4. The stop stays put until the trade is 10 points in
    profit, then follows 5 points behind the price in whole steps of 4, and never loosens."""
    d = side.sign

    def at(points: str) -> Decimal:
        return D("100") + d * D(points)

    bracket = StrategyBracket(
        qty=1, stop_loss=D("-5") * d, trailing_stop=True, trail_trigger=D(10), trail_freq=D(4)
    )
    await paper.start_strategy(StrategyRequest(OrderRequest(A, SYM, side, 1), (bracket,)))
    assert _stop_price(paper) == at("-5")
    paper.on_price(SYM, at("3"))  # 3 points in profit: Tradovate has not moved it
    assert _stop_price(paper) == at("-5")
    paper.on_price(SYM, at("9.75"))
    assert _stop_price(paper) == at("-5")
    paper.on_price(SYM, at("10"))  # triggered: 5 behind is +5, two steps of 4 reach +3
    assert _stop_price(paper) == at("3")
    paper.on_price(SYM, at("11"))  # 3 points more: less than a step
    assert _stop_price(paper) == at("3")
    paper.on_price(SYM, at("12"))
    assert _stop_price(paper) == at("7")
    paper.on_price(SYM, at("8"))  # a pullback never loosens it
    assert _stop_price(paper) == at("7")
    paper.on_price(SYM, at("7"))
    assert paper.positions(1)[0].net_pos == 0
    assert paper.fills(1)[-1].price == at("7")


async def test_a_trailing_strategy_without_a_trigger_trails_from_the_fill(
    paper: PaperBroker,
) -> None:
    bracket = StrategyBracket(qty=1, stop_loss=D("-5"), trailing_stop=True)
    await paper.start_strategy(StrategyRequest(OrderRequest(A, SYM, Side.BUY, 1), (bracket,)))
    paper.on_price(SYM, D("103"))
    assert _stop_price(paper) == D("98")


async def test_a_marketable_limit_fills_at_the_market_not_at_its_limit(
    paper: PaperBroker,
) -> None:
    """Tradovate fills a buy limit above the market at the market, as any exchange would."""
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("101")))
    await paper.place_order(OrderRequest(A, SYM, Side.SELL, 2, OrderType.LIMIT, price=D("99")))
    assert [f.price for f in paper.fills(1)] == [D("100"), D("100")]


async def test_a_limit_modified_onto_the_market_fills_at_the_market(paper: PaperBroker) -> None:
    r = await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("90")))
    await paper.modify_order(r.order_id, qty=1, order_type=OrderType.LIMIT, price=D("105"))
    assert [f.price for f in paper.fills(1)] == [D("100")]


async def test_an_oso_bracket_marketable_when_it_activates_fills_at_the_market(
    paper: PaperBroker,
) -> None:
    entry = OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("99"))
    await paper.place_oso(OsoRequest(entry, BracketOrder(Side.SELL, OrderType.LIMIT, price=D(97))))
    paper.on_price(SYM, D("98"))  # the entry is reached by the move: at its limit
    assert [f.price for f in paper.fills(1)] == [D("99"), D("98")]


async def _order_events(paper: PaperBroker, seen: list[WorkingOrder]) -> None:
    async for ev in paper.events():
        if ev.kind == "order":
            assert isinstance(ev.entity, WorkingOrder)
            seen.append(ev.entity)


async def test_a_touched_stop_limit_fills_at_once_when_its_limit_is_marketable(
    paper: PaperBroker,
) -> None:
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    await paper.place_order(
        OrderRequest(A, SYM, Side.SELL, 1, OrderType.STOP_LIMIT, price=D(94), stop_price=D(95))
    )
    paper.on_price(SYM, D("94.5"))  # the stop trades: a sell limit at 94 is born at 94.5
    assert paper.positions(1)[0].net_pos == 0
    assert paper.fills(1)[-1].price == D("94.5")


async def test_a_triggered_stop_limit_stays_a_stop_limit_like_on_tradovate(
    paper: PaperBroker,
) -> None:
    """Tradovate keeps the order's type StopLimit once its stop traded (the sim: ``triggered``).
    It never becomes a Limit, so reconciliation, the mirror and the event stream keep seeing
    the position's stop, and nothing is published that the broker would not show."""
    seen: list[WorkingOrder] = []
    task = asyncio.create_task(_order_events(paper, seen))
    await asyncio.sleep(0)
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    r = await paper.place_order(
        OrderRequest(A, SYM, Side.SELL, 1, OrderType.STOP_LIMIT, price=D(94), stop_price=D(95))
    )
    paper.on_price(SYM, D("93"))  # the stop traded, the limit is not reachable: it rests
    (o,) = paper.working_orders(1)
    assert (o.order_type, o.status, o.price) == (OrderType.STOP_LIMIT, OrderStatus.WORKING, D(94))
    assert not needs_stop(paper.positions(1)[0], paper.working_orders(1))
    paper.on_price(SYM, D("93.75"))
    assert paper.positions(1)[0].net_pos == 1
    paper.on_price(SYM, D("94.25"))  # reached by a price move: fills at its limit
    assert paper.positions(1)[0].net_pos == 0
    assert paper.fills(1)[-1].price == D("94")
    await asyncio.sleep(0)
    await paper.close()
    await task
    mine = [v for v in seen if v.order_id == r.order_id]
    assert {v.order_type for v in mine} == {OrderType.STOP_LIMIT}
    assert mine[-1].status is OrderStatus.FILLED


# --- OSO trailing brackets, refused groups, DAY orders ------------------------------------------


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
async def test_an_oso_trailing_bracket_trails_from_the_entrys_fill(
    paper: PaperBroker, side: Side
) -> None:
    """A bracket works only once its entry has filled, so a trailing stop without a stop price
    starts ``|peg|`` from the fill. Priced when placed (from the market, not from the fill), a
    buy limit 10 below the market with a 5-point trail had its stop 5 above the fill: the
    position was stopped out the moment it opened."""
    d = side.sign
    entry = OrderRequest(A, SYM, side, 1, OrderType.LIMIT, price=D("100") - 10 * d)
    trail = BracketOrder(side.opposite, OrderType.TRAILING_STOP, peg_difference=D("-5") * d)
    r = await paper.place_oso(OsoRequest(entry, trail))
    (waiting,) = [o for o in paper.working_orders(1) if o.order_id in r.linked_ids]
    assert (waiting.status, waiting.stop_price) == (OrderStatus.SUSPENDED, None)
    paper.on_price(SYM, D("100") - 10 * d)  # the entry fills at its limit
    assert [f.side for f in paper.fills(1)] == [side]
    assert _stop_price(paper) == D("100") - 15 * d
    paper.on_price(SYM, D("100") - 7 * d)  # 3 points in profit: it trails
    assert _stop_price(paper) == D("100") - 12 * d
    assert paper.positions(1)[0].net_pos == d


async def test_a_market_oso_trailing_bracket_starts_on_the_tick_from_the_fill() -> None:
    p = PaperBroker()
    await p.find_contract(SYM)
    p.on_price(SYM, D("100.1"))  # an alert's price need not be on the tick
    trail = BracketOrder(Side.SELL, OrderType.TRAILING_STOP, peg_difference=D("-5"))
    await p.place_oso(OsoRequest(OrderRequest(A, SYM, Side.BUY, 1), trail))
    assert _stop_price(p) == D("95")


_LIMIT_TP = OrderRequest(A, SYM, Side.SELL, 1, OrderType.LIMIT, price=D("110"), cl_ord_id="tp")
_STOP_SL = OrderRequest(A, SYM, Side.SELL, 1, OrderType.STOP, stop_price=D("90"), cl_ord_id="sl")
_ENTRY = OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("99"), cl_ord_id="e")


@pytest.mark.parametrize(
    "refused",
    [
        OcoRequest(_LIMIT_TP, OrderRequest(A, SYM, Side.SELL, 1, OrderType.STOP, cl_ord_id="x")),
        OcoRequest(OrderRequest(A, SYM, Side.SELL, 1, OrderType.LIMIT, cl_ord_id="x"), _STOP_SL),
        OcoRequest(_LIMIT_TP, OrderRequest(A, SYM, Side.SELL, 0, OrderType.STOP, stop_price=D(9))),
        OsoRequest(_ENTRY, BracketOrder(Side.SELL, OrderType.LIMIT)),
        OsoRequest(
            _ENTRY,
            BracketOrder(Side.SELL, OrderType.LIMIT, price=D("110")),
            BracketOrder(Side.SELL, OrderType.STOP),
        ),
        OsoRequest(_ENTRY, BracketOrder(Side.SELL, OrderType.STOP_LIMIT, stop_price=D("90"))),
        OsoRequest(_ENTRY, BracketOrder(Side.SELL, OrderType.TRAILING_STOP)),
        OsoRequest(
            OrderRequest(A, SYM, Side.BUY, 1, OrderType.STOP_LIMIT, stop_price=D("101")),
            BracketOrder(Side.SELL, OrderType.LIMIT, price=D("110")),
        ),
    ],
    ids=[
        "oco-stop-without-stop", "oco-limit-without-price", "oco-no-qty", "oso-limit-without-price",
        "oso-second-stop-without-stop", "oso-stop-limit-without-price", "oso-trail-without-peg",
        "oso-stop-limit-entry-without-price",
    ],
)  # fmt: skip
async def test_a_refused_oco_or_oso_changes_nothing(
    paper: PaperBroker, refused: OcoRequest | OsoRequest
) -> None:
    """Tradovate's placeoco and placeoso are one command each: one malformed order refuses the
    whole group. The paper broker kept the orders it had made before finding the bad one: an
    OCO's first leg stayed in the view as a PendingNew order that was never placed and never
    fills, which the protector counts as a live exit."""
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    before = paper.all_orders(1)
    seen: list[WorkingOrder] = []
    task = asyncio.create_task(_order_events(paper, seen))
    await asyncio.sleep(0)

    async def place() -> None:
        if isinstance(refused, OcoRequest):
            await paper.place_oco(refused)
        else:
            await paper.place_oso(refused)

    with pytest.raises(BrokerRejected):
        await place()
    assert paper.all_orders(1) == before
    assert paper.working_orders(1) == []
    await asyncio.sleep(0)
    await paper.close()
    await task
    assert seen == []
    r = await paper.place_order(OrderRequest(A, SYM, Side.SELL, 1, OrderType.LIMIT, price=D(110)))
    assert r.order_id == before[-1].order_id + 2  # after the market order and its fill


CHICAGO = ZoneInfo("America/Chicago")


class _Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at.astimezone(UTC)


def _chicago(day: int, hour: int, minute: int = 0) -> datetime:
    """A time in the week of Monday 2026-11-23, on the wall clock of Chicago."""
    return datetime(2026, 11, day, hour, minute, tzinfo=CHICAGO)


async def _paper_at(clock: _Clock) -> PaperBroker:
    p = PaperBroker(now=clock)
    await p.find_contract(SYM)
    p.on_price(SYM, D("100"))
    return p


async def test_a_day_entry_expires_with_its_session_and_its_legs_with_it() -> None:
    """Tradovate expires a DAY order when its session (the CME day, from 17:00 Chicago) ends;
    the engine sends its entries DAY. A paper limit entry worked on for good: the next day's
    price filled it. The first price after its session expires it, with the legs waiting for
    it, and publishes it; a GTC order and a DAY order of the new session work on."""
    clock = _Clock(_chicago(24, 16, 59))  # Tuesday
    paper = await _paper_at(clock)
    seen: list[WorkingOrder] = []
    task = asyncio.create_task(_order_events(paper, seen))
    await asyncio.sleep(0)
    entry = OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("95"), cl_ord_id="e")
    legs = (StrategyBracket(1, profit_target=D("5"), stop_loss=D("-5")),)
    day = await paper.start_strategy(StrategyRequest(entry, legs))
    gtc = await paper.place_order(
        OrderRequest(
            B, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("95"), time_in_force=TimeInForce.GTC
        )
    )
    paper.on_price(SYM, D("99"))  # still Tuesday's session
    assert len(paper.working_orders(1)) == 3
    clock.at = _chicago(24, 17, 0)  # Wednesday's session begins
    new = await paper.place_order(
        OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("95"), cl_ord_id="n")
    )
    paper.on_price(SYM, D("95"))  # would have filled Tuesday's entry
    statuses = {o.order_id: o.status for o in paper.all_orders(1)}
    assert [statuses[i] for i in (day.order_id, *day.linked_ids)] == [OrderStatus.EXPIRED] * 3
    assert statuses[new.order_id] is OrderStatus.FILLED
    assert [f.order_id for f in paper.fills(1)] == [new.order_id]
    assert [f.order_id for f in paper.fills(2)] == [gtc.order_id]
    await asyncio.sleep(0)
    await paper.close()
    await task
    last = {v.order_id: v.status for v in seen}
    assert [last[i] for i in (day.order_id, *day.linked_ids)] == [OrderStatus.EXPIRED] * 3


@pytest.mark.parametrize(
    ("placed", "priced", "expired"),
    [
        (_chicago(24, 16, 59), _chicago(24, 17, 0), True),  # Tuesday's session ends at 17:00
        (_chicago(24, 17, 0), _chicago(25, 16, 59), False),  # Wednesday's, all of it
        (_chicago(27, 16, 0), _chicago(29, 18, 0), True),  # Friday's, gone by Sunday's open
        (_chicago(27, 18, 0), _chicago(29, 18, 0), False),  # Monday's from Friday 17:00
        (_chicago(28, 12, 0), _chicago(30, 16, 59), False),  # Saturday: Monday's too
        (_chicago(28, 12, 0), _chicago(30, 17, 0), True),
        (_chicago(24, 12, 0), _chicago(27, 12, 0), True),  # days later
    ],
)
async def test_a_day_order_works_to_the_end_of_the_cme_day_it_was_placed_in(
    placed: datetime, priced: datetime, expired: bool
) -> None:
    clock = _Clock(placed)
    paper = await _paper_at(clock)
    r = await paper.place_oso(
        OsoRequest(
            OrderRequest(A, SYM, Side.SELL, 1, OrderType.STOP, stop_price=D("90")),
            BracketOrder(Side.BUY, OrderType.LIMIT, price=D("80")),
        )
    )
    clock.at = priced
    paper.on_price(SYM, D("99"))
    statuses = [o.status for o in paper.all_orders(1)]
    if expired:
        assert statuses == [OrderStatus.EXPIRED, OrderStatus.EXPIRED]
    else:
        assert statuses == [OrderStatus.WORKING, OrderStatus.SUSPENDED]
        paper.on_price(SYM, D("90"))
        assert [f.order_id for f in paper.fills(1)] == [r.order_id]


async def test_a_days_price_of_another_contract_expires_it_too() -> None:
    """Tradovate expires every DAY order at the session's end, whatever its contract; the
    engine counts a working entry against --max-contracts, so the next price of the login
    expires them all."""
    clock = _Clock(_chicago(24, 12))
    paper = await _paper_at(clock)
    await paper.find_contract("MESZ6")
    paper.on_price("MESZ6", D("6000"))
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1, OrderType.LIMIT, price=D("95")))
    clock.at = _chicago(25, 12)
    paper.on_price("MESZ6", D("6001"))
    assert paper.working_orders(1) == []


@pytest.mark.parametrize(
    "change",
    [{"qty": 2}, {"symbol": "MNQH7"}, {"account": SubAccount(2, "B")}],
    ids=["quantity", "contract", "sub-account"],
)
async def test_an_oco_pair_tradovate_cannot_express_is_refused_alike(
    paper: PaperBroker, change: dict[str, object]
) -> None:
    """Tradovate's placeoco ``other`` has no quantity, contract or account of its own: it takes
    the first order's. The Tradovate broker refuses such a pair before sending it; so does
    this one, before it places anything."""
    await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1))
    before = paper.all_orders(1)
    with pytest.raises(ValueError, match="same"):
        await paper.place_oco(OcoRequest(_LIMIT_TP, dataclasses.replace(_STOP_SL, **change)))
    assert paper.all_orders(1) == before
    placed = await paper.place_oco(OcoRequest(_LIMIT_TP, _STOP_SL))
    [stop] = [o for o in paper.working_orders(1) if o.order_id in placed.linked_ids]
    assert (stop.cl_ord_id, stop.qty) == ("sl", 1)  # its own id, as the simulator's leg has


async def test_orders_are_found_by_id_and_clordid_finished_or_not(paper: PaperBroker) -> None:
    """The open orders and the clOrdIds are indexed (a price and each read walked every order
    the login ever had): a finished order is still found by id and clOrdId, for its own
    account only, a bracket leg by the clOrdId it was armed with, and only open orders work."""
    for n in range(50):  # a history of finished orders
        await paper.place_order(OrderRequest(A, SYM, Side.BUY, 1, cl_ord_id=f"h{n}"))
        await paper.place_order(OrderRequest(A, SYM, Side.SELL, 1, cl_ord_id=f"h{n}x"))
    entry = OrderRequest(A, SYM, Side.SELL, 1, OrderType.LIMIT, price=D("101"), cl_ord_id="e1")
    await paper.place_oso(
        OsoRequest(
            entry,
            BracketOrder(Side.BUY, OrderType.LIMIT, price=D("97"), cl_ord_id="e1-tp"),
            BracketOrder(Side.BUY, OrderType.STOP, stop_price=D("103"), cl_ord_id="e1-sl"),
        )
    )
    old = await paper.order_by_cl_ord_id(1, "h7")
    assert old is not None
    assert old.status is OrderStatus.FILLED
    assert paper.knows_order(1, old.order_id, None)
    assert paper.knows_order(1, None, "h7x")
    assert not paper.knows_order(2, old.order_id, None)  # another account's
    assert await paper.order_by_cl_ord_id(2, "h7") is None
    tp = await paper.order_by_cl_ord_id(1, "e1-tp")
    assert tp is not None
    assert tp.status is OrderStatus.SUSPENDED
    assert {o.cl_ord_id for o in paper.working_orders(1)} == {"e1", "e1-tp", "e1-sl"}
    paper.on_price(SYM, D("101"))  # the entry fills, its legs work
    paper.on_price(SYM, D("97"))  # the take-profit fills, the stop goes
    assert paper.working_orders(1) == []
    assert paper.positions(1)[0].net_pos == 0
    gone = await paper.order_by_cl_ord_id(1, "e1-sl")
    assert gone is not None
    assert gone.status is OrderStatus.CANCELED
