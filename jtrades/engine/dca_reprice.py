"""A DCA add's exits priced again from the broker's average, once the add shows, before they go.

The dispatcher's step between an add and its exits (``dispatch``), in its own module because it
is one job of its own: read the broker's average, price the planned exits from it
(``resize.reprice_add``, pure), swap them into the plan and record each changed request on its
intent (the intents were written before anything was sent: rule 1), or say why the planned
exits go as planned, or why none go. A take-profit leg the new prices pass is not sent, on
purpose (``unsent.not_sent_on_purpose``): its contracts went to another leg.
"""

from __future__ import annotations

import asyncpg
import structlog

from jtrades.engine.account_plans import AccountResult, Prepared
from jtrades.engine.exits import CannotPlan
from jtrades.engine.resize import AddExits, added_fill, reprice_add, through_market
from jtrades.engine.steps import main_qty, position_avg, request_doc
from jtrades.engine.unsent import not_sent_on_purpose
from jtrades.store import intents as intent_store

log = structlog.get_logger(__name__)


async def reprice_exits(
    pool: asyncpg.Pool, p: Prepared, a: AddExits, res: AccountResult, passed: dict[int, str]
) -> str | None:
    """Price a DCA add's exits again from the broker's average, now that the add shows
    (``resize.reprice_add``), in place of the planned ones in ``p.steps``, recording each
    changed request on its intent before it is sent. None when the rest goes; else why
    it does not.

    With no average, or no safe exits from it, the planned exits go as planned (priced
    from the estimate, checked against the alert's price when planned), with the cancels
    of the working ones: keeping the working exits would leave the added contracts
    without a stop. Unless the add's fill shows one of them at or past the market: sent,
    it would close the position an add was asked for; then nothing more goes, the working
    exits stay, and the protective stops cover the rest (``protector``). A take-profit leg
    the new prices pass goes into ``passed`` (its step, and why it is not sent)."""
    it = p.item
    avg = position_avg(it.broker, it.link.broker_account_id, it.contract)
    try:
        if avg is None:
            raise CannotPlan("the broker's view gives no average price")
        priced = reprice_add(a, avg)
    except CannotPlan as exc:
        fill = added_fill(a, avg) if avg is not None else None
        through = through_market(a.exits, a.pos_side, fill) if fill is not None else None
        if through is not None and fill is not None:
            why = (
                f"DCA exits neither re-priced ({exc}) nor sent as planned ({through}"
                f" {fill.normalize():f} the add filled at): the working exits are kept"
            )
            res.messages.append(why)
            log.warning(
                "dispatch.dca_exits_refused",
                sub_account_id=it.link.sub_account_id,
                average=str(avg),
                reason=why,
            )
            return why
        res.messages.append(
            f"DCA exits not re-priced from the broker's average ({exc}): sent as planned,"
            f" priced from the estimated average {a.estimate.normalize():f}"
        )
        log.warning(
            "dispatch.dca_exits_from_estimate",
            sub_account_id=it.link.sub_account_id,
            average=str(avg),
            estimate=str(a.estimate),
            reason=str(exc),
        )
        return None
    where = {po.step: i for i, (po, _) in enumerate(p.steps)}
    changes: list[intent_store.RequestChange] = []
    for old, new in zip(a.exits, priced.orders, strict=True):
        i = where.get(old.step)
        if i is None:
            continue
        planned, ni = p.steps[i]
        if new is None:
            # The legs priced again go out under the first steps, in order, so the step left
            # over is the last planned one, not the leg the market passed: its row must not
            # say its own level was reached (the summary names the one that was).
            passed[old.step] = not_sent_on_purpose(
                "priced again from the broker's average, the ladder has a leg fewer: the legs"
                f" left went out under the steps before this one ({priced.summary})"
            )
            continue
        if new.request == planned.request:
            continue
        intent_id = p.ids[i]
        p.steps[i] = (new, ni)
        if intent_id is not None:
            changes.append(intent_store.RequestChange(intent_id, request_doc(new), main_qty(new)))
    if not changes and not passed:
        return None
    if changes:
        try:
            await intent_store.set_requests(pool, changes)
        except Exception as exc:
            # The intents are durable (rule 1) and the orders are named by them; sending the
            # exits priced from the real average protects the position as configured, which
            # matters more than the prices the rows show. Said, not hidden.
            log.error("dispatch.repriced_not_written", intents=len(changes), error=str(exc))
            res.messages.append("the re-priced exits could not be recorded on their intents")
    res.messages.append(
        f"exits re-priced from the broker's average {avg.normalize():f}"
        f" (planned from {a.estimate.normalize():f}): {priced.summary}"
    )
    return None
