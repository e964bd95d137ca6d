"""The live view: snapshot + props events → positions, merged orders, deduplicated fills, cash."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.broker.base import BrokerEvent, OrderStatus, OrderType, Side
from jtrades.broker.tradovate.view import AccountView, EventHub
from jtrades.errors import TransientBrokerError

ACCT, OTHER, MNQ = 101, 102, 7001


def snapshot(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "accounts": [{"id": ACCT, "name": "SIM1"}, {"id": OTHER, "name": "SIM2"}],
        "contracts": [{"id": MNQ, "name": "MNQZ6"}],
        "positions": [],
        "orders": [],
        "orderVersions": [],
        "fills": [],
        "cashBalances": [{"id": 1, "accountId": ACCT, "amount": 50000, "realizedPnL": 0}],
    }
    base.update(extra)
    return base


def props(kind: str, entity: dict[str, Any], event: str = "Created") -> dict[str, Any]:
    return {"entityType": kind, "eventType": event, "entity": entity}


def order(oid: int, status: str = "Working", acct: int = ACCT, **kw: Any) -> dict[str, Any]:
    return {
        "id": oid,
        "accountId": acct,
        "contractId": MNQ,
        "action": "Sell",
        "ordStatus": status,
        **kw,
    }


def version(vid: int, oid: int, **kw: Any) -> dict[str, Any]:
    return {"id": vid, "orderId": oid, "orderQty": 1, "orderType": "Limit", "price": 21510.25, **kw}


def test_unsynced_view_refuses_to_say_flat() -> None:
    view = AccountView()
    with pytest.raises(TransientBrokerError):
        view.positions(ACCT)
    view.load_snapshot(snapshot())
    assert view.positions(ACCT) == []
    events = view.mark_unsynced("connection lost")
    assert {e.account_id for e in events} == {ACCT, OTHER}
    assert all(e.kind == "session" and e.detail["state"] == "unsynced" for e in events)
    with pytest.raises(TransientBrokerError):
        view.positions(ACCT)
    with pytest.raises(TransientBrokerError):
        view.working_orders(ACCT)


def test_unknown_account_is_not_flat_either() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    with pytest.raises(TransientBrokerError):
        view.positions(999)


def test_positions_from_snapshot_and_events() -> None:
    view = AccountView()
    pos = {"id": 5, "accountId": ACCT, "contractId": MNQ, "netPos": 3, "netPrice": 21500.25}
    view.load_snapshot(snapshot(positions=[pos]))
    [p] = view.positions(ACCT)
    assert (p.symbol, p.net_pos, p.net_price) == ("MNQZ6", 3, Decimal("21500.25"))
    assert view.positions(OTHER) == []
    events = view.apply(props("position", {**pos, "netPos": 0}, "Updated"))
    assert events[0].kind == "position"
    assert events[0].account_id == ACCT
    assert view.positions(ACCT) == []  # flat positions are not listed


def test_order_and_version_merge_with_cl_ord_id() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    view.apply(props("order", order(9, "PendingNew")))
    view.apply(
        props("command", {"id": 1, "orderId": 9, "clOrdId": "sig1-a-tp1", "commandType": "New"})
    )
    view.apply(props("orderVersion", version(20, 9)))
    view.apply(props("order", order(9, "Working"), "Updated"))
    [w] = view.working_orders(ACCT)
    assert (w.order_id, w.side, w.qty, w.order_type, w.status) == (
        9,
        Side.SELL,
        1,
        OrderType.LIMIT,
        OrderStatus.WORKING,
    )
    assert w.price == Decimal("21510.25")
    assert w.cl_ord_id == "sig1-a-tp1"
    # a modify: a newer version wins, an older one arriving late does not
    view.apply(props("orderVersion", version(22, 9, orderQty=2, price=21520)))
    view.apply(props("orderVersion", version(21, 9, orderQty=5)))
    [w] = view.working_orders(ACCT)
    assert (w.qty, w.price) == (2, Decimal(21520))
    assert view.order_by_cl_ord_id(ACCT, "sig1-a-tp1") == w
    assert view.order_by_cl_ord_id(OTHER, "sig1-a-tp1") is None  # never across sub-accounts
    view.apply(props("order", order(9, "Filled"), "Updated"))
    assert view.working_orders(ACCT) == []
    assert view.order(9) is not None
    assert view.order(9).status is OrderStatus.FILLED


@pytest.mark.parametrize("report_first", [False, True])
def test_a_rejection_after_acceptance_carries_the_brokers_text(report_first: bool) -> None:
    """The text of a risk check's rejection comes in a commandReport naming the command, in
    either order with the command itself; a report of success, or of another command, is not
    a rejection."""
    view = AccountView()
    view.load_snapshot(snapshot())
    report = {
        "id": 5,
        "commandId": 1,
        "commandStatus": "RiskRejected",
        "rejectReason": "MaxPosLimitReached",
        "text": "limit reached",
    }
    command = {"id": 1, "orderId": 9, "clOrdId": "sig1-a-1", "commandType": "New"}
    view.apply(props("order", order(9, "PendingNew")))
    for kind, entity in [("command", command), ("commandReport", report)][
        :: -1 if report_first else 1
    ]:
        view.apply(props(kind, entity))
    events = view.apply(props("order", order(9, "Rejected"), "Updated"))
    assert [e.entity.reason for e in events if e.entity is not None] == [
        "MaxPosLimitReached: limit reached"
    ]
    view.apply(props("order", order(10, "Working")))
    view.apply(props("command", {"id": 2, "orderId": 10, "commandType": "New"}))
    view.apply(props("commandReport", {"id": 6, "commandId": 2, "commandStatus": "RiskPassed"}))
    assert view.order(10) is not None
    assert view.order(10).reason is None


def test_a_request_answer_never_brings_back_an_order_the_stream_saw_end() -> None:
    """A clOrdId lookup reads the order (Working); during its round trip the stream delivers
    the fill; the answer, older, is merged after it."""
    view = AccountView()
    view.load_snapshot(snapshot())
    view.apply(props("order", order(9, "Working")))
    view.apply(props("orderVersion", version(20, 9)))
    view.apply(props("order", order(9, "Filled"), "Updated"))
    assert view.absorb("order", order(9, "Working")) == []
    assert view.working_orders(ACCT) == []
    assert view.order(9) is not None
    assert view.order(9).status is OrderStatus.FILLED
    # what the stream has not seen end is merged as before
    view.absorb("order", order(11, "Working"))
    assert [w.order_id for w in view.working_orders(ACCT)] == [11]


def test_a_fill_before_its_order_is_published_again_with_the_account() -> None:
    """A fill carries no account: it comes from its order. Published before the order came,
    it named none, and the mirror, which files fills by account, never saw it again."""
    view = AccountView()
    view.load_snapshot(snapshot())
    fill = {"id": 9, "orderId": 5, "contractId": MNQ, "qty": 1, "price": 21500, "action": "Buy"}
    first = view.apply(props("fill", {**fill, "timestamp": "2026-11-25T15:00:00Z"}))
    assert [(e.kind, e.account_id) for e in first] == [("fill", None)]
    later = view.apply(props("order", order(5, "Filled", action="Buy")))
    assert [(e.kind, e.account_id) for e in later] == [("order", ACCT), ("fill", ACCT)]
    again = view.apply(props("order", order(5, "Filled", action="Buy"), "Updated"))
    assert [e.kind for e in again] == ["order"]  # once


def test_reads_follow_every_entity_they_are_built_from() -> None:
    """Positions and open orders are built once per change, not per read: every piece that
    makes them (the order, its version, its New command's clOrdId, the contract's name)
    must show in the next read, whatever was read before."""
    view = AccountView()
    view.load_snapshot(snapshot())
    unnamed = 7002
    pos = {"id": 5, "accountId": ACCT, "contractId": unnamed, "netPos": 2, "netPrice": 100.5}
    view.apply(props("position", pos))
    view.apply(props("order", order(9, contractId=unnamed)))
    view.apply(props("orderVersion", version(20, 9)))
    assert [p.symbol for p in view.positions(ACCT)] == [""]
    [w] = view.working_orders(ACCT)
    assert (w.symbol, w.cl_ord_id) == ("", None)
    view.apply(props("command", {"id": 1, "orderId": 9, "clOrdId": "jt-1-2-1"}))
    assert view.working_orders(ACCT)[0].cl_ord_id == "jt-1-2-1"
    view.apply(props("contract", {"id": unnamed, "name": "MNQH7"}))
    assert [p.symbol for p in view.positions(ACCT)] == ["MNQH7"]
    assert view.working_orders(ACCT)[0].symbol == "MNQH7"
    view.set_contract(unnamed, "MNQM7")
    assert [p.symbol for p in view.positions(ACCT)] == ["MNQM7"]
    assert view.working_orders(ACCT)[0].symbol == "MNQM7"
    view.apply(props("position", {**pos, "netPos": -1, "netPrice": 99}, "Updated"))
    [p] = view.positions(ACCT)
    assert (p.net_pos, p.net_price, p.symbol) == (-1, Decimal(99), "MNQM7")
    view.apply(props("order", order(9, "Canceled", contractId=unnamed), "Updated"))
    assert view.working_orders(ACCT) == []
    assert view.order(9) is not None
    assert view.order(9).status is OrderStatus.CANCELED
    view.apply(props("position", pos, "Deleted"))
    assert view.positions(ACCT) == []


def test_orders_are_scoped_to_their_account() -> None:
    view = AccountView()
    view.load_snapshot(
        snapshot(
            orders=[order(1), order(2, acct=OTHER)], orderVersions=[version(1, 1), version(2, 2)]
        )
    )
    assert [o.order_id for o in view.working_orders(ACCT)] == [1]
    assert [o.order_id for o in view.working_orders(OTHER)] == [2]


def test_fills_are_deduplicated_and_mapped_to_accounts_through_orders() -> None:
    view = AccountView()
    view.load_snapshot(snapshot(orders=[order(9, "Filled")]))
    fill = {
        "id": 77,
        "orderId": 9,
        "contractId": MNQ,
        "action": "Sell",
        "qty": 1,
        "price": 21510.25,
        "timestamp": "2026-11-25T15:00:00Z",
    }
    first = view.apply(props("fill", fill))
    again = view.apply(props("fill", fill))  # replayed around the session change
    assert len(first) == 1
    assert again == []
    [f] = view.fills(ACCT)
    assert (f.fill_id, f.account_id, f.price, f.qty) == (77, ACCT, Decimal("21510.25"), 1)
    assert view.fills(OTHER) == []


def test_cash_balance() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    assert view.cash(ACCT).amount == Decimal(50000)  # type: ignore[union-attr]
    assert view.cash(OTHER) is None
    view.apply(
        props(
            "cashBalance",
            {"id": 1, "accountId": ACCT, "amount": 50012.5, "realizedPnL": 12.5},
            "Updated",
        )
    )
    assert view.cash(ACCT).realized_pnl == Decimal("12.5")  # type: ignore[union-attr]


def test_deleted_order_disappears() -> None:
    view = AccountView()
    view.load_snapshot(snapshot(orders=[order(3)], orderVersions=[version(3, 3)]))
    events = view.apply(props("order", order(3), "Deleted"))
    assert events[0].deleted
    assert view.working_orders(ACCT) == []


def test_a_new_snapshot_replaces_everything() -> None:
    view = AccountView()
    view.load_snapshot(snapshot(orders=[order(3)], orderVersions=[version(3, 3)]))
    view.mark_unsynced("drop")
    view.load_snapshot(snapshot())
    assert view.working_orders(ACCT) == []


def test_malformed_props_are_ignored() -> None:
    view = AccountView()
    view.load_snapshot(snapshot())
    assert view.apply({"entityType": "order", "eventType": "Created", "entity": None}) == []
    assert view.apply({"entityType": "whatever", "entity": {"id": 1}}) == []


@given(st.lists(st.integers(1, 30), max_size=60))
def test_any_replay_order_gives_each_fill_once(ids: list[int]) -> None:
    view = AccountView()
    view.load_snapshot(snapshot(orders=[order(9, "Filled")]))
    for i in ids:
        view.apply(
            props(
                "fill",
                {"id": i, "orderId": 9, "contractId": MNQ, "action": "Sell", "qty": 1, "price": 1},
            )
        )
    assert sorted(f.fill_id for f in view.fills(ACCT)) == sorted(set(ids))


async def test_hub_fans_out_in_order_and_closes() -> None:
    hub = EventHub()
    a, b = hub.subscribe(), hub.subscribe()
    events = [BrokerEvent("cash", ACCT, None, detail={"n": n}) for n in range(3)]
    hub.publish(events)
    hub.close()
    assert [e async for e in a] == events
    assert [e async for e in b] == events


async def test_a_slow_subscriber_is_told_it_overflowed() -> None:
    hub = EventHub(maxsize=2)
    sub = hub.subscribe()
    hub.publish(BrokerEvent("cash", ACCT, None, detail={"n": n}) for n in range(5))
    hub.close()
    got = [e async for e in sub]
    assert any(e.kind == "session" and e.detail.get("state") == "overflow" for e in got)
    assert len(got) <= 3


def test_a_deleted_position_entity_drops_only_itself() -> None:
    """A position entity per trading day: a Deleted for yesterday's (id 10) after today's
    (id 11) came dropped whatever the view held for the contract, and read a held long 2 as
    flat (missing is not flat)."""
    view = AccountView()
    old = {"id": 10, "accountId": ACCT, "contractId": MNQ, "netPos": 1, "netPrice": 21500}
    view.load_snapshot(snapshot(positions=[old]))
    view.apply(props("position", {**old, "id": 11, "netPos": 2}))
    view.apply(props("position", old, "Deleted"))
    assert [p.net_pos for p in view.positions(ACCT)] == [2]
    view.apply(props("position", {**old, "id": 11, "netPos": 2}, "Deleted"))
    assert view.positions(ACCT) == []


def test_the_latest_trading_day_s_position_entity_is_the_position() -> None:
    """Two entities of one contract in a snapshot, yesterday's flat one listed after today's
    long 2: the view kept the last listed and read the held long as flat (and the reconciler
    then cancelled its exits as those of a closed position)."""
    today = {
        "id": 11, "accountId": ACCT, "contractId": MNQ, "netPos": 2, "netPrice": 21500,
        "tradeDate": {"year": 2026, "month": 11, "day": 30},
    }  # fmt: skip
    yesterday = {
        **today,
        "id": 10,
        "netPos": 0,
        "tradeDate": {"year": 2026, "month": 11, "day": 27},
    }
    view = AccountView()
    view.load_snapshot(snapshot(positions=[today, yesterday]))
    assert [p.net_pos for p in view.positions(ACCT)] == [2]
    assert view.apply(props("position", yesterday, "Updated")) == []  # a late update of it
    assert [p.net_pos for p in view.positions(ACCT)] == [2]
    # the next day's entity takes over, whichever id it has
    tomorrow = {**today, "id": 9, "netPos": 1, "tradeDate": {"year": 2026, "month": 12, "day": 1}}
    view.apply(props("position", tomorrow))
    assert [p.net_pos for p in view.positions(ACCT)] == [1]
