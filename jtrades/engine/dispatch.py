"""From plans to orders at the broker, under the money rules (DESIGN.md §5).

For one signal: take the locks of the sub-accounts it touches that nothing holds, plan each
against that account's live state, write their intents in ONE transaction (with the signal,
for a webhook's delivery), then send: concurrently across sub-accounts, step by step within
one. An account another dispatch holds is planned, written and sent once its lock comes
(``account_locks``), against what the one before it left. A sub-account's lock is held until
its orders are answered and the broker's view shows their effect, so a second alert racing on
the same sub-account plans against the position the first one produced (rule 3). That wait
is bounded (the settle timeout): what the view still lacks then, the next signal does not
plan the account from: it sends it nothing and says why, at once (``unsettled``).

Nothing is sent unless the intents committed (rule 1: fail closed). A signal handed over as a
``Delivery`` (the webhook's, not yet stored) is stored by the same statement that writes its
intents: a duplicate delivery is found there, writes nothing and sends nothing (rule 3). Each
send's outcome is written back: the broker's order id, a rejection with the broker's text, or
``unknown`` when no answer came (reconciliation looks it up by clOrdId, never re-sends). An
intent past its TTL is never sent (``expired``), save the protective steps after a step that
changed the position (``step_age``): holding them back would leave the position it made
without exits. When one step of a sub-account fails, its later steps are not sent
either (a reversal must not open the new side when the close is in doubt). A market order the
later steps build on (a DCA add or a reduce, then the exits for the new position) must show in
the position first (bounded by the settle timeout): an order id in the answer is not a fill.
A DCA add's exits, planned from an estimated average, are then priced again from the broker's
average (``dca_reprice``) and recorded on their intents before they go; when no safe exits come
of it (or no average), the planned ones go as planned, with the cancels of the working exits:
priced from the estimate, they still cover the added contracts.

"A sub-account" is an account at the broker (``broker_account``): two users' rows for one
Tradovate account share its lock and its one plan per signal.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.broker.base import Broker, SubAccount
from jtrades.db import Lane
from jtrades.engine.account_locks import AccountLocks, Waiting
from jtrades.engine.account_plans import (  # re-exported: the fan-out and the flatten make these
    AccountResult,
    DispatchResult,
    Prepared,
    WorkItem,
    broker_account,
    lock_key,
    missed_entry,
    not_planned,
    number_steps,
    plan_groups,
    unsent_plan,
    unwritten,
)
from jtrades.engine.claim_doubt import learn_fate
from jtrades.engine.config_cache import AccountKey, LinkConfig
from jtrades.engine.dca_reprice import reprice_exits
from jtrades.engine.plan_context import held_back
from jtrades.engine.planning import PlannedOrder, Shortfall
from jtrades.engine.resize import AddPlan
from jtrades.engine.send import send_step
from jtrades.engine.settle import exits_ended, settle
from jtrades.engine.step_age import FOLLOW_UP_S, PROTECTIVE_KINDS, TOO_OLD, protective, too_late
from jtrades.engine.steps import expected_position, position_shows
from jtrades.engine.unsent import NOT_SENT_ON_PURPOSE, not_sent
from jtrades.engine.unsettled import UnsettledViews
from jtrades.errors import StorageUnavailable
from jtrades.store import intents as intent_store
from jtrades.store import signals as signal_store

log = structlog.get_logger(__name__)

__all__ = [
    "FOLLOW_UP_S",  # re-exported: reconciliation's grace counts it
    "NOT_SENT_ON_PURPOSE",  # re-exported: the owed-stop tests read it here (``unsent``'s)
    "AccountResult",
    "DispatchResult",
    "Dispatcher",
    "WorkItem",
    "broker_account",
    "protective",
]

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


Ran = tuple[AccountResult, list[intent_store.Outcome]]  # one account's result and outcomes


@dataclass(slots=True)
class _Signal:
    """What the dispatch of one signal carries from its first accounts to those behind."""

    groups: dict[AccountKey, list[WorkItem]]
    signal_id: int | None
    tag: str | None
    received_at: datetime
    hold_unsettled: bool
    results: list[AccountResult] = field(default_factory=list)


class Dispatcher:
    """Owns the per-sub-account locks; everything that changes a sub-account's orders takes its
    lock (signals here, protective stops in reconciliation)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        ttl_s: float,
        settle_timeout_s: float = 2.0,
        clock: Clock = _utcnow,
        claims: Lane | None = None,
        views: UnsettledViews | None = None,
    ) -> None:
        self._pool = pool
        # the connection the claim runs on when free; without one, the pool alone
        self._claims = claims if claims is not None else Lane(pool, None)
        self._ttl = timedelta(seconds=ttl_s)
        self._follow_up = timedelta(seconds=FOLLOW_UP_S)
        self._settle_timeout = settle_timeout_s
        self._clock = clock
        self.locks = AccountLocks()
        self._settling: set[asyncio.Task[None]] = set()
        # the accounts whose view lagged what was sent when the settle wait gave up
        self.views = views if views is not None else UnsettledViews()
        # told of a position a plan may have left without its exits (``Reconciler.protect_soon``)
        self.on_uncovered: Callable[[LinkConfig, str], None] | None = None

    def busy(self, env: str, account_id: int, broker_account_id: int) -> bool:
        """Whether something holds that account's lock (a signal's steps being sent, a
        protection): its open intents are the holder's to settle. Reconciliation looked one up
        before the dispatcher reached it, wrote it 'expired' (not found), and the dispatcher
        then sent it: a live order its row called never sent."""
        return self.locks.busy(env, account_id, broker_account_id)

    def view_lags(self, link: LinkConfig, broker: Broker, root: str | None) -> str | None:
        """Why the view of the account ``link`` trades is not to be planned from in product
        ``root`` now: it does not show yet what a dispatch sent to it (``unsettled``). Hold
        its lock to ask."""
        key, account = lock_key(link), link.broker_account_id
        why = self.views.hold_up(key, broker, account, root)
        return why.why if why is not None else None

    def lock_for(self, link: LinkConfig) -> asyncio.Lock:
        return self.locks.lock_for(link)

    async def dispatch(
        self,
        signal_id: int | None,
        received_at: datetime,
        items: list[WorkItem],
        *,
        tag: str | None = None,
        defer_outcomes: bool = False,
        delivery: signal_store.Delivery | None = None,
        hold_unsettled: bool = True,
        claimed: Callable[[], None] | None = None,
    ) -> DispatchResult:
        """Plan, record and send one signal's orders; see the module docstring for the rules.

        Orders not caused by a signal (a flatten request) pass ``signal_id=None`` and a ``tag``:
        the clOrdId prefix of steps the plan does not name itself, unique to the caller (one
        sub-account's). With ``defer_outcomes`` the send outcomes are
        returned in ``unwritten`` for the caller to store after it has answered (the webhook
        writes them with the signal's verdict in one statement). With a ``delivery`` the signal
        row is claimed with the intents (``signal_id`` must be ``delivery.signal_id``); a storage
        error then raises (nothing stored, nothing sent) instead of ``storage_failed``, and
        ``claimed`` is called once it is stored, before the orders go.

        An account whose view does not show yet what an earlier dispatch sent it is not
        planned (``unsettled``), at once, with its cause; with ``hold_unsettled`` False it is
        (a flatten: a liquidation closes whatever the broker holds, and the flatten counts
        what is still in flight itself)."""
        # One account at the broker takes one plan per signal: a second trader on the same
        # sub-account, or on another user's row for the same Tradovate account, would plan
        # against the same state and double the position. Which one: ``_plan_all``.
        groups: dict[AccountKey, list[WorkItem]] = {}
        for it in items:
            groups.setdefault(broker_account(it.link), []).append(it)
        sig = _Signal(groups, signal_id, tag, received_at, hold_unsettled)
        links = {key: group[0].link for key, group in groups.items()}
        free, behind = await self.locks.take_free(links)
        acquired = [self.locks.lock_for(links[key]) for key in free]
        # in line for the others now, not after the claim: rule 3 orders the signals racing
        # on an account by when they reached it here (the recorder's next one may be here
        # once this one is stored)
        waiting = self.locks.wait_for(links, behind)
        try:
            prepared = self._prepare(sig, free)
            intents = [ni for p in prepared for _, ni in p.steps]
            if delivery is not None:
                if behind:  # orders still to go: a restart before they were written knows it
                    delivery = replace(delivery, detail={**(delivery.detail or {}), "behind": 1})
                elif prepared and all(held_back(p.plan.short) for p in prepared):
                    # no account makes the entry (halted, at --max-contracts, nothing to add
                    # to): the live verdict gives the recorder's count back; a restart before
                    # it was written must too, whatever closes went
                    delivery = replace(delivery, detail={**(delivery.detail or {}), "held_back": 1})
                # raises on a storage error: nothing is stored, so nothing may be sent
                claim = await self.claim(delivery, intents)
                if claim.duplicate_of is not None:
                    return DispatchResult([], duplicate_of=claim.duplicate_of)
                number_steps(prepared, claim.intent_ids)
                if claimed is not None:
                    claimed()
                if delivery.claimed is not None and (intents or behind):
                    delivery.claimed.set()  # stored, and orders to go: the webhook may answer
            elif intents:
                try:
                    ids = await intent_store.insert_all(self._pool, intents)
                except Exception as exc:  # fail closed: no durable intent, nothing is sent
                    log.error("dispatch.intents_not_written", signal_id=signal_id, error=str(exc))
                    sig.results.extend(unwritten(prepared))  # and the held, never planned:
                    sig.results.extend(unwritten([it for key in behind for it in groups[key]]))
                    return DispatchResult(sig.results, storage_failed=True)
                number_steps(prepared, ids)
            for p in prepared:
                acquired.remove(self.lock_for(p.item.link))  # handed to the task, which frees it
            while acquired:  # not planned, or nothing to send: not held while the rest go
                acquired.pop().release()
            running = asyncio.gather(*self._run_all(sig, prepared))
            if waiting:  # cancelled, both go: the waits give back what came
                first, later = await asyncio.gather(running, self._behind(sig, waiting))
                done = [*first, *later]
            else:
                done = list(await running)
            sig.results.extend(res for res, _ in done)
            outcomes = [o for _, account_outcomes in done for o in account_outcomes]
            if defer_outcomes:
                return DispatchResult(sig.results, unwritten=outcomes)
            # every sub-account's outcomes in one statement, after the orders are out
            await self._finish(outcomes)
            return DispatchResult(sig.results)
        finally:
            for lock in acquired:
                lock.release()
            waiting.abandon()  # a duplicate, a failure: what came goes back

    def _prepare(self, sig: _Signal, keys: list[AccountKey]) -> list[Prepared]:
        """Plan the accounts ``keys`` (their locks held), but those whose view lags."""
        todo = []
        for key in keys:
            group = sig.groups[key]
            why = self._lags(key, group[0]) if sig.hold_unsettled else None
            if why is None:
                todo.append(group)
            else:
                sig.results.extend(not_planned(it, why) for it in group)
        return plan_groups(todo, sig.signal_id, sig.tag, sig.received_at + self._ttl, sig.results)

    def _run_all(self, sig: _Signal, prepared: list[Prepared]) -> list[asyncio.Task[Ran]]:
        """Send each account's steps in a task of its own, its lock (held) handed over."""
        return [
            asyncio.create_task(self._run_account(p, sig.received_at, self.lock_for(p.item.link)))
            for p in prepared
        ]

    async def _behind(self, sig: _Signal, waiting: Waiting) -> list[Ran]:
        """The accounts another dispatch held: each planned, written and sent once its lock
        comes (rule 3: against what the one before it left), those that come together in
        one statement. The signal is stored already; each batch's intents are written
        before any of it is sent (rule 1), and a batch that cannot be written sends nothing."""
        running: list[asyncio.Task[Ran]] = []
        try:
            while waiting:
                batch = await waiting.next()
                held = [self.lock_for(sig.groups[key][0].link) for key in batch]
                try:
                    prepared = self._prepare(sig, batch)
                    intents = [ni for p in prepared for _, ni in p.steps]
                    try:
                        number_steps(prepared, await intent_store.insert_all(self._pool, intents))
                    except Exception as exc:  # fail closed, for this batch
                        log.error(
                            "dispatch.intents_not_written", signal_id=sig.signal_id, error=str(exc)
                        )
                        sig.results.extend(unwritten(prepared))
                        prepared = []
                    for p in prepared:
                        held.remove(self.lock_for(p.item.link))  # handed to its task
                    running.extend(self._run_all(sig, prepared))
                finally:
                    for lock in held:  # not planned, or not written: nothing to send
                        lock.release()
            return list(await asyncio.gather(*running))
        finally:
            waiting.abandon()

    def _lags(self, key: AccountKey, first: WorkItem) -> Shortfall | None:
        """Why the account (its lock held) is not planned: its view lags an earlier dispatch."""
        account, root = first.link.broker_account_id, first.contract.root
        why = self.views.hold_up(lock_key(first.link), first.broker, account, root)
        if why is not None:
            log.warning(
                "dispatch.view_lags",
                sub_account_id=first.link.sub_account_id,
                reason=why.why,
                effect="not planned for this signal",
            )
        return why

    async def claim(
        self, delivery: signal_store.Delivery, intents: list[intent_store.NewIntent]
    ) -> signal_store.Claim:
        """Store ``delivery`` with ``intents`` (none for an outcome without orders) on the
        claims' connection; a connection that fails under it is settled by ``claim_fate``."""
        return await self._claim(delivery, intents)

    async def _claim(
        self, delivery: signal_store.Delivery, intents: list[intent_store.NewIntent]
    ) -> signal_store.Claim:
        backend: int | None = None  # the server process running the claim
        try:
            async with self._claims.borrow() as ex:
                if isinstance(ex, asyncpg.Pool):
                    async with ex.acquire() as conn:
                        backend = conn.get_server_pid()
                        return await signal_store.claim_delivery(conn, delivery, intents)
                backend = ex.get_server_pid()
                return await signal_store.claim_delivery(ex, delivery, intents)
        except StorageUnavailable:
            # The connection failed, perhaps after the statement committed (``claim_doubt``).
            # With no order to go nothing can be lost: asked once (a re-send is judged anew).
            if backend is None:
                raise  # no connection came: the statement never left
            to_go = intents or (delivery.detail or {}).get("behind")  # planned once stored
            deadline = delivery.received_at + (self._ttl if to_go else timedelta(0))
            fate = await learn_fate(self._pool, delivery, intents, backend, deadline, self._clock)
            late = self._clock() - delivery.received_at > self._ttl
            log.warning(
                "dispatch.claim_answer_lost",
                signal_id=delivery.signal_id,
                effect="the claim had committed: "
                + ("past its TTL, its orders are not sent" if late else "its orders go out"),
            )
            return fate

    async def _run_account(
        self, p: Prepared, received_at: datetime, lock: asyncio.Lock | None
    ) -> tuple[AccountResult, list[intent_store.Outcome]]:
        link = p.item.link
        res = AccountResult(
            p.item.trader_id,
            link.sub_account_id,
            str(p.plan.action),
            p.plan.reason,
            short=p.plan.short,
        )
        settle = False
        position = p.before_pos
        done: list[intent_store.Outcome] = []
        entry = p.entry_step()
        went = False  # a step before the entry went: the entry lost is a shortfall
        try:
            failed: str | None = None
            passed: dict[int, str] = {}  # steps not sent on purpose: a take-profit leg priced away
            changed = False  # a step that changed the position went out
            tail: bool | None = None  # whether the protective steps after it go (``_too_late``)
            for n in range(1, len(p.steps) + 1):
                # read as it is reached: ``reprice_exits`` swaps the exits in once the add shows
                (po, ni), intent_id = p.steps[n - 1], p.ids[n - 1]
                if intent_id is None:
                    # Already written by an earlier delivery of this signal: that one sends it.
                    res.messages.append(f"{ni.cl_ord_id}: duplicate, not sent again")
                    continue
                if failed is None and po.step in passed:
                    done.append(intent_store.Outcome(intent_id, "expired", reason=passed[po.step]))
                    continue
                if failed is None:
                    late = self._clock() - received_at - self._ttl
                    failed, tail = too_late(
                        late, self._follow_up, changed, tail, po, ni.cl_ord_id, res
                    )
                if failed is not None:
                    done.append(intent_store.Outcome(intent_id, "expired", reason=not_sent(failed)))
                    res.expired += 1
                    if po.step == entry and (went or failed == TOO_OLD):  # else no word of it
                        res.short = missed_entry("unsent", failed)
                    elif entry is None and n == 1 and failed == TOO_OLD:  # a close held late
                        res.short = unsent_plan(res.short, failed)
                    continue
                state, order_id, reason = await self._send(p.item, po)
                done.append(
                    intent_store.Outcome(
                        intent_id, state, order_id, reason, sent=state != "expired"
                    )
                )
                if state in ("sent", "done"):
                    res.sent += 1
                    if po.kind == "cancel" and po.cancel_order_id is not None:
                        p.cancelled.append(po.cancel_order_id)
                    elif po.kind == "liquidate":
                        p.liquidated = True
                    else:
                        p.placed.append((order_id, ni.cl_ord_id))
                    after = expected_position(position, po)
                    if after is not None:
                        position, settle, changed = after, True, True
                        if po.kind != "liquidate":
                            p.movers.append((order_id, ni.cl_ord_id))
                        if n < len(p.steps) and po.kind == "order":
                            failed = await self._shows(p.item, po, after)
                            if failed is not None:
                                res.messages.append(f"{ni.cl_ord_id}: {failed}")
                                settle = False  # waited already: the view is what it is
                            elif (
                                isinstance(p.plan, AddPlan) and p.plan.add_exits.add_step == po.step
                            ):
                                add_exits = p.plan.add_exits
                                failed = await reprice_exits(self._pool, p, add_exits, res, passed)
                elif state == "rejected":
                    res.rejected += 1
                    failed = f"step {po.step} rejected"
                elif state == "unknown":
                    res.unknown += 1
                    failed = f"step {po.step} outcome unknown"
                    if po.kind == "liquidate":  # it may have closed the position: flat
                        position, changed, p.liquidated = 0, True, True
                    elif po.kind not in PROTECTIVE_KINDS:  # a cancel's order shows its fate
                        p.unanswered.append(ni.cl_ord_id)
                        after = expected_position(position, po)
                        if after is not None:  # the view shows it filled, or refused
                            position, changed = after, True
                            p.movers.append((None, ni.cl_ord_id))
                else:  # the broker would not take the request: nothing reached it
                    res.unavailable += 1
                    failed = f"step {po.step} not sent"
                if reason:
                    res.messages.append(f"{ni.cl_ord_id}: {reason}")
                if po.step == entry and went and state in ("rejected", "expired"):
                    res.short = missed_entry(
                        "rejected" if state == "rejected" else "unavailable", reason or state
                    )
                went = went or state in ("sent", "done", "unknown")
            if failed is not None:
                # for the operator (and the notifications): what did not reach the broker, and why
                log.warning(
                    "dispatch.orders_failed",
                    sub_account_id=link.sub_account_id,
                    signal_id=p.steps[0][1].signal_id,
                    symbol=p.item.contract.symbol,
                    rejected=res.rejected,
                    unknown=res.unknown,
                    expired=res.expired,
                    unavailable=res.unavailable,
                    reason=failed,
                    broker=res.messages[-1] if res.messages else None,
                )
            # its exits may be cancelled (or filled as their cancel was refused) and their
            # re-placement not sent: a refused reduce left a long 2 with none until the
            # protector's second sighting, an interval or two later
            uncovered = failed is not None and position != 0
            if uncovered and self.on_uncovered is not None and p.cancels():
                self.on_uncovered(link, p.item.contract.symbol)
            if changed:
                p.made_pos = position
                res.moved = True
            if (settle or p.placed or p.cancelled or p.unanswered or p.liquidated) and lock:
                p.expected_pos = position if settle else None
                # The answer to the alert need not wait for the view to show what was done;
                # the next signal on this sub-account must: the lock passes to a task that
                # frees it once it does.
                task = asyncio.create_task(self._settle_then_release(p, lock))
                self._settling.add(task)
                task.add_done_callback(self._settling.discard)
                lock = None
        except Exception as exc:  # a bug must not leave the lock held or the gather hanging
            log.exception("dispatch.account_failed", sub_account_id=link.sub_account_id)
            res.messages.append(f"internal error: {type(exc).__name__}")
        finally:
            if lock is not None:
                lock.release()
        return res, done

    async def _shows(self, it: WorkItem, po: PlannedOrder, expected: int) -> str | None:
        """Wait (bounded) for a market order the next steps build on to show in the position.
        An answer with an order id is not a fill: a risk check can reject the order after
        accepting it, and a DCA add's exits, re-placed for the position it would have made,
        were then a stop for 2 on a long 1. None once it shows; else why the rest is not sent."""
        account, timeout = it.link.broker_account_id, self._settle_timeout
        held = await position_shows(it.broker, account, it.contract, expected, timeout)
        if held is None:
            return None
        return (
            f"step {po.step} did not show in the position within {timeout:g}s"
            f" (holding {held}, expected {expected})"
        )

    async def _settle_then_release(self, p: Prepared, lock: asyncio.Lock) -> None:
        try:
            await settle(p, self._settle_timeout, self.views)
            if self.on_uncovered is not None and exits_ended(p):
                self.on_uncovered(p.item.link, p.item.contract.symbol)
        finally:
            lock.release()

    async def _send(self, item: WorkItem, po: PlannedOrder) -> tuple[str, int | None, str | None]:
        """Hand one step to the broker: (intent state, broker order id, reason)."""
        account = SubAccount(item.link.broker_account_id, item.link.sub_name)
        return await send_step(item.broker, po, account, item.contract)

    async def _finish(self, outcomes: list[intent_store.Outcome]) -> None:
        """Write the account's outcomes in one statement; a failure is logged, not raised: the
        orders went (or not) regardless, and reconciliation settles the rows by clOrdId."""
        try:
            await intent_store.finish_many(self._pool, outcomes)
        except Exception as exc:
            log.error("dispatch.results_not_written", intents=len(outcomes), error=str(exc))
