"""What one signal asks of each account at the broker: the work items the fan-out makes, the
plan chosen for each account, and the results dispatch reports.

Split from ``dispatch`` (which locks, claims and sends) because this part is pure: given an
account's live state, which trader's plan is sent and the intents it becomes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from jtrades.broker.base import Broker, Contract
from jtrades.engine.config_cache import AccountKey, LinkConfig, account_key, link_account
from jtrades.engine.plan_context import ENTRY_REFUSED, ENTRY_UNSENT, placed_as_exit
from jtrades.engine.planning import (
    AccountPlan,
    AccountState,
    PlannedOrder,
    PositionAction,
    Shortfall,
)
from jtrades.engine.steps import account_state, cl_ord_prefix, intent_for
from jtrades.engine.unsent import not_sent
from jtrades.engine.unsettled import Unsettled
from jtrades.engine.view_waits import Placed
from jtrades.errors import JtradesError
from jtrades.store import intents as intent_store


@dataclass(frozen=True, slots=True)
class WorkItem:
    """One (trader, sub-account) the signal reaches; ``plan`` runs under the account's lock."""

    trader_id: int | None
    link: LinkConfig
    broker: Broker
    contract: Contract
    plan: Callable[[AccountState], AccountPlan]


@dataclass(slots=True)
class AccountResult:
    trader_id: int | None
    sub_account_id: int
    action: str
    reason: str
    sent: int = 0
    rejected: int = 0
    unknown: int = 0
    expired: int = 0  # not sent: past the TTL, or after a step that failed
    messages: list[str] = field(default_factory=list)
    # another trader's plan for the same account was sent instead (``plan_groups``)
    outranked_by: int | None = None
    # not sent: the broker would not take the request (a p-ticket, a 429, the session
    # reconnecting: ``send.send_step``); apart from ``expired``, which the verdict reads as
    # the TTL: the row blamed the TTL for a penalty
    unavailable: int = 0
    # the plan did less than the alert asked (``planning.Shortfall``): what the verdict reads
    short: Shortfall | None = None
    # a step that changes the position went (or its answer never came): a reduce's exits are
    # cancelled before its order, and one the broker refused had "gone" by its cancels
    moved: bool = False

    def as_dict(self) -> dict[str, Any]:
        # by hand: dataclasses.asdict deep-copies, and a signal has one of these per sub-account
        return {
            "trader_id": self.trader_id,
            "sub_account_id": self.sub_account_id,
            "action": self.action,
            "reason": self.reason,
            "sent": self.sent,
            "rejected": self.rejected,
            "unknown": self.unknown,
            "expired": self.expired,
            "messages": list(self.messages),
            "outranked_by": self.outranked_by,
            "unavailable": self.unavailable,
            "short": (
                {"cause": self.short.cause, "why": self.short.why, "no_entry": self.short.no_entry}
                if self.short
                else None
            ),
            "moved": self.moved,
        }


@dataclass(slots=True)
class DispatchResult:
    accounts: list[AccountResult]
    storage_failed: bool = False
    # the intents' send outcomes, when the caller asked to write them itself (``defer_outcomes``)
    unwritten: list[intent_store.Outcome] = field(default_factory=list)
    # the delivery was a duplicate of this signal: nothing was written or sent
    duplicate_of: int | None = None

    @property
    def orders(self) -> int:
        return sum(a.sent for a in self.accounts)


@dataclass(slots=True)
class Prepared:
    """One account's plan with its intents, and what its sending finds out."""

    item: WorkItem
    plan: AccountPlan
    steps: list[tuple[PlannedOrder, intent_store.NewIntent]]
    before_pos: int
    expected_pos: int | None = None  # what the broker's view must show before the lock goes
    ids: list[int | None] = field(default_factory=list)
    # orders placed and cancelled: the view must show them (and them gone) before the lock goes
    placed: list[Placed] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    # what the view must show before the account is planned again (``unsettled``): the
    # market orders placed or unanswered, the steps unanswered, whether a liquidation went,
    # the position the steps made (None: none of them moved it)
    movers: list[Placed] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    liquidated: bool = False
    made_pos: int | None = None

    def unsettled(self, now: float) -> Unsettled:
        """What its steps did, for the next signal on the account to find in the view."""
        return Unsettled(
            sub_account_id=self.item.link.sub_account_id,
            contract=self.item.contract,
            made_pos=self.made_pos,
            placed=tuple(self.placed),
            cancelled=tuple(self.cancelled),
            movers=tuple(self.movers),
            unanswered=tuple(self.unanswered),
            liquidated=self.liquidated,
            noted_at=now,
        )

    def cancels(self) -> bool:
        """Whether the plan cancels working orders (a resize's exits, before re-placing them)."""
        return any(po.kind == "cancel" for po, _ni in self.steps)

    def entry_step(self) -> int | None:
        """The step that opens the position a plan that opens one is for (reverse, open,
        re-enter, add): its first order that is no exit (a reversal's liquidation, an open's
        cancels of the other side go before it; a DCA add's exits after). None for any other
        plan."""
        if self.plan.action not in _OPENS:
            return None
        for po, ni in self.steps:
            if po.kind in ("order", "strategy") and not placed_as_exit(ni.cl_ord_id):
                return po.step
        return None


# the plans that open (or add to) a position: what ``Prepared.entry_step`` looks for
_OPENS = frozenset(
    {PositionAction.REVERSE, PositionAction.OPEN, PositionAction.REENTER, PositionAction.ADD}
)


def missed_entry(how: Literal["rejected", "unavailable", "unsent"], why: str) -> Shortfall:
    """The shortfall of a plan whose entry step did not go after earlier steps did (a
    reversal's close, an open's cancels): the account did less than asked exactly as a plan
    that could only close, and its result says so (``verdicts``: "closed only: …", the
    trader's count given back). ``how``: the broker refused it, would not take the request
    (a p-ticket, a 429), or it was not sent (past the TTL, after a step that failed); ``why``
    the broker's text or why it was not sent. Kept as it was, the row said accepted
    with no reason, the broker's text only in the account's messages, and the entry never
    made spent the trader's max-signals turn."""
    if how == "rejected":
        return Shortfall(ENTRY_REFUSED, f"the broker refused the entry: {why}")
    if how == "unavailable":
        return Shortfall(ENTRY_REFUSED, f"the broker did not take the entry: {why}")
    return Shortfall(ENTRY_UNSENT, f"the entry was not sent: {why}")


def unsent_plan(short: Shortfall | None, why: str) -> Shortfall:
    """The shortfall of a plan that opens nothing (a close, a cancel) none of whose steps
    went (``why``: past the TTL, its account's lock taken by another signal until then):
    the signal's other accounts traded it, and its row said nothing of this one, which stayed
    open. A shortfall the plan had (a close only for --direction) keeps its cause and words."""
    said = f"nothing was sent: {why}"
    if short is None:
        return Shortfall(ENTRY_UNSENT, said)
    return Shortfall(short.cause, f"{short.why}; {said}", no_entry=short.no_entry)


# The cause of an account planned from no view (a reconnect): missing is not flat (rule 6).
# As a shortfall, the row of a close says "not traded: …" too (it said accepted, no reason).
VIEW_UNSYNCED = "unsynced"
UNSYNCED = Shortfall(VIEW_UNSYNCED, "broker view not synced: nothing sent (missing is not flat)")


def not_planned(it: WorkItem, short: Shortfall) -> AccountResult:
    """The result of an item its account's view could not be planned from (``UNSYNCED``,
    ``unsettled.unsettled_shortfall``): its shortfall names it on the row, for an entry and
    a close alike."""
    return AccountResult(it.trader_id, it.link.sub_account_id, "nothing", short.why, short=short)


# (env, the login, the broker's account id): one account at the broker (``account_key``)
def broker_account(link: LinkConfig) -> AccountKey:
    """The account at the broker a link trades. Two users who add the same Tradovate login
    share its session, and each has a sub-account row for the same account: keyed by the row,
    two alerts on it were not serialized and both opened from flat (rule 3). Keyed without
    the login, another login's row naming the same id by hand was taken for it, and so was a
    row that only typed the login's username, holding no credential of it (rule 5)."""
    return link_account(link)


def lock_key(link: LinkConfig) -> AccountKey:
    """The account at the broker ``link`` trades, for what serialises its orders (its lock,
    and the record of what its view lags that an alert holding it reads): ``broker_account``,
    but a
    demo/live row holding no proven credential of its login yet (its proof not stored yet, or
    failing to be) shares the login's lock all the same. It trades through the login's session
    once the pool let it join with the session's password, so it is that account: keyed apart,
    two alerts through two users' rows of one Tradovate account, one proven and one not, were
    not serialised (rule 3). A row naming the username with no credential shares a lock with
    the login it names, nothing else (``broker_account`` still keeps its plans, halts and
    flattens apart)."""
    if link.env == "paper" or not link.username:
        return broker_account(link)
    return (link.env, link.username.lower(), link.broker_account_id)


def key_order(key: AccountKey) -> tuple[str, bool, str, int]:
    """A total order of account keys: a row's id (an int) and a username (a str) in one sort
    raised TypeError, and the signal failed before it was stored, for every follower."""
    env, login, broker_account_id = key
    return (env, isinstance(login, str), str(login), broker_account_id)


def may_be_account(key: AccountKey, env: str, account_id: int, broker_account_id: int) -> bool:
    """Whether ``key`` may be the account at the broker that a login row (``accounts.id``)
    names by ``broker_account_id``, known without the login's username (an open intent tells
    its row only: ``Dispatcher.busy``). Paper: exactly its own. Demo/live: any login's account
    with that id; two logins name one id only where an id was typed by hand (``accounts
    add-sub``), and a lock taken for one too many only defers a look-up to a later pass."""
    if env == "paper":
        return key == account_key(env, account_id, None, broker_account_id, has_credential=False)
    return key[0] == env and key[2] == broker_account_id


def by_broker_account(links: Iterable[LinkConfig]) -> dict[AccountKey, list[LinkConfig]]:
    """The rows naming each account at the broker (of one login), in sub-account order: what
    acts on the account itself (protection, the orphan sweep) acts once per account, not once
    per row."""
    groups: dict[AccountKey, list[LinkConfig]] = {}
    for link in sorted(links, key=lambda lk: lk.sub_account_id):
        groups.setdefault(broker_account(link), []).append(link)
    return groups


# What a plan does, most first: of several traders on one account, the plan that does most is
# the one sent (a close-only plan beside an entry would leave the entry unsent).
_RANK = {
    action: i
    for i, action in enumerate(
        (
            PositionAction.REVERSE,
            PositionAction.OPEN,
            PositionAction.REENTER,
            PositionAction.ADD,
            PositionAction.REDUCE,
            PositionAction.CLOSE,
            PositionAction.CANCEL,
        )
    )
}


def _rank(planned: Prepared | AccountResult) -> tuple[int, int]:
    """Sort key of a planned item: plans with orders before results without, by ``_RANK``."""
    if isinstance(planned, Prepared):
        return (0, _RANK.get(planned.plan.action, len(_RANK)))
    return (1, 0)


def plan_groups(
    groups: list[list[WorkItem]],
    signal_id: int | None,
    tag: str | None,
    expires_at: datetime,
    results: list[AccountResult],
) -> list[Prepared]:
    """Plan each account at the broker once. Where several traders reach one account (two
    traders of one user splitting longs and shorts, or windows), every one is planned and
    the plan that does most is taken (``_RANK``): the first in line used to win, and a
    long-only trader's close-only plan left the short-only one's entry unsent."""
    prepared: list[Prepared] = []
    for group in groups:
        planned = [_plan_one(it, signal_id, tag, expires_at) for it in group]
        best = min(range(len(planned)), key=lambda i: _rank(planned[i]))
        winner, chosen = group[best], planned[best]
        for i, (it, outcome) in enumerate(zip(group, planned, strict=True)):
            if i == best:
                continue
            if isinstance(chosen, Prepared):
                # its entry counts were moved by the fan-out: the engine puts them back; and
                # its own plan, a partial exit (no entry: ``trim``), gives back its every-Nth
                own = outcome.plan.short if isinstance(outcome, Prepared) else None
                outcome = AccountResult(
                    it.trader_id,
                    it.link.sub_account_id,
                    "ignore",
                    f"account {it.link.sub_name} traded by trader {winner.trader_id}"
                    f" (sub-account {winner.link.sub_account_id}) for this signal",
                    outranked_by=winner.trader_id,
                    short=own if own is not None and own.no_entry else None,
                )
            elif isinstance(outcome, Prepared):  # cannot be: ranked above the chosen one
                continue
            results.append(outcome)
        # last: the signal's detail keeps one result per sub-account, the last one given
        if isinstance(chosen, Prepared):
            prepared.append(chosen)
        else:
            results.append(chosen)
    return prepared


def _plan_one(
    it: WorkItem, signal_id: int | None, tag: str | None, expires_at: datetime
) -> Prepared | AccountResult:
    """One item's plan and its intents, or why it sends nothing."""
    link = it.link
    state = account_state(it.broker, link.broker_account_id, it.contract)
    if state is None:
        return not_planned(it, UNSYNCED)
    try:
        plan = it.plan(state)
    except (JtradesError, ValueError) as exc:
        return AccountResult(it.trader_id, link.sub_account_id, "nothing", str(exc))
    prefix = tag if tag is not None else cl_ord_prefix(signal_id or 0, link.sub_account_id)
    steps = [
        intent_for(
            po,
            prefix=prefix,
            signal_id=signal_id,
            trader_id=it.trader_id,
            sub_account_id=link.sub_account_id,
            symbol=it.contract.symbol,
            expires_at=expires_at,
        )
        for po in sorted(plan.orders, key=lambda o: o.step)
    ]
    if not steps:
        return AccountResult(
            it.trader_id, link.sub_account_id, str(plan.action), plan.reason, short=plan.short
        )
    prepared = Prepared(it, plan, steps, state.net_pos)
    entry = prepared.entry_step() if plan.short is None else None
    for po, ni in steps:
        if po.step == entry:
            # the step that makes the entry the alert asked for, said on its intent: a restart
            # gives a trader's count back unless one reached the broker (give_back_unsent)
            ni.request["entry"] = True
    return prepared


def number_steps(prepared: list[Prepared], ids: Sequence[int | None]) -> None:
    """Hand each account its intents' ids, in the order their steps were written."""
    pos = 0
    for p in prepared:
        p.ids = list(ids[pos : pos + len(p.steps)])
        pos += len(p.steps)


def unwritten(accounts: Sequence[Prepared | WorkItem]) -> list[AccountResult]:
    """The results of accounts whose intents could not be written (or, held by another
    signal, were never planned: ``WorkItem``): nothing sent."""
    why = not_sent("the order intents could not be written")
    out = []
    for a in accounts:
        it, action = (a.item, str(a.plan.action)) if isinstance(a, Prepared) else (a, "nothing")
        out.append(AccountResult(it.trader_id, it.link.sub_account_id, action, why))
    return out
