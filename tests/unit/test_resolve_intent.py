"""What reconciliation concludes of an open intent from the broker's answer by clOrdId: a miss
proves "never sent" only for an order the broker never answered, written in the current CME
trading session (the broker's lists hold only an earlier session's working orders)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jtrades.broker.base import OrderStatus, OrderType, Side, WorkingOrder
from jtrades.engine.reconcile import outcome_lost, resolve_intent
from jtrades.engine.tradingday import session_start

NOW = datetime(2026, 3, 11, 15, 0, tzinfo=UTC)  # a Wednesday, 10:00 Chicago
BEGAN = session_start(NOW)  # Tuesday 17:00 Chicago
TODAY = BEGAN + timedelta(hours=1)
YESTERDAY = BEGAN - timedelta(minutes=5)


def _resolve(kind: str = "order", found: WorkingOrder | None = None, **kw: object) -> tuple:
    args: dict[str, object] = {"state": "pending", "created_at": TODAY, "session_began": BEGAN}
    args.update(kw)
    return resolve_intent(kind, found, **args)  # type: ignore[arg-type]


def test_found_takes_the_orders_state_whatever_the_intent_said() -> None:
    wo = WorkingOrder(7, 1, 1, "X", Side.BUY, 1, OrderType.MARKET, OrderStatus.FILLED)
    for kw in ({}, {"state": "sent", "broker_order_id": 7}, {"created_at": YESTERDAY}):
        state, oid, reason = _resolve(found=wo, **kw)
        assert (state, oid, reason) == ("filled", 7, None)
        assert not outcome_lost(wo, state)


@pytest.mark.parametrize("kind", ["order", "oco", "oso", "strategy"])
def test_a_miss_this_session_for_an_unanswered_order_is_not_sent(kind: str) -> None:
    for state in ("pending", "unknown"):
        got, oid, reason = _resolve(kind, state=state)
        assert (got, oid) == ("expired", None)
        assert reason is not None
        assert "not sent, never sent late" in reason
        assert not outcome_lost(None, got)


@pytest.mark.parametrize("created_at", [TODAY, YESTERDAY])
@pytest.mark.parametrize(("state", "order_id"), [("sent", 41), ("pending", 41), ("sent", None)])
def test_a_miss_for_an_order_the_broker_accepted_is_never_not_sent(
    state: str, order_id: int | None, created_at: datetime
) -> None:
    got, oid, reason = _resolve(state=state, broker_order_id=order_id, created_at=created_at)
    assert (got, oid) == ("done", order_id)
    assert reason is not None
    assert "not sent" not in reason
    assert "outcome unknown" in reason
    assert "look at the account" in reason
    assert order_id is None or str(order_id) in reason
    assert outcome_lost(None, got)


@pytest.mark.parametrize("kind", ["order", "strategy"])
def test_a_miss_for_an_order_written_before_the_session_began_proves_nothing(kind: str) -> None:
    for state in ("pending", "unknown"):
        got, oid, reason = _resolve(kind, state=state, created_at=YESTERDAY)
        assert (got, oid) == ("done", None)
        assert reason is not None
        assert "not sent" not in reason
        assert "outcome unknown" in reason
        assert "earlier trading session" in reason
        assert outcome_lost(None, got)
    # the session's first instant is this session's
    assert _resolve(kind, created_at=BEGAN)[0] == "expired"


def test_cancels_liquidations_and_modifies_keep_their_not_confirmed_expiry() -> None:
    for kind in ("cancel", "liquidate", "modify"):
        for kw in ({}, {"created_at": YESTERDAY}, {"state": "sent", "broker_order_id": 5}):
            got, oid, reason = _resolve(kind, **kw)
            assert (got, oid, reason) == (
                "expired",
                None,
                "outcome not confirmed by the broker; not repeated",
            )
            assert not outcome_lost(None, got)


def test_without_the_session_start_only_the_brokers_answer_counts() -> None:
    assert resolve_intent("order", None)[0] == "expired"
    assert resolve_intent("order", None, created_at=YESTERDAY)[0] == "expired"
    assert resolve_intent("order", None, state="sent")[0] == "done"
