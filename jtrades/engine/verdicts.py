"""A signal's verdict, and the counts it gives back, once its fan-out and its orders are known.

Split from ``engine`` (which runs the signal's lifecycle) because both depend on the same
subtle facts, in memory, after the orders: which trader read the signal its own way, which
refused it, and which account sent anything. Rule 9 (every rejection is explainable) is what
the verdict serves, and "an entry never made uses no count" what the giving back does.

Counts. A trader none of whose accounts sent anything the broker took made no entry: its counts
go back (no account planned, every plan ignored it, outranked, unsynced, expired, or every
order refused by the broker). The recorder counts an entry its own filters passed whatever its
traders then decided (``store.trading``'s ``recorder_counters``), so its count goes back only
when no follower could act on it at all: every order expired unsent, was refused by the
broker or not taken by it (a p-ticket, a 429), every account was at its --max-contracts
already, or, no trader refusing it, no account was planned (contracts not found, no
sub-account linked) or could plan ("nothing": an unsynced view). A signal's
``detail`` (what a restart counts) says the same as memory.

An every-Nth refusal (``trader_seen``, or the recorder's ``nth_seen`` without ``entry``) is
never given back, for the recorder or a trader alike: the refused signal was that filter's
turn whatever was sent; given back, a follower refused by every-Nth that sent nothing would
be refused again by every next signal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jtrades.engine.config_cache import RecorderConfig
from jtrades.engine.counters import Kind, SessionCounters, Undo
from jtrades.engine.dispatch import AccountResult
from jtrades.engine.filters import Rejection, reads_own_way
from jtrades.engine.send import UNAVAILABLE

Verdict = tuple[str, str | None, str | None]
ACCEPTED: Verdict = ("accepted", None, None)
_DIRECTION = "direction: "  # how the planner's direction refusal starts (``planning._entry``)
# what the planner's reason says of an entry or add at the cap (``planning._entry``,
# ``resize.plan_add``)
_CAPPED = "at --max-contracts "


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

    def filtered(self) -> Verdict:
        """Rejected when every trader was refused (or, none to ask, the recorder refused):
        known before any order, so a signal refused for every trader that plans nothing is
        stored with the refusal all the same."""
        if len(self.rejections) != len(self.rec.traders):
            return ACCEPTED
        first = self._first()
        return ("rejected", *first) if first is not None else ACCEPTED

    def settle(
        self, accounts: list[AccountResult], counters: SessionCounters, undo: Undo, ttl: float
    ) -> Verdict:
        """The counts and the verdict only the orders can settle: an entry counted but never
        made refused the next real one (max signals) and ran a cooldown from nothing, and a
        row "accepted" with no reason hid why nothing was traded (rule 9). A request the
        broker would not take (``AccountResult.unavailable``) is named as such, not as the TTL;
        an entry every account ignored at --max-contracts is rejected for ``max_contracts``."""
        detail = self.detail
        was_entry = bool(detail["entry"] or detail["trader_entries"])
        reached = {a.trader_id for a in accounts if _reached(a)}
        for tid in list(detail["trader_entries"]):
            if tid not in reached:
                detail["trader_entries"].remove(tid)
                _put_back(counters, undo, "trader", tid)
        verdict = self.filtered()
        if reached:
            return verdict
        expired = any(a.expired for a in accounts)
        turned_down = [a for a in accounts if a.rejected]  # by the broker
        # the broker would not take the requests (a p-ticket, a 429): nothing reached it
        unavailable = [a for a in accounts if a.unavailable]
        capped = bool(accounts) and all(_capped(a) for a in accounts)
        stuck = bool(self.rec.traders) and all(a.action == "nothing" for a in accounts)
        if detail["entry"] and (
            expired or turned_down or unavailable or capped or (stuck and not self.rejections)
        ):
            detail["entry"] = detail["nth_seen"] = False
            _put_back(counters, undo, "recorder", self.rec.id)
        if verdict[0] != "accepted":
            return verdict
        if turned_down:  # the row said accepted, 0 orders: a refused close read as a flat one
            # before the TTL: the steps after a refused one are written expired (a reversal's
            # entry after its refused close), and the row named the TTL, not the refusal
            why = next((m for a in turned_down for m in a.messages), "no reason given")
            return ("rejected", "broker", f"the broker refused its orders: {why}")
        if unavailable:  # before the TTL: the row blamed the TTL for a penalty ticket
            said = [m for a in unavailable for m in a.messages]
            why = next((m for m in said if UNAVAILABLE in m), said[0] if said else "no reason")
            return ("rejected", "broker", f"the broker did not take its orders: {why}")
        if expired:
            why = f"its orders waited past the {ttl:g}s signal TTL and were not sent: not traded"
            return ("expired", None, why)
        # each account refused by a filter, not all by the same trader, or ignored for a limit
        # of its plan (--direction, --max-contracts): the count above (every trader refused)
        # missed it, and the row said accepted with no reason
        refused = self._refused_traders()
        if accounts and all(a.trader_id in refused or _ignored(a) for a in accounts):
            # none refused by a filter: every account ignored it for --direction/--max-contracts
            first = self._first() or next(w for a in accounts if (w := _ignored(a)) is not None)
            return ("rejected", *first)
        if stuck and was_entry:  # accepted by every filter, and no follower could act on it
            return ("accepted", None, f"not traded: {self._why_not(accounts)}")
        return verdict

    def _first(self) -> tuple[str, str] | None:
        """The refusal the row names. The recorder's own, unless a trader read the signal its
        own way: that refusal (a side the recorder's --direction forbids) did not bind such a
        trader, and naming it hid the window or cooldown that did. The traders it bound are
        listed with it verbatim; a trader's own refusals are not (their reason names the
        trader, and ``check_entry``'s never is a direction)."""
        mine = (self.refused.filter, self.refused.reason) if self.refused is not None else None
        if self.own_way:
            for r in self.rejections:
                if r != mine:
                    return r
        if mine is not None:
            return mine
        return self.rejections[0] if self.rejections else None

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
        if accounts:
            return accounts[0].reason
        for per_trader in self.detail["traders"].values():
            for key, why in per_trader.items():
                if key not in ("filter", "reason"):
                    return str(why).removeprefix("not traded: ")
        return "its followers link no sub-account that could trade it"


def _reached(a: AccountResult) -> bool:
    """Something of the account's plan went to the broker and was not refused (accepted, or
    its answer never came): an order the broker refused changed nothing, and counted as an
    entry it refused the strategy's next real one (max signals) and ran a cooldown."""
    return a.sent + a.unknown > 0


def _direction(a: AccountResult) -> bool:
    return a.action == "ignore" and a.reason.startswith(_DIRECTION)


def _capped(a: AccountResult) -> bool:
    """The account's plan ignored the entry: its position (and entries working) is at the
    cap already."""
    return a.action == "ignore" and _CAPPED in a.reason


def _ignored(a: AccountResult) -> tuple[str, str] | None:
    """The (filter, reason) of a plan that ignored the entry for a limit the user set
    (--direction, --max-contracts), as the row names it; None for any other outcome."""
    if _direction(a):
        return "direction", a.reason.removeprefix(_DIRECTION)
    if _capped(a):
        return "max_contracts", a.reason
    return None


def _put_back(counters: SessionCounters, undo: Undo, kind: Kind, key: int) -> None:
    if (kind, key) in undo:
        counters.undo({(kind, key): undo[(kind, key)]})
