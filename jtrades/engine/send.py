"""One planned step handed to the broker, and what came of it, in the intent's words.

Shared by the signal dispatcher and the protective sender, so that an answer means the same
wherever it came from: ``sent`` (the broker took it; its order id when known), ``done`` (a
cancel or a liquidation the broker took), ``rejected`` (with the broker's text), ``expired``
(refused before the request left: nothing is at the broker) or ``unknown`` (it may have reached
the broker: reconciliation looks it up by clOrdId, never sends it again).
"""

from __future__ import annotations

import structlog

from jtrades.broker.base import (
    Broker,
    Contract,
    OcoRequest,
    OrderRequest,
    OrderStatus,
    OsoRequest,
    PlaceResult,
    StrategyRequest,
    SubAccount,
)
from jtrades.engine.liquidation import liquidation_contract_id
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.unsent import UNAVAILABLE, broker_unavailable
from jtrades.errors import BrokerRejected, OutcomeUnknown, TransientBrokerError

log = structlog.get_logger(__name__)

# UNAVAILABLE re-exported: the verdicts read it here (the convention is ``unsent``'s)
__all__ = ["UNAVAILABLE", "Outcome", "intent_state", "send_step"]

# The intent state an order's broker status stands for (the mirror and reconciliation read
# orders' statuses into intents).
_STATE_OF = {
    OrderStatus.PENDING_NEW: "sent",
    OrderStatus.WORKING: "working",
    OrderStatus.SUSPENDED: "working",
    OrderStatus.PENDING_CANCEL: "working",
    OrderStatus.PENDING_REPLACE: "working",
    OrderStatus.FILLED: "filled",
    OrderStatus.COMPLETED: "filled",
    OrderStatus.CANCELED: "cancelled",
    OrderStatus.REJECTED: "rejected",
    OrderStatus.EXPIRED: "cancelled",
    OrderStatus.UNKNOWN: "unknown",
}


def intent_state(status: OrderStatus) -> str:
    """The state of the intent behind an order with this broker status."""
    return _STATE_OF.get(status, "unknown")


Outcome = tuple[str, int | None, str | None]  # (intent state, broker order id, reason)


async def send_step(
    broker: Broker,
    po: PlannedOrder,
    account: SubAccount | None = None,
    contract: Contract | None = None,
) -> Outcome:
    """Send ``po``; a liquidation needs the ``account`` and ``contract`` it closes. No timer
    of its own: every broker call is bounded by the broker (Tradovate: the session's request
    timeout, then OutcomeUnknown), and a second timer per order cost a tenth of the send path."""
    req = po.request
    try:
        result: PlaceResult | None = None
        if po.kind == "cancel":
            if po.cancel_order_id is None:
                return "rejected", None, "cancel without an order id"
            await broker.cancel_order(po.cancel_order_id)
            return "done", po.cancel_order_id, None
        if po.kind == "liquidate":
            if account is None or contract is None:
                return "rejected", None, "liquidation without its account and contract"
            contract_id = await liquidation_contract_id(broker, account.account_id, contract)
            await broker.liquidate_position(account, contract_id)
            return "done", None, None
        if isinstance(req, StrategyRequest):
            result = await broker.start_strategy(req)
        elif isinstance(req, OcoRequest):
            result = await broker.place_oco(req)
        elif isinstance(req, OsoRequest):
            result = await broker.place_oso(req)
        elif isinstance(req, OrderRequest):
            result = await broker.place_order(req)
        else:
            return "rejected", None, f"nothing to send for a {po.kind} step"
        # 0: the order id is not known yet (a strategy answered before its entry order
        # showed): None, so it never overwrites the id the mirror records
        return "sent", result.order_id or None, None
    except BrokerRejected as exc:
        return "rejected", None, str(exc) or "rejected by the broker"
    except TransientBrokerError as exc:
        # Raised before the request left: nothing is at the broker.
        return "expired", None, broker_unavailable(exc)
    except OutcomeUnknown as exc:
        return "unknown", None, f"no answer from the broker ({type(exc).__name__})"
    except Exception as exc:
        log.exception("send.step_failed", kind=po.kind, step=po.step)
        return "unknown", None, f"send failed: {type(exc).__name__}"
