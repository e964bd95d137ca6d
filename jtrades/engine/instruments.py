"""Which contract an alert's symbol means, and what one tick of it is worth.

TradingView charts continuous symbols (``MNQ1!``, ``CME_MINI:NQ2!``); Tradovate trades contracts
(``MNQZ6``). The broker's contract lookup is the authority; the calendar rule and tick table here
are the fallback for when it cannot answer, so an alert is never lost to a lookup hiccup.

Symbols are matched by **whole root**: the root is everything before the month code and year
(or before ``1!``), compared for equality, never by prefix — ``GCZ6`` is gold, ``MGCZ6`` micro
gold, ``ESZ6`` is not ``MESZ6``. A common mistake elsewhere (``symbol.startswith(root)``) turns a
micro signal into a full-size order: ten times the risk.

Tick table: TRADOVATE.md's table, checked against CME contract specifications: SI 0.005 per
troy ounce = $25.00 on 5,000 oz (cmegroup.com silver futures contract specs); ZN one-half of 1/32
= $15.625 and ZB 1/32 = $31.25 on $100,000 face (cmegroup.com 10-Year T-Note contract specs);
NG 0.001 per MMBtu on 10,000 MMBtu = $10.00 (CME Henry Hub specs; SER-6847 lists 0.001);
6E 0.00005 per EUR on 125,000 EUR = $6.25 (CME Euro FX specs).

Calendar rule (fallback only; the broker's answer wins). A contract is the front until its roll
date, then the next listed one is; ``2!`` is the one after the front:

- equity index (ES MES NQ MNQ RTY M2K YM MYM) and 6E: quarterly H M U Z; they expire on the
  third Friday (6E two business days before the third Wednesday), and volume moves on CME's roll
  date, the Thursday eight days before the third Friday: we roll then;
- treasuries (ZB ZN, quarterly H M U Z) and metals (GC MGC: G J M Q V Z; SI: H K N U Z) are
  physically delivered from the first business day of the contract month and brokers liquidate
  longs before first notice day (the last business day of the month before): we roll seven
  days before the contract month starts;
- CL MCL: every month; trading ends about three business days before the 25th of the month
  before the contract month: we roll on the 15th of that month;
- NG: every month; trading ends three business days before the contract month: we roll on the
  20th of the month before.

Holidays are ignored (a day's difference at worst). TradingView switches its ``1!`` when the
next contract's daily volume passes the current one's (for NQ in June 2024, a week before expiry,
near CME's roll date), while the broker's answer is the nearest listed expiry: in the days
between, the chart and the order may be different months. A reason to prefer points/ticks over
absolute price levels near a roll; a position held across it is followed by its month
(``link_contracts.held_elsewhere``).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from enum import Enum
from typing import Protocol, runtime_checkable

import structlog

from jtrades.broker.base import Contract
from jtrades.engine.tradingday import trading_day, until_day_turn
from jtrades.errors import InvalidSignal, JtradesError

log = structlog.get_logger(__name__)

MONTH_CODES = "FGHJKMNQUVXZ"  # January … December


def month_code(month: int) -> str:
    return MONTH_CODES[month - 1]


class Roll(Enum):
    """When a contract stops being the one to trade (see the module docstring)."""

    QUARTERLY_INDEX = "quarterly_index"
    BEFORE_DELIVERY = "before_delivery"
    CRUDE = "crude"
    NATGAS = "natgas"


@dataclass(frozen=True, slots=True)
class Product:
    root: str
    tick_size: Decimal
    value_per_point: Decimal
    months: str  # month codes of the contracts we trade, in calendar order
    roll: Roll

    @property
    def tick_value(self) -> Decimal:
        return self.tick_size * self.value_per_point


def _p(root: str, tick: str, per_point: str, months: str, roll: Roll) -> Product:
    return Product(root, Decimal(tick), Decimal(per_point), months, roll)


_Q = "HMUZ"
PRODUCTS: dict[str, Product] = {
    p.root: p
    for p in (
        _p("ES", "0.25", "50", _Q, Roll.QUARTERLY_INDEX),
        _p("MES", "0.25", "5", _Q, Roll.QUARTERLY_INDEX),
        _p("NQ", "0.25", "20", _Q, Roll.QUARTERLY_INDEX),
        _p("MNQ", "0.25", "2", _Q, Roll.QUARTERLY_INDEX),
        _p("RTY", "0.1", "50", _Q, Roll.QUARTERLY_INDEX),
        _p("M2K", "0.1", "5", _Q, Roll.QUARTERLY_INDEX),
        _p("YM", "1", "5", _Q, Roll.QUARTERLY_INDEX),
        _p("MYM", "1", "0.5", _Q, Roll.QUARTERLY_INDEX),
        _p("6E", "0.00005", "125000", _Q, Roll.QUARTERLY_INDEX),
        _p("ZB", "0.03125", "1000", _Q, Roll.BEFORE_DELIVERY),
        _p("ZN", "0.015625", "1000", _Q, Roll.BEFORE_DELIVERY),
        _p("GC", "0.1", "100", "GJMQVZ", Roll.BEFORE_DELIVERY),
        _p("MGC", "0.1", "10", "GJMQVZ", Roll.BEFORE_DELIVERY),
        _p("SI", "0.005", "5000", "HKNUZ", Roll.BEFORE_DELIVERY),
        _p("CL", "0.01", "1000", MONTH_CODES, Roll.CRUDE),
        _p("MCL", "0.01", "100", MONTH_CODES, Roll.CRUDE),
        _p("NG", "0.001", "10000", MONTH_CODES, Roll.NATGAS),
    )
}


# --- symbols -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SymbolParts:
    """A symbol taken apart. Either ``nth`` (continuous: 1 = front, 2 = next) or
    ``month`` + ``year`` (an explicit contract; ``year`` as written: 6, 26 or 2026)."""

    root: str
    nth: int | None = None
    month: int | None = None
    year: int | None = None
    exchange: str | None = None

    @property
    def is_continuous(self) -> bool:
        return self.nth is not None

    @property
    def contract_name(self) -> str:
        """Tradovate's name of an explicit contract: root, month code, last digit of the year."""
        if self.month is None or self.year is None:
            raise ValueError(f"{self.root}{self.nth}! is continuous, not a contract")
        return f"{self.root}{month_code(self.month)}{self.year % 10}"

    def __str__(self) -> str:
        """The canonical spelling (exchange prefix dropped): ``MNQ1!`` or ``MNQZ6``."""
        if self.nth is not None:
            return f"{self.root}{self.nth}!"
        return self.contract_name


_EXCHANGE = re.compile(r"^[A-Z0-9_]+$")  # fullmatch: "$" passed "CME\n:MNQ1!"
_CONTINUOUS = re.compile(r"^(?P<root>[A-Z0-9]+?)(?P<nth>[12])!$")
_CONTRACT = re.compile(r"^(?P<root>[A-Z0-9]*[A-Z0-9])(?P<month>[FGHJKMNQUVXZ])(?P<year>\d{1,4})$")


@functools.lru_cache(maxsize=1024)  # a signal's ticker is taken apart per sub-account
def split_symbol(symbol: str) -> SymbolParts:
    """``CME_MINI:MNQ1!`` → (MNQ, front); ``MNQZ6`` / ``MNQZ26`` / ``MNQZ2026`` → (MNQ, Dec, year).

    A bare known root (``NQ``, as PickMyTrade templates send) means its front contract. The root
    is what remains once the suffix is taken off, so it is never matched by prefix. Raises
    ``InvalidSignal`` (422) for anything that is not a futures symbol.
    """
    text = symbol.strip().upper()
    exchange: str | None = None
    if ":" in text:
        exchange, _, text = text.partition(":")
        if not _EXCHANGE.fullmatch(exchange):
            raise InvalidSignal(f"symbol {symbol!r}: {exchange!r} is not an exchange prefix")
    if text in PRODUCTS:
        return SymbolParts(text, nth=1, exchange=exchange)
    cont = _CONTINUOUS.match(text)
    if cont:
        return SymbolParts(cont["root"], nth=int(cont["nth"]), exchange=exchange)
    bare = text[:-1]
    if text[-1:] in "12" and bare in PRODUCTS:  # ``ES1``: a continuous symbol missing its "!"
        return SymbolParts(bare, nth=int(text[-1]), exchange=exchange)
    contract = _CONTRACT.match(text)
    if contract and len(contract["year"]) != 3 and not contract["root"].isdigit():
        month = MONTH_CODES.index(contract["month"]) + 1
        return SymbolParts(
            contract["root"], month=month, year=int(contract["year"]), exchange=exchange
        )
    raise InvalidSignal(
        f"symbol {symbol!r} is not a futures symbol (expected e.g. MNQ1!, MNQ2! or MNQZ6)"
    )


def root_of(symbol: str) -> str | None:
    """The product (root) of a contract the broker names (``MNQZ6`` → ``MNQ``); None when
    the symbol does not read as a futures symbol."""
    try:
        return split_symbol(symbol).root
    except InvalidSignal:
        return None


def product_for(root: str) -> Product:
    """The built-in product of ``root`` (exact match), or InvalidSignal 422."""
    product = PRODUCTS.get(root.upper())
    if product is None:
        known = " ".join(PRODUCTS)
        raise InvalidSignal(f"unknown instrument root {root!r} (built in: {known})")
    return product


# --- calendar ----------------------------------------------------------------------------------


def third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def _month_before(year: int, month: int) -> tuple[int, int]:
    return (year - 1, 12) if month == 1 else (year, month - 1)


def roll_date(product: Product, year: int, month: int) -> date:
    """The first day on which the (year, month) contract is no longer the one to trade."""
    if product.roll is Roll.QUARTERLY_INDEX:
        return third_friday(year, month) - timedelta(days=8)
    if product.roll is Roll.BEFORE_DELIVERY:
        return date(year, month, 1) - timedelta(days=7)
    py, pm = _month_before(year, month)
    return date(py, pm, 15 if product.roll is Roll.CRUDE else 20)


def past_roll(root: str, year: int, month: int, today: date) -> bool:
    """Whether the (year, month) contract of ``root`` is past its roll date on ``today``: its
    volume has moved on, and with it TradingView's ``1!``. False for a root not in the table."""
    product = PRODUCTS.get(root.upper())
    return product is not None and today >= roll_date(product, year, month)


def listed_contracts(product: Product, today: date, count: int) -> list[tuple[int, int]]:
    """The next ``count`` (year, month) contracts still tradable on ``today``, front first."""
    found: list[tuple[int, int]] = []
    year, month = today.year, today.month
    while len(found) < count:
        if month_code(month) in product.months and today < roll_date(product, year, month):
            found.append((year, month))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return found


def calendar_contract(root: str, nth: int, today: date) -> str:
    """``calendar_contract("MNQ", 1, 2026-11-25)`` → ``MNQZ6``: the calendar rule's answer."""
    product = product_for(root)
    if nth < 1:
        raise InvalidSignal(f"{root}{nth}!: continuous contracts count from 1")
    year, month = listed_contracts(product, today, nth)[nth - 1]
    return f"{product.root}{month_code(month)}{year % 10}"


def table_contract(name: str) -> Contract:
    """A Contract from the built-in table for an explicit contract name (no broker id)."""
    parts = split_symbol(name)
    product = product_for(parts.root)
    return Contract(
        symbol=parts.contract_name,
        root=product.root,
        tick_size=product.tick_size,
        value_per_point=product.value_per_point,
    )


# --- resolver ----------------------------------------------------------------------------------

ContractLookup = Callable[[str], Awaitable[Contract]]


@runtime_checkable
class HasFindContract(Protocol):
    async def find_contract(self, symbol: str) -> Contract: ...


# What "the broker has no answer" looks like: our errors (NotFound, BrokerRejected, Transient…),
# a missing key, a dropped connection or a timeout. Anything else is a bug and propagates.
LOOKUP_FAILURES = (JtradesError, LookupError, OSError, TimeoutError)


def _utcnow() -> datetime:
    return datetime.now(UTC)


class InstrumentResolver:
    """Symbol → Contract: the broker first, cached for ``ttl_s``; the calendar and table when
    the broker has none (cached only ``fallback_ttl_s``, so the broker's answer comes back soon).

    The cache is per lookup source: demo and live Tradovate number contracts differently.

    A fallback answer is provisional: its contract usually has no broker id (a table contract),
    and near a roll the calendar may name another month than the broker. It is still cached, for
    60 s by default, because the usual reasons the broker had no answer — a 429, a penalty
    ticket — are made worse by asking again: one lookup per symbol and broker per minute keeps
    a signal burst from lengthening the lock (money rule 7). Nothing depends on its missing id
    for money: entries go out by symbol, and a liquidation takes the id of the held position
    or looks the contract up when it is sent (``dispatch.liquidation_contract_id``), never 0.
    The other reason — the session was reconnecting — ends with a fresh sync, and then the
    broker can answer at once: ``forget(source, provisional_only=True)`` drops a session's
    provisional answers (the broker registry calls it when it sees the session synced again),
    so the minute is only ever spent waiting out a broker that refused.
    """

    def __init__(
        self,
        lookup: ContractLookup | HasFindContract | None = None,
        *,
        ttl_s: float = 3600.0,
        fallback_ttl_s: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._lookup = lookup
        self._ttl_s = ttl_s
        self._fallback_ttl_s = fallback_ttl_s
        self._monotonic = monotonic
        self._now = now
        # (id(source), symbol) → (expires at, contract, source, provisional): holding the source
        # keeps its id from being reused by another broker while the entry lives.
        self._cache: dict[tuple[int, str], tuple[float, Contract, object, bool]] = {}
        self._inflight: dict[tuple[int, str], tuple[asyncio.Future[Contract], object]] = {}

    async def resolve(
        self, symbol: str, source: ContractLookup | HasFindContract | None = None
    ) -> Contract:
        """The tradable contract for ``symbol``; InvalidSignal 422 when nobody knows it.

        Concurrent first requests for one symbol (a signal fanning out to many sub-accounts)
        share one broker lookup."""
        parts = split_symbol(symbol)
        source = source if source is not None else self._lookup
        key = (id(source), str(parts))
        hit = self._cache.get(key)
        if hit is not None and hit[0] > self._monotonic() and hit[2] is source:
            return hit[1]
        pending = self._inflight.get(key)
        if pending is None or pending[1] is not source:
            task = asyncio.ensure_future(self._look_up(key, parts, source))
            self._inflight[key] = pending = (task, source)
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(pending[0])

    def cached(self, symbol: str, source: ContractLookup | HasFindContract | None = None) -> bool:
        """Whether ``resolve`` would answer ``symbol`` from the cache, awaiting nothing."""
        source = source if source is not None else self._lookup
        try:
            key = (id(source), str(split_symbol(symbol)))
        except InvalidSignal:  # no futures symbol: ``resolve`` says so, per sub-account
            return False
        hit = self._cache.get(key)
        return hit is not None and hit[0] > self._monotonic() and hit[2] is source

    def _finished(self, key: tuple[int, str], task: asyncio.Future[Contract]) -> None:
        current = self._inflight.get(key)
        if current is not None and current[0] is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have gone away

    async def _look_up(
        self,
        key: tuple[int, str],
        parts: SymbolParts,
        source: ContractLookup | HasFindContract | None,
    ) -> Contract:
        contract = await self._ask(source, str(parts), parts.root)
        ttl, provisional = self._ttl_s, False
        if contract is None:
            contract = await self._fallback(source, parts)
            ttl, provisional = self._fallback_ttl_s, True
        if parts.nth is not None:  # the front month may roll at the next day turn
            ttl = min(ttl, until_day_turn(self._now()))
        self._cache[key] = (self._monotonic() + ttl, contract, source, provisional)
        return contract

    def forget(self, source: object | None = None, *, provisional_only: bool = False) -> int:
        """Drop cached answers: all, or only ``source``'s; with ``provisional_only`` only the
        fallback answers (the broker's own stay for their hour). Returns how many went."""
        gone = [
            key
            for key, (_, _, src, provisional) in self._cache.items()
            if (source is None or src is source) and (provisional or not provisional_only)
        ]
        for key in gone:
            del self._cache[key]
        return len(gone)

    async def _ask(
        self, source: ContractLookup | HasFindContract | None, name: str, root: str
    ) -> Contract | None:
        if source is None:
            return None
        find = source.find_contract if isinstance(source, HasFindContract) else source
        try:
            contract = await find(name)
        except LOOKUP_FAILURES as exc:
            log.info("instrument.lookup_failed", symbol=name, error=str(exc))
            return None
        if contract.root.upper() != root:
            # A broker answering GC with MGC would size a position ten times off: distrust it.
            log.warning("instrument.lookup_mismatch", symbol=name, root=root, got=contract.root)
            return None
        return contract

    async def _fallback(
        self, source: ContractLookup | HasFindContract | None, parts: SymbolParts
    ) -> Contract:
        if parts.nth is None:
            return table_contract(parts.contract_name)
        # the CME trading day, not the UTC date: from 17:00 Chicago on the eve of a roll the
        # session is the roll day's, and the UTC date turned only at 18:00/19:00
        name = calendar_contract(parts.root, parts.nth, trading_day(self._now()))
        from_broker = await self._ask(source, name, parts.root)
        return from_broker if from_broker is not None else table_contract(name)
