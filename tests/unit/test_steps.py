"""What a planned step becomes before it is sent: its clOrdId and its durable intent."""

from __future__ import annotations

from datetime import UTC, datetime

from jtrades.broker.base import OcoRequest, OrderRequest, OrderType, Side, SubAccount
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.steps import intent_for
from jtrades.store.intents import NewIntent

ACCOUNT = SubAccount(7, "DEMO7")
EXPIRES = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _intent(po: PlannedOrder) -> tuple[PlannedOrder, NewIntent]:
    return intent_for(
        po, prefix="jt-12-3", signal_id=12, trader_id=4, sub_account_id=3, symbol="MNQZ6",
        expires_at=EXPIRES,
    )  # fmt: skip


def test_an_unnamed_order_takes_the_step_id_in_what_is_sent_and_what_is_stored() -> None:
    po = PlannedOrder(1, "order", OrderRequest(ACCOUNT, "MNQZ6", Side.BUY, 2))
    sent, intent = _intent(po)
    assert isinstance(sent.request, OrderRequest)
    assert sent.request.cl_ord_id == "jt-12-3-1"
    assert intent.cl_ord_id == "jt-12-3-1"
    assert (intent.side, intent.qty, intent.step) == ("Buy", 2, 1)


def test_a_named_order_is_sent_as_planned_and_stored_under_its_own_id() -> None:
    po = PlannedOrder(0, "order", OrderRequest(ACCOUNT, "MNQZ6", Side.SELL, 1, cl_ord_id="own"))
    sent, intent = _intent(po)
    assert sent is po
    assert intent.cl_ord_id == "own"


def test_an_unnamed_oco_names_both_orders_from_the_step() -> None:
    first = OrderRequest(ACCOUNT, "MNQZ6", Side.SELL, 1, OrderType.LIMIT)
    second = OrderRequest(ACCOUNT, "MNQZ6", Side.SELL, 1, OrderType.STOP)
    sent, intent = _intent(PlannedOrder(2, "oco", OcoRequest(first, second)))
    assert isinstance(sent.request, OcoRequest)
    assert (sent.request.first.cl_ord_id, sent.request.second.cl_ord_id) == (
        "jt-12-3-2",
        "jt-12-3-2b",
    )
    assert intent.cl_ord_id == "jt-12-3-2"
