"""Protection of a position whose stop trails (``engine.protection``): a stop it places trails
by the configured distance when the trader's stop loss trails or the live stop it replaces is
a TrailingStop. Before, every stop it placed was a plain Stop: a trailing stop it had to bring
down to the position (it cannot be shrunk) came back plain, and stopped trailing."""

from __future__ import annotations

from decimal import Decimal

from jtrades.broker.base import OcoRequest, OrderRequest, OrderType, Side, WorkingOrder
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protection import ExitBook, exit_book, plan_protection, protection_orders
from tests.unit.test_protection import ACCT, SYM, order, pos, stop, tp

D = Decimal
TEN = D(10)  # 40 ticks of MNQ


def trailing_stop(oid: int, qty: int, at: str = "21490", side: Side = Side.SELL) -> WorkingOrder:
    return order(oid, side, qty, OrderType.TRAILING_STOP, stop=at)


def placed(
    book: ExitBook, after: ExitBook, *, trail_by: Decimal | None, trailing: bool,
    configured: str = "21490",
) -> list[PlannedOrder]:  # fmt: skip
    """What protection places for ``book`` once its cancels went (``after``)."""
    plan = plan_protection(book, D(configured), trail_by=trail_by, trailing=trailing)
    assert plan is not None
    assert not plan.trim_only
    return protection_orders(after, plan, account=ACCT, symbol=SYM, prefix="p")


def stops_of(steps: list[PlannedOrder]) -> list[OrderRequest]:
    out = []
    for s in steps:
        r = s.request
        out.append(r.second if isinstance(r, OcoRequest) else r)
    return [r for r in out if isinstance(r, OrderRequest)]


def test_a_trailing_stop_over_the_position_is_re_placed_trailing_for_the_position() -> None:
    """Long 1 (2 bought, 1 sold by hand) under a trailing stop for 2 that trailed to 21495."""
    book = exit_book(pos(1), [trailing_stop(1, 2, "21495")], {})
    steps = placed(book, exit_book(pos(1), [], {}), trail_by=TEN, trailing=True)
    (s,) = stops_of(steps)
    assert (s.order_type, s.qty, s.side) == (OrderType.TRAILING_STOP, 1, Side.SELL)
    assert s.stop_price == D(21495)  # the progress it made is kept
    assert s.peg_difference == -TEN  # below the market: it trails up


def test_a_naked_short_of_a_trailing_trader_gets_a_trailing_stop_above_it() -> None:
    book = exit_book(pos(-2), [], {})
    (s,) = stops_of(placed(book, book, trail_by=TEN, trailing=True, configured="21510"))
    assert (s.order_type, s.qty, s.side) == (OrderType.TRAILING_STOP, 2, Side.BUY)
    assert (s.stop_price, s.peg_difference) == (D(21510), TEN)


def test_an_alerts_trailing_stop_keeps_trailing_under_a_fixed_stop_loss() -> None:
    """The alert asked for a trailing stop; the trader's own stop loss is fixed."""
    book = exit_book(pos(1), [trailing_stop(1, 2)], {})
    (s,) = stops_of(placed(book, exit_book(pos(1), [], {}), trail_by=TEN, trailing=False))
    assert (s.order_type, s.peg_difference) == (OrderType.TRAILING_STOP, -TEN)


def test_the_stops_of_re_placed_take_profit_legs_trail_too() -> None:
    book = exit_book(pos(2), [tp(1, 1, "21505"), tp(2, 1, "21510")], {})
    steps = placed(book, exit_book(pos(2), [], {}), trail_by=TEN, trailing=True)
    assert [s.kind for s in steps] == ["oco", "oco"]
    assert [(s.order_type, s.qty, s.peg_difference) for s in stops_of(steps)] == [
        (OrderType.TRAILING_STOP, 1, -TEN),
        (OrderType.TRAILING_STOP, 1, -TEN),
    ]


def test_a_trailing_stop_never_adds_up_to_more_than_the_position() -> None:
    """A trailing stop for 1 left beside the position of 3: the top-up trails, for the rest."""
    book = exit_book(pos(3), [trailing_stop(1, 1, "21495")], {})
    plan = plan_protection(book, D(21490), trail_by=TEN, trailing=True)
    assert plan is not None
    assert plan.cancel == ()
    (s,) = stops_of(protection_orders(book, plan, account=ACCT, symbol=SYM, prefix="p"))
    assert (s.order_type, s.qty, s.stop_price) == (OrderType.TRAILING_STOP, 2, D(21495))


def test_without_a_stop_loss_a_trailing_stop_comes_back_plain_at_its_level() -> None:
    """No stop loss configured: the distance is not known (the view shows no peg), so the stop
    brought down to the position is plain, at the level the trailing one had reached."""
    book = exit_book(pos(1), [trailing_stop(1, 2, "21495")], {})
    (s,) = stops_of(placed(book, exit_book(pos(1), [], {}), trail_by=None, trailing=False))
    assert (s.order_type, s.stop_price, s.peg_difference) == (OrderType.STOP, D(21495), None)


def test_a_fixed_stop_loss_over_plain_stops_stays_plain() -> None:
    book = exit_book(pos(3), [stop(1, 1)], {})
    plan = plan_protection(book, D(21490), trail_by=TEN, trailing=False)
    assert plan is not None
    assert plan.trail is None
    (s,) = stops_of(protection_orders(book, plan, account=ACCT, symbol=SYM, prefix="p"))
    assert s.order_type is OrderType.STOP


def test_a_plain_stop_over_a_trailing_traders_position_is_still_shrunk_in_place() -> None:
    """Shrinking keeps the stop working throughout; only a TrailingStop must be re-placed."""
    book = exit_book(pos(1), [stop(1, 2)], {})
    plan = plan_protection(book, D(21490), trail_by=TEN, trailing=True)
    assert plan is not None
    assert plan.trim_only
    assert [(x.order_id, x.qty) for x in plan.shrink] == [(1, 1)]
