"""Protecting open positions: the I/O half of job 3 of ``engine.reconcile``.

Why its own module: ``engine.protection`` and ``engine.exit_orders`` hold the pure decisions
(what covers a position, what to cancel, shrink and place); this module carries them out
against a broker — reading the live view, taking the sub-account's dispatcher lock, writing
each step's intent before sending it (rule 1) — so the reconciliation loop stays about
intents and the mirror, and delegates each pass's protection here.

A naked position — open, its live stops not adding up to its size, and its trader has a stop
loss configured or the daemon owes it a stop it planned and never placed (``owed_stop``: a
resize cut short after its cancels) — gets protection: a stop for the uncovered rest, or its
exits re-placed as one OCO per take-profit plus a stop for the rest, so the stops never close
more than is held whatever fills. Only on a synced view: "missing is not flat" (rule 6), an
unreadable account is left alone. A re-placement that fails after the exits were cancelled
leaves the position naked, so it is tried again within the pass after short waits
(``RETRY_WAITS_S``); a position left waiting (``WAIT_ALERT_AFTER_S``) becomes an error a person
is told of. Event names keep their ``reconcile.`` prefix: alerts and notices key on them.

The unit is the account at the broker (``broker_account``), not the sub-account row: two users
who add the same Tradovate login each have a row for one account, and protecting per row
stopped one position once per row (the second row re-read a view whose events had not shown
the first row's stop yet). Each (account at the broker, contract) is protected once per pass,
on behalf of the row whose trader's intents last touched the contract; what it places and the
view has not shown yet is remembered for the account (``_unshown``), and nothing more is placed
for that position until the view shows it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.broker.base import (
    Broker,
    Contract,
    OcoRequest,
    Position,
    SubAccount,
    WorkingOrder,
)
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.engine import owed_stop
from jtrades.engine.account_plans import broker_account, by_broker_account
from jtrades.engine.booked_fills import BookedFills
from jtrades.engine.config_cache import AccountKey, ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.plan_context import PROTECTION_PREFIX
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protect_sender import ProtectionSender
from jtrades.engine.protect_waits import CANCEL_WAIT_S, cancels_gone, settled, shown
from jtrades.engine.protection import (
    ExitBook,
    Protection,
    TakeProfit,
    carry_over,
    exit_book,
    plan_protection,
    protection_orders,
)
from jtrades.engine.view_waits import shows_placed
from jtrades.store import intents as intent_store

log = structlog.get_logger(__name__)

# Waits before trying again, within the pass, a position a protection left short of cover
# after cancelling its exits: it is naked until a re-placement lands, and the next pass is an
# interval (30 s) away. A broker that keeps refusing gets the next pass.
RETRY_WAITS_S = (0.5, 1.0, 2.0)
# A position short of cover that waits (exits on their way out, or an entry's brackets that
# may still activate) is waited for without bound, naked meanwhile: past this it is an error,
# which a person is notified of, each pass until it is covered.
WAIT_ALERT_AFTER_S = 300.0
# How long a failed re-placement's cancelled exits are carried to later passes (``_carry``).
CARRY_S = 120.0
# How long a protection waits for the mirror to store the fills its view holds before asking
# whose position it is (``owner`` reads the stored fills): a batch is 2-20 ms and a commit, so
# this is only reached with a stalled database, and then the position is protected anyway, on
# behalf of the row the stored fills name (a naked position is worse than the other stop).
OWNER_WAIT_S = 2.0
# A position: the account at the broker (``broker_account``) and the contract.
Key = tuple[AccountKey, str]


async def owner(
    pool: asyncpg.Pool, links: Sequence[LinkConfig], symbol: str
) -> tuple[LinkConfig, int | None]:
    """Of the rows naming one account at the broker, the one whose intents last touched
    ``symbol`` (what is placed for the position is written for it), with that intent's trader,
    whose stop loss protects it; the first row and no trader when none did. From the intents,
    not the broker's view: a position held over the session change has no order of the day
    to tell, and the first row's trader (its stop loss off) left it naked."""
    found = await intent_store.last_toucher(pool, [lk.sub_account_id for lk in links], symbol)
    if found is None:
        return links[0], None
    sub, trader_id = found
    return next(lk for lk in links if lk.sub_account_id == sub), trader_id


def needs_stop(
    position: Position,
    working: Sequence[WorkingOrder],
    filled: Mapping[int, int] | None = None,
) -> bool:
    """An open position whose live stops (Working, PendingNew, PendingReplace; what they have
    left to fill) on its exit side in the same contract do not add up to exactly its size:
    part of it is naked, or the stops alone would close more than is held."""
    return exit_book(position, working, filled or {}).needs_protection


class Protector:
    """Each pass's protection of the sub-accounts' positions, for the ``Reconciler``."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        brokers: BrokerRegistry,
        config: ConfigCache,
        dispatcher: Dispatcher,
        settings: Settings,
        booked: BookedFills | None = None,
    ) -> None:
        self._pool = pool
        self._brokers = brokers
        self._config = config
        self._dispatcher = dispatcher
        self._settings = settings
        self._booked = booked if booked is not None else BookedFills()
        self._suspect: set[Key] = set()
        self._seeded: set[Key] = set()  # valid for the first pass only
        # left short of cover this pass after their exits were cancelled (``RETRY_WAITS_S``)
        self._incomplete: set[Key] = set()
        self.wait_alert_after_s = WAIT_ALERT_AFTER_S
        self._waiting_since: dict[Key, float] = {}  # loop time first seen waiting
        self._waited: set[Key] = set()  # seen waiting this pass
        # what a failed re-placement had cancelled, for its retries (``carry_over``): in the
        # pass, and on the next passes for ``CARRY_S`` (a connection down for the whole pass
        # left the next one planning from the view alone: its take-profits and a trailed stop
        # price were lost for good); with the loop time it was carried at
        self._carry: dict[Key, Protection] = {}
        self._carried_at: dict[Key, float] = {}
        # orders a protection placed that the view did not show before the lock was let go
        # (``_settled`` timed out: the events lag the answers), with the loop time first
        # refused for: planned without them, the next pass (or the next row of the same account)
        # stopped the position a second time. Nothing is placed for the position until they show.
        self._unshown: dict[Key, tuple[int, ...]] = {}
        self._unshown_since: dict[Key, float] = {}

    def seed(self, suspects: Iterable[tuple[int, str]]) -> None:
        """Positions counted as sighted once already (those held before a start), as
        (sub-account row, symbol): protected on the first pass if it sees them naked. Only the
        first: a login still unsynced then may meanwhile open a position whose brackets are
        still activating, which needs the usual two sightings."""
        links = self._config.snapshot.links_by_sub
        self._seeded = {(broker_account(links[s]), sym) for s, sym in suspects if s in links}
        self._suspect = set(self._seeded)

    def _accounts(self) -> dict[AccountKey, list[LinkConfig]]:
        """The rows of each account at the broker, in sub-account order."""
        return by_broker_account(self._config.snapshot.links_by_sub.values())

    async def protect_positions(self) -> int:
        """Protect each position seen naked on two passes in a row (an entry's brackets may
        still be activating on the first); returns how many positions got orders."""
        placed = 0
        suspects: set[Key] = set()
        self._incomplete.clear()
        self._drop_stale_carries()
        self._waited.clear()
        read: set[AccountKey] = set()
        # one account at the broker once, whichever of its rows (two users' logins) name it
        for account, links in self._accounts().items():
            bid = links[0].broker_account_id
            try:
                broker = self._brokers.synced_for(links)
                positions = broker.positions(bid)
                working = broker.working_orders(bid)
                filled = broker.filled_qty(bid, [o.order_id for o in working])
            except Exception as exc:  # unreadable: missing is not flat, do nothing
                log.debug(
                    "reconcile.protect_skip",
                    sub_account_id=links[0].sub_account_id,
                    broker_account_id=bid,
                    error=str(exc),
                )
                # its suspects stay suspects: a position whose exits a pass cancelled is
                # retried on the next pass that can see it, not two passes later
                suspects |= {k for k in self._suspect if k[0] == account and k not in self._seeded}
                continue
            read.add(account)
            for p in positions:
                if not needs_stop(p, working, filled):
                    continue
                key = (account, p.symbol)
                suspects.add(key)
                if key in self._suspect and await self._try_protect(links, broker, p):
                    placed += 1
        # a position seen covered or flat no longer waits for what it placed to show
        for key in [k for k in self._unshown if k[0] in read and k not in suspects]:
            self._unshown.pop(key, None)
            self._unshown_since.pop(key, None)
        self._suspect = suspects
        self._seeded.clear()
        placed += await self._retry_incomplete()
        # a wait ends when a pass no longer meets it (covered, flat, or unseen: missing is not
        # flat, but the clock starts again once it is seen waiting)
        self._waiting_since = {k: t for k, t in self._waiting_since.items() if k in self._waited}
        return placed

    async def _try_protect(self, links: Sequence[LinkConfig], broker: Broker, p: Position) -> bool:
        """``_protect`` on behalf of the row that last touched the contract (``owner``),
        failing for this position only: the other accounts still get their stops, and it stays a
        suspect, so the next pass tries again."""
        link = links[0]
        try:
            await self._wait_booked(links, broker)
            link, trader_id = await owner(self._pool, links, p.symbol)
            return await self._protect(link, trader_id, broker, p)
        except Exception as exc:
            log.error(
                "reconcile.protect_failed",
                sub_account_id=link.sub_account_id,
                symbol=p.symbol,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False

    async def _wait_booked(self, links: Sequence[LinkConfig], broker: Broker) -> None:
        """Wait (``OWNER_WAIT_S``) until the mirror has stored every fill the view holds for
        these rows: the owner is read from the stored fills, and under load the latest fill (the
        other user's add) was still in a batch, so the first user's stop protected both."""
        bid = links[0].broker_account_id
        last = {(lk.account_id, bid): broker.last_fill_id(bid) for lk in links}
        if self._booked.behind(last) and not await self._booked.caught_up(last, OWNER_WAIT_S):
            log.warning(
                "reconcile.protect_fills_unstored",
                sub_account_id=links[0].sub_account_id,
                broker_account_id=bid,
                wait_s=OWNER_WAIT_S,
            )

    def _log_wait(self, key: Key, sub_account_id: int, book: ExitBook) -> None:
        symbol = key[1]
        now = asyncio.get_running_loop().time()
        waited = now - self._waiting_since.setdefault(key, now)
        self._waited.add(key)
        fields = {
            "sub_account_id": sub_account_id,
            "symbol": symbol,
            "leaving": [o.order_id for o in book.leaving],
            "activating": [o.order_id for o in book.activating],
        }
        if waited < self.wait_alert_after_s:
            log.info("reconcile.protect_waiting", **fields)
            return
        log.error(
            "reconcile.protect_stalled",
            net_pos=book.net_pos,
            uncovered=abs(book.net_pos) - book.coverage,
            waited_s=round(waited),
            effect="naked until the orders it waits for are gone or the entry fills",
            **fields,
        )

    async def _retry_incomplete(self) -> int:
        """Try the positions left short of cover again (``RETRY_WAITS_S``); ``_protect``
        re-reads each under its lock and does nothing for one covered meanwhile."""
        placed = 0
        for wait in RETRY_WAITS_S:
            if not self._incomplete:
                break
            keys, self._incomplete = sorted(self._incomplete), set()
            await asyncio.sleep(wait)
            accounts = self._accounts()
            for account, symbol in keys:
                links = accounts.get(account)
                if not links:
                    continue
                try:  # missing is not flat: an unsynced view waits for the next pass
                    broker = self._brokers.synced_for(links)
                    held = broker.positions(links[0].broker_account_id)
                except Exception as exc:
                    log.debug(
                        "reconcile.protect_skip",
                        sub_account_id=links[0].sub_account_id,
                        error=str(exc),
                    )
                    continue
                p = next((x for x in held if x.symbol == symbol), None)
                if p is not None and await self._try_protect(links, broker, p):
                    placed += 1
        self._incomplete.clear()  # a broker still refusing: the next pass, with what it carried
        return placed

    def _drop_stale_carries(self) -> None:
        """Forget re-placements carried longer than ``CARRY_S``: the view alone plans then (the
        positions and prices they were made for may have moved on)."""
        now = asyncio.get_running_loop().time()
        for key in [k for k in self._carry if now - self._carried_at.get(k, now) > CARRY_S]:
            del self._carry[key]
        for key in [k for k in self._carried_at if k not in self._carry]:
            del self._carried_at[key]  # done with (covered, flat) or forgotten

    async def _protect(
        self, link: LinkConfig, trader_id: int | None, broker: Broker, p: Position
    ) -> bool:
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
        async with self._dispatcher.lock_for(link):
            if not self._placed_shown(key, link, broker):
                if key in self._carry:  # a half-done re-placement: naked, tried again soon
                    self._incomplete.add(key)
                return False
            try:
                before = self._carry.pop(key, None)  # this is a retry of a half-done re-placement
                if before is not None and not await shown(broker, bid, before.placed):
                    # what the attempt placed is not in the view yet (its events lag the answers):
                    # planned without it, the retry stopped the position a second time
                    self._carry[key] = before
                    self._incomplete.add(key)
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
                    rows = [lk.sub_account_id for lk in self._accounts().get(key[0], [link])]
                    owed = await owed_stop.lookup(self._pool, rows, current, book.coverage)
                if s is None and owed is None and book.coverage <= held:
                    return False  # naked, or covered: not ours to stop without a stop loss
                contract: Contract = await broker.find_contract(p.symbol)
                level = owed_stop.stop_level(s, owed, current, contract)
                plan = plan_protection(
                    book, level.price, trail_by=level.trail_by, trailing=level.trailing
                )
                if plan is None:
                    if before is not None:
                        self._carry[key] = before  # for a later retry, once nothing is leaving
                    self._log_wait(key, link.sub_account_id, book)
                    return False
                if before is not None:
                    plan = carry_over(plan, before, book)
                if plan.trim_only:
                    return await self._trim(link, send, plan, current)
                step = 1
                done: list[int] = []

                def incomplete(why: str, **fields: object) -> None:
                    # after the cancels the position may be naked: tried again within the pass
                    self._incomplete.add(key)
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
                )
                if unseen:  # the next protection of this position waits for them to show
                    self._unshown[key] = (*self._unshown.get(key, ()), *unseen)

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
        if shows_placed(broker, bid, [(oid, None) for oid in ids]):
            del self._unshown[key]
            self._unshown_since.pop(key, None)
            return True
        now = asyncio.get_running_loop().time()
        waited = now - self._unshown_since.setdefault(key, now)
        fields = {
            "sub_account_id": link.sub_account_id,
            "broker_account_id": bid,
            "symbol": key[1],
            "placed": list(ids),
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
        """Take the excess off stops over the position where they stand: no cancel-and-wait,
        nothing naked meanwhile."""
        cancels = [
            PlannedOrder(i, "cancel", None, cancel_order_id=oid, note="stop over the position")
            for i, oid in enumerate(plan.cancel, start=1)
        ]
        done = await send(cancels)
        shrunk = await send.modify(plan.shrink, first_step=len(cancels) + 1)
        fields = {"sub_account_id": link.sub_account_id, "symbol": current.symbol}
        if len(done) < len(cancels) or len(shrunk) < len(plan.shrink):
            log.error(
                "reconcile.protect_incomplete", **fields, net_pos=current.net_pos,
                cancelled=done, shrunk=shrunk, plan=plan.reason,
                reason="stops still over the position: retried next pass",
            )  # fmt: skip
        log.warning(
            "reconcile.protective_stop", **fields, stop=str(plan.stop_price),
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
