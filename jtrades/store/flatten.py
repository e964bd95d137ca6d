"""``halt --flatten`` requests on the kill-switch flag, and what the engine already did for them.

The requests live in ``system_flags`` (row ``halted``) under ``flattens``, keyed by their
``requested_at`` (which also keys their liquidations' clOrdIds, ``engine.steps.flatten_prefix``)::

    {"halted": true, "by": …, "at": …,
     "flattens": {"<requested_at>": {"requested_at": …, "account": "apex-1" | null, "by": …,
                                     "progress": {…}, "done_at": … | "cancelled_at": …,
                                     "cancelled": why}}}

A request is pending until the engine marks it done or the CLI cancels it (``resume``, or a
flatten of everything that covers it). Requests accumulate: a new one never replaces one still
pending (that lost positions someone had asked to close). The CLI rewrites the flag only under
the row's lock (``status.lock_halted``); the engine writes only single statements that touch its
own request and only while it is pending, so neither overwrites what the other just committed.
The liquidations themselves are ordinary ``order_intents`` whose clOrdIds start with the
request's prefix.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from jtrades.queries import q
from jtrades.store import Executor, translate_errors
from jtrades.store import status as status_store

FLATTENS = "flattens"  # the flag's key holding the requests


@dataclass(frozen=True, slots=True)
class Liquidation:
    """An intent a flatten request wrote: a liquidation, or a cancel of a flat contract's order."""

    cl_ord_id: str
    kind: str  # liquidate | cancel
    symbol: str
    state: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class InFlight:
    """An order intent whose outcome is still open (pending, sent or unknown)."""

    sub_account_id: int
    cl_ord_id: str
    kind: str
    symbol: str
    state: str


# --- the requests on the flag (pure) ------------------------------------------------------------


def is_pending(request: Any) -> bool:
    """Neither done nor cancelled."""
    return (
        isinstance(request, dict)
        and bool(request.get("requested_at"))
        and not request.get("done_at")
        and not request.get("cancelled_at")
    )


def requests(value: Any) -> dict[str, dict[str, Any]]:
    """Every request on the flag's ``value``, by requested_at, oldest first."""
    found = value.get(FLATTENS) if isinstance(value, dict) else None
    if not isinstance(found, dict):
        return {}
    return {k: dict(v) for k, v in sorted(found.items()) if isinstance(v, dict)}


def pending(value: Any) -> dict[str, dict[str, Any]]:
    """The requests on the flag's ``value`` still to be carried out, by requested_at."""
    return {k: v for k, v in requests(value).items() if is_pending(v)}


def carried(value: Any) -> dict[str, dict[str, Any]]:
    """The requests a rewrite of the flag keeps: the pending ones, and those of single logins
    a pending flatten of everything covers (``resume_all`` may give them back); finished
    ones are not carried along."""
    found = requests(value)
    live = {covered_by(k) for k, r in found.items() if is_pending(r) and r.get("account") is None}
    return {k: r for k, r in found.items() if is_pending(r) or r.get("cancelled") in live}


def state(request: dict[str, Any]) -> str:
    """``pending``, ``done`` or ``cancelled`` (for ``jtrades status``)."""
    if request.get("cancelled_at"):
        return "cancelled"
    return "done" if request.get("done_at") else "pending"


def _same_account(a: Any, b: str) -> bool:
    return isinstance(a, str) and a.lower() == b.lower()


def add(
    flattens: dict[str, dict[str, Any]], at: datetime, account: str | None, by: str
) -> tuple[dict[str, dict[str, Any]], str]:
    """``flattens`` with a request to flatten ``account`` (None: everything) made at ``at``, and
    the requested_at of the pending request that carries it out.

    A pending request that already covers it (one of everything, or of the same account) is
    that request: nothing is added. A new request of everything covers the pending ones of
    single accounts, which end (cancelled, saying by what) so that one request, not two, closes
    each position. Several requests of different accounts are all kept."""
    out = {k: dict(v) for k, v in flattens.items()}
    covering: str | None = None
    for key, r in out.items():
        if not is_pending(r):
            continue
        if account is not None and _same_account(r.get("account"), account):
            return out, key
        if r.get("account") is None:
            covering = covering or key
    if covering is not None and account is None:
        return out, covering
    requested_at = at
    while requested_at.isoformat() in out:  # two requests in one microsecond: keys stay unique
        requested_at += timedelta(microseconds=1)
    key = requested_at.isoformat()
    if covering is not None and account is not None:
        # kept, ended as covered: a plain `resume` ends the flatten of everything and gives
        # it back while its login stays halted (``resume_all``); once per login
        if any(
            _same_account(r.get("account"), account) and r.get("cancelled") == covered_by(covering)
            for r in out.values()
        ):
            return out, covering
        out[key] = {"requested_at": key, "account": account, "by": by}
        out[key].update(cancelled_at=at.isoformat(), cancelled=covered_by(covering))
        return out, covering
    if account is None:
        for r in out.values():
            if is_pending(r):
                r.update(cancelled_at=at.isoformat(), cancelled=covered_by(key))
    out[key] = {"requested_at": key, "account": account, "by": by}
    return out, key


def covered_by(requested_at: str) -> str:
    """Why a request of one login ended: a flatten of everything does it."""
    return f"covered by the flatten of everything requested at {requested_at}"


def resume_all(
    flattens: dict[str, dict[str, Any]], at: datetime, why: str, still_halted: Collection[str]
) -> tuple[dict[str, dict[str, Any]], list[str], list[str]]:
    """A plain ``resume`` (the global switch lifted): ``flattens`` with the pending requests of
    everything cancelled; those of logins in ``still_halted`` (halted on their own, which this
    does not lift) pending still, or again where one of those requests had covered them. It
    cancelled them all, and the position of a login the operator had asked to flatten, and
    that stays halted, was left open with nothing to close it. Returns the requests it
    cancelled and those of single logins it left or put back pending."""
    out = {k: dict(v) for k, v in flattens.items()}
    ended = [k for k, r in out.items() if is_pending(r) and r.get("account") is None]
    for key in ended:
        out[key].update(cancelled_at=at.isoformat(), cancelled=why)
    halted = {a.lower() for a in still_halted}
    ends = {covered_by(k) for k in ended}
    kept = []
    for key, r in out.items():
        login = r.get("account")
        if not isinstance(login, str) or login.lower() not in halted:
            continue
        if r.get("cancelled") in ends:
            r.pop("cancelled_at", None)
            r.pop("cancelled", None)
        if is_pending(r):
            kept.append(key)
    return out, ended, kept


def cancel(
    flattens: dict[str, dict[str, Any]], at: datetime, account: str | None, why: str
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """``flattens`` with the pending requests of ``account`` (None: all of them) cancelled, and
    the requested_at of those it cancelled. A request of everything is not one account's: it
    ends with the global kill switch (``resume`` without an account)."""
    out = {k: dict(v) for k, v in flattens.items()}
    ended = []
    for key, r in out.items():
        if is_pending(r) and (account is None or _same_account(r.get("account"), account)):
            r.update(cancelled_at=at.isoformat(), cancelled=why)
            ended.append(key)
        elif (
            account is not None
            and _same_account(r.get("account"), account)
            and str(r.get("cancelled", "")).startswith(covered_by(""))
        ):
            # ended for good: a later plain `resume` gave it back, and liquidated a login
            # whose owner had ended its flatten (``resume_all``)
            r["cancelled"] = why
    return out, ended


async def cancel_for_labels(
    ex: Executor, labels: Collection[str], at: datetime, why: str
) -> list[str]:
    """End every request naming one of ``labels`` (logins being deleted), pending or kept as
    covered, under the flag's lock; the requested_at of those that were pending. A request is
    keyed by the label's text: left pending, it could not be cancelled (`resume --account`
    finds no such login) and liquidated the next login given that label, another user's."""
    flag = await status_store.lock_halted(ex, create=False)
    if flag is None:
        return []
    before = requests(flag)
    flattens, ended = before, []
    for label in labels:  # ``cancel`` ends the covered ones too: never given back by a resume
        flattens, gone = cancel(flattens, at, label, why)
        ended += gone
    if flattens != before:
        await status_store.set_halted(ex, {**flag, FLATTENS: flattens})
    return ended


# --- what the engine writes and reads -----------------------------------------------------------


async def liquidations(ex: Executor, sub_account_id: int, prefix: str) -> list[Liquidation]:
    """The liquidation and cancel intents of ``sub_account_id`` whose clOrdId starts with
    ``prefix``."""
    with translate_errors():
        rows = await ex.fetch(q("flatten.liquidations"), sub_account_id, prefix)
    return [Liquidation(**dict(r)) for r in rows]


async def in_flight(ex: Executor, sub_account_ids: list[int]) -> list[InFlight]:
    """The intents of ``sub_account_ids`` that may still put a position or a working order at
    the broker that the live view does not show yet (``Flattener``: not done while any is)."""
    with translate_errors():
        rows = await ex.fetch(q("flatten.in_flight"), sub_account_ids)
    return [InFlight(**dict(r)) for r in rows]


async def record_progress(ex: Executor, requested_at: str, progress: dict[str, Any]) -> bool:
    """Store what the request's passes closed and left, while it is pending; False when it is
    no longer (done, cancelled or gone): nothing was written."""
    with translate_errors():
        return bool(await ex.fetchval(q("flatten.progress"), requested_at, progress))


async def mark_done(
    ex: Executor, requested_at: str, done_at: datetime, progress: dict[str, Any]
) -> bool:
    """Mark the request carried out (with its last progress), so a restart does not flatten a
    second time; False when it was no longer pending (cancelled meanwhile): nothing written."""
    with translate_errors():
        row = await ex.fetchval(q("flatten.done"), requested_at, done_at.isoformat(), progress)
    return bool(row)
