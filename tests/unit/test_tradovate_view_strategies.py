"""Order strategies in the live view: the strategy's ``uuid`` (our intent's id) becomes its entry
order's clOrdId, from the snapshot's ``orderStrategies``/``orderStrategyLinks`` and from their
``props`` events, whichever order they come in, and across a reconnect's snapshot."""

from __future__ import annotations

from typing import Any

from jtrades.broker.base import BrokerEvent, OrderStatus, WorkingOrder
from jtrades.broker.tradovate.view import AccountView
from tests.unit.test_tradovate_view import ACCT, OTHER, order, props, snapshot, version

SID, ENTRY, TP, SL = 500, 501, 502, 503


def strategy(sid: int = SID, uuid: str | None = "jt-st-1", acct: int = ACCT) -> dict[str, Any]:
    s: dict[str, Any] = {"id": sid, "accountId": acct, "status": "ActiveStrategy"}
    if uuid is not None:
        s["uuid"] = uuid
    return s


def link(lid: int, oid: int, label: str | None = None, sid: int = SID) -> dict[str, Any]:
    d: dict[str, Any] = {"id": lid, "orderStrategyId": sid, "orderId": oid}
    if label is not None:
        d["label"] = label
    return d


def orders_of(events: list[BrokerEvent]) -> list[WorkingOrder]:
    return [e.entity for e in events if isinstance(e.entity, WorkingOrder)]


def test_the_entry_order_carries_the_strategy_uuid_from_the_stream() -> None:
    """As Tradovate streams a strategy: the strategy, its entry order, the link, Working."""
    view = AccountView()
    view.load_snapshot(snapshot())
    assert view.apply(props("orderStrategy", strategy())) == []  # no order to tell about yet
    [ev] = view.apply(props("order", order(ENTRY, "PendingNew", action="Buy")))
    assert isinstance(ev.entity, WorkingOrder)
    assert ev.entity.cl_ord_id is None  # not linked yet
    view.apply(props("orderVersion", version(1, ENTRY, orderType="Market", price=None)))

    [w] = orders_of(view.apply(props("orderStrategyLink", link(1, ENTRY, "entry"))))
    assert (w.order_id, w.cl_ord_id) == (ENTRY, "jt-st-1")  # told at once: the intent moves
    [w] = orders_of(view.apply(props("order", order(ENTRY, "Working", action="Buy"), "Updated")))
    assert w.cl_ord_id == "jt-st-1"
    found = view.order_by_cl_ord_id(ACCT, "jt-st-1")
    assert found is not None
    assert found.order_id == ENTRY
    assert view.order_by_cl_ord_id(OTHER, "jt-st-1") is None  # never across sub-accounts
    assert view.strategies.entry(SID) == ENTRY

    # the brackets, made when the entry fills, are the strategy's but not its entry
    view.apply(props("order", order(ENTRY, "Filled", action="Buy"), "Updated"))
    for oid, lid, label in ((TP, 2, "tp"), (SL, 3, "sl")):
        view.apply(props("order", order(oid)))
        # told again: its parent is now the entry (what makes it an exit of the position
        # the entry opened, ``engine.orphans``)
        [w] = orders_of(view.apply(props("orderStrategyLink", link(lid, oid, label))))
        assert (w.order_id, w.parent_id) == (oid, ENTRY)
        o = view.order(oid)
        assert o is not None
        assert o.cl_ord_id is None
    done = view.order_by_cl_ord_id(ACCT, "jt-st-1")
    assert done is not None
    assert (done.order_id, done.status) == (ENTRY, OrderStatus.FILLED)


def test_links_before_their_strategy_bind_when_the_strategy_comes() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    view.apply(props("order", order(ENTRY, action="Buy")))
    assert orders_of(view.apply(props("orderStrategyLink", link(1, ENTRY, "entry")))) == []
    assert view.strategies.entry(SID) == ENTRY  # known, but no id to give it yet
    [w] = orders_of(view.apply(props("orderStrategy", strategy())))
    assert (w.order_id, w.cl_ord_id) == (ENTRY, "jt-st-1")
    # an update of the strategy changes nothing about its entry: nothing to publish
    assert view.apply(props("orderStrategy", strategy() | {"status": "ExecutionFinished"})) == []


def test_unlabelled_links_make_the_first_order_the_entry() -> None:
    """Its brackets are created only once the entry fills: the entry is the lowest order id."""
    view = AccountView()
    view.load_snapshot(snapshot())
    view.apply(props("orderStrategy", strategy()))
    for oid in (TP, ENTRY):
        view.apply(props("order", order(oid)))
    view.apply(props("orderStrategyLink", link(2, TP)))
    assert view.strategies.entry(SID) == TP  # the only one known so far
    events = view.apply(props("orderStrategyLink", link(1, ENTRY)))
    assert {(w.order_id, w.cl_ord_id) for w in orders_of(events)} == {
        (TP, None),
        (ENTRY, "jt-st-1"),
    }


def test_a_strategy_entry_keeps_its_id_across_a_reconnect() -> None:
    """The snapshot after a reconnect carries the strategies and their links: the entry that
    filled while the stream was down is published with the intent's id."""
    view = AccountView()
    st = {"orderStrategies": [strategy()], "orderStrategyLinks": [link(1, ENTRY, "entry")]}
    working = order(ENTRY, "Working", action="Buy")
    view.load_snapshot(snapshot(orders=[working], orderVersions=[version(1, ENTRY)], **st))
    w = view.order(ENTRY)
    assert w is not None
    assert w.cl_ord_id == "jt-st-1"
    assert view.working_orders(ACCT)[0].cl_ord_id == "jt-st-1"

    view.mark_unsynced("drop")
    filled = order(ENTRY, "Filled", action="Buy")
    events = view.load_snapshot(snapshot(orders=[filled], orderVersions=[version(1, ENTRY)], **st))
    [w] = orders_of(events)
    assert (w.order_id, w.status, w.cl_ord_id) == (ENTRY, OrderStatus.FILLED, "jt-st-1")
    assert view.order_by_cl_ord_id(ACCT, "jt-st-1") == w

    # nothing changed: the entry is not published again, and keeps its id
    events = view.load_snapshot(snapshot(orders=[filled], orderVersions=[version(1, ENTRY)], **st))
    assert orders_of(events) == []
    assert view.order_by_cl_ord_id(ACCT, "jt-st-1") == w


def test_a_strategy_is_found_by_its_uuid_and_forgotten_when_deleted() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    view.apply(props("orderStrategy", strategy()))
    view.apply(props("orderStrategy", strategy(SID + 10, uuid=None)))  # not ours: no uuid
    found = view.strategies.by_uuid("jt-st-1")
    assert found is not None
    assert int(found["id"]) == SID
    assert view.strategies.by_uuid("jt-other") is None
    view.apply(props("order", order(ENTRY)))
    view.apply(props("orderStrategyLink", link(1, ENTRY, "entry")))

    [w] = orders_of(view.apply(props("orderStrategy", strategy(), "Deleted")))
    assert (w.order_id, w.cl_ord_id) == (ENTRY, None)
    assert view.strategies.by_uuid("jt-st-1") is None
    assert view.order_by_cl_ord_id(ACCT, "jt-st-1") is None


def test_a_command_clordid_is_not_overridden() -> None:
    """An order that carries its own clOrdId keeps it even if a link names it (no strategy
    order carries one on Tradovate; this only guards against a confusing mix)."""
    view = AccountView()
    view.load_snapshot(snapshot())
    view.apply(props("order", order(ENTRY)))
    view.apply(props("command", {"id": 9, "orderId": ENTRY, "clOrdId": "jt-plain"}))
    view.apply(props("orderStrategy", strategy()))
    view.apply(props("orderStrategyLink", link(1, ENTRY, "entry")))
    w = view.order(ENTRY)
    assert w is not None
    assert w.cl_ord_id == "jt-plain"
