"""Exits left working on a flat contract (``engine.orphans``): the brackets of a filled entry
and the exits jtrades placed are found; entries, orders placed by hand and anything on a held
contract are never touched."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from jtrades.broker.base import OrderStatus, OrderType, Position, Side, WorkingOrder
from jtrades.engine.orphans import orphan_exits
from jtrades.engine.plan_context import Steps, placed_as_exit

D = Decimal
AID, SYM, OTHER = 7, "MNQZ6", "ESZ6"


def o(
    oid: int,
    side: Side = Side.SELL,
    kind: OrderType = OrderType.STOP,
    *,
    status: OrderStatus = OrderStatus.WORKING,
    cl: str | None = None,
    parent: int | None = None,
    oco: int | None = None,
    symbol: str = SYM,
) -> WorkingOrder:
    return WorkingOrder(
        oid, AID, 42, symbol, side, 1, kind, status,
        price=D(21510) if kind is OrderType.LIMIT else None,
        stop_price=D(21490) if kind is OrderType.STOP else None,
        cl_ord_id=cl, parent_id=parent, oco_id=oco,
    )  # fmt: skip


def ids(found: tuple[WorkingOrder, ...]) -> list[int]:
    return [x.order_id for x in found]


def flat(symbol: str = SYM) -> list[Position]:
    return [Position(AID, 42, symbol, 0, None)]


def test_brackets_of_a_filled_entry_on_a_flat_contract_are_orphans() -> None:
    # entry 1 filled (gone from the working orders); its TP and stop still work
    working = [o(2, kind=OrderType.LIMIT, parent=1, oco=3), o(3, parent=1, oco=2)]
    assert ids(orphan_exits(flat(), working)) == [2, 3]
    assert ids(orphan_exits([], working)) == [2, 3]  # no position row at all: flat too


def test_nothing_is_an_orphan_while_the_contract_is_held() -> None:
    working = [o(2, kind=OrderType.LIMIT, parent=1), o(3, cl="jt-5-1-2x")]
    assert orphan_exits([Position(AID, 42, SYM, 2, D(21500))], working) == ()
    # another contract's position does not hold this one
    assert ids(orphan_exits([Position(AID, 43, OTHER, 2, D(5000))], working)) == [2, 3]


def test_exits_on_the_side_now_held_are_orphans() -> None:
    """A closed long's sell exits, with the contract now short (reversed by hand, or an alert
    opened the short before a pass cancelled them): they add to the short when they fill."""
    old_exits = [o(2, kind=OrderType.LIMIT, parent=1, oco=3), o(3, parent=1, oco=2)]
    new_exits = [
        o(5, Side.BUY, OrderType.LIMIT, parent=4, oco=6),
        o(6, Side.BUY, OrderType.STOP, parent=4, oco=5),
    ]
    short = [Position(AID, 42, SYM, -1, D(21500))]
    assert ids(orphan_exits(short, [*old_exits, *new_exits])) == [2, 3]
    assert ids(orphan_exits([Position(AID, 42, SYM, 1, D(21500))], old_exits)) == []


def test_an_oco_second_leg_is_known_by_its_text() -> None:
    """An OCO's second leg carries our id in its text as well as in its clOrdId (jtrades sent
    it only in the text before): the text alone tells the stop is an exit once its take-profit
    is gone."""
    stop = dataclasses.replace(o(11, oco=10), text="jt-5-1-3xb")
    assert ids(orphan_exits(flat(), [stop])) == [11]
    label = dataclasses.replace(o(12), text="protective stop")
    assert orphan_exits(flat(), [label]) == ()


def test_brackets_of_an_entry_still_open_are_left_alone() -> None:
    entry = o(1, Side.BUY, OrderType.LIMIT, cl="jt-5-1-1")
    suspended = [
        o(2, kind=OrderType.LIMIT, parent=1, status=OrderStatus.SUSPENDED),
        o(3, parent=1, status=OrderStatus.SUSPENDED),
    ]
    assert orphan_exits(flat(), [entry, *suspended]) == ()
    # even live ones (the entry partly filled, then the part was closed by hand): the entry
    # still working may fill, and they exit what it opens
    live = [o(2, kind=OrderType.LIMIT, parent=1), o(3, parent=1)]
    assert orphan_exits(flat(), [entry, *live]) == ()


def test_entries_and_orders_placed_by_hand_are_never_orphans() -> None:
    working = [
        o(1, Side.BUY, OrderType.LIMIT, cl="jt-5-1-1"),  # a limit entry of ours
        o(2, Side.SELL, OrderType.STOP, cl="jt-5-1-2"),  # a stop entry of ours
        o(3, Side.SELL, OrderType.LIMIT),  # by hand, no clOrdId
        o(4, Side.BUY, OrderType.STOP, cl="mine-x"),  # by hand, our mark but not our prefix
        o(5, Side.BUY, OrderType.STOP, oco=6),  # a breakout pair placed by hand
        o(6, Side.SELL, OrderType.STOP, oco=5),
    ]
    assert orphan_exits(flat(), working) == ()


def test_exits_jtrades_placed_and_their_oco_partners_are_orphans() -> None:
    working = [
        o(10, kind=OrderType.LIMIT, cl="jt-5-1-3x", oco=11),  # a DCA's TP leg
        o(11, oco=10),  # its stop: the OCO's second leg, its clOrdId not known to the view
        o(12, cl="jt-5-1-4x"),  # a DCA's stop for the rest
        o(13, cl="jt-p-1-MNQZ6-1700000000000-1"),  # a protective stop
        o(14, Side.BUY, OrderType.LIMIT, cl="jt-5-1-1"),  # an entry: left
    ]
    assert ids(orphan_exits(flat(), working)) == [10, 11, 12, 13]


def test_orders_not_resting_or_on_their_way_out_are_left_alone() -> None:
    working = [
        o(2, kind=OrderType.MARKET, parent=1),
        o(3, parent=1, status=OrderStatus.PENDING_CANCEL),
        o(4, parent=1, status=OrderStatus.FILLED),
    ]
    assert orphan_exits(flat(), working) == ()
    assert ids(orphan_exits(flat(), [o(5, parent=1, status=OrderStatus.PENDING_NEW)])) == [5]


def test_exit_ids_carry_the_mark_and_entry_ids_do_not() -> None:
    steps = Steps("jt-12-3")
    entry = steps.next_id()
    assert not placed_as_exit(entry)
    assert placed_as_exit(steps.exit_id())
    assert placed_as_exit(steps.exit_id("b"))
    assert not placed_as_exit(None)
    assert not placed_as_exit("")
    assert not placed_as_exit("jt-f0123456789ab-3-MNQZ6x-1")  # a flatten's liquidation
    assert placed_as_exit("jt-p-3-MNQZ6-1700000000000-2b")


@given(
    st.lists(
        st.tuples(
            st.sampled_from([SYM, OTHER]),
            st.sampled_from(list(OrderStatus)),
            st.sampled_from(list(OrderType)),
            st.sampled_from([None, "jt-1-1-1", "jt-1-1-2x", "jt-1-1-2xb", "hand"]),
            st.one_of(st.none(), st.integers(1, 12)),
            st.one_of(st.none(), st.integers(1, 12)),
        ),
        max_size=12,
    ),
    st.sets(st.sampled_from([SYM, OTHER])),
)
def test_an_orphan_is_always_live_resting_on_a_flat_contract(
    rows: list[tuple], held: set[str]
) -> None:
    working = [
        o(i, kind=kind, status=status, cl=cl, parent=parent, oco=oco, symbol=sym)
        for i, (sym, status, kind, cl, parent, oco) in enumerate(rows, start=1)
    ]
    positions = [Position(AID, 42, s, 1, D(1)) for s in held]
    found = orphan_exits(positions, working)
    open_ids = {w.order_id for w in working if w.status.is_open}
    marked = {
        w.order_id
        for w in working
        if placed_as_exit(w.cl_ord_id) or (w.parent_id is not None and w.parent_id not in open_ids)
    }
    for x in found:
        assert x.symbol not in held or x.side is Side.BUY  # held long: a buy only adds to it
        assert x.status in (
            OrderStatus.WORKING,
            OrderStatus.PENDING_NEW,
            OrderStatus.PENDING_REPLACE,
        )
        assert x.order_type is not OrderType.MARKET
        # an exit itself, or linked by OCO to one
        assert (
            x.order_id in marked
            or x.oco_id in marked
            or any(w.oco_id == x.order_id for w in working if w.order_id in marked)
        )
