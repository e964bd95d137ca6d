"""``jtrades halt --flatten``: liquidate every open position of every sub-account of every
stored login (of the named one), linked to a trader or not (a position outlives the trader that
opened it: deleted, moved to another sub-account, gone with its recorder), and cancel the orders
still working where a contract is flat (a resting limit entry would open a position once the
request is done, with the kill switch on and nobody to close it).

Each liquidation goes through an intent and the sub-account's lock like any order (rule 1), so a
flatten never races a signal on the same sub-account. Requests arrive through the configuration
cache (the CLI writes them to ``system_flags``: ``store.flatten``); they accumulate, and each
pending one is carried out by a task of its own, once per run, in passes: a pass dispatches a
liquidation for every open position and the cancels of a flat contract's working orders (one
contract at a time, each with its own time, so its TTL does not count the liquidations before
it), and a failure on one account or contract is recorded and the pass goes on. A pass first
makes its logins reachable (``BrokerRegistry.reach``: a session, a paper login's stored state).
The request is marked done once a pass leaves nothing open or working that it had to close,
read under each account's lock, and no order of those accounts is still in flight (answered,
not yet in the view: ``Flattener._flatten_account``); until then it stays pending, what is left and why is logged, and the next pass follows after a
growing wait. A liquidation the broker refused is left like any other (a risk check or a busy
venue may say yes a moment later) until it was refused ``max_refusals`` times: then the
position counts as refused, and the request ends saying so (``engine.flatten_refused``). One the
broker would not take yet (not sent: a penalty ticket, a session reconnecting, the paper broker
with no price since a restart, ``NotPricedYet``) is no refusal: it is left, never given up on
(the paper one waits for the next alert with a price, as the README says).
What is left is written on the request (``progress``, shown by ``jtrades status --json``) only
when it changed: every write to the flag reloads the daemon's configuration, and a flatten stuck
on an unreachable account must not reload it every pass. A request ends, between two
liquidations, as soon as it is no longer pending: ``jtrades resume`` cancelled it (the account's,
or every one), or a flatten of everything took it over.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import structlog

from jtrades.broker.base import Broker, Contract, OrderRequest, Side, SubAccount
from jtrades.broker.registry import BrokerRegistry
from jtrades.engine.account_plans import by_broker_account
from jtrades.engine.config_cache import ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher, DispatchResult, WorkItem, broker_account
from jtrades.engine.flatten_left import Leftover, never_synced, rowless
from jtrades.engine.planning import AccountPlan, AccountState, PlannedOrder, PositionAction
from jtrades.engine.steps import account_state, flatten_prefix
from jtrades.store import flatten as flatten_store

log = structlog.get_logger(__name__)

FIRST_RETRY_S = 0.5  # the wait before the second pass; it doubles up to MAX_RETRY_S
MAX_RETRY_S = 30.0
RESUME_CHECK_S = 0.25  # how soon a resume stops a flatten waiting to retry
# refusals of one contract's liquidation before a request gives it up: with the back-off, about
# two minutes of asking
MAX_REFUSALS = 10
_DETAIL_LIMIT = 1000  # characters of "what is left" in one log event


def liquidate_plan(
    link: LinkConfig,
    contract: Contract,
    cl_ord_id: str = "",
    pending: Callable[[], bool] = lambda: True,
) -> Any:
    """A plan that flattens whatever position the account holds in ``contract`` (the broker's
    liquidation cancels the contract's working orders with it) or, flat, cancels the orders
    still working there, unless the request is no longer ``pending`` by then: the plan runs
    under the sub-account's lock, after a wait in which a ``resume`` may have committed and a
    signal opened a fresh position."""
    account = SubAccount(link.broker_account_id, link.sub_name)

    def plan(state: AccountState) -> AccountPlan:
        if not pending():
            return AccountPlan(PositionAction.NOTHING, (), "flatten no longer pending")
        if state.net_pos == 0:
            if not state.working:
                return AccountPlan(PositionAction.NOTHING, (), "already flat")
            cancels = tuple(
                PlannedOrder(i, "cancel", None, cancel_order_id=w.order_id, note="halt --flatten")
                for i, w in enumerate(state.working, start=1)
            )
            why = f"halt --flatten: flat, cancel {len(cancels)} working order(s)"
            return AccountPlan(PositionAction.CANCEL, cancels, why)
        side = Side.SELL if state.net_pos > 0 else Side.BUY
        req = OrderRequest(account, contract.symbol, side, abs(state.net_pos), cl_ord_id=cl_ord_id)
        step = PlannedOrder(1, "liquidate", req, note="halt --flatten")
        return AccountPlan(PositionAction.CLOSE, (step,), "halt --flatten")

    return plan


# --- pure decisions ---------------------------------------------------------------------------


@dataclass(slots=True)
class FlattenPass:
    """What one pass over the request's sub-accounts did."""

    sent: int = 0
    closed: int = 0
    cancelled: int = 0  # working orders of flat contracts
    left: list[Leftover] = field(default_factory=list)
    refused: list[Leftover] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Nothing left that a later pass could still close."""
        return not self.left

    def progress(
        self, n: int, sent: int, closed: int, at: datetime, cancelled: int = 0
    ) -> dict[str, Any]:
        """What is written on the request for ``jtrades status``, after pass ``n`` and ``sent``
        liquidations that ``closed`` positions and ``cancelled`` working orders of flat
        contracts in all (this pass's included)."""
        return {
            "pass": n,
            "at": at.isoformat(),
            "liquidations": sent,
            "closed": closed,
            "cancelled": cancelled,
            "left": [x.as_dict() for x in self.left],
            "refused": [x.as_dict() for x in self.refused],
        }


def news(progress: dict[str, Any]) -> dict[str, Any]:
    """What ``progress`` says, less when it was said: a pass that found the same is not
    written (``pass`` and ``at`` then tell when the picture was last new)."""
    return {k: v for k, v in progress.items() if k not in ("pass", "at")}


def attempt_of(cl_ord_id: str, prefix: str) -> int:
    """The attempt number of a liquidation's clOrdId (``{prefix}-{n}``) or of a cancel made in
    that attempt (``{prefix}-{n}-{step}``); 0 when neither."""
    rest = cl_ord_id.removeprefix(f"{prefix}-")
    head = rest.split("-", 1)[0]
    return int(head) if rest != cl_ord_id and head.isdigit() else 0


def judge(result: DispatchResult, net: int | None, working: int = 0) -> tuple[str, str]:
    """``closed``, ``cancelled``, ``refused`` or ``left`` (with why) for one contract, from the
    dispatcher's result, and the position and the count of orders still working there that the
    broker's view shows once it settled (net None: unreadable). A refused liquidation is the
    broker's word (the caller counts it toward giving up); a refused cancel is not (the order
    may have filled: the position it opened is the next pass's), nor is one the broker would
    not take yet (``AccountResult.unavailable``: not sent, left for the next pass). Anything
    else counts only once the view is flat with nothing working."""
    acct = result.accounts[0] if result.accounts else None
    said = "; ".join(acct.messages) if acct is not None else ""
    cancels = acct is not None and acct.action == str(PositionAction.CANCEL)
    if acct is not None and acct.rejected and not cancels:
        return "refused", said or acct.reason
    if net == 0 and not working:
        return ("cancelled" if cancels else "closed"), ""
    if net is None:
        where = "positions unknown (broker view not synced)"
    elif net:
        where = f"net {net}"
    else:
        where = f"{working} order(s) still working"
    detail = said or (acct.reason if acct is not None else "nothing dispatched")
    return "left", f"{where} after the {'cancels' if cancels else 'liquidation'}: {detail}"


# --- the task -----------------------------------------------------------------------------------


class Flattener:
    """Carries out flatten requests; remembers which it took on in this run."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        brokers: BrokerRegistry,
        config: ConfigCache,
        dispatcher: Dispatcher,
        *,
        retry_s: float = FIRST_RETRY_S,
        max_retry_s: float = MAX_RETRY_S,
        max_refusals: int = MAX_REFUSALS,
    ) -> None:
        self._pool, self._brokers, self._config = pool, brokers, config
        self._dispatcher = dispatcher
        self._retry_s, self._max_retry_s = retry_s, max_retry_s
        self._max_refusals = max_refusals
        self._done: set[str] = set()

    async def run(self, requests: Mapping[str, dict[str, Any]]) -> int:
        """Carry out the pending requests (``Snapshot.flatten``: by requested_at) not taken on
        yet in this run, side by side, each until it is done or no longer pending; returns the
        liquidations they sent. A request that fails unexpectedly is logged and taken on again
        at the next configuration change (or start)."""
        new = {k: r for k, r in sorted(requests.items()) if k not in self._done}
        self._done.update(new)
        results = await asyncio.gather(
            *(self._carry_out(k, r) for k, r in new.items()), return_exceptions=True
        )
        sent = 0
        for key, res in zip(new, results, strict=True):
            if isinstance(res, Exception):
                self._done.discard(key)
                log.error("engine.flatten_failed", requested_at=key, error=_why(res))
            elif isinstance(res, BaseException):  # a cancellation: the daemon is stopping
                raise res
            else:
                sent += res
        return sent

    async def _carry_out(self, requested_at: str, request: dict[str, Any]) -> int:
        """Liquidate the open positions of every sub-account (of one login when the request
        names it), pass after pass, until nothing is left or the request is no longer pending;
        returns liquidations sent."""
        label = str(request["account"]) if request.get("account") else None
        sent, closed, cancelled, passes, wait = 0, 0, 0, 0, self._retry_s
        written: dict[str, Any] | None = None  # ``news`` of the last progress written
        while True:
            passes += 1
            p = await self._pass(requested_at, label)
            sent, closed, cancelled = sent + p.sent, closed + p.closed, cancelled + p.cancelled
            if not self._pending(requested_at):
                return self._ended(requested_at, label, sent, p)
            progress = p.progress(passes, sent, closed, datetime.now(UTC), cancelled)
            if p.complete:
                try:
                    marked = await flatten_store.mark_done(
                        self._pool, requested_at, datetime.now(UTC), progress
                    )
                except Exception as exc:  # not marked done: the next pass tries again
                    log.error(
                        "engine.flatten_unrecorded", requested_at=requested_at, error=_why(exc)
                    )
                else:
                    if not marked:  # cancelled as the pass ended
                        return self._ended(requested_at, label, sent, p)
                    log.warning(
                        "engine.flattened",
                        account=label,
                        liquidations=sent,
                        passes=passes,
                        refused=len(p.refused),
                        detail=_detail(p.refused),
                    )
                    if p.refused:
                        log.error(
                            "engine.flatten_refused",
                            account=label,
                            requested_at=requested_at,
                            effect="these positions are still open: close them at the broker",
                            detail=_detail(p.refused),
                        )
                    return sent
            else:
                log.error(
                    "engine.flatten_incomplete",
                    account=label,
                    requested_at=requested_at,
                    passes=passes,
                    left=len(p.left),
                    detail=_detail(p.left),
                    retry_in_s=wait,
                )
                if news(progress) != written:
                    try:
                        if not await flatten_store.record_progress(
                            self._pool, requested_at, progress
                        ):
                            return self._ended(requested_at, label, sent, p)
                    except Exception as exc:  # said again after the next pass
                        log.error(
                            "engine.flatten_unrecorded", requested_at=requested_at, error=_why(exc)
                        )
                    else:
                        written = news(progress)
            if not await self._still_pending_after(requested_at, wait):
                return self._ended(requested_at, label, sent, p)
            wait = min(wait * 2, self._max_retry_s)

    async def _still_pending_after(self, requested_at: str, wait: float) -> bool:
        """Wait out the retry delay, looking at the request every ``RESUME_CHECK_S``: slept
        whole, a resume heard early in a long back-off (up to ``max_retry_s``) was acted on
        only at its end."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while (left := deadline - loop.time()) > 0:
            await asyncio.sleep(min(RESUME_CHECK_S, left))
            if not self._pending(requested_at):
                return False
        return self._pending(requested_at)

    def _pending(self, requested_at: str) -> bool:
        pending = self._config.snapshot.flatten
        return pending is not None and requested_at in pending

    def _ended(self, requested_at: str, label: str | None, sent: int, p: FlattenPass) -> int:
        log.warning(
            "engine.flatten_abandoned",
            account=label,
            requested_at=requested_at,
            reason="no longer pending: resumed, or taken over by a flatten of everything",
            liquidations=sent,
            detail=_detail(p.left),
        )
        # pending again later (a plain `resume` gives back the flatten of a login that stays
        # halted), it is taken on again: kept here, it was skipped until the next start
        self._done.discard(requested_at)
        return sent

    async def _pass(self, requested_at: str, label: str | None) -> FlattenPass:
        p = FlattenPass()
        snap = self._config.snapshot
        named = by_broker_account(snap.flatten_subs(label or None))
        # an account's other rows (another user's row of the same Tradovate login) may be the
        # ones that reach it: `halt --account alice-demo --flatten` with alice's stored
        # password stale left the account open while bob's session of it was live. Never
        # another login's row naming the same id (typed by hand): through it, mallory's flatten
        # liquidated alice's position with alice's session (``account_key``)
        every = by_broker_account(snap.subs.values())
        groups = [
            rows + [lk for lk in every.get(key, []) if lk not in rows]
            for key, rows in named.items()
        ]
        try:  # the sessions of logins no trader links: sync_accounts may not have opened them yet
            await self._brokers.reach([lk for rows in groups for lk in rows])
        except Exception as exc:  # each account then says what it lacks
            log.error("engine.flatten_unreachable", requested_at=requested_at, error=_why(exc))
        # once per account at the broker: two users' rows for one Tradovate account each sent
        # a liquidation of the same position (harmless only because liquidateposition closes
        # what the broker holds, whoever asks)
        sessions: dict[int, tuple[Broker, LinkConfig]] = {}
        for rows in groups:
            if not self._pending(requested_at):  # `resume`: not one more liquidation
                break
            try:
                link, broker = self._reaching(rows)
                sessions.setdefault(id(broker), (broker, link))
                await self._flatten_account(requested_at, link, broker, p)
            except Exception as exc:  # this account only: the others are flattened all the same
                p.left.append(Leftover(rows[0].sub_account_id, None, _why(exc)))
        for broker, link in sessions.values():
            p.left.extend(rowless(broker, link, snap.subs.values()))
        p.left.extend(never_synced(snap.rowless_logins, label))
        return p

    def _reaching(self, rows: list[LinkConfig]) -> tuple[LinkConfig, Broker]:
        """The row of the account at the broker ``rows`` name whose login has a synced view
        of it, with that session: it reads, and sends for, the account (two users' rows of one
        Tradovate account), as protection and the orphan sweep do (``synced_for``). Asking the
        first row's alone, a stale stored password on it left the account open under the kill
        switch while another row's session was live. None synced: the first row that has a
        session (``_flatten_account`` leaves the account for the next pass: missing is not
        flat); none has one: why the first could not (raised)."""
        unsynced: tuple[LinkConfig, Broker] | None = None
        error: Exception | None = None
        for row in rows:
            try:
                broker = self._brokers.broker_for(row)
            except Exception as exc:
                error = error or exc
                continue
            if broker.is_synced(row.broker_account_id):
                return row, broker
            unsynced = unsynced or (row, broker)
        if unsynced is not None:
            return unsynced
        raise error or RuntimeError("no sub-account row names the account")

    async def _flatten_account(
        self, requested_at: str, link: LinkConfig, broker: Broker, p: FlattenPass
    ) -> None:
        """Close and cancel what ``broker``'s live view shows, read under the account's lock, and
        count the orders still in flight as left.

        Read without the lock, the view missed an entry that passed the kill switch just before
        the halt: its plan had run and its order was answered, but Tradovate's events came after
        the answer, so the request was marked done on an empty pass and the position and its
        stop appeared after it. A dispatch holds the lock until the view shows what it sent, and
        a plan that takes the lock after the flatten started reads the halted snapshot
        (``plan_time.halted_since``) and opens nothing.

        That wait is bounded (the dispatcher's settle timeout): an order whose events come later
        still is not in the view, but its intent is still open (pending, sent or unknown) until
        the events move it or reconciliation looks it up. The request is not done while one is:
        it waits for the outcome itself, where one more pass a few seconds on would guess at
        the delay. The intents are read under the lock before the view, since the mirror writes
        an intent's move after the view took the event in: one cannot be missed by both. Those
        written after the request count too: they are closes and protective exits (entries are
        refused), and an exit shown after the request was done would be left working on a flat
        contract; no time is compared, so the CLI's clock (``requested_at``) need not agree with
        the database's. Liquidations and cancels put nothing at the broker (``in_flight``).

        Deadlocks: the flatten holds one account's lock at a time, only for these reads, never
        across ``dispatch`` (which takes it itself; asyncio's lock is not re-entrant) nor while
        waiting for another lock; the protector and the orphan sweep hold one lock at a time
        too, and a dispatch waits for a lock holding none (``account_locks``)."""
        bid = link.broker_account_id
        async with self._dispatcher.lock_for(link):
            if not broker.is_synced(bid):
                # missing is not flat (rule 6): its positions are unknown, not absent
                p.left.append(Leftover(link.sub_account_id, None, "broker view not synced"))
                return
            if not self._brokers.restored(link):
                # a paper login whose stored book could not be put back reads empty, not flat
                p.left.append(Leftover(link.sub_account_id, None, "paper state not restored"))
                return
            flying = await flatten_store.in_flight(self._pool, self._sharing(link))
            symbols = {x.symbol for x in broker.positions(bid) if x.net_pos}
            working = [o for o in broker.working_orders(bid) if o.status.is_open]
        for f in flying:
            why = f"order {f.cl_ord_id} ({f.kind}, {f.state}) not in the broker's view yet"
            p.left.append(Leftover(f.sub_account_id, f.symbol, why))
        for o in working:
            if o.symbol:
                symbols.add(o.symbol)
            else:  # its contract not named yet: it cannot be found to cancel until it is
                p.left.append(
                    Leftover(
                        link.sub_account_id, None, f"order {o.order_id} of an unnamed contract"
                    )
                )
        for symbol in sorted(symbols):
            if not self._pending(requested_at):
                return
            try:
                await self._close(requested_at, link, broker, symbol, p)
            except Exception as exc:  # this contract only
                p.left.append(Leftover(link.sub_account_id, symbol, _why(exc)))

    def _sharing(self, link: LinkConfig) -> list[int]:
        """The sub-account rows of the account at the broker ``link`` trades (two users' rows
        of one Tradovate login share it, its view and its lock)."""
        key = broker_account(link)
        rows = [sid for sid, lk in self._config.snapshot.subs.items() if broker_account(lk) == key]
        return sorted({link.sub_account_id, *rows})

    async def _close(
        self, requested_at: str, link: LinkConfig, broker: Broker, symbol: str, p: FlattenPass
    ) -> None:
        sid = link.sub_account_id
        prefix = flatten_prefix(requested_at, sid, symbol)
        earlier = await flatten_store.liquidations(self._pool, sid, f"{prefix}-")
        refusals = [e for e in earlier if e.kind == "liquidate" and e.state == "rejected"]
        if len(refusals) >= self._max_refusals:  # given up (by a run before a restart, too)
            said = refusals[-1].reason or "rejected by the broker"
            p.refused.append(Leftover(sid, symbol, _given_up(len(refusals), said)))
            return
        # A new clOrdId per attempt, numbered after the request's earlier ones (of a crashed run
        # too): an attempt whose outcome is unknown is never reused, and a position still open
        # is closed by the next attempt, planned under the lock against the live position.
        attempt = 1 + max((attempt_of(e.cl_ord_id, prefix) for e in earlier), default=0)
        contract = await broker.find_contract(symbol)
        plan = liquidate_plan(
            link, contract, f"{prefix}-{attempt}", lambda: self._pending(requested_at)
        )
        item = WorkItem(None, link, broker, contract, plan)
        # its own time: the TTL counts from this liquidation, not from the start of the flatten;
        # a flat contract's cancels are numbered within the attempt ({prefix}-{attempt}-{step})
        # planned whatever the view lags (``unsettled``): a liquidation closes what the broker
        # holds, and what is still in flight keeps the request pending (``_pass_account``)
        result = await self._dispatcher.dispatch(
            None, datetime.now(UTC), [item], tag=f"{prefix}-{attempt}", hold_unsettled=False
        )
        if any(a.action == str(PositionAction.CANCEL) for a in result.accounts):
            p.cancelled += result.orders
        else:
            p.sent += result.orders
        # the dispatcher holds the lock until the view shows the liquidation's effect (bounded)
        async with self._dispatcher.lock_for(link):
            state = account_state(broker, link.broker_account_id, contract)
        net = state.net_pos if state is not None else None
        verdict, why = judge(result, net, len(state.working) if state is not None else 0)
        why = why.replace(f"{prefix}-{attempt}: ", "")  # the same words on every attempt
        if verdict == "closed":
            p.closed += 1
        elif verdict == "refused":
            if len(refusals) + 1 >= self._max_refusals:
                p.refused.append(Leftover(sid, symbol, _given_up(len(refusals) + 1, why)))
            else:  # a later pass asks again; progress unchanged: no reload per pass
                again = f"refused by the broker, tried again (up to {self._max_refusals} times)"
                p.left.append(Leftover(sid, symbol, f"{again}: {why}"))
        elif verdict == "left":
            p.left.append(Leftover(sid, symbol, why))


def _given_up(times: int, why: str) -> str:
    return f"refused by the broker {times} times, given up: {why}"


def _why(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _detail(items: list[Leftover]) -> str:
    text = "; ".join(str(x) for x in items)
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 1] + "…"
