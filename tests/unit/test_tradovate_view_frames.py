"""One frame's ``props`` events applied at once (``AccountView.apply_all``): each order they
change is published once, where it first changed, as the frame left it; everything else is
published as one event at a time would publish it, and the view ends the same."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from jtrades.broker.base import BrokerEvent, OrderStatus
from jtrades.broker.tradovate.feed import StreamBroken, ViewFeed
from jtrades.broker.tradovate.frames import PartlyApplied
from jtrades.broker.tradovate.hub import EventHub
from jtrades.broker.tradovate.view import AccountView
from jtrades.sim.config import build_contracts
from jtrades.sim.entities import OrderSpec, Rejected
from jtrades.sim.exchange import Exchange
from tests.unit.test_tradovate_view import ACCT, MNQ, order, props, snapshot, version

CONTRACTS = build_contracts(date(2026, 11, 30))
FRONT = next(c for c in CONTRACTS if c.name.startswith("MNQ"))
ACCOUNTS = (1, 2)


def _view() -> AccountView:
    view = AccountView()
    view.load_snapshot(
        {
            "accounts": [{"id": a, "name": f"A{a}"} for a in ACCOUNTS],
            "contracts": [{"id": FRONT.id, "name": FRONT.name}],
        }
    )
    return view


def _one_at_a_time(view: AccountView, items: list[dict[str, Any]]) -> list[BrokerEvent]:
    return [e for p in items for e in view.apply(p)]


def _key(e: BrokerEvent) -> tuple[str, int]:
    """Which thing an event is about (an order, a fill, a position, a cash balance)."""
    entity: Any = e.entity
    if e.kind == "order":
        return ("order", entity.order_id if entity is not None else int(e.detail["order_id"]))
    if e.kind == "fill":
        return ("fill", entity.fill_id)
    if e.kind == "position":
        return ("position", entity.contract_id * 1000 + entity.account_id)
    return (e.kind, e.account_id or 0)


def _coalesced(events: list[BrokerEvent]) -> list[BrokerEvent]:
    """What ``apply_all`` must give for ``events`` (one at a time's): each order's last event,
    at the place of its first."""
    last = {_key(e): e for e in events if e.kind == "order"}
    out, seen = [], set()
    for e in events:
        if e.kind != "order":
            out.append(e)
        elif _key(e) not in seen:
            seen.add(_key(e))
            out.append(last[_key(e)])
    return out


def test_a_market_order_is_published_once_filled_where_it_was_created() -> None:
    ex = Exchange(CONTRACTS, {FRONT.id: Decimal("21000")})
    _, emitted = ex.place(1, FRONT, OrderSpec("Buy", 2, "Market", cl_ord_id="sig-1"))
    items = [props(t, ent, ev) for _a, t, ev, ent in emitted]
    view = _view()
    events = view.apply_all(items)
    kinds = [e.kind for e in events]
    assert kinds.count("order") == 1, kinds
    assert kinds[0] == "order", kinds
    assert {"fill", "position", "cash"} <= set(kinds)
    entity = events[0].entity
    assert entity is not None
    assert getattr(entity, "status", None) is OrderStatus.FILLED
    assert getattr(entity, "cl_ord_id", None) == "sig-1"
    # one event at a time: the same view, and the order in each of the states it went through
    alone = _view()
    singles = _one_at_a_time(alone, items)
    assert [e.kind for e in singles].count("order") >= 3
    assert events == _coalesced(singles)
    assert view.order(entity.order_id) == alone.order(entity.order_id)  # type: ignore[union-attr]
    assert view.positions(1) == alone.positions(1)


def test_an_order_deleted_in_the_frame_keeps_its_last_state_where_it_first_changed() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    items = [
        props("order", order(1, "PendingNew")),
        props("orderVersion", version(11, 1)),
        props("order", order(1, "Working"), "Updated"),
        props("cashBalance", {"id": 1, "accountId": ACCT, "amount": 50001, "realizedPnL": 1}),
        props("order", order(1, "Working"), "Deleted"),
    ]
    events = view.apply_all(items)
    assert [e.kind for e in events] == ["order", "cash", "order"]
    first, last = events[0].entity, events[2]
    assert first is not None
    assert getattr(first, "status", None) is OrderStatus.WORKING
    assert getattr(first, "price", None) == Decimal("21510.25")  # its version's
    assert (last.deleted, last.entity, last.detail) == (True, None, {"order_id": 1})
    assert view.order(1) is None


def test_an_event_that_cannot_be_applied_gives_what_came_before_it() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    bad = props("position", {"id": 9, "accountId": ACCT})  # no contract: unreadable
    items = [
        props("order", order(1, "PendingNew")),
        props("order", order(1, "Working"), "Updated"),
        bad,
        props("order", order(2, "Working")),
    ]
    with pytest.raises(PartlyApplied) as caught:
        view.apply_all(items)
    broken = caught.value
    assert broken.props is bad
    assert isinstance(broken.cause, Exception)
    assert [(e.kind, getattr(e.entity, "status", None)) for e in broken.events] == [
        ("order", OrderStatus.WORKING)
    ]
    assert view.order(1) is not None
    assert view.order(2) is None
    # and the view is itself again: the next frame is published one order event per order
    assert [e.kind for e in view.apply_all([props("order", order(2, "Working"))])] == ["order"]
    assert [e.kind for e in view.apply(props("order", order(2, "Canceled"), "Updated"))] == [
        "order"
    ]


FILL = {"id": 501, "orderId": 1, "contractId": MNQ, "action": "Sell", "qty": 1,
        "price": 21510.25, "timestamp": "2026-11-30T15:00:00+00:00"}  # fmt: skip
POSITION = {"id": 9, "accountId": ACCT, "contractId": MNQ, "netPos": -1, "netPrice": 21510.25}


def _unreadable_version_last() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A frame whose last event is a version that cannot be read (its price is "")."""
    bad = version(12, 1, price="")
    return [
        props("order", order(1, "Working")),
        props("orderVersion", version(11, 1)),
        props("fill", FILL),
        props("position", POSITION),
        props("orderVersion", bad, "Updated"),
    ], bad


def test_an_order_that_cannot_be_built_at_the_end_is_reported_with_the_rest() -> None:
    """Built only at the frame's end, an order whose version cannot be read used to escape as
    a bare error: nothing of the frame was published and the stream was not cut."""
    view = AccountView()
    view.load_snapshot(snapshot())
    items, bad = _unreadable_version_last()
    with pytest.raises(PartlyApplied) as caught:
        view.apply_all(items)
    # named by what changed the order in the frame: any of those may hold what cannot be read
    assert caught.value.props["entityType"] == "order/orderVersion"
    assert caught.value.props["entity"]["id"] == 1
    assert bad in [p["entity"] for p in items]
    assert [e.kind for e in caught.value.events] == ["fill", "position"]


class _Namer:
    def notice(self, events: Any) -> None: ...

    def soon(self) -> None: ...


def test_the_feed_publishes_what_it_can_then_cuts() -> None:
    view, hub, cuts = AccountView(), EventHub(), []
    feed = ViewFeed(view, hub, _Namer(), cuts.append, "t")  # type: ignore[arg-type]
    feed.snapshot(snapshot())
    sub = hub.subscribe()
    with pytest.raises(StreamBroken):
        feed.props_all(_unreadable_version_last()[0])
    assert len(cuts) == 1
    assert "unreadable order/orderVersion event" in cuts[0]
    published = []
    while not sub._queue.empty():
        published.append(sub._queue.get_nowait())
    assert [e.kind for e in published] == ["fill", "position"]  # the view holds both


def test_a_view_holding_an_order_it_cannot_read_still_loads_the_next_snapshot() -> None:
    """The reconnect after the cut: reading the old orders raised, and the login never synced
    again until a restart."""
    view = AccountView()
    view.load_snapshot(snapshot())
    view.apply(props("order", order(1, "Working")))
    with pytest.raises(Exception, match="ConversionSyntax"):
        view.apply(props("orderVersion", version(12, 1, price="")))
    view.load_snapshot(snapshot())
    assert view.order(1) is None
    assert view.positions(ACCT) == []


def test_a_snapshot_holding_an_order_it_cannot_read_publishes_the_rest_then_cuts() -> None:
    """The reconnect after the cut brings the broker's same unreadable version: the snapshot
    raised a bare error, with none of the outage's fills and positions published, and every
    reconnect failed alike without saying why."""
    view, hub, cuts = AccountView(), EventHub(), []
    feed = ViewFeed(view, hub, _Namer(), cuts.append, "t")  # type: ignore[arg-type]
    bad = version(12, 1, price="")
    sub = hub.subscribe()
    with capture_logs() as logs, pytest.raises(StreamBroken):
        feed.snapshot(
            snapshot(
                orders=[order(1, "Working")],
                orderVersions=[bad],
                fills=[FILL],
                positions=[POSITION],
            )
        )
    published = []
    while not sub._queue.empty():
        published.append(sub._queue.get_nowait())
    assert [e.kind for e in published] == ["fill", "position", "cash"]  # not "synced"
    assert [r["event"] for r in logs] == ["tradovate.session.bad_event"]
    # which order, and what may hold what cannot be read: its version
    assert (logs[0]["entity_type"], logs[0]["entity_id"]) == ("order/orderVersion", 1)
    assert logs[0]["account_id"] == ACCT
    assert len(cuts) == 1
    assert not view.is_synced(ACCT)


def test_a_finished_order_it_cannot_read_is_left_out_and_the_login_syncs() -> None:
    """Cancelled hours ago, it holds no position and works no exit: cutting for it kept every
    account of the login unsynced on every reconnect, for the rest of the day."""
    view, hub, cuts = AccountView(), EventHub(), []
    feed = ViewFeed(view, hub, _Namer(), cuts.append, "t")  # type: ignore[arg-type]
    with capture_logs() as logs:
        feed.snapshot(
            snapshot(
                orders=[order(1, "Canceled"), order(2, "Working")],
                orderVersions=[version(12, 1, price=""), version(13, 2)],
                positions=[POSITION],
            )
        )
    assert cuts == []
    assert view.is_synced(ACCT)
    assert [o.order_id for o in view.working_orders(ACCT)] == [2]
    assert [(r["event"], r["order_id"]) for r in logs] == [
        ("tradovate.session.unreadable_order", 1)
    ]


def test_a_snapshot_holding_a_fill_it_cannot_read_publishes_the_rest_then_cuts() -> None:
    """It escaped as a bare error from the middle of the load: nothing published, no cut."""
    view, hub, cuts = AccountView(), EventHub(), []
    feed = ViewFeed(view, hub, _Namer(), cuts.append, "t")  # type: ignore[arg-type]
    sub = hub.subscribe()
    bad_fill = {**FILL, "id": 502, "price": ""}
    with capture_logs() as logs, pytest.raises(StreamBroken):
        feed.snapshot(
            snapshot(
                orders=[order(1, "Filled")],
                orderVersions=[version(12, 1)],
                positions=[POSITION],
                fills=[FILL, bad_fill],
            )
        )
    published = []
    while not sub._queue.empty():
        published.append(sub._queue.get_nowait())
    assert [e.kind for e in published] == ["order", "fill", "position", "cash"]
    assert [getattr(e.entity, "fill_id", None) for e in published if e.kind == "fill"] == [501]
    assert (logs[0]["entity_type"], logs[0]["entity_id"]) == ("fill", 502)
    assert len(cuts) == 1


_COMMAND = st.one_of(
    st.tuples(st.just("market"), st.sampled_from(ACCOUNTS), st.sampled_from(["Buy", "Sell"])),
    st.tuples(st.just("limit"), st.sampled_from(ACCOUNTS), st.integers(-8, 8)),
    st.tuples(st.just("cancel"), st.integers(0, 5), st.none()),
    st.tuples(st.just("move"), st.integers(-8, 8), st.none()),
)


@given(
    commands=st.lists(_COMMAND, min_size=1, max_size=12),
    cuts=st.lists(st.integers(1, 6), min_size=1, max_size=30),
)
def test_any_frames_end_the_view_alike_and_publish_each_order_once_per_frame(
    commands: list[tuple[str, Any, Any]], cuts: list[int]
) -> None:
    """The simulator's events for random commands (market orders, resting limits, cancels, a
    moving price filling them), cut into frames of random sizes: per frame, ``apply_all``
    gives one-at-a-time's events with each order's last one at the place of its first, and
    the two views end alike."""
    ex = Exchange(CONTRACTS, {FRONT.id: Decimal("21000")})
    price, items = Decimal("21000"), []
    for what, a, b in commands:
        try:
            if what == "market":
                _, out = ex.place(a, FRONT, OrderSpec(b, 1, "Market"))
            elif what == "limit":
                limit = Decimal("21000") + Decimal(b)
                _, out = ex.place(a, FRONT, OrderSpec("Buy", 1, "Limit", price=limit))
            elif what == "cancel":
                working = [o for acct in ACCOUNTS for o in ex.open_orders(acct)]
                if not working:
                    continue
                _, out = ex.cancel(working[a % len(working)].id)
            else:
                price += Decimal(a)
                out = ex.set_price(FRONT.id, price)
        except Rejected:
            continue
        items += [props(t, ent, ev) for _a, t, ev, ent in out]
    frames, i = [], 0
    for n in cuts * (len(items) // max(1, sum(cuts)) + 1):
        if i >= len(items):
            break
        frames.append(items[i : i + n])
        i += n
    at_once, alone = _view(), _view()
    for frame in frames:
        assert at_once.apply_all(frame) == _coalesced(_one_at_a_time(alone, frame))
    for acct in ACCOUNTS:
        assert at_once.positions(acct) == alone.positions(acct)
        assert at_once.working_orders(acct) == alone.working_orders(acct)
