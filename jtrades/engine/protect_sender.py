"""Sending one protection's orders: each step's intent written before it is sent (rule 1).

Split from ``protector`` (which decides when and what) because this is the part that talks to
the store and the broker order by order, and sorts each answer into the intent's state: a
refused cancel is the view's to judge, any other failure is logged and the rest still go (each
was sized as if all went out, so any subset stays within the position).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg
import structlog

from jtrades.broker.base import Broker
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protection import Shrink
from jtrades.engine.send import send_step
from jtrades.engine.steps import intent_for
from jtrades.engine.unsent import broker_unavailable
from jtrades.errors import BrokerRejected, TransientBrokerError
from jtrades.store import intents as intent_store

log = structlog.get_logger(__name__)


class ProtectionSender:
    """Sends one protection's steps, each through a durable intent written first (rule 1)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        trader_id: int | None,
        sub_account_id: int,
        symbol: str,
        *,
        prefix: str,
        expires_at: datetime,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._trader_id = trader_id
        self._sub = sub_account_id
        self._symbol = symbol
        self.prefix = prefix
        self._expires_at = expires_at
        # every step the broker took, with its order id (a retry must know what went out)
        self.taken: list[tuple[PlannedOrder, int]] = []
        # the clOrdIds of orders whose answer never came: they may be at the broker, so they
        # are waited for as the taken ones are (planned without one, a second stop went beside)
        self.unanswered: list[str] = []
        # a step refused before it left (the session held by a 429 or a penalty ticket, not
        # connected): nothing reached the broker, and trying again soon costs it nothing
        self.not_sent = False

    async def __call__(self, steps: Sequence[PlannedOrder]) -> list[int]:
        """Write the steps' intents, then send every one of them (a failed step does not stop
        the others: each was sized as if all went out, so any subset stays within the position);
        returns the order ids the broker took (cancelled ones for cancels)."""
        if not steps:
            return []
        prepared = [
            intent_for(
                po,
                prefix=self.prefix,
                signal_id=None,
                trader_id=self._trader_id,
                sub_account_id=self._sub,
                symbol=self._symbol,
                expires_at=self._expires_at,
            )
            for po in steps
        ]
        ids = await intent_store.insert_all(self._pool, [ni for _, ni in prepared])
        outcomes: list[intent_store.Outcome] = []
        taken: list[int] = []
        for (po, ni), intent_id in zip(prepared, ids, strict=True):
            if intent_id is None:
                continue  # the clOrdId exists already: never sent twice
            state, order_id, reason = await self._send(po)
            if state == "unknown" and po.kind != "cancel":
                self.unanswered.append(ni.cl_ord_id)
            self.not_sent |= state == "expired"
            outcomes.append(
                intent_store.Outcome(intent_id, state, order_id, reason, sent=state != "expired")
            )
            if state in ("sent", "done") and order_id is not None:
                taken.append(order_id)
                self.taken.append((po, order_id))
            elif po.kind == "cancel" and state == "rejected":
                # already filled or cancelled (an OCO partner goes with its leg): the view
                # read after the cancels decides what is placed
                log.info(
                    "reconcile.protect_cancel_refused", sub_account_id=self._sub, reason=reason
                )
            else:
                log.error(
                    "reconcile.protect_send_failed",
                    sub_account_id=self._sub,
                    step=po.step,
                    kind=po.kind,
                    state=state,
                    reason=reason,
                )
        await intent_store.finish_many(self._pool, outcomes)
        return taken

    async def modify(self, shrinks: Sequence[Shrink], *, first_step: int) -> list[int]:
        """Shrink stops, each through a durable intent written first; returns the order ids
        the broker took the change for."""
        if not shrinks:
            return []
        intents = [
            intent_store.NewIntent(
                signal_id=None, trader_id=self._trader_id, sub_account_id=self._sub,
                cl_ord_id=f"{self.prefix}-{step}"[:64], step=step, kind="modify",
                symbol=self._symbol, side=None, qty=sh.qty,
                request={"type": "modify", "note": "stop shrunk to the position",
                         "modify_order_id": sh.order_id, "request": sh},
                expires_at=self._expires_at,
            )
            for step, sh in enumerate(shrinks, start=first_step)
        ]  # fmt: skip
        ids = await intent_store.insert_all(self._pool, intents)
        outcomes: list[intent_store.Outcome] = []
        taken: list[int] = []
        for sh, intent_id in zip(shrinks, ids, strict=True):
            if intent_id is None:
                continue  # the clOrdId exists already: never sent twice
            state, reason = "done", None
            try:
                await self._broker.modify_order(
                    sh.order_id, qty=sh.qty, order_type=sh.order_type, price=sh.price,
                    stop_price=sh.stop_price,
                )  # fmt: skip
            except BrokerRejected as exc:
                state, reason = "rejected", str(exc) or "rejected by the broker"
            except TransientBrokerError as exc:  # raised before the request left
                state, reason = "expired", broker_unavailable(exc)
            except Exception as exc:
                state, reason = "unknown", f"no answer from the broker ({type(exc).__name__})"
            outcomes.append(
                intent_store.Outcome(intent_id, state, sh.order_id, reason, sent=state != "expired")
            )
            if state == "done":
                taken.append(sh.order_id)
            else:
                log.error(
                    "reconcile.protect_send_failed", sub_account_id=self._sub, kind="modify",
                    order_id=sh.order_id, state=state, reason=reason,
                )  # fmt: skip
        await intent_store.finish_many(self._pool, outcomes)
        return taken

    async def _send(self, po: PlannedOrder) -> tuple[str, int | None, str | None]:
        return await send_step(self._broker, po)
