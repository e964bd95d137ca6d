"""Protecting one position under its sub-account's lock, for ``engine.protector``.

Why its own module: ``engine.protector`` runs the pass — which positions are naked on two
sightings, on whose behalf each is protected, the retries within the pass and how long a wait
is borne; this module carries out one position's protection and keeps what the position's
protections must remember from one attempt to the next. Under the lock it re-reads the view
(a signal may have just placed exits or closed the position), plans from the pure decisions
(``engine.protection``, ``owed_stop``), cancels, waits for the cancels to show, places, and
lets the lock go only once the view shows what went out (``protect_waits``).

What it remembers, per (account at the broker, contract): a re-placement that failed after
its exits were cancelled (``_carry``, for ``CARRY_S``: its retry restores the take-profits and
the trailed stop price the view no longer shows); what a protection placed that the view has
not shown yet (``_unshown``: nothing more is placed for the position until it shows, or a
second stop went beside it); and the positions left short of cover this pass (``incomplete``),
which the protector tries again within the pass.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.broker.base import Broker, Contract, OcoRequest, Position, SubAccount
from jtrades.config import Settings
from jtrades.engine import owed_stop
from jtrades.engine.account_plans import broker_account, by_broker_account
from jtrades.engine.config_cache import AccountKey, ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.instruments import root_of
from jtrades.engine.plan_context import PROTECTION_PREFIX
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protect_sender import ProtectionSender
from jtrades.engine.protect_waits import (
    CANCEL_WAIT_S,
    cancels_gone,
    settled,
    shown,
    split_taken,
)
from jtrades.engine.protection import (
    ExitBook,
    Protection,
    TakeProfit,
    carry_over,
    exit_book,
    plan_protection,
    protection_orders,
    trim_take_profits,
)
from jtrades.engine.settle import note_unshown
from jtrades.engine.view_waits import Placed, shows_placed

log = structlog.get_logger(__name__)

# How long a failed re-placement's cancelled exits are carried to later passes (``_carry``),
# and how long what a protection placed may stay unshown before the view is believed.
CARRY_S = 120.0
# A position: the account at the broker (``broker_account``) and the contract.
Key = tuple[AccountKey, str]
# Told of a position left waiting (exits on their way out, brackets activating): the pass
# decides how long that is borne (``Protector``).
OnWait = Callable[[Key, int, ExitBook], None]


class PositionProtector:
    """One position's protection under its sub-account's lock, and what the position's
    protections remember between attempts (within the pass and across passes)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        config: ConfigCache,
        dispatcher: Dispatcher,
        settings: Settings,
        on_wait: OnWait,
    ) -> None:
        self._pool = pool
        self._config = config
        self._dispatcher = dispatcher
        self._settings = settings
        self._on_wait = on_wait
        # left short of cover this pass after their exits were cancelled: the protector tries
        # them again within the pass (``RETRY_WAITS_S``)
        self.incomplete: set[Key] = set()
        # of those, the ones whose orders were refused before they left (a session held by a
        # 429 or a penalty ticket): the pass a dispatch asked for tries them each second
        # (``Reconciler._protect_now``) instead of leaving them naked until the next pass
        self.not_sent: set[Key] = set()
        # what a failed re-placement had cancelled, for its retries (``carry_over``): in the
        # pass, and on the next passes for ``CARRY_S`` (a connection down for the whole pass
        # left the next one planning from the view alone: its take-profits and a trailed stop
        # price were lost for good); with the loop time it was carried at
        self._carry: dict[Key, Protection] = {}
        self._carried_at: dict[Key, float] = {}
        # orders a protection placed that the view did not show before the lock was let go
        # (``settled`` timed out: the events lag the answers), with the loop time first
        # refused for: planned without them, the next pass (or the next row of the same account)
        # stopped the position a second time. Nothing is placed for the position until they show.
        self._unshown: dict[Key, tuple[Placed, ...]] = {}
        self._unshown_since: dict[Key, float] = {}

    def drop_stale_carries(self) -> None:
        """Forget re-placements carried longer than ``CARRY_S``: the view alone plans then (the
        positions and prices they were made for may have moved on)."""
        now = asyncio.get_running_loop().time()
        for key in [k for k in self._carry if now - self._carried_at.get(k, now) > CARRY_S]:
            del self._carry[key]
        for key in [k for k in self._carried_at if k not in self._carry]:
            del self._carried_at[key]  # done with (covered, flat) or forgotten

    def drop_settled(self, read: set[AccountKey], naked: set[Key]) -> None:
        """A position seen covered or flat (its account ``read``, the position not ``naked``)
        no longer waits for what it placed to show, and no re-placement is carried for it: the
        trade it was made for is over. Carried on, a failed re-placement's stop price and
        take-profits were put on the next trade of the contract (a sell stop above a long
        opened lower down by hand, which closed it at once)."""
        for key in [k for k in self._unshown if k[0] in read and k not in naked]:
            self._unshown.pop(key, None)
            self._unshown_since.pop(key, None)
        for key in [k for k in self._carry if k[0] in read and k not in naked]:
            del self._carry[key]
            self._carried_at.pop(key, None)

    async def protect(
        self, link: LinkConfig, trader_id: int | None, broker: Broker, p: Position
    ) -> bool:
        """Protect ``p`` on behalf of ``link`` with ``trader_id``'s stop loss (or the stop the
        daemon owes it); returns whether any order went out. Re-read and planned under the
        lock; a re-placement left short of cover is marked ``incomplete`` and carried."""
        trader = self._config.snapshot.traders.get(trader_id) if trader_id is not None else None
        if p.net_price is None:
            return False
        # Without a stop loss configured (or the trader gone), nothing naked is stopped but with
        # a stop the daemon owes it (``owed_stop``); stops over the position are still brought
        # down to it: a stop for 2 left on a long 1 (sold by hand after the stop loss was turned
        # off) flipped it short when it triggered.
        s = trader.settings if trader is not None and trader.settings.sl > 0 else None
        bid = link.broker_account_id
        key: Key = (broker_account(link), p.symbol)
        now = datetime.now(UTC)
        send = ProtectionSender(
            self._pool,
            broker,
            trader.id if trader is not None else None,
            link.sub_account_id,
            p.symbol,
            # the symbol too: two positions of one sub-account protected in one millisecond
            prefix=f"{PROTECTION_PREFIX}{link.sub_account_id}-{p.symbol}-{int(now.timestamp() * 1000)}",
            expires_at=now + timedelta(seconds=self._settings.trading.signal_ttl_s),
        )
        waited: set[int] = set()  # cancels already waited for (``cancels_gone``): not twice
        contract: Contract | None = None
        async with self._dispatcher.lock_for(link):
            lags = self._dispatcher.view_lags(link, broker, root_of(p.symbol))
            if lags is not None:
                # a signal's orders not in the view yet: read from it, the position looked
                # naked (or long where it is short), and a second stop went beside the first
                log.info("reconcile.protect_view_lags", sub_account_id=link.sub_account_id,
                         symbol=p.symbol, lacking=lags)  # fmt: skip
                return False
            if not self._placed_shown(key, link, broker):
                if key in self._carry:  # a half-done re-placement: naked, tried again soon
                    self.incomplete.add(key)
                return False
            try:
                before = self._carry.pop(key, None)  # this is a retry of a half-done re-placement
                if before is not None and not await shown(broker, bid, before.placed):
                    # what the attempt placed is not in the view yet (its events lag the answers):
                    # planned without it, the retry stopped the position a second time
                    self._carry[key] = before
                    self.incomplete.add(key)
                    log.warning(
                        "reconcile.protect_placed_unseen",
                        sub_account_id=link.sub_account_id,
                        symbol=p.symbol,
                        placed=list(before.placed),
                    )
                    return False
                cancelled_before = before.cancel if before is not None else ()
                # re-read under the lock: a signal may have just placed exits or closed it
                current, book = _exit_view(broker, bid, p.symbol, also=cancelled_before)
                if current is None or current.net_price is None or not book.needs_protection:
                    return False
                held = abs(current.net_pos)
                owed = None  # without a stop loss: a stop the daemon planned, never placed
                if s is None and book.coverage < held:
                    rows = [lk.sub_account_id for lk in self._rows(key[0], link)]
                    owed = await owed_stop.lookup(self._pool, rows, current, book.coverage)
                if s is None and owed is None and book.coverage <= held:
                    # naked, or covered: not ours to stop without a stop loss; but take-profits
                    # alone over the position are brought down to it
                    trim = trim_take_profits(book)
                    if trim is None:
                        return False
                    return await self._trim(link, send, trim, current)
                contract = await broker.find_contract(p.symbol)
                level = owed_stop.stop_level(s, owed, current, contract)
                plan = plan_protection(
                    book, level.price, trail_by=level.trail_by, trailing=level.trailing
                )
                if plan is None:
                    if before is not None:
                        self._carry[key] = before  # for a later retry, once nothing is leaving
                    self._on_wait(key, link.sub_account_id, book)
                    return False
                if before is not None:
                    plan = carry_over(plan, before, book)
                if plan.trim_only:
                    return await self._trim(link, send, plan, current)
                step = 1
                done: list[int] = []

                def incomplete(why: str, **fields: object) -> None:
                    # after the cancels the position may be naked: tried again within the pass
                    self.incomplete.add(key)
                    if send.not_sent:
                        self.not_sent.add(key)
                    if done or before is not None:
                        # exits were cancelled: what they were is no longer in the view; what went
                        # out since may not be in it yet
                        earlier = before if before is not None else plan
                        self._carried_at.setdefault(key, asyncio.get_running_loop().time())
                        self._carry[key] = dataclasses.replace(
                            plan,
                            cancel=(*plan.cancel, *cancelled_before),
                            replaced=(*earlier.replaced, *_take_profits(send.taken)),
                            placed=(
                                *earlier.placed,
                                *(oid for po, oid in send.taken if po.kind != "cancel"),
                            ),
                        )
                    log.error(
                        "reconcile.protect_incomplete",
                        sub_account_id=link.sub_account_id,
                        symbol=p.symbol,
                        net_pos=current.net_pos if current is not None else 0,
                        cancelled=done,
                        reason=why,
                        plan=plan.reason,
                        **fields,
                    )

                if plan.cancel:
                    cancels = [
                        PlannedOrder(i, "cancel", None, cancel_order_id=oid, note="exits re-placed")
                        for i, oid in enumerate(plan.cancel, start=1)
                    ]
                    done = await send(cancels)
                    step += len(cancels)
                    try:
                        waited.update(done)
                        gone = await cancels_gone(broker, bid, done)
                        # the cancelled take-profits' fills too: what they still had to fill is
                        # re-placed
                        current, book = _exit_view(
                            broker, bid, p.symbol, also=(*plan.cancel, *cancelled_before)
                        )
                    except Exception as exc:
                        incomplete(f"view lost after the cancels: {type(exc).__name__}: {exc}")
                        raise
                    if not gone:
                        incomplete(
                            f"cancelled exits still showing after {CANCEL_WAIT_S:g} s: they may "
                            "still fill, nothing placed beside them"
                        )
                        return False
                orders = protection_orders(
                    book,
                    plan,
                    account=SubAccount(bid, link.sub_name),
                    symbol=p.symbol,
                    prefix=send.prefix,
                    first_step=step,
                )
                try:
                    placed = await send(orders)
                except Exception as exc:
                    incomplete(f"placing failed: {type(exc).__name__}: {exc}", planned=len(orders))
                    raise
                if current is not None and current.net_pos != 0 and len(placed) < len(orders):
                    incomplete("the broker did not take every order", planned=len(orders),
                               placed=len(placed))  # fmt: skip
                elif (
                    current is not None
                    and current.net_pos != 0
                    and not orders
                    and (book.leaving or book.activating)
                ):
                    incomplete(
                        "orders on their way out or brackets activating after the cancels: "
                        "nothing placed beside them",
                        waiting=[o.order_id for o in (*book.leaving, *book.activating)],
                    )
                log.warning(
                    "reconcile.protective_stop",
                    sub_account_id=link.sub_account_id,
                    symbol=p.symbol,
                    stop=str(plan.stop_price),
                    reason=plan.reason,
                    cancelled=len(plan.cancel),
                    placed=len(placed),
                    net_pos=current.net_pos if current is not None else 0,
                )
                return bool(placed)
            finally:
                # the next holder of the lock (an alert's plan) must see what went out and
                # what was cancelled, or it plans a second stop beside this one (view_waits)
                unseen = await settled(
                    broker,
                    bid,
                    [
                        (po, oid)
                        for po, oid in send.taken
                        if po.kind != "cancel" or oid not in waited
                    ],
                    send.unanswered,
                )
                if unseen:  # the next protection of this position waits for them to show
                    self._unshown[key] = (*self._unshown.get(key, ()), *unseen)
                if (send.taken or send.unanswered) and contract is not None:  # and the next
                    placed, cancelled = split_taken(send.taken)  # alert's plan
                    views = self._dispatcher.views
                    note_unshown(views, link, broker, contract, placed, cancelled, send.unanswered)

    def _rows(self, account: AccountKey, link: LinkConfig) -> list[LinkConfig]:
        """The rows naming the account at the broker now (the configuration may have been
        reloaded since the pass began), ``link`` alone when none does."""
        return by_broker_account(self._config.snapshot.links_by_sub.values()).get(account, [link])

    def _placed_shown(self, key: Key, link: LinkConfig, broker: Broker) -> bool:
        """Whether what an earlier protection of this position placed (``_unshown``) is in the
        view now; if not, nothing is placed: planned without it, a second stop went beside it.
        Not for ever: past ``CARRY_S`` the view is believed (an order it never shows — rejected
        after its answer, finished before a reconnect's fresh snapshot — left the position
        without a stop for good), and a person is told."""
        ids = self._unshown.get(key)
        if not ids:
            return True
        bid = link.broker_account_id
        if shows_placed(broker, bid, ids):
            del self._unshown[key]
            self._unshown_since.pop(key, None)
            return True
        now = asyncio.get_running_loop().time()
        waited = now - self._unshown_since.setdefault(key, now)
        fields = {
            "sub_account_id": link.sub_account_id,
            "broker_account_id": bid,
            "symbol": key[1],
            "placed": [oid or cl for oid, cl in ids],
        }
        if waited < CARRY_S:
            log.warning("reconcile.protect_placed_unseen", **fields)
            return False
        log.error(
            "reconcile.protect_placed_unseen",
            waited_s=round(waited),
            effect="protected from the view as it is: look for a second stop at the broker",
            **fields,
        )
        del self._unshown[key]
        self._unshown_since.pop(key, None)
        return True

    async def _trim(
        self, link: LinkConfig, send: ProtectionSender, plan: Protection, current: Position
    ) -> bool:
        """Take the excess off stops (or take-profits alone) over the position where they
        stand: no cancel-and-wait, nothing naked meanwhile."""
        cancels = [
            PlannedOrder(i, "cancel", None, cancel_order_id=oid, note="exit over the position")
            for i, oid in enumerate(plan.cancel, start=1)
        ]
        done = await send(cancels)
        shrunk = await send.modify(plan.shrink, first_step=len(cancels) + 1)
        fields = {"sub_account_id": link.sub_account_id, "symbol": current.symbol}
        if len(done) < len(cancels) or len(shrunk) < len(plan.shrink):
            log.error(
                "reconcile.protect_incomplete", **fields, net_pos=current.net_pos,
                cancelled=done, shrunk=shrunk, plan=plan.reason,
                reason="exits still over the position: retried next pass",
            )  # fmt: skip
        log.warning(
            "reconcile.protective_stop", **fields, stop=str(plan.stop_price or "") or None,
            reason=plan.reason, cancelled=len(done), shrunk=len(shrunk), placed=0,
            net_pos=current.net_pos,
        )  # fmt: skip
        return bool(done or shrunk)


def _exit_view(
    broker: Broker, account_id: int, symbol: str, also: Sequence[int] = ()
) -> tuple[Position | None, ExitBook]:
    """The account's position in ``symbol`` and its exit side, from the live view; ``also``:
    orders no longer working whose fills the book must still know (those just cancelled)."""
    current = next((x for x in broker.positions(account_id) if x.symbol == symbol), None)
    if current is None or current.net_pos == 0:
        return current, ExitBook(0)
    working = broker.working_orders(account_id)
    filled = broker.filled_qty(account_id, [*(o.order_id for o in working), *also])
    return current, exit_book(current, working, filled)


def _take_profits(taken: Sequence[tuple[PlannedOrder, int]]) -> tuple[TakeProfit, ...]:
    """The take-profit legs among placed steps (an OCO's first leg), with their order ids."""
    out = []
    for po, order_id in taken:
        req = po.request
        if isinstance(req, OcoRequest) and req.first.price is not None:
            out.append(TakeProfit(order_id, req.first.price, req.first.qty))
    return tuple(out)
