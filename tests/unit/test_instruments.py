"""Instruments: whole-root symbol matching, the roll calendar, the tick table, the resolver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from jtrades.broker.base import Contract
from jtrades.broker.tradovate.symbols import front
from jtrades.engine.instruments import (
    MONTH_CODES,
    PRODUCTS,
    InstrumentResolver,
    SymbolParts,
    calendar_contract,
    listed_contracts,
    past_roll,
    product_for,
    roll_date,
    split_symbol,
    table_contract,
    third_friday,
)
from jtrades.engine.tradingday import trading_day
from jtrades.errors import InvalidSignal, NotFound, TransientBrokerError

# TRADOVATE.md's table, $ per tick; SI NG ZB ZN 6E checked against CME specs (see module doc).
TICKS = {
    "ES": ("0.25", "12.50"),
    "MES": ("0.25", "1.25"),
    "NQ": ("0.25", "5.00"),
    "MNQ": ("0.25", "0.50"),
    "YM": ("1", "5.00"),
    "MYM": ("1", "0.50"),
    "RTY": ("0.10", "5.00"),
    "M2K": ("0.10", "0.50"),
    "GC": ("0.10", "10.00"),
    "MGC": ("0.10", "1.00"),
    "CL": ("0.01", "10.00"),
    "MCL": ("0.01", "1.00"),
    "SI": ("0.005", "25.00"),
    "NG": ("0.001", "10.00"),
    "ZB": ("0.03125", "31.25"),
    "ZN": ("0.015625", "15.625"),
    "6E": ("0.00005", "6.25"),
}


@pytest.mark.parametrize("root", sorted(TICKS))
def test_tick_table_matches_the_reference(root: str) -> None:
    tick, per_tick = TICKS[root]
    product = PRODUCTS[root]
    assert product.tick_size == Decimal(tick)
    assert product.tick_value == Decimal(per_tick)


def test_table_has_exactly_the_documented_roots() -> None:
    assert set(PRODUCTS) == set(TICKS)


# --- split_symbol -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("symbol", "expected"),
    [
        ("MNQ1!", SymbolParts("MNQ", nth=1)),
        ("MNQ2!", SymbolParts("MNQ", nth=2)),
        ("mnq1!", SymbolParts("MNQ", nth=1)),
        (" CME_MINI:MNQ1! ", SymbolParts("MNQ", nth=1, exchange="CME_MINI")),
        ("COMEX:GC1!", SymbolParts("GC", nth=1, exchange="COMEX")),
        ("MNQZ6", SymbolParts("MNQ", month=12, year=6)),
        ("MNQZ26", SymbolParts("MNQ", month=12, year=26)),
        ("MNQZ2026", SymbolParts("MNQ", month=12, year=2026)),
        ("GCZ6", SymbolParts("GC", month=12, year=6)),
        ("MGCZ6", SymbolParts("MGC", month=12, year=6)),
        ("ESH7", SymbolParts("ES", month=3, year=7)),
        ("MESH7", SymbolParts("MES", month=3, year=7)),
        ("6EM7", SymbolParts("6E", month=6, year=7)),
        ("6E1!", SymbolParts("6E", nth=1)),
        ("M2KU6", SymbolParts("M2K", month=9, year=6)),
        ("M2K1!", SymbolParts("M2K", nth=1)),
        ("NQ", SymbolParts("NQ", nth=1)),
        ("ES1", SymbolParts("ES", nth=1)),
        ("HGZ6", SymbolParts("HG", month=12, year=6)),  # unknown to the table, fine to split
        ("HG1!", SymbolParts("HG", nth=1)),
    ],
)
def test_split_symbol(symbol: str, expected: SymbolParts) -> None:
    assert split_symbol(symbol) == expected


@pytest.mark.parametrize(
    "symbol",
    ["", "!", "1!", "MNQ3!", "MNQ", "MNQZ", "MNQZ206", "MNQZ20266", "MNQA6", "AAPL", "ES-1",
     "BAD EX:ES1!", "12Z6", "MNQ1!!"],
)  # fmt: skip
def test_split_symbol_refuses(symbol: str) -> None:
    if symbol == "MNQ":
        assert split_symbol(symbol).nth == 1  # a bare known root is its front month
        return
    with pytest.raises(InvalidSignal) as info:
        split_symbol(symbol)
    assert info.value.status == 422


roots = st.sampled_from(sorted(PRODUCTS))
months = st.integers(1, 12)
years = st.integers(0, 9) | st.integers(10, 99) | st.integers(2000, 2099)
exchanges = st.none() | st.sampled_from(["CME", "CME_MINI", "COMEX", "NYMEX", "CBOT"])
alnum = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=4)


def _spell(root: str, month: int, year: int, exchange: str | None, lower: bool) -> str:
    width = 1 if year < 10 else 2 if year < 100 else 4
    text = f"{root}{MONTH_CODES[month - 1]}{year:0{width}d}"
    text = f"{exchange}:{text}" if exchange else text
    return text.lower() if lower else text


@given(roots, months, years, exchanges, st.booleans())
def test_contract_symbols_round_trip(
    root: str, month: int, year: int, exchange: str | None, lower: bool
) -> None:
    parts = split_symbol(_spell(root, month, year, exchange, lower))
    assert (parts.root, parts.month, parts.year, parts.exchange) == (root, month, year, exchange)
    assert parts.contract_name == f"{root}{MONTH_CODES[month - 1]}{year % 10}"
    assert split_symbol(str(parts)) == SymbolParts(root, month=month, year=year % 10)


@given(roots, st.sampled_from([1, 2]), exchanges)
def test_continuous_symbols_round_trip(root: str, nth: int, exchange: str | None) -> None:
    text = f"{exchange}:{root}{nth}!" if exchange else f"{root}{nth}!"
    parts = split_symbol(text)
    assert (parts.root, parts.nth, parts.exchange) == (root, nth, exchange)
    assert str(parts) == f"{root}{nth}!"
    assert split_symbol(str(parts)) == SymbolParts(root, nth=nth)


@given(roots, alnum, months, st.integers(0, 9))
def test_a_root_is_never_matched_by_prefix(root: str, more: str, month: int, year: int) -> None:
    """Extending a root (ES → ESX…) or prefixing it (ES → MES) gives a different root."""
    code = MONTH_CODES[month - 1]
    for longer in (root + more, more + root):
        assume(not longer.isdigit())
        for text in (f"{longer}{code}{year}", f"{longer}1!"):
            try:
                parts = split_symbol(text)
            except InvalidSignal:
                continue
            assert parts.root == longer
            if longer not in PRODUCTS:
                with pytest.raises(InvalidSignal, match="unknown instrument root"):
                    product_for(parts.root)


@pytest.mark.parametrize(
    ("small", "large"), [("MES", "ES"), ("MNQ", "NQ"), ("MGC", "GC"), ("MCL", "CL"), ("MYM", "YM")]
)
def test_micro_and_full_size_never_mix(small: str, large: str) -> None:
    for suffix in ("Z6", "1!", "2!", "Z2026"):
        assert split_symbol(small + suffix).root == small
        assert split_symbol(large + suffix).root == large
    assert PRODUCTS[small].tick_value < PRODUCTS[large].tick_value


def test_product_for_is_exact() -> None:
    assert product_for("mnq").root == "MNQ"
    for wrong in ("MN", "MNQQ", "G", "GCX", "E"):
        with pytest.raises(InvalidSignal):
            product_for(wrong)


def test_table_contract() -> None:
    contract = table_contract("MNQZ2026")
    assert contract == Contract("MNQZ6", "MNQ", Decimal("0.25"), Decimal(2))
    assert contract.tick_value == Decimal("0.50")


# --- calendar -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "day"),
    [(2026, 12, 18), (2026, 3, 20), (2027, 3, 19), (2026, 11, 20), (2025, 8, 15)],
)
def test_third_friday(year: int, month: int, day: int) -> None:
    assert third_friday(year, month) == date(year, month, day)


@pytest.mark.parametrize(
    ("root", "nth", "today", "expected"),
    [
        ("MNQ", 1, date(2026, 11, 25), "MNQZ6"),
        ("MNQ", 2, date(2026, 11, 25), "MNQH7"),
        ("ES", 1, date(2026, 12, 9), "ESZ6"),  # Dec 18 expiry, roll Thursday Dec 10
        ("ES", 1, date(2026, 12, 10), "ESH7"),
        ("ES", 2, date(2026, 12, 10), "ESM7"),
        ("6E", 1, date(2026, 12, 10), "6EH7"),
        ("NQ", 1, date(2027, 1, 5), "NQH7"),
        ("ZN", 1, date(2026, 11, 23), "ZNZ6"),  # first notice Nov 30: roll a week before Dec
        ("ZN", 1, date(2026, 11, 24), "ZNH7"),
        ("ZB", 2, date(2026, 11, 24), "ZBM7"),
        ("GC", 1, date(2026, 11, 25), "GCG7"),
        ("GC", 1, date(2026, 10, 1), "GCZ6"),
        ("MGC", 2, date(2026, 10, 1), "MGCG7"),
        ("SI", 1, date(2026, 11, 1), "SIZ6"),
        ("SI", 1, date(2026, 11, 24), "SIH7"),
        ("CL", 1, date(2026, 11, 14), "CLZ6"),
        ("CL", 1, date(2026, 11, 15), "CLF7"),
        ("MCL", 2, date(2026, 12, 31), "MCLH7"),
        ("NG", 1, date(2026, 11, 19), "NGZ6"),
        ("NG", 1, date(2026, 11, 20), "NGF7"),
    ],
)
def test_calendar_contract(root: str, nth: int, today: date, expected: str) -> None:
    assert calendar_contract(root, nth, today) == expected


def test_calendar_unknown_root_is_422() -> None:
    with pytest.raises(InvalidSignal, match="unknown instrument root") as info:
        calendar_contract("HG", 1, date(2026, 1, 1))
    assert info.value.status == 422


dates = st.dates(min_value=date(2000, 1, 1), max_value=date(2090, 12, 31))


@given(roots, dates)
def test_front_is_the_first_contract_not_yet_rolled(root: str, today: date) -> None:
    product = PRODUCTS[root]
    (front_y, front_m), (next_y, next_m) = listed_contracts(product, today, 2)
    assert MONTH_CODES[front_m - 1] in product.months
    assert today < roll_date(product, front_y, front_m) <= roll_date(product, next_y, next_m)
    assert (front_y, front_m) < (next_y, next_m)
    # No earlier listed month is still tradable: the front really is the front.
    y, m = front_y, front_m
    for _ in range(12):
        y, m = (y - 1, 12) if m == 1 else (y, m - 1)
        if MONTH_CODES[m - 1] in product.months:
            assert roll_date(product, y, m) <= today
    # The front is never more than a year out.
    assert date(front_y, front_m, 1) - today < timedelta(days=400)


@given(roots, dates)
def test_the_front_only_moves_forward(root: str, today: date) -> None:
    product = PRODUCTS[root]
    assert listed_contracts(product, today, 1) <= listed_contracts(
        product, today + timedelta(days=1), 1
    )


# --- resolver -------------------------------------------------------------------------------------

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def _contract(name: str, contract_id: int = 7) -> Contract:
    parts = split_symbol(name)
    return Contract(
        parts.contract_name, parts.root, Decimal("0.25"), Decimal(2), contract_id=contract_id
    )


class Lookup:
    """A broker's find_contract, scripted: answers for the names it lists, else NotFound."""

    def __init__(self, answers: dict[str, Contract | Exception]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    async def __call__(self, symbol: str) -> Contract:
        self.calls.append(symbol)
        answer = self.answers.get(symbol, NotFound(f"no {symbol}"))
        if isinstance(answer, Exception):
            raise answer
        return answer


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def resolver(
    lookup: Callable[..., object] | None = None, clock: Clock | None = None
) -> InstrumentResolver:
    return InstrumentResolver(
        lookup,  # type: ignore[arg-type]
        monotonic=clock or Clock(),
        now=lambda: NOW,
    )


async def test_broker_answer_wins_and_is_cached() -> None:
    lookup = Lookup({"MNQ1!": _contract("MNQZ6", 42)})
    clock = Clock()
    r = resolver(lookup, clock)
    first = await r.resolve("CME_MINI:MNQ1!")
    assert first.contract_id == 42
    assert await r.resolve("mnq1!") is first
    assert lookup.calls == ["MNQ1!"]
    clock.t += 3601
    await r.resolve("MNQ1!")
    assert lookup.calls == ["MNQ1!", "MNQ1!"]


async def test_continuous_falls_back_to_the_calendar_contract_at_the_broker() -> None:
    lookup = Lookup({"MNQZ6": _contract("MNQZ6", 99)})
    contract = await resolver(lookup).resolve("MNQ1!")
    assert (contract.symbol, contract.contract_id) == ("MNQZ6", 99)
    assert lookup.calls == ["MNQ1!", "MNQZ6"]


async def test_no_broker_answer_falls_back_to_the_table() -> None:
    lookup = Lookup({"MES2!": TransientBrokerError("down"), "MESH7": OSError("reset")})
    contract = await resolver(lookup).resolve("MES2!")
    assert contract == Contract("MESH7", "MES", Decimal("0.25"), Decimal(5))


async def test_fallback_answers_are_cached_briefly() -> None:
    lookup = Lookup({})
    clock = Clock()
    r = resolver(lookup, clock)
    await r.resolve("ESZ6")
    await r.resolve("ESZ6")
    assert lookup.calls == ["ESZ6"]
    clock.t += 61
    await r.resolve("ESZ6")
    assert lookup.calls == ["ESZ6", "ESZ6"]


async def test_without_any_broker_the_table_answers() -> None:
    contract = await resolver(None).resolve("GC1!")
    assert contract == Contract("GCG7", "GC", Decimal("0.1"), Decimal(100))


async def test_unknown_root_without_broker_answer_is_422() -> None:
    for symbol in ("HG1!", "HGZ6", "XX2!"):
        with pytest.raises(InvalidSignal, match="unknown instrument root") as info:
            await resolver(Lookup({})).resolve(symbol)
        assert info.value.status == 422


async def test_unknown_root_the_broker_knows_is_fine() -> None:
    hg = Contract("HGZ6", "HG", Decimal("0.0005"), Decimal(25000), contract_id=5)
    assert await resolver(Lookup({"HGZ6": hg})).resolve("HGZ6") == hg


async def test_a_broker_answer_for_another_root_is_distrusted() -> None:
    mgc = Contract("MGCG7", "MGC", Decimal("0.1"), Decimal(10), contract_id=1)
    contract = await resolver(Lookup({"GC1!": mgc, "GCG7": mgc})).resolve("GC1!")
    assert (contract.root, contract.value_per_point) == ("GC", Decimal(100))


async def test_bugs_in_the_lookup_propagate() -> None:
    with pytest.raises(RuntimeError):
        await resolver(Lookup({"ES1!": RuntimeError("bug")})).resolve("ES1!")


async def test_cache_is_per_broker_and_takes_a_broker_object() -> None:
    class Broker:
        def __init__(self, contract_id: int) -> None:
            self.contract_id = contract_id

        async def find_contract(self, symbol: str) -> Contract:
            return _contract(symbol, self.contract_id)

    r = InstrumentResolver(now=lambda: NOW)
    demo, live = Broker(1), Broker(2)
    assert (await r.resolve("MNQZ6", demo)).contract_id == 1
    assert (await r.resolve("MNQZ6", live)).contract_id == 2
    assert (await r.resolve("MNQZ6", demo)).contract_id == 1


async def test_malformed_symbol_is_422_before_any_lookup() -> None:
    lookup = Lookup({})
    with pytest.raises(InvalidSignal):
        await resolver(lookup).resolve("not a symbol")
    assert lookup.calls == []


async def test_concurrent_first_requests_share_one_lookup() -> None:
    gate = asyncio.Event()
    calls: list[str] = []

    async def slow(symbol: str) -> Contract:
        calls.append(symbol)
        await gate.wait()
        return _contract("MNQZ6", 3)

    r = InstrumentResolver(slow, now=lambda: NOW)
    waiters = [asyncio.ensure_future(r.resolve("MNQ1!")) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*waiters)
    assert calls == ["MNQ1!"]
    assert {c.contract_id for c in results} == {3}


async def test_a_cancelled_waiter_does_not_cancel_the_others() -> None:
    gate = asyncio.Event()

    async def slow(symbol: str) -> Contract:
        await gate.wait()
        return _contract("ESZ6", 4)

    r = InstrumentResolver(slow, now=lambda: NOW)
    first = asyncio.ensure_future(r.resolve("ES1!"))
    second = asyncio.ensure_future(r.resolve("ES1!"))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert (await second).contract_id == 4
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_concurrent_failures_reach_every_waiter() -> None:
    r = InstrumentResolver(Lookup({}), now=lambda: NOW)
    results = await asyncio.gather(*(r.resolve("HG1!") for _ in range(3)), return_exceptions=True)
    assert all(isinstance(e, InvalidSignal) for e in results)


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2026, 12, 9), "MNQZ6"),  # the day before CME's roll date
        (date(2026, 12, 10), "MNQH7"),  # roll date: volume (and TradingView's 1!) moved on
        (date(2026, 12, 17), "MNQH7"),  # still listed at the broker until the 18th
    ],
)
def test_the_front_by_the_brokers_listing_skips_a_contract_past_its_roll(
    today: date, expected: str
) -> None:
    """Tradovate lists a contract until it expires: taken as the front in roll week, MNQ1! traded
    the thin, expiring month a week after the chart had moved on."""
    listed = ["MNQH7", "MNQZ6", "MNQM7"]
    picked = front(listed, "MNQ", 1, today.year, lambda r, y, m: past_roll(r, y, m, today))
    assert picked == expected
    assert picked == calendar_contract("MNQ", 1, today)  # the broker and the calendar agree


def test_a_listing_with_nothing_left_after_the_roll_is_taken_as_it_is() -> None:
    today = date(2026, 12, 14)
    assert front(["MNQZ6"], "MNQ", 1, 2026, lambda r, y, m: past_roll(r, y, m, today)) == "MNQZ6"
    assert not past_roll("ZZZ", 2026, 12, today)  # a root the table does not know: as listed


def test_a_continuous_symbol_rolls_with_the_cme_trading_day_not_the_utc_date() -> None:
    """The eve of a roll day from 17:00 Chicago is the roll day's session; the UTC date turned
    only at 19:00 CDT, so the session's first two hours traded the expiring month."""
    chicago = ZoneInfo("America/Chicago")

    def front_at(at: datetime) -> str:
        return asyncio.run(InstrumentResolver(None, now=lambda: at).resolve("MNQ1!")).symbol

    roll = roll_date(PRODUCTS["MNQ"], 2026, 3)  # Thursday 2026-03-12
    assert trading_day(datetime(2026, 3, 11, 17, 0, tzinfo=chicago)) == roll
    assert front_at(datetime(2026, 3, 11, 16, 59, tzinfo=chicago)) == "MNQH6"
    for hour, minute in ((17, 0), (18, 30), (19, 30)):  # 22:00, 23:30 and 00:30 UTC
        assert front_at(datetime(2026, 3, 11, hour, minute, tzinfo=chicago)) == "MNQM6"


def test_a_front_month_found_before_the_day_turn_is_not_kept_past_it() -> None:
    """Cached for its TTL, the front month found at 16:59:30 on the eve of a roll was still
    given out in the roll day's session (the broker's answer for an hour)."""
    chicago = ZoneInfo("America/Chicago")
    clock = {"wall": datetime(2026, 12, 9, 16, 59, 30, tzinfo=chicago), "mono": 1000.0}

    async def lookup(name: str) -> Contract | None:  # the broker: its front month by the calendar
        return table_contract(calendar_contract("MNQ", 1, trading_day(clock["wall"])))

    resolver = InstrumentResolver(
        lookup, ttl_s=3600, now=lambda: clock["wall"], monotonic=lambda: clock["mono"]
    )
    assert asyncio.run(resolver.resolve("MNQ1!")).symbol == "MNQZ6"
    clock["wall"] += timedelta(seconds=40)  # 17:00:10: the roll day's session
    clock["mono"] += 40
    assert asyncio.run(resolver.resolve("MNQ1!")).symbol == "MNQH7"
