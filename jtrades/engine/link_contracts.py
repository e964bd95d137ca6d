"""Where each linked sub-account's orders go for an alert's ticker: its login's session and the
contract month it trades (``resolve``), and the look-ups of a whole signal made at once where
they miss the resolver's cache (``look_up_misses``).

Apart from ``fanout`` (which judges traders and builds their plans) because this is the one
broker round trip before a signal's plans: at the daemon's start and, for continuous symbols,
at the first alert after each CME day turn, nothing is cached. Looked up one sub-account after
another, a recorder with many followers' logins waited one round trip per login, and a login
whose socket had gone silent (not yet declared dead) held every other follower's orders for its
whole request timeout, each time again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from jtrades.broker.base import Broker, Contract
from jtrades.broker.registry import BrokerRegistry
from jtrades.engine.config_cache import LinkConfig
from jtrades.engine.instruments import root_of, split_symbol
from jtrades.errors import TransientBrokerError

log = structlog.get_logger(__name__)

# How long a signal waits for the contract look-ups its sub-accounts' logins must make (cache
# misses: the daemon's start, the first alert after each CME day turn). They run before the
# claim, under the recorder's turn: a login whose socket had gone silent (not yet declared
# dead) held the webhook's answer (past TradingView's 3 s), every other follower's orders and
# the recorder's next alerts for its whole request timeout (10 s). A healthy look-up takes a
# round trip or two; past this the late logins are not traded for this signal, the row says
# why, and their look-ups finish in the background for the next one.
LOOKUP_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class LinkContract:
    """A sub-account's session and contract for one alert; ``elsewhere``: the month is one
    it holds, not the one the ticker names now (``held_elsewhere``)."""

    broker: Broker
    contract: Contract
    elsewhere: bool


async def resolve(brokers: BrokerRegistry, link: LinkConfig, ticker: str) -> LinkContract:
    """The session and contract ``link`` trades for ``ticker`` (its paper state restored first
    if it was linked just now). The resolver caches per broker with a TTL, so ``MNQ1!`` follows
    the roll; a position does not. Held in another month of the root and nothing held in the
    one named now, the position's month is the one the signal acts on: after a roll, or in roll
    week when the broker's front month and the calendar fallback differ, a ``close`` planned on
    the new month found "already flat" and left the old one open. New positions then open in
    the new month."""
    if not brokers.restored(link):
        await brokers.reach([link])
    broker = brokers.broker_for(link)
    contract = await brokers.resolve_contract(link, broker, ticker)
    held = held_elsewhere(broker, link.broker_account_id, ticker, contract)
    if held is None:
        return LinkContract(broker, contract, False)
    log.info(
        "engine.position_month",
        sub_account=link.sub_account_id,
        ticker=ticker,
        named=contract.symbol,
        held=held,
    )
    return LinkContract(broker, await brokers.resolve_contract(link, broker, held), True)


async def look_up_misses(
    brokers: BrokerRegistry, links: Iterable[LinkConfig], ticker: str
) -> dict[int, LinkContract | Exception]:
    """``resolve`` for the sub-accounts (by sub_accounts.id) whose contract the resolver does not
    hold, all at once, for at most ``LOOKUP_WAIT_S``; each failure kept, as the one-by-one
    ``resolve`` would raise it, and one not done by then is a ``TransientBrokerError`` (not
    traded for this signal). The cached ones are left to that path: it awaits nothing, and a
    task per sub-account would cost a signal to 100 sub-accounts a third of a millisecond."""
    missing = [lk for lk in links if not brokers.contract_cached(lk, ticker)]
    if not missing:
        return {}
    tasks = {
        lk.sub_account_id: asyncio.ensure_future(resolve(brokers, lk, ticker)) for lk in missing
    }
    try:
        await asyncio.wait(tasks.values(), timeout=LOOKUP_WAIT_S)
    except BaseException:  # cancelled: the signal is being given up, and its look-ups
        for task in tasks.values():
            task.cancel()
        raise
    out: dict[int, LinkContract | Exception] = {}
    for sub_id, task in tasks.items():
        if not task.done():
            task.add_done_callback(_retrieved)  # it fills the cache for the next signal
            out[sub_id] = TransientBrokerError(
                f"the contract look-up for {ticker} took longer than {LOOKUP_WAIT_S:g} s"
                " (its session may be silent): not traded for this signal"
            )
            log.warning("engine.contract_lookup_slow", sub_account_id=sub_id, ticker=ticker,
                        waited_s=LOOKUP_WAIT_S)  # fmt: skip
        elif task.cancelled():
            out[sub_id] = TransientBrokerError(f"the contract look-up for {ticker} was cancelled")
        else:
            exc = task.exception()
            out[sub_id] = exc if isinstance(exc, Exception) else task.result()
    return out


def _retrieved(task: asyncio.Future[LinkContract]) -> None:
    """A look-up left to finish on its own: its failure is logged, not an unretrieved one."""
    if not task.cancelled() and task.exception() is not None:
        log.info("engine.contract_lookup_failed", error=str(task.exception()))


def held_elsewhere(broker: Broker, account_id: int, ticker: str, contract: Contract) -> str | None:
    """The one other month of ``contract``'s root this account holds a position in, when
    ``ticker`` is continuous and nothing is held in ``contract``; None otherwise (an explicit
    month is the user's choice; two months held is a spread, not the signal's to pick from)."""
    if split_symbol(ticker).nth is None:
        return None
    try:
        positions = broker.positions(account_id)
    except TransientBrokerError:
        return None  # unsynced: nothing is planned on it anyway (rule 6)
    held = {p.symbol for p in positions if p.net_pos != 0}
    if contract.symbol in held:
        return None
    same_root = [sym for sym in held if root_of(sym) == contract.root.upper()]
    return same_root[0] if len(same_root) == 1 else None
