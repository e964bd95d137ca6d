"""A signal's verdict, and the counts it gives back, once its fan-out and its orders are known.

Split from ``engine`` (which runs the signal's lifecycle) because both depend on the same
subtle facts, in memory, after the orders: which trader read the signal its own way, which
refused it, and which account sent anything. Rule 9 (every rejection is explainable) is what
the verdict serves, and "an entry never made uses no count" what the giving back does.

Counts. A trader none of whose accounts made the entry made none: its counts go back (no
account planned, every plan ignored it or only closed, outranked, unsynced, expired, or every
order refused by the broker). The recorder counts an entry its own filters passed whatever its
traders then decided (``store.trading``'s ``recorder_counters``), so its count goes back only
when no follower could act on it at all: an account sent nothing, its orders expired unsent,
refused by the broker or not taken by it (a p-ticket, a 429); every account was at its
--max-contracts already, halted (``halt --account``: as the global switch, which counts no
entry) or, for an add, flat; or, no trader refusing it, no account was planned (contracts not
found, no sub-account linked) or could plan ("nothing": an unsynced view). A signal's
``detail`` (what a restart counts) says the same as memory. An account is judged by the plan
sent to it: of several traders on one account, the one whose plan went (``_as_sent``).

What a plan left out it says in a field, not in words (``planning.Shortfall``: a cause the
row names as its filter, and the words): matched on the words, a reworded reason changed
verdicts and counts.

An every-Nth refusal (``trader_seen``, or the recorder's ``nth_seen`` without ``entry``) is
never given back, for the recorder or a trader alike: the refused signal was that filter's
turn whatever was sent; given back, a follower refused by every-Nth that sent nothing would
be refused again by every next signal. Unless every account (the trader's, or all) took the
alert as no entry at all, a partial exit (``trim``): that was no turn of an entry filter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jtrades.engine.config_cache import LinkConfig, RecorderConfig
from jtrades.engine.counters import Kind, Moved, SessionCounters, Undo
from jtrades.engine.dispatch import AccountResult
from jtrades.engine.fanout import INERT_GATES
from jtrades.engine.filters import Rejection, reads_own_way
from jtrades.engine.plan_context import HALTED, PositionAction
from jtrades.engine.plan_context import held_back as is_held_back
from jtrades.engine.send import UNAVAILABLE

Verdict = tuple[str, str | None, str | None]
ACCEPTED: Verdict = ("accepted", None, None)
# The causes (``planning.Shortfall``) of a plan that left out the entry for a limit the user
# set on the account: the row names the cause as its filter when every account did so.
# --direction and --max-contracts only when the plan ignored the signal (a reversal into a
# forbidden side that closed is a close the strategy asked for); the kill switch whatever the
# plan did instead, as the global switch's refusal does (its closes pass all the same).
_IGNORED_FOR = frozenset({"direction", "max_contracts"})
# The causes that held back an entry the account would have taken but for its state (its
# position at the cap, its login halted, no position for an add to add to): an entry every
# account left out for one of them is no follower's, and the recorder's count goes back. Not
# a cause the account's settings refuse such an entry for whatever its state (--direction,
# an add without --dca: ``plan_context.NEEDS_DCA``): that is the follower's choice, and the
# recorder counts the strategy's entry whatever its followers chose. Nor a failure at the
# broker after something went (``ENTRY_REFUSED``): the follower acted, it closed.
# How many refused traders an accepted row names (``Judged._refusals``); each one's refusal is
# in its ``detail`` all the same.
_NAMED_REFUSALS = 5
# The filter a row names when what refused the signal is other users' (``Judged._owners``).
FOLLOWERS = "followers"
# the plans whose entry follows the close of the position held (``_closed``)
_CLOSES_FIRST = frozenset({str(PositionAction.REVERSE), str(PositionAction.REENTER)})
_REDUCE = str(PositionAction.REDUCE)
# the plans that only close or trim (``_closed``)
_CLOSES_ONLY = frozenset({str(PositionAction.CLOSE), str(PositionAction.REDUCE)})


@dataclass(frozen=True, slots=True)
class Judged:
    """What the filters said of one signal: the recorder's refusal (``entry_only``, else the
    signal never got this far), whether some trader read it its own way (a ``ForeignEntry``
    was offered: such a trader is not bound by that refusal), each refused trader's
    (filter, reason) as ``Fanout.work_items`` gives them, and the signal's ``detail``."""

    rec: RecorderConfig
    refused: Rejection | None
    own_way: bool
    rejections: list[tuple[str, str]]
    detail: dict[str, Any]
    # the recorder owner's traders (``_owners``): asked once per account, and a public
    # recorder's followers are hundreds
    owned: frozenset[int] = field(init=False, repr=False)
    # every trader of the recorder, for ``_told``
    followers: frozenset[int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        owned = frozenset(t.id for t in self.rec.traders if t.user_id == self.rec.user_id)
        object.__setattr__(self, "owned", owned)
        object.__setattr__(self, "followers", frozenset(t.id for t in self.rec.traders))

    def filtered(self) -> Verdict:
        """Rejected when every trader was refused (or, none to ask, the recorder refused):
        known before any order, so a signal refused for every trader that plans nothing is
        stored with the refusal all the same."""
        if len(self.rejections) != len(self.rec.traders):
            return ACCEPTED
        first = self._first() or self._refused_elsewhere()
        return ("rejected", *first) if first is not None else ACCEPTED

    def settle(
        self,
        accounts: list[AccountResult],
        counters: SessionCounters,
        undo: Undo,
        ttl: float,
        moved: Moved | None = None,
    ) -> Verdict:
        """The counts and the verdict only the orders can settle: an entry counted but never
        made refused the next real one (max signals) and ran a cooldown from nothing, and a
        row "accepted" with no reason hid why nothing was traded (rule 9). A request the
        broker would not take (``AccountResult.unavailable``) is named as such, not as the TTL;
        an entry every account ignored for a limit of its own is rejected for it (--direction,
        --max-contracts, the account's kill switch). An accepted signal some account followed
        only in part (closed only, or not at all: ``planning.Shortfall``) says so in its
        reason: its row, the webhook's answer and ``signals list`` showed no reason, and the
        follower sat flat while the strategy was short. ``moved``: the counts as the signal
        left them when it was stored (``_put_back``)."""
        moved = moved or {}
        detail = self.detail
        was_entry = bool(detail["entry"] or detail["trader_entries"])
        reached = {a.trader_id for a in accounts if _reached(a)}
        for tid in list(detail["trader_entries"]):
            if tid not in reached:
                detail["trader_entries"].remove(tid)
                _put_back(counters, undo, moved, "trader", tid)
        for tid in list(detail["trader_seen"]):  # its every-Nth turn, on an alert it trimmed
            theirs = [a for a in accounts if a.trader_id == tid]
            if theirs and all(_no_entry(a) for a in theirs):
                detail["trader_seen"].remove(tid)
                _put_back(counters, undo, moved, "trader", tid)
        judged = _as_sent(accounts)
        verdict = self._settled(judged, bool(reached), was_entry, counters, undo, moved, ttl)
        if verdict == ACCEPTED:
            said = [*self._refusals(judged), *self._shortfalls(judged)]
            return ("accepted", None, "; ".join(said) or None)
        return verdict

    def _settled(
        self,
        accounts: list[AccountResult],
        reached: bool,
        was_entry: bool,
        counters: SessionCounters,
        undo: Undo,
        moved: Moved,
        ttl: float,
    ) -> Verdict:
        detail = self.detail
        verdict = self.filtered()
        if reached:
            return verdict
        # Failures at the broker or with the TTL of accounts none of whose steps went: one
        # that closed (or cancelled) and then lost its entry acted on the signal, as a
        # close-only plan does, and its row says so (``_shortfalls``), not "rejected".
        failed = [a for a in accounts if not _went(a)]
        expired = any(a.expired for a in failed)
        turned_down = [a for a in failed if a.rejected]  # by the broker
        # the broker would not take the requests (a p-ticket, a 429): nothing reached it
        unavailable = [a for a in failed if a.unavailable]
        held_back = bool(accounts) and all(is_held_back(a.short) for a in accounts)
        # every account trimmed (``trim``): no entry of the strategy's, its every-Nth turn too
        trimmed = bool(accounts) and all(_no_entry(a) for a in accounts)
        stuck = bool(self.rec.traders) and all(a.action == "nothing" for a in accounts)
        if (detail["entry"] or (trimmed and detail["nth_seen"])) and (
            expired or turned_down or unavailable or held_back or (stuck and not self.rejections)
        ):
            detail["entry"] = detail["nth_seen"] = False
            _put_back(counters, undo, moved, "recorder", self.rec.id)
        if verdict[0] != "accepted":
            return verdict
        if turned_down:  # the row said accepted, 0 orders: a refused close read as a flat one
            # before the TTL: the steps after a refused one are written expired (a reversal's
            # entry after its refused close), and the row named the TTL, not the refusal
            said = [m for a in turned_down if self._owners(a.trader_id) for m in a.messages]
            why = said[0] if said else self._elsewhere(turned_down, "no reason given")
            return ("rejected", "broker", f"the broker refused its orders: {why}")
        if unavailable:  # before the TTL: the row blamed the TTL for a penalty ticket
            said = [m for a in unavailable if self._owners(a.trader_id) for m in a.messages]
            told = next((m for m in said if UNAVAILABLE in m), said[0] if said else None)
            why = told or self._elsewhere(unavailable, "no reason")
            return ("rejected", "broker", f"the broker did not take its orders: {why}")
        if expired:
            why = f"its orders waited past the {ttl:g}s signal TTL and were not sent: not traded"
            return ("expired", None, why)
        # each account refused by a filter, not all by the same trader, or left out for a limit
        # of its own (--direction, --max-contracts, its kill switch): the count above (every
        # trader refused) missed it, and the row said accepted with no reason
        refused = self._refused_traders()
        if accounts and all(a.trader_id in refused or _limited(a) for a in accounts):
            named = self._first() or self._limit_own(accounts) or self._refused_elsewhere()
            return ("rejected", *(named or self._limit(accounts)))
        if stuck and was_entry:  # accepted by every filter, and no follower could act on it
            said = [*self._refusals(accounts), f"not traded: {self._why_not(accounts)}"]
            return ("accepted", None, "; ".join(said))
        return verdict

    def _limit(self, accounts: list[AccountResult]) -> tuple[str, str]:
        """The (filter, reason) of an entry every account left out for a limit of its own
        (none refused by a filter): the first account's; for the kill switch, every halted
        account named (a global halt's reason names none: this one is one account's)."""
        own = self._limit_own(accounts)
        if own is not None:
            return own
        # another user's limits are theirs, which ones too (a halt, a loss): ``_owners``
        return FOLLOWERS, "the accounts of other users are at limits of their own"

    def _limit_own(self, accounts: list[AccountResult]) -> tuple[str, str] | None:
        """``_limit`` of the recorder owner's accounts; None when none of them is limited."""
        first = next(
            (a.short for a in accounts if a.short and _limited(a) and self._owners(a.trader_id)),
            None,
        )
        if first is None:
            return None
        if first.cause != HALTED:
            return first.cause, first.why
        return HALTED, self._halted_on([a for a in accounts if _cause(a) == HALTED])

    def _refusals(self, accounts: list[AccountResult]) -> list[str]:
        """The refusals of the traders a filter refused, on a signal another trader took
        (else the row is rejected with them): "trader 3: max_signals: …", "closed only: …"
        when its account closed all the same (a reversal's refused entry). The row said
        accepted with no reason, and nothing told why that trader's account stayed flat.
        Only the recorder owner's traders are named: the row's reason is the webhook's answer
        too, which the token's holder reads, and another user's refusal says that user's P&L
        and limits; those are counted (each in the signal's ``detail``). A switched-off
        trader refused nothing: it trades nothing at all (``fanout.inert``)."""
        said: list[str] = []
        others = 0
        bound = self._refused_traders()
        for t in self.rec.traders:
            own = self.detail["traders"].get(str(t.id), {})
            if "filter" in own:
                if own["filter"] in INERT_GATES:
                    continue
                why = f"{own['filter']}: {own['reason']}"
            elif self.refused is not None and t.id in bound:
                why = f"{self.refused.filter}: {self.refused.reason}"
            else:
                continue
            if not self._owners(t.id):
                others += 1
                continue
            closed = any(a.trader_id == t.id and _went(a) and _closed(a) for a in accounts)
            said.append(f"trader {t.id}: {'closed only: ' if closed else ''}{why}")
        if len(said) > _NAMED_REFUSALS:
            more = len(said) - _NAMED_REFUSALS
            said[_NAMED_REFUSALS:] = [f"{more} more trader{'s' if more > 1 else ''} refused"]
        if others:
            said.append(f"{others} trader{'s' if others > 1 else ''} of other users refused")
        return said

    def _shortfalls(self, accounts: list[AccountResult]) -> list[str]:
        """What each account that followed an accepted signal only in part says (its plan's
        ``Shortfall``): "closed only: …" or "not traded: …", naming the sub-account when the
        signal reached more than one; nothing when every account did what the alert asked. One
        none of whose steps went (``_unsent``: its login's socket dropped as the fan-out
        reached it, the broker refused its first step) says so too: the row said accepted with
        no reason while that account never traded. The accounts of a trader a filter refused
        are left out: ``_refusals`` names it."""
        refused = self._refused_traders()
        said: list[str] = []
        others = 0
        for a in accounts:
            unsent = _unsent(a)
            if (a.short is None and unsent is None) or a.trader_id in refused:
                continue
            if not self._owners(a.trader_id):
                others += 1
                continue
            if a.short is None:
                text = f"not traded: {unsent}"
            else:
                why = self._halted_on([a]) if a.short.cause == HALTED else a.short.why
                text = f"{'closed only' if _closed(a) and _went(a) else 'not traded'}: {why}"
            if len(accounts) > 1:
                link = self._link(a.sub_account_id)
                text = f"{link.sub_name if link else f'sub-account {a.sub_account_id}'}: {text}"
            if text not in said:
                said.append(text)
        if others:
            plural = "s" if others > 1 else ""
            said.append(f"{others} account{plural} of other users did less than asked")
        return said

    def _halted_on(self, accounts: list[AccountResult]) -> str:
        """The kill switch's reason naming the accounts (``halt --account LABEL``) it stopped."""
        # the owner's only: another user's halt is theirs (``_owners``)
        mine = [a for a in accounts if self._owners(a.trader_id)]
        links = [(a.sub_account_id, self._link(a.sub_account_id)) for a in mine]
        named = (link.label if link else f"(sub-account {sub})" for sub, link in links)
        labels = list(dict.fromkeys(named))
        which = f"account {labels[0]}" if len(labels) == 1 else f"accounts {', '.join(labels)}"
        return f"trading is halted on {which} (kill switch); only closes pass"

    def _link(self, sub_account_id: int) -> LinkConfig | None:
        """The sub-account as the fan-out read it (its name, its login's label)."""
        for t in self.rec.traders:
            for link in t.links:
                if link.sub_account_id == sub_account_id:
                    return link
        return None

    def _first(self) -> tuple[str, str] | None:
        """The refusal the row names. The recorder's own, unless a trader read the signal its
        own way: that refusal (a side the recorder's --direction forbids) did not bind such a
        trader, and naming it hid the window or cooldown that did. The traders it bound are
        listed with it verbatim; a trader's own refusals are not (their reason names the
        trader, and ``check_entry``'s never is a direction)."""
        mine = (self.refused.filter, self.refused.reason) if self.refused is not None else None
        candidates = [r for r in self.rejections if r != mine] if self.own_way else []
        if mine is None:
            candidates.extend(self.rejections)
        # the recorder's own; read its own way by every trader, only when it bound one (or
        # there is none to ask): one that bound none hid the owner's own limit
        elif not self.own_way or mine in self.rejections or not self.rec.traders:
            candidates.append(mine)
        return next((r for r in candidates if r == mine or self._told(r[1])), None)

    def _refused_elsewhere(self) -> tuple[str, str] | None:
        """The refusal a row names when every one it could name is another user's: the filter
        ``FOLLOWERS``, and how many of their traders were refused; not which filter (a user not
        approved, a daily loss hit) nor what it said (``_owners``). None when none was."""
        if not self.rejections:
            return None
        refused = self._refused_traders()
        n = sum(1 for t in self.rec.traders if t.id in refused and not self._owners(t.id))
        return FOLLOWERS, f"refused for {n} trader{'s' if n != 1 else ''} of other users"

    def _elsewhere(self, accounts: list[AccountResult], none: str) -> str:
        """What a broker said of other users' accounts, in general words (``_owners``); ``none``
        when one of the owner's failed too (its words were none) or there is no account."""
        if not accounts or any(self._owners(a.trader_id) for a in accounts):
            return none
        n = len(accounts)
        return f"{n} account{'s' if n > 1 else ''} of other users"

    def _refused_traders(self) -> set[int]:
        """Traders refused by a filter: their own, or one of the recorder's said of their own
        reading (both on ``detail["traders"]``), and those the recorder's refusal binds."""
        out = {int(k) for k, v in self.detail["traders"].items() if "filter" in v}
        if self.refused is not None:
            out |= {
                t.id for t in self.rec.traders if not (self.own_way and reads_own_way(t.overridden))
            }
        return out

    def _why_not(self, accounts: list[AccountResult]) -> str:
        """Why no follower could act: the first account's, else the first sub-account the
        fan-out left out (its contract not found), else no sub-account at all."""
        mine = [a for a in accounts if self._owners(a.trader_id)]
        if mine:
            return mine[0].reason
        if accounts:  # another user's account: its broker's words are that user's
            return "no account of a follower could trade it"
        # the sub-accounts the fan-out left out, each with why (beside a refusal's fields)
        notes = [
            (int(tid), str(why))
            for tid, per_trader in self.detail["traders"].items()
            for key, why in per_trader.items()
            if key not in ("filter", "reason")
        ]
        told = next((why for tid, why in notes if self._owners(tid)), None)
        if told is not None:
            return told.removeprefix("not traded: ")
        if notes:  # another user's sub-account left out: its broker's words are that user's
            return "no sub-account of a follower could trade it"
        return "its followers link no sub-account that could trade it"

    def _owners(self, trader_id: int | None) -> bool:
        """Whether ``trader_id`` is a trader of the recorder's owner: what a row may say of it.
        The reason is the webhook's answer too, read by whoever holds the token, and another
        user's refusal or shortfall tells that user's P&L, limits, halted logins and account
        names: those are counted or said in general words (each in the signal's ``detail``)."""
        return trader_id in self.owned

    def _told(self, text: str) -> bool:
        """Whether a refusal's words (a trader's are "trader N: …", ``fanout``) may be said:
        the recorder's own, or one of its owner's traders'."""
        head, said, _ = text.partition(": ")
        number = head.removeprefix("trader ")
        if said and number != head and number.isdigit() and int(number) in self.followers:
            return int(number) in self.owned  # read once: asked per refusal, hundreds of them
        return True


def _as_sent(accounts: list[AccountResult]) -> list[AccountResult]:
    """Each account at the broker once, as the plan sent to it: where several traders reach
    one account, the results of those another's plan outranked (``plan_groups``) are left out.
    They carry no shortfall of their own, so counted beside a halted close-only winner, the
    account was not "every account halted": the row said accepted and the recorder's turn was
    spent. Their traders' counts are settled apart (``settle``: they made no entry)."""
    return [a for a in accounts if a.outranked_by is None]


def _went(a: AccountResult) -> bool:
    """Something of the account's plan went to the broker and was not refused (accepted, or
    its answer never came), whatever it was; of a reduce, its order: the cancels of its exits
    go first, and a reduce the broker refused was stored "closed only", nothing closed."""
    if a.action == _REDUCE:
        return a.moved
    return a.sent + a.unknown > 0


def _unsent(a: AccountResult) -> str | None:
    """Why an account without a shortfall of its own sent nothing, when none of its steps
    went: the broker refused them, would not take them, or they were not sent (past the TTL);
    None when something went or nothing was to go."""
    if a.short is not None or _went(a):
        return None
    said = next((m.split(": ", 1)[-1] for m in a.messages), "no reason given")
    if a.rejected:
        return f"the broker refused its orders: {said}"
    if a.unavailable:
        return f"the broker did not take its orders: {said}"
    if a.expired:
        return f"its orders were not sent: {said}"
    return None


def _closed(a: AccountResult) -> bool:
    """The account closed and opened nothing: a close-only plan, a partial exit
    (``trim``: a reduce that is all of its plan), or a reversal or re-entry whose close went
    and whose entry did not (``Dispatcher._run_account``: their close is the only step before
    the entry)."""
    return a.action in _CLOSES_ONLY or (a.action in _CLOSES_FIRST and a.sent > 0)


def _reached(a: AccountResult) -> bool:
    """The account made the entry the alert asked for: its plan did all of it (no
    ``Shortfall``), and something of it went to the broker and was not refused (accepted, or
    its answer never came). An order the broker refused changed nothing, and a plan short of
    the entry only closed or cancelled: counted as an entry, either refused the strategy's
    next real one (max signals) and ran a cooldown from nothing."""
    return a.short is None and _went(a)


def _no_entry(a: AccountResult) -> bool:
    """The account took the alert as no entry at all (a partial exit: ``trim``)."""
    return a.short is not None and a.short.no_entry


def _cause(a: AccountResult) -> str | None:
    return a.short.cause if a.short is not None else None


def _limited(a: AccountResult) -> bool:
    """The account's plan left the entry out for a limit the user set on it: ignored it for
    --direction or --max-contracts, or the account is halted (whatever it closed instead)."""
    cause = _cause(a)
    return cause == HALTED or (a.action == "ignore" and cause in _IGNORED_FOR)


def _put_back(counters: SessionCounters, undo: Undo, moved: Moved, kind: Kind, key: int) -> None:
    """What the signal moved, taken back; ``moved`` holds the counts as it left them when
    other signals could start moving them too (none there: they are as it left them)."""
    if (kind, key) in undo:
        counters.give_back(kind, key, undo[(kind, key)], moved.get((kind, key)))
