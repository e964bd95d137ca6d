"""The durable evidence of a stop the daemon owes an open position (``engine.owed_stop``
decides from it): the intents of the last plan on the contract that may have reached the broker
(a cancel's with the stored row of the order it names; an order closed 'done' with whether the
broker is known to have had it), and whether the contract's latest fill was the daemon's. Read through the position's own history only (``sql/queries/owed_stops.sql``:
it runs on every pass, under the account's dispatcher lock).

Its own module (with ``sql/queries/owed_stops.sql``) because it reads intents, orders and fills
together for one decision of the protector's, which no other caller shares.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jtrades.queries import q
from jtrades.store import Executor, translate_errors


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One intent of the plan, as written (``order_intents``); a cancel with the order it names
    as the mirror last stored it (its type and broker status; None when not stored); an order
    or OCO closed 'done' with whether the broker is known to have had it (``order_known``: its
    broker order id, or a stored order row carrying its clOrdId or intent; None otherwise)."""

    id: int
    cl_ord_id: str
    kind: str
    state: str
    side: str | None
    request: dict[str, Any]
    reason: str | None = None
    target_type: str | None = None
    target_status: str | None = None
    order_known: bool | None = None


@dataclass(frozen=True, slots=True)
class StopEvidence:
    """The last plan on the contract that may have reached the broker (its intents, newest
    first; plain orders after it, and protections that wrote no stop, passed over) and who made the contract's latest stored fill
    (the passed-over orders' aside): the daemon (True), a person, a liquidation or an order not
    stored (False), or no fill stored (None)."""

    steps: tuple[PlanStep, ...]
    latest_fill_ours: bool | None


async def evidence(
    ex: Executor, sub_account_ids: Sequence[int], symbol: str
) -> StopEvidence | None:
    """``owed_stops.evidence`` for the rows of one account at the broker (``sub_account_ids``)
    and a contract; None when no intent on it may have reached the broker."""
    with translate_errors():
        rows = await ex.fetch(q("owed_stops.evidence"), list(sub_account_ids), symbol)
    if not rows:
        return None
    steps = tuple(
        PlanStep(
            int(r["id"]),
            str(r["cl_ord_id"]),
            str(r["kind"]),
            str(r["state"]),
            r["side"],
            dict(r["request"] or {}),
            r["reason"],
            r["target_type"],
            r["target_status"],
            r["order_known"],
        )
        for r in rows
    )
    fill = rows[0]["fill_ours"]
    return StopEvidence(steps, None if fill is None else bool(fill))
