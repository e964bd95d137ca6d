"""Which stored orders a restarted paper broker puts back, and how (``paper_restore.plan``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jtrades.broker.base import OrderStatus, OrderType, Side, SubAccount, TimeInForce
from jtrades.broker.paper import PaperBroker
from jtrades.broker.paper_restore import plan

A = SubAccount(7, "A")


def row(oid: int, order_type: str, **kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "sub_account_id": 1, "broker_order_id": oid, "cl_ord_id": None, "symbol": "MNQZ6",
        "side": "Sell", "qty": 1, "order_type": order_type, "price": None, "stop_price": None,
        "status": "Working", "parent_id": None, "oco_id": None, "request": None,
        "parent_request": None, "parent_fill_price": None, "placed_at": None,
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


# --- DAY orders: Tradovate expires them when their session (17:00 Chicago) ends ----------------

CHICAGO = ZoneInfo("America/Chicago")
TUESDAY_NOON = datetime(2026, 11, 24, 12, tzinfo=CHICAGO)
STRATEGY = {"type": "strategy", "request": {
    "entry": {"cl_ord_id": "e", "time_in_force": "Day"},
    "brackets": [{"qty": 1, "profit_target": "5", "stop_loss": "-10", "trailing_stop": False}],
}}  # fmt: skip


def waiting_entry(placed: datetime) -> list[dict[str, Any]]:
    """A DAY limit entry placed at ``placed`` with its two legs waiting for it."""
    return [
        row(1, "Limit", side="Buy", price=Decimal(100), cl_ord_id="e", request=STRATEGY,
            placed_at=placed),
        row(2, "Limit", status="Suspended", parent_id=1, parent_request=STRATEGY),
        row(3, "Stop", status="Suspended", parent_id=1, parent_request=STRATEGY),
    ]  # fmt: skip


def test_a_day_entry_of_an_earlier_session_expires_with_its_waiting_legs() -> None:
    yesterday = TUESDAY_NOON - timedelta(days=1)
    p = plan(waiting_entry(yesterday), {1: A}, lambda s: True, now=TUESDAY_NOON)
    assert p.orders == []
    assert [r["broker_order_id"] for r, _ in p.lost] == [1, 2, 3]
    assert p.expired == {1, 2, 3}
    assert "DAY" in {r["broker_order_id"]: why for r, why in p.lost}[1]


def test_a_day_entry_of_this_session_is_restored_with_its_session() -> None:
    placed = TUESDAY_NOON.replace(hour=17) - timedelta(days=1)  # Tuesday's session began then
    p = plan(waiting_entry(placed), {1: A}, lambda s: True, now=TUESDAY_NOON)
    assert ([o.id for o in p.orders], p.lost, p.expired) == ([1, 2, 3], [], set())
    entry = p.orders[0]
    assert (entry.time_in_force, entry.session) == (TimeInForce.DAY, placed.astimezone(UTC))
    assert [o.time_in_force for o in p.orders[1:]] == [None, None]  # legs end with their entry


def test_a_gtc_order_is_restored_whatever_its_age() -> None:
    gtc = {"type": "order", "request": {"cl_ord_id": "g", "time_in_force": "GTC"}}
    stop = row(4, "Stop", stop_price=Decimal(90), cl_ord_id="g", request=gtc,
               placed_at=TUESDAY_NOON - timedelta(days=30))  # fmt: skip
    p = plan([stop], {1: A}, lambda s: True, now=TUESDAY_NOON)
    assert ([o.id for o in p.orders], p.lost, p.degraded) == ([4], [], [])
    assert p.orders[0].time_in_force is TimeInForce.GTC


def test_an_order_without_its_request_works_on_until_cancelled_and_says_so() -> None:
    stop = row(4, "Stop", stop_price=Decimal(90), cl_ord_id="g")
    p = plan([stop], {1: A}, lambda s: True, now=TUESDAY_NOON)
    assert [o.id for o in p.orders] == [4]
    assert ["time in force" in note for _, note in p.degraded] == [True]


async def test_a_restored_day_entry_expires_when_its_session_ends() -> None:
    """Put back during its session, it expires at the first price after the session's end."""
    at = TUESDAY_NOON

    def clock() -> datetime:
        return at

    p = plan(waiting_entry(TUESDAY_NOON), {1: A}, lambda s: True, now=TUESDAY_NOON)
    paper = PaperBroker(now=clock)
    await paper.find_contract("MNQZ6")
    for o in p.orders:
        paper.restore_order(o)
    paper.on_price("MNQZ6", Decimal(101))
    assert [o.status for o in paper.all_orders(A.account_id)] == [
        OrderStatus.WORKING, OrderStatus.SUSPENDED, OrderStatus.SUSPENDED,
    ]  # fmt: skip
    at = TUESDAY_NOON.replace(hour=17)
    paper.on_price("MNQZ6", Decimal(100))
    assert [o.status for o in paper.all_orders(A.account_id)] == [OrderStatus.EXPIRED] * 3
    assert paper.fills(A.account_id) == []


@pytest.mark.parametrize("stored", [None, Decimal(21495)])
async def test_a_waiting_trailing_bracket_without_a_stop_price_starts_from_the_fill(
    stored: Decimal | None,
) -> None:
    """An OSO trailing bracket gets its stop price when its entry fills: restored while it
    waits, it has none, and starts ``|peg|`` from the fill as it would have. A row written
    before that was so has the stop set from the market at placement (21495, above this fill):
    the request, which gives none, decides."""
    oso = {"type": "oso", "request": {
        "entry": {"cl_ord_id": "o", "time_in_force": "GTC"},
        "bracket1": {"order_type": "TrailingStop", "peg_difference": "-5", "stop_price": None},
    }}  # fmt: skip
    rows = [
        row(1, "Limit", side="Buy", price=Decimal(21490), cl_ord_id="o", request=oso),
        row(2, "TrailingStop", status="Suspended", parent_id=1, parent_request=oso,
            stop_price=stored),
    ]  # fmt: skip
    p = plan(rows, {1: A}, lambda s: True, now=TUESDAY_NOON)
    assert ([o.id for o in p.orders], p.lost, p.degraded) == ([1, 2], [], [])
    paper = PaperBroker()
    await paper.find_contract("MNQZ6")
    for o in p.orders:
        paper.restore_order(o)
    paper.on_price("MNQZ6", Decimal(21490))
    (stop,) = paper.working_orders(A.account_id)
    assert (stop.order_type, stop.stop_price) == (OrderType.TRAILING_STOP, Decimal(21485))
