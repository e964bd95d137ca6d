"""Protecting open positions: the I/O half of job 3 of ``engine.reconcile``.

Why its own module: ``engine.protection`` and ``engine.exit_orders`` hold the pure decisions
(what covers a position, what to cancel, shrink and place); this module carries them out
against a broker — reading the live view, taking the sub-account's dispatcher lock, writing
each step's intent before sending it (rule 1) — so the reconciliation loop stays about
intents and the mirror, and delegates each pass's protection here.

A naked position — open, its live stops not adding up to its size, and its trader has a stop
loss configured — gets protection: a stop for the uncovered rest, or its exits re-placed as
one OCO per take-profit plus a stop for the rest, so the stops never close more than is held
whatever fills. Only on a synced view: "missing is not flat" (rule 6), an unreadable account
is left alone. A re-placement that fails after the exits were cancelled leaves the position
naked, so it is tried again within the pass after short waits (``RETRY_WAITS_S``). Event names keep their ``reconcile.`` prefix: alerts and notices key on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from jtrades.broker.base import (
    Broker,
    Contract,
    OcoRequest,
    OrderRequest,
    Position,
    SubAccount,
    WorkingOrder,
)
from jtrades.broker.registry import BrokerRegistry
from jtrades.config import Settings
from jtrades.engine.config_cache import ConfigCache, LinkConfig
from jtrades.engine.dispatch import Dispatcher
from jtrades.engine.planning import PlannedOrder
from jtrades.engine.protection import (
    ExitBook,
    Protection,
    Shrink,
    exit_book,
    plan_protection,
    protection_orders,
)
from jtrades.engine.sizing import exit_offset_points, exit_price
from jtrades.engine.steps import intent_for
from jtrades.errors import BrokerRejected, TransientBrokerError
from jtrades.store import intents as intent_store

log = structlog.get_logger(__name__)

# How long the exits cancelled for a re-placement may take to show as gone before nothing is
# placed this pass (they could still fill, and a stop beside them could over-close).
CANCEL_WAIT_S = 5.0
# Waits before trying again, within the pass, a position a protection left short of cover
# after cancelling its exits: it is naked until a re-placement lands, and the next pass is an
# interval (30 s) away. A broker that keeps refusing gets the next pass.
RETRY_WAITS_S = (0.5, 1.0, 2.0)


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
    ) -> None:
        self._pool = pool
        self._brokers = brokers
        self._config = config
        self._dispatcher = dispatcher
        self._settings = settings
        self._suspect: set[tuple[int, str]] = set()
        self._seeded: set[tuple[int, str]] = set()  # valid for the first pass only
        # left short of cover this pass after their exits were cancelled (``RETRY_WAITS_S``)
        self._incomplete: set[tuple[int, str]] = set()

    def seed(self, suspects: Iterable[tuple[int, str]]) -> None:
        """Positions counted as sighted once already (those held before a start): protected
        on the first pass if it sees them naked. Only the first: a login still unsynced then may
        meanwhile open a position whose brackets are still activating, which needs the usual
        two sightings."""
        self._seeded = set(suspects)
        self._suspect = set(self._seeded)

    async def protect_positions(self) -> int:
        """Protect each position seen naked on two passes in a row (an entry's brackets may
        still be activating on the first); returns how many positions got orders."""
        snap = self._config.snapshot
        placed = 0
        suspects: set[tuple[int, str]] = set()
        self._incomplete.clear()
        for link in snap.links_by_sub.values():
            try:
                broker = self._brokers.broker_for(link)
                if not broker.is_synced(link.broker_account_id):
                    raise TransientBrokerError("live view not synced")
                positions = broker.positions(link.broker_account_id)
                working = broker.working_orders(link.broker_account_id)
                filled = broker.filled_qty(link.broker_account_id, [o.order_id for o in working])
            except Exception as exc:  # unreadable: missing is not flat, do nothing
                log.debug(
                    "reconcile.protect_skip", sub_account_id=link.sub_account_id, error=str(exc)
                )
                # its suspects stay suspects: a position whose exits a pass cancelled is
                # retried on the next pass that can see it, not two passes later
                suspects |= {
                    k
                    for k in self._suspect
                    if k[0] == link.sub_account_id and k not in self._seeded
                }
                continue
            for p in positions:
                if not needs_stop(p, working, filled):
                    continue
                key = (link.sub_account_id, p.symbol)
                suspects.add(key)
                if key not in self._suspect:
                    continue
                try:
                    if await self._protect(link, broker, p):
                        placed += 1
                except Exception as exc:
                    # this position only: the other sub-accounts still get their stops, and
                    # it stays a suspect, so the next pass tries again
                    log.error(
                        "reconcile.protect_failed",
                        sub_account_id=link.sub_account_id,
                        symbol=p.symbol,
                        error=f"{type(exc).__name__}: {exc}",
                    )
        self._suspect = suspects
        self._seeded.clear()
        return placed + await self._retry_incomplete()

    async def _retry_incomplete(self) -> int:
        """Try the positions left short of cover again (``RETRY_WAITS_S``); ``_protect``
        re-reads each under its lock and does nothing for one covered meanwhile."""
        placed = 0
        for wait in RETRY_WAITS_S:
            if not self._incomplete:
                break
            keys, self._incomplete = sorted(self._incomplete), set()
            await asyncio.sleep(wait)
            links = self._config.snapshot.links_by_sub
            for sub, symbol in keys:
                link = links.get(sub)
                try:
                    if link is None:
                        continue
                    broker = self._brokers.broker_for(link)
                    if not broker.is_synced(link.broker_account_id):
                        continue  # missing is not flat: the next pass that sees it
                    p = next(
                        (x for x in broker.positions(link.broker_account_id) if x.symbol == symbol),
                        None,
                    )
                    if p is not None and await self._protect(link, broker, p):
                        placed += 1
                except Exception as exc:
                    log.error(
                        "reconcile.protect_failed",
                        sub_account_id=sub,
                        symbol=symbol,
                        error=f"{type(exc).__name__}: {exc}",
                    )
        self._incomplete.clear()  # a broker still refusing: the next pass
        return placed

    async def _protect(self, link: LinkConfig, broker: Broker, p: Position) -> bool:
        trader_id = await intent_store.last_trader_for(self._pool, link.sub_account_id, p.symbol)
        trader = self._config.snapshot.traders.get(trader_id) if trader_id is not None else None
        if trader is None or trader.settings.sl <= 0 or p.net_price is None:
            return False
        s = trader.settings
        bid = link.broker_account_id
        async with self._dispatcher.lock_for(link.sub_account_id):
            # re-read under the lock: a signal may have just placed exits or closed it
            current, book = _exit_view(broker, bid, p.symbol)
            if current is None or current.net_price is None or not book.needs_protection:
                return False
            contract: Contract = await broker.find_contract(p.symbol)
            direction = 1 if current.net_pos > 0 else -1
            dist = exit_offset_points(s.sl, s.sl_units, current.net_price, contract, 1)
            configured = exit_price(current.net_price, dist, -direction, contract.tick_size)
            plan = plan_protection(book, configured)
            if plan is None:
                log.info(
                    "reconcile.protect_waiting",
                    sub_account_id=link.sub_account_id,
                    symbol=p.symbol,
                    leaving=[o.order_id for o in book.leaving],
                    activating=[o.order_id for o in book.activating],
                )
                return False
            now = datetime.now(UTC)
            send = _Sender(
                self._pool,
                broker,
                trader.id,
                link.sub_account_id,
                p.symbol,
                # the symbol too: two positions of one sub-account protected in one millisecond
                prefix=f"jt-p-{link.sub_account_id}-{p.symbol}-{int(now.timestamp() * 1000)}",
                expires_at=now + timedelta(seconds=self._settings.trading.signal_ttl_s),
            )
            if plan.trim_only:
                return await self._trim(link, send, plan, current)
            step = 1
            done: list[int] = []

            def incomplete(why: str, **fields: object) -> None:
                # after the cancels the position may be naked: tried again within the pass
                self._incomplete.add((link.sub_account_id, p.symbol))
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
                    gone = await _gone(broker, bid, done)
                    # the cancelled take-profits' fills too: what they still had to fill is
                    # re-placed
                    current, book = _exit_view(broker, bid, p.symbol, also=plan.cancel)
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

    async def _trim(
        self, link: LinkConfig, send: _Sender, plan: Protection, current: Position
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


async def _gone(broker: Broker, account_id: int, order_ids: Sequence[int]) -> bool:
    """Whether the live view stops showing ``order_ids`` as open within ``CANCEL_WAIT_S``."""
    wanted = set(order_ids)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CANCEL_WAIT_S
    while True:
        if not any(o.order_id in wanted for o in broker.working_orders(account_id)):
            return True
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.05)


class _Sender:
    """Sends one protection's steps, each through a durable intent written first (rule 1)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        broker: Broker,
        trader_id: int,
        sub_account_id: int,
        symbol: str,
        *,
        prefix: str,
        expires_at: datetime,
    ) -> None:
        self._pool = pool
        self._broker = broker
        self._trader_id = trader_id
        self._sub = sub_account_id
        self._symbol = symbol
        self.prefix = prefix
        self._expires_at = expires_at

    async def __call__(self, steps: Sequence[PlannedOrder]) -> list[int]:
        """Write the steps' intents, then send every one of them (a failed step does not stop
        the others: each was sized as if all went out, so any subset stays within the position);
        returns the order ids the broker took (cancelled ones for cancels)."""
        if not steps:
            return []
        prepared = [
            intent_for(
                po,
                prefix=self.prefix,
                signal_id=None,
                trader_id=self._trader_id,
                sub_account_id=self._sub,
                symbol=self._symbol,
                expires_at=self._expires_at,
            )
            for po in steps
        ]
        ids = await intent_store.insert_all(self._pool, [ni for _, ni in prepared])
        outcomes: list[intent_store.Outcome] = []
        taken: list[int] = []
        for (po, _), intent_id in zip(prepared, ids, strict=True):
            if intent_id is None:
                continue  # the clOrdId exists already: never sent twice
            state, order_id, reason = await self._send(po)
            outcomes.append(
                intent_store.Outcome(intent_id, state, order_id, reason, sent=state != "expired")
            )
            if state in ("sent", "done") and order_id is not None:
                taken.append(order_id)
            elif po.kind == "cancel" and state == "rejected":
                # already filled or cancelled (an OCO partner goes with its leg): the view
                # read after the cancels decides what is placed
                log.info(
                    "reconcile.protect_cancel_refused", sub_account_id=self._sub, reason=reason
                )
            else:
                log.error(
                    "reconcile.protect_send_failed",
                    sub_account_id=self._sub,
                    step=po.step,
                    kind=po.kind,
                    state=state,
                    reason=reason,
                )
        await intent_store.finish_many(self._pool, outcomes)
        return taken

    async def modify(self, shrinks: Sequence[Shrink], *, first_step: int) -> list[int]:
        """Shrink stops, each through a durable intent written first; returns the order ids
        the broker took the change for."""
        if not shrinks:
            return []
        intents = [
            intent_store.NewIntent(
                signal_id=None, trader_id=self._trader_id, sub_account_id=self._sub,
                cl_ord_id=f"{self.prefix}-{step}"[:64], step=step, kind="modify",
                symbol=self._symbol, side=None, qty=sh.qty,
                request={"type": "modify", "note": "stop shrunk to the position",
                         "modify_order_id": sh.order_id, "request": sh},
                expires_at=self._expires_at,
            )
            for step, sh in enumerate(shrinks, start=first_step)
        ]  # fmt: skip
        ids = await intent_store.insert_all(self._pool, intents)
        outcomes: list[intent_store.Outcome] = []
        taken: list[int] = []
        for sh, intent_id in zip(shrinks, ids, strict=True):
            if intent_id is None:
                continue  # the clOrdId exists already: never sent twice
            state, reason = "done", None
            try:
                await self._broker.modify_order(
                    sh.order_id, qty=sh.qty, order_type=sh.order_type, price=sh.price,
                    stop_price=sh.stop_price,
                )  # fmt: skip
            except BrokerRejected as exc:
                state, reason = "rejected", str(exc) or "rejected by the broker"
            except TransientBrokerError as exc:  # raised before the request left
                state, reason = "expired", f"not sent: broker unavailable ({exc})"
            except Exception as exc:
                state, reason = "unknown", f"no answer from the broker ({type(exc).__name__})"
            outcomes.append(
                intent_store.Outcome(intent_id, state, sh.order_id, reason, sent=state != "expired")
            )
            if state == "done":
                taken.append(sh.order_id)
            else:
                log.error(
                    "reconcile.protect_send_failed", sub_account_id=self._sub, kind="modify",
                    order_id=sh.order_id, state=state, reason=reason,
                )  # fmt: skip
        await intent_store.finish_many(self._pool, outcomes)
        return taken

    async def _send(self, po: PlannedOrder) -> tuple[str, int | None, str | None]:
        req = po.request
        try:
            if po.kind == "cancel" and po.cancel_order_id is not None:
                await self._broker.cancel_order(po.cancel_order_id)
                return "done", po.cancel_order_id, None
            if isinstance(req, OcoRequest):
                result = await self._broker.place_oco(req)
            elif isinstance(req, OrderRequest):
                result = await self._broker.place_order(req)
            else:
                return "rejected", None, f"nothing to send for a {po.kind} step"
        except BrokerRejected as exc:
            return "rejected", None, str(exc) or "rejected by the broker"
        except TransientBrokerError as exc:  # raised before the request left
            return "expired", None, f"not sent: broker unavailable ({exc})"
        except Exception as exc:
            return "unknown", None, f"no answer from the broker ({type(exc).__name__})"
        return "sent", result.order_id, None
