"""Protection of open positions (``engine.protection``, ``reconcile.needs_stop``): only live
stops count, by what they have left, for the whole position; re-placed exits never close more
than is held, whichever of them fill."""

from __future__ import annotations

import dataclasses
import itertools
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from jtrades.broker.base import (
    OcoRequest,
    OrderRequest,
    OrderStatus,
    OrderType,
    Position,
    Side,
    SubAccount,
    TimeInForce,
    WorkingOrder,
)
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protection import (
    STOP_TYPES,
    ExitBook,
    Protection,
    TakeProfit,
    carry_over,
    exit_book,
    plan_protection,
    protection_orders,
    trim_take_profits,
)
from jtrades.engine.reconcile import _exit_view, needs_stop

D = Decimal
AID, SYM = 7, "MNQZ6"
ACCT = SubAccount(AID, "DEMO7")
W = OrderStatus.WORKING


def pos(net: int, symbol: str = SYM) -> Position:
    return Position(AID, 42, symbol, net, D(21500))


def order(
    oid: int,
    side: Side,
    qty: int,
    kind: OrderType,
    *,
    price: str | None = None,
    stop: str | None = None,
    status: OrderStatus = W,
    oco: int | None = None,
    symbol: str = SYM,
    account: int = AID,
) -> WorkingOrder:
    return WorkingOrder(
        oid,
        account,
        42,
        symbol,
        side,
        qty,
        kind,
        status,
        price=D(price) if price is not None else None,
        stop_price=D(stop) if stop is not None else None,
        oco_id=oco,
    )


def stop(oid: int, qty: int, at: str = "21490", **kw: object) -> WorkingOrder:
    return order(oid, Side.SELL, qty, OrderType.STOP, stop=at, **kw)  # type: ignore[arg-type]


def tp(oid: int, qty: int, at: str, **kw: object) -> WorkingOrder:
    return order(oid, Side.SELL, qty, OrderType.LIMIT, price=at, **kw)  # type: ignore[arg-type]


def place(book: ExitBook, configured: str = "21490") -> list[PlannedOrder]:
    plan = plan_protection(book, D(configured))
    assert plan is not None
    assert plan.cancel == ()
    return protection_orders(book, plan, account=ACCT, symbol=SYM, prefix="jt-p-1-0")


# --- what counts as protection -----------------------------------------------------------


def test_a_stop_for_one_leg_of_three_is_not_protection() -> None:
    assert needs_stop(pos(3), [stop(1, 1)])
    assert not needs_stop(pos(3), [stop(1, 1), stop(2, 2)])


def test_only_live_stops_count() -> None:
    for status in (OrderStatus.SUSPENDED, OrderStatus.PENDING_CANCEL, OrderStatus.CANCELED):
        assert needs_stop(pos(2), [stop(1, 2, status=status)]), status
    for status in (OrderStatus.WORKING, OrderStatus.PENDING_NEW, OrderStatus.PENDING_REPLACE):
        assert not needs_stop(pos(2), [stop(1, 2, status=status)]), status


def test_a_partly_filled_stop_counts_what_it_has_left() -> None:
    assert needs_stop(pos(2), [stop(1, 3)], {1: 2})
    assert not needs_stop(pos(1), [stop(1, 3)], {1: 2})


def test_stops_larger_than_the_position_need_re_placing() -> None:
    assert needs_stop(pos(1), [stop(1, 2)])
    assert needs_stop(pos(-1), [order(1, Side.BUY, 2, OrderType.STOP, stop="21510")])


def test_other_accounts_contracts_and_sides_do_not_count() -> None:
    assert needs_stop(pos(1), [stop(1, 1, symbol="MESZ6"), stop(2, 1, account=8)])
    assert needs_stop(pos(-1), [stop(1, 1)])  # a sell stop does not protect a short
    assert not needs_stop(pos(0), [])


# --- the plan -------------------------------------------------------------------------------


def test_long_three_with_a_one_lot_stop_tops_up_two_at_its_price() -> None:
    book = exit_book(pos(3), [stop(1, 1, "21488.75")], {})
    (step,) = place(book)
    req = step.request
    assert isinstance(req, OrderRequest)
    assert (req.side, req.qty, req.order_type, req.stop_price) == (
        Side.SELL,
        2,
        OrderType.STOP,
        D("21488.75"),
    )
    assert req.time_in_force is TimeInForce.GTC
    assert req.cl_ord_id == "jt-p-1-0-1"


def test_a_pair_missing_its_second_leg_keeps_the_first_and_stops_the_rest() -> None:
    """The DCA re-placement stopped after its first OCO: that pair stays as it is."""
    book = exit_book(pos(3), [tp(1, 1, "21505", oco=2), stop(2, 1, oco=1)], {})
    (step,) = place(book)
    assert isinstance(step.request, OrderRequest)
    assert step.request.qty == 2


def test_take_profits_without_a_stop_are_re_placed_one_oco_per_leg() -> None:
    book = exit_book(pos(2), [tp(1, 1, "21510"), tp(2, 1, "21505")], {})
    plan = plan_protection(book, D(21490))
    assert plan is not None
    assert set(plan.cancel) == {1, 2}
    after = exit_book(pos(2), [], {})  # the cancels went
    steps = protection_orders(after, plan, account=ACCT, symbol=SYM, prefix="p", first_step=3)
    assert [s.kind for s in steps] == ["oco", "oco"]
    legs = [s.request for s in steps]
    assert all(isinstance(r, OcoRequest) for r in legs)
    pairs = [(r.first.price, r.first.qty, r.second.stop_price, r.second.qty) for r in legs]  # type: ignore[union-attr]
    assert pairs == [(D(21505), 1, D(21490), 1), (D(21510), 1, D(21490), 1)]  # nearest first
    assert [r.first.cl_ord_id for r in legs] == ["p-3", "p-4"]  # type: ignore[union-attr]
    assert [r.second.cl_ord_id for r in legs] == ["p-3b", "p-4b"]  # type: ignore[union-attr]


def test_take_profits_over_the_position_keep_the_nearest_and_trim_the_farthest() -> None:
    buy = Side.BUY
    book = exit_book(
        pos(-2),
        [
            order(1, buy, 1, OrderType.LIMIT, price="21480"),
            order(2, buy, 2, OrderType.LIMIT, price="21495"),
        ],
        {},
    )
    plan = plan_protection(book, D(21510))
    assert plan is not None
    steps = protection_orders(
        exit_book(pos(-2), [], {}), plan, account=ACCT, symbol=SYM, prefix="p"
    )
    (only,) = steps
    assert isinstance(only.request, OcoRequest)
    assert (only.request.first.price, only.request.first.qty) == (D(21495), 2)
    assert (only.request.second.side, only.request.second.stop_price) == (buy, D(21510))


def test_a_partly_filled_take_profit_is_re_placed_for_what_it_has_left() -> None:
    book = exit_book(pos(2), [tp(1, 2, "21505"), tp(2, 1, "21510")], {1: 1})
    plan = plan_protection(book, D(21490))
    assert plan is not None
    steps = protection_orders(
        exit_book(pos(2), [], {1: 1}), plan, account=ACCT, symbol=SYM, prefix="p"
    )
    assert [(s.request.first.price, s.request.first.qty) for s in steps] == [  # type: ignore[union-attr]
        (D(21505), 1),
        (D(21510), 1),
    ]


def test_a_take_profit_that_filled_during_the_cancels_is_not_re_placed() -> None:
    book = exit_book(pos(2), [tp(1, 1, "21505"), tp(2, 1, "21510")], {})
    plan = plan_protection(book, D(21490))
    assert plan is not None
    # TP1 filled before its cancel arrived: long 1, its fill in the view
    steps = protection_orders(
        exit_book(pos(1), [], {1: 1}), plan, account=ACCT, symbol=SYM, prefix="p"
    )
    (only,) = steps
    assert isinstance(only.request, OcoRequest)
    assert (only.request.first.price, only.request.second.qty) == (D(21510), 1)
    # flat, or gone the other way: nothing
    assert (
        protection_orders(exit_book(pos(0), [], {}), plan, account=ACCT, symbol=SYM, prefix="p")
        == []
    )
    assert (
        protection_orders(exit_book(pos(-1), [], {}), plan, account=ACCT, symbol=SYM, prefix="p")
        == []
    )


def test_a_stop_that_covers_beside_unlinked_take_profits_is_left_alone() -> None:
    """A Tradovate bracket strategy: TP legs and one shared stop, linked by the strategy."""
    book = exit_book(pos(2), [tp(1, 1, "21505"), tp(2, 1, "21510"), stop(3, 2)], {})
    assert plan_protection(book, D(21490)) is None


def test_a_naked_position_with_a_stop_on_its_way_out_waits() -> None:
    book = exit_book(pos(2), [stop(1, 2, status=OrderStatus.PENDING_CANCEL)], {})
    assert book.needs_protection
    assert plan_protection(book, D(21490)) is None
    plan = plan_protection(exit_book(pos(2), [], {}), D(21490))
    assert plan is not None
    assert protection_orders(book, plan, account=ACCT, symbol=SYM, prefix="p") == []


def test_an_over_sized_stop_is_re_placed_at_its_price_for_the_position() -> None:
    book = exit_book(pos(1), [stop(1, 2, "21495.5"), tp(2, 1, "21510")], {})
    plan = plan_protection(book, D(21490))
    assert plan is not None
    assert set(plan.cancel) == {1, 2}
    (leg,) = protection_orders(
        exit_book(pos(1), [], {}), plan, account=ACCT, symbol=SYM, prefix="p"
    )
    assert isinstance(leg.request, OcoRequest)
    assert (leg.request.first.qty, leg.request.second.stop_price) == (1, D("21495.5"))


def test_stand_alone_stops_over_the_position_are_shrunk_where_they_stand() -> None:
    """Cancelling them to re-place would leave the position naked until the new stop lands."""
    plan = plan_protection(exit_book(pos(1), [stop(1, 3, "21490")], {1: 1}), D(21480))
    assert plan is not None
    assert plan.trim_only
    assert plan.cancel == ()
    (sh,) = plan.shrink
    assert (sh.order_id, sh.qty, sh.order_type, sh.stop_price) == (1, 2, OrderType.STOP, D(21490))
    # the farthest from the market goes first, wholly; the nearer one keeps its price
    short = [order(1, Side.BUY, 1, OrderType.STOP, stop="21520"),
             order(2, Side.BUY, 2, OrderType.STOP, stop="21510")]  # fmt: skip
    plan = plan_protection(exit_book(pos(-2), short, {}), D(21510))
    assert plan is not None
    assert plan.trim_only
    assert (plan.cancel, plan.shrink) == ((1,), ())
    assert protection_orders(exit_book(pos(-2), [], {}), plan, account=ACCT, symbol=SYM,
                             prefix="p") == []  # fmt: skip


def test_stops_over_the_position_beside_take_profits_or_trailing_are_re_placed() -> None:
    loose = plan_protection(exit_book(pos(1), [stop(1, 2), tp(2, 1, "21510")], {}), D(21490))
    assert loose is not None
    assert not loose.trim_only
    assert set(loose.cancel) == {1, 2}
    trail = order(1, Side.SELL, 2, OrderType.TRAILING_STOP, stop="21490")
    plan = plan_protection(exit_book(pos(1), [trail], {}), D(21490))
    assert plan is not None
    assert not plan.trim_only
    assert plan.cancel == (1,)
    # a pair is never shrunk: the stand-alone stop gives the excess
    paired = [tp(1, 1, "21505", oco=2), stop(2, 1, oco=1), stop(3, 2, "21480")]
    plan = plan_protection(exit_book(pos(2), paired, {}), D(21490))
    assert plan is not None
    assert plan.trim_only
    assert [(sh.order_id, sh.qty) for sh in plan.shrink] == [(3, 1)]


def test_suspended_brackets_and_other_orders_are_never_cancelled() -> None:
    book = exit_book(
        pos(2),
        [
            tp(1, 1, "21505"),
            tp(2, 1, "21530", status=OrderStatus.SUSPENDED),  # an unfilled entry's bracket
            stop(3, 1, status=OrderStatus.SUSPENDED),
            tp(4, 1, "21505", symbol="MESZ6"),
            tp(5, 1, "21505", account=8),
            order(6, Side.BUY, 1, OrderType.LIMIT, price="21400", account=8),
        ],
        {},
    )
    plan = plan_protection(book, D(21490))
    assert plan is not None
    assert plan.cancel == (1,)


def test_a_working_entry_with_suspended_brackets_is_not_topped_up() -> None:
    """A limit entry for 3 filled 1 and keeps working, its brackets for 3 suspended: a stop
    for the 1 held would make stops for 4 on a long 3 once the entry completes."""
    entry = order(1, Side.BUY, 3, OrderType.LIMIT, price="21500")
    brackets = [tp(2, 3, "21520", status=OrderStatus.SUSPENDED, oco=3),
                stop(3, 3, "21480", status=OrderStatus.SUSPENDED, oco=2)]  # fmt: skip
    book = exit_book(pos(1), [entry, *brackets], {1: 1})
    assert book.needs_protection
    assert plan_protection(book, D(21490)) is None
    # an over-sized stop beside them is not re-placed either: what is placed would add up
    over = exit_book(pos(1), [entry, *brackets, stop(4, 2)], {1: 1})
    assert plan_protection(over, D(21490)) is None
    # re-read after cancels with the brackets there: nothing placed
    plan = plan_protection(exit_book(pos(1), [], {}), D(21490))
    assert plan is not None
    assert protection_orders(book, plan, account=ACCT, symbol=SYM, prefix="p") == []


def test_brackets_that_cannot_activate_and_adds_without_brackets_do_not_hold_back() -> None:
    orphans = [tp(2, 3, "21520", status=OrderStatus.SUSPENDED), stop(3, 3, status=OrderStatus.SUSPENDED)]  # fmt: skip
    (step,) = place(exit_book(pos(1), orphans, {}))  # no entry working: they never activate
    assert step.request is not None
    add = order(1, Side.BUY, 2, OrderType.LIMIT, price="21400")
    (step,) = place(exit_book(pos(1), [add], {}))  # the add grows the position past its stop
    assert isinstance(step.request, OrderRequest)
    assert step.request.qty == 1
    done = order(1, Side.BUY, 3, OrderType.LIMIT, price="21500", status=OrderStatus.FILLED)
    assert plan_protection(exit_book(pos(1), [done, *orphans], {}), D(21490)) is not None


# --- whatever fills, never more than is held ------------------------------------------------

KINDS = [OrderType.LIMIT, OrderType.STOP, OrderType.STOP_LIMIT, OrderType.TRAILING_STOP,
         OrderType.MARKET]  # fmt: skip
STATUSES = [W, W, W, W, OrderStatus.PENDING_NEW, OrderStatus.PENDING_REPLACE,
            OrderStatus.PENDING_CANCEL, OrderStatus.SUSPENDED, OrderStatus.FILLED,
            OrderStatus.CANCELED]  # fmt: skip

# one order: exit side?, type, status, qty, filled, price offset (points), symbol, account
Single = tuple[bool, OrderType, OrderStatus, int, int, int, str, int]
# a take-profit OCO-linked with a stop: qty, filled of each, status of each, price offset
Pair = tuple[int, int, int, OrderStatus, OrderStatus, int]

singles = st.lists(
    st.tuples(
        st.booleans(),
        st.sampled_from(KINDS),
        st.sampled_from(STATUSES),
        st.integers(1, 4),
        st.sampled_from([0, 0, 0, 1, 2]),
        st.integers(1, 12),
        st.sampled_from([SYM, SYM, SYM, "MESZ6"]),
        st.sampled_from([AID, AID, AID, 8]),
    ),
    max_size=5,
)
pairs = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.sampled_from([0, 0, 1]),
        st.sampled_from([0, 0, 1]),
        st.sampled_from(STATUSES),
        st.sampled_from(STATUSES),
        st.integers(1, 12),
    ),
    max_size=3,
)


def _book_orders(
    net: int, singles: list[Single], pairs: list[Pair]
) -> tuple[list[WorkingOrder], dict[int, int]]:
    long = net > 0
    exit_side = Side.SELL if long else Side.BUY
    ids = itertools.count(1)
    orders: list[WorkingOrder] = []
    filled: dict[int, int] = {}

    def prices(off: int) -> tuple[Decimal, Decimal]:  # (take-profit, stop)
        return (D(21500) + off, D(21500) - off) if long else (D(21500) - off, D(21500) + off)

    for is_exit, kind, status, qty, done, off, symbol, account in singles:
        oid = next(ids)
        profit, loss = prices(off)
        orders.append(
            WorkingOrder(
                oid, account, 42, symbol, exit_side if is_exit else exit_side.opposite, qty,
                kind, status,
                price=profit if kind is OrderType.LIMIT else None,
                stop_price=loss if kind in STOP_TYPES else None,
            )
        )  # fmt: skip
        if done:
            filled[oid] = min(done, qty)
    for qty, done_tp, done_sl, status_tp, status_sl, off in pairs:
        a, b = next(ids), next(ids)
        profit, loss = prices(off)
        orders.append(WorkingOrder(a, AID, 42, SYM, exit_side, qty, OrderType.LIMIT, status_tp,
                                   price=profit, oco_id=b))  # fmt: skip
        orders.append(WorkingOrder(b, AID, 42, SYM, exit_side, qty, OrderType.STOP, status_sl,
                                   stop_price=loss, oco_id=a))  # fmt: skip
        filled[a], filled[b] = min(done_tp, qty), min(done_sl, qty)
    return orders, filled


def _worst_exit(groups: list[list[int]]) -> int:
    """The most contracts the groups can close together, trying every combination of fills
    (within an OCO group one fill cancels the others)."""
    best = 0
    for pick in itertools.product(*[[0, *g] for g in groups]):
        best = max(best, sum(pick))
    return best


@settings(max_examples=400, deadline=None)
@given(
    st.integers(-6, 6).filter(lambda n: n != 0),
    singles,
    pairs,
    st.lists(st.booleans(), max_size=11),
    st.lists(st.tuples(st.integers(1, 40), st.integers(1, 6)), max_size=3),
)
def test_protection_never_closes_more_than_is_held(
    net: int,
    some: list[Single],
    linked: list[Pair],
    raced: list[bool],
    carried: list[tuple[int, int]],
) -> None:
    """``carried``: take-profits a failed re-placement had cancelled (``carry_over``), put
    back by its retry: whatever they are, the same bounds hold."""
    orders, filled = _book_orders(net, some, linked)
    book = exit_book(pos(net), orders, filled)
    plan = plan_protection(book, D(21490) if net > 0 else D(21510))
    if plan is None:
        assert not book.needs_protection or book.leaving or book.activating
        return
    if carried:
        sign = 1 if net > 0 else -1
        gone = tuple(
            TakeProfit(900 + i, D(21500) + sign * off, qty) for i, (off, qty) in enumerate(carried)
        )
        plan = carry_over(plan, Protection(plan.exit_side, (), gone, plan.stop_price, ""), book)
    assert not book.activating
    # only this position's live exits are ever cancelled
    live = set(book.live_ids)
    assert set(plan.cancel) <= live
    for oid in plan.cancel:
        o = next(x for x in orders if x.order_id == oid)
        assert (o.account_id, o.symbol, o.status.is_open) == (AID, SYM, True)
        assert o.status is not OrderStatus.SUSPENDED
    if plan.trim_only:  # no take-profit outside a pair: cancel and shrink stand-alone stops
        assert not book.limits
        assert plan.take_profits == ()
        shrunk = {sh.order_id: sh.qty for sh in plan.shrink}
        assert set(shrunk) <= {s.order_id for s in book.stops} - set(plan.cancel)
        kept = [
            dataclasses.replace(o, qty=shrunk.get(o.order_id, o.qty))
            for o in orders
            if o.order_id not in plan.cancel
        ]
        after = exit_book(pos(net), kept, filled)
        assert after.coverage == after.exposure == abs(net)
        assert after.pairs == book.pairs
        return
    # the cancels race the market: some take-profits fill first (never through flat)
    held, filled2 = abs(net), dict(filled)
    for oid, won in zip(plan.cancel, raced, strict=False):
        o = next(x for x in orders if x.order_id == oid)
        left = book.left(o)
        if won and o.order_type is OrderType.LIMIT and left <= held:
            held -= left
            filled2[oid] = o.qty
    net2 = held if net > 0 else -held
    rest = [o for o in orders if o.order_id not in plan.cancel]
    after = exit_book(pos(net2), rest, filled2)
    steps = protection_orders(after, plan, account=ACCT, symbol=SYM, prefix="jt-p-1-0")
    if net2 == 0:
        assert steps == []
        return

    groups: list[list[int]] = [[after.left(a), after.left(b)] for a, b in after.pairs]
    groups += [[after.left(o)] for o in (*after.stops, *after.limits)]
    stop_side = sum(after.left(s) for _, s in after.pairs) + sum(after.left(s) for s in after.stops)
    tp_side = sum(after.left(t) for t, _ in after.pairs) + sum(after.left(t) for t in after.limits)
    for step in steps:
        req = step.request
        if isinstance(req, OcoRequest):
            assert (req.first.order_type, req.second.order_type) == (
                OrderType.LIMIT,
                OrderType.STOP,
            )
            assert req.first.qty == req.second.qty >= 1
            assert req.first.side is req.second.side is plan.exit_side
            groups.append([req.first.qty, req.second.qty])
            stop_side += req.second.qty
            tp_side += req.first.qty
        else:
            assert isinstance(req, OrderRequest)
            assert req.order_type is OrderType.STOP
            assert req.qty >= 1
            assert req.side is plan.exit_side
            groups.append([req.qty])
            stop_side += req.qty
    assert stop_side <= held
    assert tp_side <= held
    assert _worst_exit(groups) <= held
    assert stop_side == held  # and the whole position is covered


class _View:
    """The part of a live view ``_exit_view`` reads; ``filled_qty`` knows every fill of the
    login and answers for the ids asked, as the Tradovate view does."""

    def __init__(self, p: Any, working: list[Any], fills: dict[int, int]) -> None:
        self.p, self.working, self.fills = p, working, fills

    def positions(self, account_id: int) -> list[Any]:
        return [self.p]

    def working_orders(self, account_id: int) -> list[Any]:
        return list(self.working)

    def filled_qty(self, account_id: int, order_ids: Any) -> dict[int, int]:
        return {i: self.fills[i] for i in order_ids if i in self.fills}


def test_re_placed_take_profits_keep_what_they_had_left_after_the_cancels() -> None:
    """Read after the cancels, the cancelled take-profits were no longer working and their fills
    were not asked for: TP1 (2, one filled) came back for 2, TP2 was dropped, the ladder lost."""
    before = _View(pos(2), [tp(1, 2, "21505"), tp(2, 1, "21510")], {1: 1})
    _, book = _exit_view(before, 7, SYM)
    plan = plan_protection(book, D(21490))
    assert plan is not None
    assert plan.cancel == (1, 2)
    after = _View(pos(2), [], {1: 1})
    _, book = _exit_view(after, 7, SYM, also=plan.cancel)
    placed = protection_orders(book, plan, account=ACCT, symbol=SYM, prefix="p")
    assert [(s.request.first.price, s.request.first.qty) for s in placed] == [
        (D("21505"), 1),
        (D("21510"), 1),
    ]


# --- a re-placement tried again after it failed half way -------------------------------------


def test_a_retry_keeps_the_stops_progress_and_restores_the_cancelled_take_profits() -> None:
    """The first attempt cancelled TPs at 21520 and 21530 and a trailed stop at 21495, then
    placed only the 21520 OCO before the broker dropped: what the view shows now is one pair.
    Planned from the view alone, the retry would stop the rest at the configured 21490 with no
    take-profit: the trailed progress and the 21530 target would be gone."""
    before = Protection(
        Side.SELL,
        (11, 12, 13),
        (TakeProfit(11, D(21520), 1), TakeProfit(12, D(21530), 1)),
        D(21495),
        "re-place",
    )
    book = exit_book(pos(2), [tp(21, 1, "21520", oco=22), stop(22, 1, "21495", oco=21)], {})
    plan = plan_protection(book, D(21490))
    assert plan is not None
    merged = carry_over(plan, before, book)
    assert merged.stop_price == D(21495)
    assert merged.take_profits == (TakeProfit(12, D(21530), 1),)
    (leg,) = protection_orders(book, merged, account=ACCT, symbol=SYM, prefix="p")
    assert isinstance(leg.request, OcoRequest)
    assert (leg.request.first.price, leg.request.first.qty) == (D(21530), 1)
    assert leg.request.second.stop_price == D(21495)


def test_a_retry_does_not_put_back_a_take_profit_placed_again_that_filled_since() -> None:
    """Long 3: the first attempt cancelled TPs 1 @ 21505 and 2 @ 21510, placed the 21505 one
    again (order 21), and failed on the 21510 one; order 21 then filled (long 2). Matched only
    against live orders, the retry put 21505 back (filling at once) and cut 21510 to 1."""
    before = Protection(
        Side.SELL,
        (11, 12),
        (TakeProfit(11, D(21505), 1), TakeProfit(12, D(21510), 2)),
        D(21490),
        "re-place",
        replaced=(TakeProfit(21, D(21505), 1),),
    )
    book = exit_book(pos(2), [], {})
    plan = plan_protection(book, D(21490))
    assert plan is not None
    merged = carry_over(plan, before, book)
    assert merged.take_profits == (TakeProfit(12, D(21510), 2),)
    legs = protection_orders(book, merged, account=ACCT, symbol=SYM, prefix="p")
    assert [(o.request.first.price, o.request.first.qty) for o in legs if o.kind == "oco"] == [
        (D(21510), 2)
    ]
    # still live, the one placed again is counted once, not as live and as placed again
    live = exit_book(pos(3), [tp(21, 1, "21505", oco=22), stop(22, 1, "21490", oco=21)], {})
    plan = plan_protection(live, D(21490))
    assert plan is not None
    assert carry_over(plan, before, live).take_profits == (TakeProfit(12, D(21510), 2),)


def test_a_retry_never_widens_the_stop_nor_adds_what_filled() -> None:
    before = Protection(
        Side.BUY, (11,), (TakeProfit(11, D(21480), 2),), D(21505), "re-place"
    )  # a short: its stop above the market, its take-profit below
    book = exit_book(pos(-2), [], {11: 1})  # TP 11 filled 1 before it was cancelled
    plan = plan_protection(book, D(21510))
    assert plan is not None
    merged = carry_over(plan, before, book)
    assert merged.stop_price == D(21505)  # nearer the market than the configured 21510
    assert merged.take_profits == (TakeProfit(11, D(21480), 2),)
    orders = protection_orders(book, merged, account=ACCT, symbol=SYM, prefix="p")
    assert [o.kind for o in orders] == ["oco", "order"]
    oco_req = orders[0].request
    assert isinstance(oco_req, OcoRequest)
    assert oco_req.first.qty == 1  # what it had left
    later = Protection(Side.BUY, (), (), D(21500), "stops cover 0 of 2: stop the rest")
    assert carry_over(later, before, book).stop_price == D(21500)  # already nearer: kept


# --- take-profits alone over the position (no stop loss) -------------------------------------


def ours(o: WorkingOrder) -> WorkingOrder:
    """``o`` as jtrades placed it (a protection's clOrdId)."""
    return dataclasses.replace(o, cl_ord_id=f"jt-p-1-MNQZ6-1-{o.order_id}")


def test_take_profits_alone_over_the_position_shrink_farthest_first() -> None:
    """Long 2 after a hand sale of 2 from 4, take-profits 2 @ 21505 and 2 @ 21510: the far one
    goes, the near one stays; long 3: the far one is shrunk to 1."""
    legs = [ours(tp(1, 2, "21505")), ours(tp(2, 2, "21510"))]
    plan = trim_take_profits(exit_book(pos(2), legs, {}))
    assert plan is not None
    assert (plan.cancel, plan.shrink, plan.trim_only) == ((2,), (), True)
    plan = trim_take_profits(exit_book(pos(3), legs, {}))
    assert plan is not None
    assert plan.cancel == ()
    assert [(s.order_id, s.qty, s.order_type, s.price) for s in plan.shrink] == [
        (2, 1, OrderType.LIMIT, D("21510"))
    ]


def test_a_short_s_farthest_take_profit_is_the_lowest_and_fills_count() -> None:
    buy_tp = [
        ours(order(1, Side.BUY, 2, OrderType.LIMIT, price="21495")),
        ours(order(2, Side.BUY, 3, OrderType.LIMIT, price="21480")),  # 1 of 3 filled: 2 left
    ]
    plan = trim_take_profits(exit_book(pos(-3), buy_tp, {2: 1}))
    assert plan is not None
    assert plan.exit_side is Side.BUY
    # 4 left against 3 held: 1 off the lowest, its full quantity 3 (fills included) to 2
    assert [(s.order_id, s.qty) for s in plan.shrink] == [(2, 2)]


def test_take_profits_are_left_alone_within_the_position_or_beside_stops() -> None:
    assert trim_take_profits(exit_book(pos(2), [ours(tp(1, 2, "21505"))], {})) is None
    assert trim_take_profits(exit_book(pos(2), [ours(tp(1, 1, "21505"))], {})) is None
    # a sell limit placed by hand (to reverse there) is the user's: not counted, not touched
    hand = [ours(tp(1, 2, "21505")), tp(2, 4, "21530")]
    assert trim_take_profits(exit_book(pos(2), hand, {})) is None
    plan = trim_take_profits(exit_book(pos(1), hand, {}))
    assert plan is not None
    assert [(s.order_id, s.qty) for s in plan.shrink] == [(1, 1)]
    assert plan.cancel == ()
    # a bracket leg of an order strategy is jtrades' whatever its clOrdId
    leg = dataclasses.replace(tp(1, 2, "21505"), parent_id=9)
    assert trim_take_profits(exit_book(pos(1), [leg], {})) is not None
    # a stop of any size: the stop-loss paths decide (a bracket shares its stop between legs)
    assert trim_take_profits(exit_book(pos(1), [tp(1, 2, "21505"), stop(2, 1)], {})) is None
    leaving = [tp(1, 2, "21505"), tp(2, 1, "21510", status=OrderStatus.PENDING_CANCEL)]
    assert trim_take_profits(exit_book(pos(1), leaving, {})) is None
    assert trim_take_profits(exit_book(pos(0), [tp(1, 2, "21505")], {})) is None


@given(
    held=st.integers(1, 6),
    legs=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=4),
)
@settings(max_examples=200, deadline=None)
def test_trimmed_take_profits_close_exactly_the_position(
    held: int, legs: list[tuple[int, int]]
) -> None:
    orders = [ours(tp(i + 1, qty, str(21505 + 5 * i))) for i, (qty, _) in enumerate(legs)]
    filled = {i + 1: min(f, qty - 1) for i, (qty, f) in enumerate(legs)}
    book = exit_book(pos(held), orders, filled)
    left = {o.order_id: book.left(o) for o in orders}
    plan = trim_take_profits(book)
    if sum(left.values()) <= held:
        assert plan is None
        return
    assert plan is not None
    after = dict(left)
    for oid in plan.cancel:
        del after[oid]
    for s in plan.shrink:
        after[s.order_id] = s.qty - filled[s.order_id]
        assert 0 < after[s.order_id] < left[s.order_id]
    assert sum(after.values()) == held
    # what is taken off is the farthest: every kept leg is nearer than every cancelled one
    assert all(k < c for k in after for c in plan.cancel)
