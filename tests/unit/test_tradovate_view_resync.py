"""The live view across a reconnect: contract names outlive snapshots, and a snapshot publishes
what happened while the stream was down (fills in the order they happened)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import BrokerEvent, Fill, OrderStatus, Position, WorkingOrder
from jtrades.broker.tradovate.frames import PartlyApplied
from jtrades.broker.tradovate.view import AccountView
from tests.unit.test_tradovate_view import ACCT, MNQ, OTHER, order, props, snapshot, version

MES = 7002


def fill(fid: int, oid: int, at: str, contract: int = MNQ, **kw: Any) -> dict[str, Any]:
    return {
        "id": fid,
        "orderId": oid,
        "contractId": contract,
        "action": "Buy",
        "qty": 1,
        "price": 100,
        "timestamp": at,
        **kw,
    }


def position(pid: int, contract: int, net: int, acct: int = ACCT) -> dict[str, Any]:
    return {"id": pid, "accountId": acct, "contractId": contract, "netPos": net, "netPrice": 100}


def of(events: list[BrokerEvent], kind: str) -> list[BrokerEvent]:
    return [e for e in events if e.kind == kind]


def test_contract_names_outlive_a_snapshot_that_does_not_list_them() -> None:
    """The client names a contract once, when it resolves it; a snapshot names only the
    contracts its orders and positions use. A contract resolved before a reconnect and traded
    after it keeps its name; a name the snapshot gives wins."""
    view = AccountView()
    view.load_snapshot(snapshot())
    view.set_contract(MES, "MESZ6")
    view.mark_unsynced("drop")
    view.load_snapshot(snapshot(contracts=[{"id": MNQ, "name": "MNQH7"}]))  # MES not listed

    view.apply(props("order", order(9, "Filled", contractId=MES)))
    [ev] = view.apply(props("fill", fill(1, 9, "2026-11-25T15:00:00Z", contract=MES)))
    assert isinstance(ev.entity, Fill)
    assert ev.entity.symbol == "MESZ6"
    [ev] = view.apply(props("position", position(5, MES, 1)))
    assert isinstance(ev.entity, Position)
    assert ev.entity.symbol == "MESZ6"

    view.load_snapshot(snapshot(contracts=[{"id": MES, "name": "MESH7"}]))
    assert [p.symbol for p in view.positions(ACCT)] == []  # the snapshot had no position
    view.apply(props("position", position(5, MES, 2)))
    assert [p.symbol for p in view.positions(ACCT)] == ["MESH7"]


def test_a_snapshot_publishes_what_changed_while_the_stream_was_down() -> None:
    """Connected: order 1 working (a stop), order 2 filled, long 1. Meanwhile, disconnected,
    the stop filled. The snapshot's events: the order that changed (not the one that did not),
    every fill in the order they happened whatever order the snapshot lists them in, every
    position, the cash, then ``synced``."""
    view = AccountView()
    before = snapshot(
        orders=[order(1, "Working"), order(2, "Filled", action="Buy")],
        orderVersions=[version(11, 1, orderType="Stop", stopPrice=90), version(12, 2)],
        fills=[fill(20, 2, "2026-11-25T15:00:00Z")],
        positions=[position(5, MNQ, 1)],
    )
    view.load_snapshot(before)
    view.mark_unsynced("drop")

    after = snapshot(
        orders=[order(1, "Filled"), order(2, "Filled", action="Buy")],
        orderVersions=[version(11, 1, orderType="Stop", stopPrice=90), version(12, 2)],
        # listed newest first; two fills in one millisecond go by id
        fills=[
            fill(22, 1, "2026-11-25T15:01:00Z", action="Sell"),
            fill(21, 1, "2026-11-25T15:01:00Z", action="Sell"),
            fill(20, 2, "2026-11-25T15:00:00Z"),
        ],
        positions=[position(5, MNQ, -1)],
    )
    events = view.load_snapshot(after)

    orders = [e.entity for e in of(events, "order")]
    assert [(o.order_id, o.status) for o in orders if isinstance(o, WorkingOrder)] == [
        (1, OrderStatus.FILLED)
    ]
    fills = [e.entity for e in of(events, "fill")]
    assert [f.fill_id for f in fills if isinstance(f, Fill)] == [20, 21, 22]
    assert all(e.account_id == ACCT for e in of(events, "fill"))
    [pos] = [e.entity for e in of(events, "position")]
    assert isinstance(pos, Position)
    assert (pos.symbol, pos.net_pos) == ("MNQZ6", -1)
    assert [e.account_id for e in of(events, "cash")] == [ACCT]
    assert [e.kind for e in events[-2:]] == ["session", "session"]
    assert {e.account_id for e in events[-2:]} == {ACCT, OTHER}
    assert view.fills(ACCT)[-1].fill_id == 22


def test_a_position_gone_from_the_snapshot_is_published_flat() -> None:
    view = AccountView()
    view.load_snapshot(snapshot(positions=[position(5, MNQ, 2), position(6, MNQ, 0, OTHER)]))
    events = view.load_snapshot(snapshot())
    [ev] = of(events, "position")  # the flat one that went stays quiet
    assert isinstance(ev.entity, Position)
    assert (ev.account_id, ev.entity.symbol, ev.entity.net_pos, ev.deleted) == (
        ACCT,
        "MNQZ6",
        0,
        True,
    )
    assert view.positions(ACCT) == []


def test_the_first_snapshot_publishes_everything_it_holds() -> None:
    view = AccountView()
    events = view.load_snapshot(
        snapshot(
            orders=[order(1, "Working")],
            orderVersions=[version(11, 1)],
            fills=[fill(20, 1, "2026-11-25T15:00:00Z")],
            positions=[position(5, MNQ, 1)],
        )
    )
    assert [e.kind for e in events] == [
        "order",
        "fill",
        "position",
        "cash",
        "session",
        "session",
    ]
    assert isinstance(events[1].entity, Fill)
    assert events[1].entity.price == Decimal(100)


def test_a_replay_is_the_whole_view_for_a_subscriber_that_missed_events() -> None:
    """``replay`` gives every order (also the ones the snapshot did not change and the done
    ones), every fill in the order they happened and every position, flat ones included: what
    a subscriber that came after the snapshot, or overflowed, needs to catch up."""
    view = AccountView()
    view.load_snapshot(
        snapshot(
            orders=[order(1, "Filled"), order(2, "Working")],
            orderVersions=[version(11, 1), version(12, 2)],
            fills=[fill(21, 1, "2026-11-25T15:00:01Z"), fill(20, 1, "2026-11-25T15:00:00Z")],
            positions=[position(5, MNQ, 1)],
        )
    )
    view.apply(props("order", order(2, "Canceled"), "Updated"))
    view.apply(props("position", position(5, MNQ, 0), "Updated"))

    events = view.replay()
    assert [e.kind for e in events] == ["order", "order", "fill", "fill", "position"]
    statuses = [e.entity.status for e in of(events, "order") if isinstance(e.entity, WorkingOrder)]
    assert statuses == [OrderStatus.FILLED, OrderStatus.CANCELED]
    assert [e.entity.fill_id for e in of(events, "fill") if isinstance(e.entity, Fill)] == [20, 21]
    [pos] = of(events, "position")
    assert isinstance(pos.entity, Position)
    assert pos.entity.net_pos == 0
    assert view.replay() == events  # reading changes nothing


def test_filled_quantities_per_order_count_each_fill_once_and_follow_the_snapshot() -> None:
    """What reconciliation reads for every sub-account's working exits on every pass: built
    from all of a login's fills (``fills``), a busy day's pass stalled the loop for seconds."""
    view = AccountView()
    view.load_snapshot(snapshot(orders=[order(1, "Working"), order(2, "Working")]))
    view.apply(props("fill", fill(20, 1, "2026-11-25T15:00:00Z", qty=2)))
    view.apply(props("fill", fill(21, 1, "2026-11-25T15:00:01Z", qty=1)))
    view.apply(props("fill", fill(21, 1, "2026-11-25T15:00:01Z", qty=1)))  # replayed
    assert view.filled_qty(ACCT, [1, 2, 3]) == {1: 3}

    view.mark_unsynced("drop")
    view.load_snapshot(
        snapshot(orders=[order(1, "Filled"), order(2, "Working")],
                 fills=[fill(20, 1, "2026-11-25T15:00:00Z", qty=2),
                        fill(22, 2, "2026-11-25T15:01:00Z", qty=1)])
    )  # fmt: skip
    assert view.filled_qty(ACCT, [1, 2]) == {1: 2, 2: 1}  # the snapshot's fills, once each


def test_a_position_gone_while_a_snapshot_was_partly_unreadable_is_published_flat_later() -> None:
    """A snapshot with an unreadable entity publishes no position as gone (the missing one may
    be the unreadable one); the next, readable snapshot must still say it is gone. Compared
    with the cut snapshot's positions, which no longer held it, it never did: the mirror kept
    the long 2 open for good."""
    view = AccountView()
    view.load_snapshot(snapshot(positions=[position(5, MNQ, 2)]))
    view.mark_unsynced("drop")
    bad = {"id": 9, "accountId": OTHER}  # a position naming no contract: unreadable
    with pytest.raises(PartlyApplied) as caught:
        view.load_snapshot(snapshot(positions=[bad]))
    assert not [e for e in caught.value.events if e.kind == "position" and e.account_id == ACCT]
    view.mark_unsynced("cut")
    events = view.load_snapshot(snapshot())
    flat = [
        e.entity
        for e in of(events, "position")
        if e.account_id == ACCT and isinstance(e.entity, Position)
    ]
    assert [(p.contract_id, p.net_pos) for p in flat] == [(MNQ, 0)]
    # said once: the snapshot after that compares with one that had it flat already
    view.mark_unsynced("again")
    assert not [e for e in of(view.load_snapshot(snapshot()), "position") if e.account_id == ACCT]


def test_a_position_back_in_the_next_snapshot_is_not_published_flat() -> None:
    view = AccountView()
    view.load_snapshot(snapshot(positions=[position(5, MNQ, 2)]))
    view.mark_unsynced("drop")
    with pytest.raises(PartlyApplied):
        view.load_snapshot(snapshot(positions=[{"id": 9, "accountId": OTHER}]))
    view.mark_unsynced("cut")
    events = view.load_snapshot(snapshot(positions=[position(5, MNQ, 2)]))
    held = [e.entity for e in of(events, "position") if isinstance(e.entity, Position)]
    assert [(p.contract_id, p.net_pos) for p in held] == [(MNQ, 2)]
