"""Which stored orders a restarted paper broker puts back, and how (``paper_restore.plan``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.broker.base import OrderStatus, OrderType, Side, SubAccount
from jtrades.broker.paper_restore import plan

A = SubAccount(7, "A")


def row(oid: int, order_type: str, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "sub_account_id": 1, "broker_order_id": oid, "cl_ord_id": None, "symbol": "MNQZ6",
        "side": "Sell", "qty": 1, "order_type": order_type, "price": None, "stop_price": None,
        "status": "Working", "parent_id": None, "oco_id": None, "request": None,
        "parent_request": None, "parent_fill_price": None,
    }  # fmt: skip
    r.update(kw)
    return r


def oco_request(first: str, second: str, peg: str | None) -> dict[str, Any]:
    leg = {"cl_ord_id": first, "peg_difference": None}
    return {"type": "oco", "request": {"first": leg, "second": {"cl_ord_id": second,
                                                               "peg_difference": peg}}}  # fmt: skip


def test_an_oco_pairs_second_leg_reads_its_distance_from_the_pairs_intent() -> None:
    req = oco_request("x", "xb", "-4")
    rows = [
        row(5, "Limit", price=Decimal(110), cl_ord_id="x", oco_id=6, request=req),
        row(6, "TrailingStop", stop_price=Decimal(96), cl_ord_id="xb", oco_id=5, request=req),
    ]
    p = plan(rows, {1: A}, lambda s: True)
    assert (p.lost, p.degraded) == ([], [])
    tp, stop = p.orders
    assert (tp.id, tp.oco_id, tp.account, tp.side) == (5, 6, A, Side.SELL)
    assert (stop.order_type, stop.peg, stop.stop_price) == (
        OrderType.TRAILING_STOP,
        Decimal(4),
        Decimal(96),
    )


def test_a_trailing_stop_without_its_distance_is_a_plain_stop_at_its_last_price() -> None:
    p = plan([row(6, "TrailingStop", stop_price=Decimal(96))], {1: A}, lambda s: True)
    (o,) = p.orders
    assert (o.order_type, o.stop_price, o.peg) == (OrderType.STOP, Decimal(96), None)
    assert [d[0].id for d in p.degraded] == [6]


def test_orders_that_cannot_work_are_lost_with_their_reason() -> None:
    rows = [
        row(1, "Limit"),  # no price
        row(2, "Stop", stop_price=Decimal(90), symbol="ZZZ9"),
        row(3, "Market"),
        row(4, "Iceberg", price=Decimal(1)),
        row(5, "Stop", stop_price=Decimal(90), status="PendingNew"),
    ]
    p = plan(rows, {1: A}, lambda s: s == "MNQZ6")
    assert [(r["broker_order_id"], why.split()[0]) for r, why in p.lost] == [
        (1, "its"), (2, "the"), (3, "a"), (4, "not"),
    ]  # fmt: skip
    assert [(o.id, o.status) for o in p.orders] == [(5, OrderStatus.WORKING)]


def test_a_waiting_entry_goes_whole_with_its_legs() -> None:
    strategy = {"type": "strategy", "request": {"brackets": [
        {"qty": 1, "profit_target": "5", "stop_loss": "-10", "trailing_stop": False},
    ]}}  # fmt: skip
    entry = row(1, "Limit", side="Buy", price=Decimal(100), cl_ord_id="e")
    tp = row(2, "Limit", status="Suspended", parent_id=1, parent_request=strategy)
    sl = row(3, "Stop", status="Suspended", parent_id=1, parent_request=strategy)
    p = plan([entry, tp, sl], {1: A}, lambda s: True)
    assert [(o.id, o.oco_id, o.tp_offset, o.sl_offset) for o in p.orders] == [
        (1, None, None, None), (2, 3, Decimal(5), None), (3, 2, None, Decimal(10)),
    ]  # fmt: skip
    # without the strategy's request its legs cannot be priced: nothing of it is kept
    bare = [entry, {**tp, "parent_request": None}, {**sl, "parent_request": None}]
    p = plan(bare, {1: A}, lambda s: True)
    assert (p.orders, sorted(r["broker_order_id"] for r, _ in p.lost)) == ([], [1, 2, 3])


def test_breakeven_is_armed_from_the_entrys_fill() -> None:
    strategy = {"type": "strategy", "request": {"brackets": [
        {"qty": 1, "stop_loss": "-10", "breakeven": "4", "breakeven_offset": "1"},
    ]}}  # fmt: skip
    sl = row(2, "Stop", stop_price=Decimal(90), parent_id=1, parent_request=strategy,
             parent_fill_price=Decimal(100))  # fmt: skip
    (o,) = plan([sl], {1: A}, lambda s: True).orders
    assert (o.anchor, o.be_at, o.be_stop) == (Decimal(100), Decimal(104), Decimal(101))
    (o,) = plan([{**sl, "parent_fill_price": None}], {1: A}, lambda s: True).orders
    assert (o.be_trigger, o.be_at) == (None, None)
