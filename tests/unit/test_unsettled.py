"""When a record of what a dispatch sent ends (``engine.unsettled``): pure logic over what a
live view shows, so the view here is a plain table of positions and orders (the simulator
cases are in tests/integration/test_unsettled_views.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from jtrades.broker.base import (
    Contract,
    OrderStatus,
    OrderType,
    Position,
    Side,
    WorkingOrder,
)
from jtrades.engine.unsettled import GRACE_S, Unsettled, UnsettledViews, lag

C = Contract("MNQZ6", "MNQ", Decimal("0.25"), Decimal(2), 7)
OTHER = Contract("MNQH7", "MNQ", Decimal("0.25"), Decimal(2), 8)
ACCOUNT = 10
KEY = ("demo", 1, ACCOUNT)


@dataclass
class View:
    """What a live view shows of one account: its position per contract and its orders."""

    net: dict[int, int] = field(default_factory=dict)
    orders: dict[int, tuple[str, OrderStatus]] = field(default_factory=dict)  # id -> (cl, st)
    synced: bool = True

    def is_synced(self, account_id: int) -> bool:
        return self.synced

    def positions(self, account_id: int) -> list[Position]:
        names = {C.contract_id: C.symbol, OTHER.contract_id: OTHER.symbol}
        return [Position(account_id, cid, names[cid], n, None) for cid, n in self.net.items()]

    def working_orders(self, account_id: int) -> list[WorkingOrder]:
        return [
            WorkingOrder(
                oid, account_id, 7, "MNQZ6", Side.BUY, 1, OrderType.MARKET, st, cl_ord_id=cl
            )
            for oid, (cl, st) in self.orders.items()
            if st.is_open
        ]

    def knows_order(self, account_id: int, order_id: int | None, cl_ord_id: str | None) -> bool:
        if order_id:
            return order_id in self.orders
        return any(cl == cl_ord_id for cl, _ in self.orders.values())


def entry(
    made_pos: int | None = 1,
    *,
    placed: tuple[tuple[int | None, str | None], ...] = ((500, "jt-1-1-1"),),
    movers: tuple[tuple[int | None, str | None], ...] | None = None,
    unanswered: tuple[str, ...] = (),
    cancelled: tuple[int, ...] = (),
    liquidated: bool = False,
    at: float = 0.0,
    contract: Contract = C,
) -> Unsettled:
    return Unsettled(
        sub_account_id=1,
        contract=contract,
        made_pos=made_pos,
        placed=placed,
        cancelled=cancelled,
        movers=placed if movers is None else movers,
        unanswered=unanswered,
        liquidated=liquidated,
        noted_at=at,
    )


def test_a_market_entry_not_shown_lags_and_says_what() -> None:
    why = lag(View(), ACCOUNT, entry())  # type: ignore[arg-type]
    assert why == "it holds 0 where they make 1; order jt-1-1-1 not shown"


def test_a_market_entry_shown_working_lags_until_it_fills() -> None:
    """Known to the view (its Created event) but not filled: the position is not the
    broker's yet. An unanswered entry is recorded so too (its position what it would make)."""
    view = View(orders={500: ("jt-1-1-1", OrderStatus.WORKING)})
    assert lag(view, ACCOUNT, entry()) == "it holds 0 where they make 1"  # type: ignore[arg-type]
    unanswered = entry(placed=(), movers=((None, "jt-1-1-1"),), unanswered=("jt-1-1-1",))
    assert lag(view, ACCOUNT, unanswered) is not None  # type: ignore[arg-type]
    view.net[C.contract_id] = 1
    view.orders[500] = ("jt-1-1-1", OrderStatus.FILLED)
    assert lag(view, ACCOUNT, entry()) is None  # type: ignore[arg-type]
    assert lag(view, ACCOUNT, unanswered) is None  # type: ignore[arg-type]


def test_a_market_entry_the_broker_refused_after_accepting_ends_the_record() -> None:
    """Shown Rejected, the position it would have made never comes: the view's is the
    broker's, and waiting for 1 would refuse every alert for the grace."""
    view = View(orders={500: ("jt-1-1-1", OrderStatus.REJECTED)})
    assert lag(view, ACCOUNT, entry()) is None  # type: ignore[arg-type]


def test_a_filled_entry_whose_position_changed_since_ends_the_record() -> None:
    """Filled and shown, then a stop took the position elsewhere: the view is the broker's."""
    view = View(net={C.contract_id: 0}, orders={500: ("jt-1-1-1", OrderStatus.FILLED)})
    assert lag(view, ACCOUNT, entry()) is None  # type: ignore[arg-type]


def test_a_liquidation_lags_until_the_position_shows_flat() -> None:
    """No order of ours shows a liquidation's fate: only the position does."""
    liq = entry(0, placed=(), liquidated=True)
    view = View(net={C.contract_id: 2})
    assert lag(view, ACCOUNT, liq) == "it holds 2 where they make 0"  # type: ignore[arg-type]
    view.net[C.contract_id] = 0
    assert lag(view, ACCOUNT, liq) is None  # type: ignore[arg-type]


def test_a_cancelled_order_still_open_lags() -> None:
    view = View(orders={77: ("jt-0-1-3x", OrderStatus.WORKING)})
    u = entry(None, placed=(), cancelled=(77,))
    assert lag(view, ACCOUNT, u) == "cancelled order 77 still open"  # type: ignore[arg-type]
    view.orders[77] = ("jt-0-1-3x", OrderStatus.CANCELED)
    assert lag(view, ACCOUNT, u) is None  # type: ignore[arg-type]


def test_an_unsynced_view_is_left_to_the_planner_and_the_record_kept() -> None:
    now = [0.0]
    views = UnsettledViews(clock=lambda: now[0])
    views.note(KEY, entry())
    view = View(synced=False)
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]
    view.synced = True
    held = views.hold_up(KEY, view, ACCOUNT, "MNQ")  # type: ignore[arg-type]
    assert held is not None
    assert held.cause == "unsettled"
    assert held.why == (
        "the broker's view does not show yet what was sent to the account before"
        " (MNQZ6: it holds 0 where they make 1; order jt-1-1-1 not shown): nothing sent"
    )


def test_the_record_ends_once_shown_and_at_the_latest_after_its_grace() -> None:
    now = [100.0]
    views = UnsettledViews(clock=lambda: now[0])
    view = View()
    views.note(KEY, entry(at=now[0]))
    now[0] += GRACE_S - 0.1
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is not None  # type: ignore[arg-type]
    now[0] += 0.1
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]
    now[0] = 0.0  # gone: not held again, whatever the clock says
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]

    views.note(KEY, entry(at=now[0]))
    view.net[C.contract_id] = 1
    view.orders[500] = ("jt-1-1-1", OrderStatus.FILLED)
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]
    view.net.clear()  # gone once shown: a later change is not this record's
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]


def test_a_second_record_keeps_what_the_first_still_lacks() -> None:
    """A flatten's liquidation goes whatever the view lacks: the entry before it must still
    show, and the position to hold is the liquidation's."""
    views = UnsettledViews(clock=lambda: 0.0)
    views.note(KEY, entry())
    views.note(KEY, entry(0, placed=(), liquidated=True))
    view = View(net={C.contract_id: 0})
    held = views.hold_up(KEY, view, ACCOUNT, "MNQ")  # type: ignore[arg-type]
    assert held is not None
    assert "order jt-1-1-1 not shown" in held.why
    assert "where they make" not in held.why  # flat is what the liquidation makes
    view.orders[500] = ("jt-1-1-1", OrderStatus.FILLED)
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]


def test_a_record_of_another_contract_is_kept_apart() -> None:
    """A liquidation of one contract not shown, then a record of another: the account is
    held until the first contract shows flat too (merged, the second's position was held
    against the first's and the first's was lost)."""
    views = UnsettledViews(clock=lambda: 0.0)
    views.note(KEY, entry(0, placed=(), liquidated=True))
    views.note(KEY, entry(1, placed=((600, "jt-2-1-1"),), contract=OTHER))
    view = View(net={C.contract_id: 2, OTHER.contract_id: 1})
    view.orders[600] = ("jt-2-1-1", OrderStatus.FILLED)
    held = views.hold_up(KEY, view, ACCOUNT, "MNQ")  # type: ignore[arg-type]
    assert held is not None
    assert "MNQZ6: it holds 2 where they make 0" in held.why
    view.net[C.contract_id] = 0
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]


def test_only_the_products_records_hold_its_plan() -> None:
    """A record of MES does not hold an MNQ plan (it reads only MNQ's contract); one of
    another MNQ month does (the month is picked from the view: an entry not shown yet in the
    old month had the next one opened in the new month beside it). None: every product."""
    mes = Contract("MESZ6", "MES", Decimal("0.25"), Decimal(5), 9)
    views = UnsettledViews(clock=lambda: 0.0)
    views.note(KEY, entry(contract=mes))
    view = View()
    assert views.hold_up(KEY, view, ACCOUNT, "MNQ") is None  # type: ignore[arg-type]
    assert views.hold_up(KEY, view, ACCOUNT, "MES") is not None  # type: ignore[arg-type]
    assert views.hold_up(KEY, view, ACCOUNT, None) is not None  # type: ignore[arg-type]
    views.note(KEY, entry(contract=OTHER))  # MNQH7
    held = views.hold_up(KEY, view, ACCOUNT, "MNQ")  # type: ignore[arg-type]
    assert held is not None
    assert "MNQH7: " in held.why
    assert "MESZ6" not in held.why


def test_a_record_nobody_asks_about_again_goes_with_the_next_note() -> None:
    """An account that never trades the product again kept its record for good (each was
    dropped only when its product was asked about)."""
    now = [0.0]
    views = UnsettledViews(clock=lambda: now[0])
    views.note(KEY, entry(contract=Contract("ESZ6", "ES", Decimal("0.25"), Decimal(50), 11)))
    views.note(KEY, entry())
    assert len(views) == 2
    now[0] = GRACE_S
    views.note(("demo", 2, 20), entry(at=now[0]))
    assert len(views) == 1
