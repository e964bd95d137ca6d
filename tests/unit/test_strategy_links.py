"""Reading a Tradovate order strategy's entry order from its links, and what reconciliation
concludes for a strategy intent."""

from __future__ import annotations

from jtrades.broker.tradovate.strategies import entry_order_id
from jtrades.engine.reconcile import resolve_intent


def test_the_entry_is_the_labelled_link_else_the_first_order() -> None:
    links = [
        {"id": 1, "orderStrategyId": 9, "orderId": 30, "label": "tp"},
        {"id": 2, "orderStrategyId": 9, "orderId": 31, "label": "Entry"},
        {"id": 3, "orderStrategyId": 8, "orderId": 5, "label": "entry"},  # another strategy
    ]
    assert entry_order_id(links, 9) == 31
    unlabelled = [{"orderStrategyId": 9, "orderId": n} for n in (44, 42, 43)]
    assert entry_order_id(unlabelled, 9) == 42  # brackets come only after the entry fills
    assert entry_order_id([], 9) is None
    assert entry_order_id(None, 9) is None
    assert entry_order_id([{"orderStrategyId": 9}], 9) is None


def test_a_strategy_not_at_the_broker_is_expired_with_its_own_reason() -> None:
    state, order_id, reason = resolve_intent("strategy", None)
    assert (state, order_id) == ("expired", None)
    assert reason is not None
    assert "order strategy" in reason
