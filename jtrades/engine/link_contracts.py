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
    hold, all at once, when there are two or more; each failure kept, as the one-by-one
    ``resolve`` would raise it. The cached ones are left to that path: it awaits nothing, and a
    task per sub-account would cost a signal to 100 sub-accounts a third of a millisecond."""
    missing = [lk for lk in links if not brokers.contract_cached(lk, ticker)]
    if len(missing) < 2:
        return {}
    found = await asyncio.gather(
        *(resolve(brokers, lk, ticker) for lk in missing), return_exceptions=True
    )
    out: dict[int, LinkContract | Exception] = {}
    for lk, got in zip(missing, found, strict=True):
        if isinstance(got, BaseException) and not isinstance(got, Exception):
            raise got  # a cancellation: the signal is being given up
        out[lk.sub_account_id] = got
    return out


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
