"""The broker's position as the truth the mirror's next round trip is measured from.

``Mirror._open`` moves with the fills the mirror applies. A fill it never applies leaves it
wrong: one made while the daemon was down and gone from the next trading day's snapshot, a batch
the database refused until it was given up, a held fill given up. Every later round trip of
that sub-account and symbol was then measured against a phantom (a long 1 @ 100 the broker no
longer held turned a buy 200 / sell 190, −20, into +80 on the daily-loss filter). A position
event the mirror writes says what the broker holds after every fill before it on the stream;
when ours disagrees, the broker's is adopted.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

import asyncpg
import structlog

from jtrades.broker.base import BrokerEvent, Fill, Position
from jtrades.broker.tradovate.view import AccountView
from jtrades.engine.pnl import OpenPosition, close_trade, open_lots
from jtrades.store import mirror as mirror_store
from jtrades.store.mirror import TradeRow

log = structlog.get_logger(__name__)

# a replayed view's list of the orders it holds (``vanished``)
VANISHED = "orders_held"

# Tradovate's netPrice is a float: an average of three fills differs from ours, in Decimal,
# in the eighth decimal; a tick is never smaller than this.
AVG_TOLERANCE = Decimal("0.000001")


# a position as last mirrored: (sub-account, symbol, net, average price, since); and the
# stored fills of each open one, (signed quantity, price), oldest first
SeedRow = tuple[int, str, int, Decimal | None, datetime | None]
SeedFills = Mapping[tuple[int, str], Sequence[tuple[int, Decimal]]]


def seeded(rows: Iterable[SeedRow], fills: SeedFills) -> dict[tuple[int, str], OpenPosition]:
    """The open positions of ``rows`` as the next start measures fills against: with the lots
    their stored ``fills`` leave open (``pnl.open_lots``), else one lot at the average, else —
    stored without a price — none (``OpenPosition.measurable``: its close books no round trip
    and the broker's next position is adopted)."""
    return {
        (sub, symbol): OpenPosition(
            net, avg, since, open_lots(net, fills.get((sub, symbol), ()), avg)
        )
        for sub, symbol, net, avg, since in rows
        if net
    }


def adopted(ours: OpenPosition | None, broker: Position) -> OpenPosition | None:
    """The position to measure the next fill against when the broker's disagrees with ours;
    None when they agree, or when the broker's cannot be measured from (a net without a price).
    """
    net = ours.net if ours is not None else 0
    if broker.net_pos == 0:
        return OpenPosition() if net else None
    if broker.net_price is None:
        return None
    if (
        ours is not None
        and net == broker.net_pos
        and ours.avg is not None
        and abs(ours.avg - broker.net_price) < AVG_TOLERANCE
    ):
        return None
    same_side = ours is not None and net != 0 and (net > 0) == (broker.net_pos > 0)
    opened = ours.opened_at if same_side and ours is not None else broker.timestamp
    return OpenPosition(broker.net_pos, broker.net_price, opened)


def adopt(
    open_: dict[tuple[int, str], OpenPosition],
    truth: dict[tuple[int, str], tuple[int, Position]],
    given_up: dict[tuple[int, int], set[int]],
    absorbed: set[tuple[int, int]],
) -> None:
    """Measure the next round trips from the broker's positions ``truth`` — by (sub-account,
    symbol), the contract and the latest position event written, with every fill of its key
    before it — where ``open_`` disagrees. The fills ``given_up`` of a key adopted go to
    ``absorbed``: the adopted position has them, and a replay must not measure them again."""
    for key, (contract_id, p) in truth.items():
        ours = open_.get(key)
        new = adopted(ours, p)
        if new is None:
            continue
        log.warning(
            "mirror.position_adopted",
            sub_account_id=key[0],
            symbol=key[1],
            ours_net=ours.net if ours else 0,
            ours_avg=str(ours.avg) if ours else None,
            broker_net=p.net_pos,
            broker_avg=str(p.net_price),
        )
        open_[key] = new
        for fill_id in given_up.pop((key[0], contract_id), ()):
            absorbed.add((key[0], fill_id))


def trade_row(sub: int, f: Fill, pos: OpenPosition, value_per_point: Decimal) -> TradeRow | None:
    """Apply a new fill to ``pos``; the round trip it closes, if it does."""
    opened = pos.opened_at or f.timestamp
    if not pos.measurable and (pos.net > 0) != (f.side.sign > 0):
        log.warning(
            "mirror.trade_unmeasured",
            sub_account_id=sub,
            symbol=f.symbol,
            fill_id=f.fill_id,
            net=pos.net,
            reason="the position it closes has no average price and no stored fills to"
            " measure from (its broker position came without a netPrice)",
            effect="no round trip recorded; measured from the broker's next position",
        )
    trade = close_trade(pos, f.side.sign * f.qty, f.price, value_per_point, f.timestamp)
    if trade is None:
        return None
    return (
        sub,
        f.symbol,
        trade.side,
        trade.qty,
        trade.entry_price,
        trade.exit_price,
        trade.pnl,
        min(opened, f.timestamp),
        f.timestamp,
    )


def vanished(
    view: AccountView,
    sub_of: Callable[[int], int | None],
    open_: Mapping[tuple[int, str], OpenPosition],
    only: Collection[int] | None = None,
) -> list[BrokerEvent]:
    """What a login's whole view no longer holds of what was last mirrored for its synced
    accounts (``sub_of``: the sub-account of a broker account). A snapshot publishes what changed
    against the view before it, and at start there is none: a position closed while the daemon
    was down, gone from the next trading day's snapshot with its fills, stayed open in
    ``positions`` and in ``_open`` (every later round trip measured against it: a phantom loss
    on the daily-loss filter), and its stop stayed "Working". A flat position event for each
    (adopted like any), and one ``VANISHED`` event per account naming every order the view
    holds (``store.mirror.end_vanished`` ends the others). ``only``: those accounts alone."""
    out: list[BrokerEvent] = []
    for acct in view.account_ids:
        if only is not None and acct not in only:
            continue
        sub = sub_of(acct)
        if sub is None or not view.is_synced(acct):
            continue
        held = view.positions(acct)
        if all(p.symbol for p in held):  # an unnamed position could be any of ours
            symbols = {p.symbol for p in held}
            for (s, symbol), pos in open_.items():
                if s == sub and pos.net and symbol not in symbols:
                    flat = Position(acct, view.contract_id(symbol), symbol, 0, None)
                    out.append(BrokerEvent("position", acct, flat))
        orders: dict[str, object] = {"state": VANISHED, "orders": view.order_ids(acct)}
        out.append(BrokerEvent("session", acct, None, detail=orders))
    return out


async def end_vanished(pool: asyncpg.Pool, sweeps: Sequence[tuple[int, Sequence[int]]]) -> None:
    """After the batch that wrote a replayed view: its accounts' open orders it does not hold
    (``sweeps``: per sub-account, the orders the view holds) ended while no one was listening
    (``vanished``)."""
    for sub, present in sweeps:
        ended = await mirror_store.end_vanished(pool, sub, present)
        if ended:
            log.warning("mirror.orders_vanished", sub_account_id=sub, orders=ended,
                        status="Unknown: ended while the daemon was not listening")  # fmt: skip


def after_last_sweep(events: Sequence[tuple[int, object, BrokerEvent]]) -> int:
    """The index after the batch's last ``VANISHED`` event (0: none): what follows it is
    written after the sweep (``Mirror.write``)."""
    for i in range(len(events) - 1, -1, -1):
        ev = events[i][2]
        if ev.kind == "session" and ev.detail.get("state") == VANISHED:
            return i + 1
    return 0
