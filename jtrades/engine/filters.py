"""Signal filters: an ordered chain of small checks, each saying no with a reason, or passing.

Pure: the clock is ``now``, the counters come in a state object the caller read from the store,
the user's zone is ``tz``. The first check that says no wins and names itself (money rule 9:
every rejection is explainable).

Order (recorder): ``recording_disabled`` → ``owner_not_approved`` → ``halted`` → *[exits stop
here]* → ``direction`` → ``window`` → ``auto_flat`` → ``cooldown`` → ``max_signals`` →
``every_nth``. The trader chain is the same with ``trader_disabled`` first and ``max_daily_loss``
before ``every_nth``; of the recorder's filters it runs only those the trader overrides, in the
trader owner's zone (the recorder's check applied the inherited ones once, in its owner's zone:
``check_trader`` says which runs where and why).

A buy/sell on a side the recorder's ``--direction`` forbids is no entry for the recorder, so its
chain stops at the direction. A trader with its own ``--direction`` or ``--inverse``
(``reads_own_way``) may read it as an entry all the same: the recorder's entry filters are then
asked for it on their own (``check_entry``: the recorder's values and zone, on the trader's own
counters, ``counters.ForeignEntry``), so such a trader is held to the recorder's window, cutoff
and limits like any other, and its reading's entries spend no count of the recorder's, which
every trader reading the recorder as the recorder does is judged on.

A buy/sell refused by an entry check or the kill switch is refused ``entry_only``: the engine
still plans it close-only, so a sub-account holding the side the strategy just reversed out of
is closed (``Rejection``).

What counts as an exit (skips the entry checks, and passes the kill switch): a close (``close``
/``exit``/``flat`` or ``market_position`` flat) and a reduce (a sell whose target position is
still long, a buy whose target is still short). ``cancel`` skips the entry checks too but the
kill switch stops it: cancelling a protective stop adds risk. A disabled recorder/trader or an
unapproved owner rejects everything, exits included (their positions are the user's to manage).

Counters, precisely (the caller keeps them per recorder, or per trader, since ``session_start``):

- ``entries_this_session``: entry signals this check accepted. ``max_signals`` compares it.
- ``last_entry_at``: when the last accepted entry signal arrived. ``cooldown`` compares it.
- ``seen_this_session``: entry signals that reached ``every_nth``, i.e. whose verdict from this
  check was *accepted* or *rejected by every_nth* (it is last in the chain, so nothing else). The
  signal being checked is number ``seen + 1``; every N-th one (N, 2N, …) passes.
- ``signals_this_session``: every signal received, informational (no check reads it).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from jtrades.engine.instruments import split_symbol
from jtrades.engine.risk import Direction, RiskSettings
from jtrades.engine.signal import Action, MarketPosition, Signal
from jtrades.engine.tradingday import in_window, next_wall_time, session_open, trading_day
from jtrades.errors import InvalidSignal
from jtrades.money import cents


@dataclass(frozen=True, slots=True)
class Rejection:
    """Which filter said no (a stable name stored on the signal row) and why, for people.

    ``entry_only``: it refused a buy/sell's new position, not the signal's close half. Such a
    signal is still planned per sub-account, close-only: one holding the opposite side (the
    strategy reversed out of it) is closed, nothing opens (DESIGN §2: closes are never blocked
    by entry filters, the kill switch blocks everything but closes). A disabled recorder or
    trader and an unapproved owner trade nothing at all; a refused cancel or add holds no close.
    """

    filter: str
    reason: str
    entry_only: bool = False


@dataclass(frozen=True, slots=True)
class RecorderState:
    signals_this_session: int
    entries_this_session: int
    last_entry_at: datetime | None
    seen_this_session: int


@dataclass(frozen=True, slots=True)
class TraderState:
    realized_pnl_today: Decimal
    # of this trader's positions, marked at the signal's price or the last one known for the
    # contract (sizing.open_pnl); None: unknown (``open_pnl_unknown`` says why)
    open_pnl: Decimal | None
    last_entry_at: datetime | None
    entries_this_session: int
    seen_this_session: int = 0
    # False: the live views hold fills the realized P&L does not count yet (engine.booked_fills)
    pnl_counted: bool = True
    # why ``open_pnl`` is None: a sub-account's positions cannot be read, or (None:
    # ``OPEN_UNMARKED``) a position is open and no price is known to mark it at
    open_pnl_unknown: str | None = None


_SWAP_ACTION = {Action.BUY: Action.SELL, Action.SELL: Action.BUY}
_SWAP_POS = {MarketPosition.LONG: MarketPosition.SHORT, MarketPosition.SHORT: MarketPosition.LONG}


def apply_inverse(signal: Signal, inverse: bool) -> Signal:
    """The signal as an ``--inverse`` recorder/trader reads it: buy↔sell, long↔short.

    Applied first by both the filters and the planner (each takes the raw signal).
    """
    if not inverse:
        return signal

    def swap(p: MarketPosition | None) -> MarketPosition | None:
        return _SWAP_POS.get(p, p) if p is not None else None

    return dataclasses.replace(
        signal,
        action=_SWAP_ACTION.get(signal.action, signal.action),
        market_position=swap(signal.market_position),
        prev_market_position=swap(signal.prev_market_position),
        closes_only=swap(signal.closes_only),  # a covering buy reads as a sell exiting a long
    )


def is_reduce(signal: Signal) -> bool:
    """A sell whose target position is still long (or a buy whose target is still short)."""
    mp = signal.market_position
    return (signal.action is Action.SELL and mp is MarketPosition.LONG) or (
        signal.action is Action.BUY and mp is MarketPosition.SHORT
    )


def is_exit(signal: Signal) -> bool:
    """Closes and reduces: they never meet entry filters and pass the kill switch."""
    return signal.is_close or is_reduce(signal)


def _side_allowed(side: MarketPosition, direction: Direction) -> bool:
    return direction is Direction.BOTH or str(direction) == str(side)


def _new_side(sig: Signal) -> MarketPosition | None:
    if sig.action is Action.BUY:
        return MarketPosition.LONG
    if sig.action is Action.SELL:
        return MarketPosition.SHORT
    return None  # add follows the position's own side; cancel opens nothing


def _may_open(sig: Signal, s: RiskSettings) -> bool:
    """Whether a signal (read with ``s.inverse`` applied) can open or add to a position: not an
    exit, not a cancel, and not a buy/sell on a side ``--direction`` forbids. Such a buy/sell
    is at most the close half of a reversal: no entry filter applies to it, and it is no entry
    for the counters (cooldown, max signals, every-Nth) — counted, a long-only follower's
    reversal sells used up the session's entries and took every-Nth turns from the buys."""
    if is_exit(sig) or sig.action is Action.CANCEL:
        return False
    side = _new_side(sig)
    return side is None or _side_allowed(side, s.direction)


def is_entry(signal: Signal, s: RiskSettings) -> bool:
    """Whether the raw ``signal`` counts as an entry under settings ``s`` (``_may_open``)."""
    return _may_open(apply_inverse(signal, s.inverse), s)


# The settings that make a trader read a signal otherwise than its recorder does.
OWN_READING = frozenset({"direction", "inverse"})


def reads_own_way(overridden: Collection[str]) -> bool:
    """Whether a trader overriding ``overridden`` may take as an entry a buy/sell its recorder's
    reading cannot open (``forbidden_side``)."""
    return not OWN_READING.isdisjoint(overridden)


def forbidden_side(signal: Signal, s: RiskSettings) -> bool:
    """Whether the raw ``signal``, read with ``s.inverse``, is a buy/sell on a side
    ``s.direction`` forbids: no entry under ``s``, so ``check_recorder`` stops at the direction
    and runs none of the other entry filters."""
    sig = apply_inverse(signal, s.inverse)
    return not _skips_entry_checks(sig) and not _may_open(sig, s)


def _check_direction(sig: Signal, s: RiskSettings) -> Rejection | None:
    """Reject an entry on a side the settings forbid, when the signal shows it cannot be a reversal.

    A disallowed sell may still be the close half of a reversal out of a long ("a reversal whose
    new side is filtered only closes"), so it is rejected here only when ``prev_market_position``
    says the strategy was flat (or already on the forbidden side). With no position information
    the signal passes and the planner decides per sub-account: close an opposite position, or
    ignore with the reason "direction".
    """
    side = _new_side(sig)
    if side is None or _side_allowed(side, s.direction):
        return None
    if sig.prev_market_position in (MarketPosition.FLAT, side):
        return Rejection("direction", f"{side} entries are off (--direction {s.direction})")
    return None


def _check_window(s: RiskSettings, now: datetime, tz: ZoneInfo) -> Rejection | None:
    if not s.windows or any(in_window(now, w, tz) for w in s.windows):
        return None
    spans = ", ".join(str(w) for w in s.windows)
    local = now.astimezone(tz)
    return Rejection("window", f"{local:%H:%M} {tz.key} is outside the trading window(s) {spans}")


_INSTANT = timedelta(microseconds=1)
# Why the open P&L is unknown when a position is open and no price marks it.
OPEN_UNMARKED = "no price in the alert and none known yet for the contract"


def _check_auto_flat(s: RiskSettings, now: datetime, tz: ZoneInfo) -> Rejection | None:
    """No new entries from the cutoff until the next trading day opens (17:00 Chicago).

    The cutoff is the first time the user's wall clock reads ``auto_flat_after`` after the day's
    open, so a 15:00 cutoff fires at 15:00 the same afternoon and an evening one (20:00) fires
    the evening the day opens; weekends before Sunday's open are before any cutoff. Strictly
    after: a cutoff that reads the open itself (18:00 New York; 22:00 London in the weeks the
    US is on summer time and the UK not) leaves nothing to block until the next open.
    """
    if s.auto_flat_after is None:
        return None
    opened = session_open(trading_day(now))
    cutoff = next_wall_time(opened + _INSTANT, s.auto_flat_after, tz)
    if now < cutoff:
        return None
    return Rejection(
        "auto_flat",
        f"no new entries after {s.auto_flat_after:%H:%M} {tz.key} until the next trading day",
    )


def _check_cooldown(
    s: RiskSettings, last_entry_at: datetime | None, now: datetime
) -> Rejection | None:
    if s.cooldown_s <= 0 or last_entry_at is None:
        return None
    elapsed = (now - last_entry_at).total_seconds()
    if elapsed >= s.cooldown_s:
        return None
    # a started second counts as left: rounded, 59.6 s into 60 refused with "0s left"
    wait = max(1, math.ceil(s.cooldown_s - max(0.0, elapsed)))
    return Rejection("cooldown", f"cooldown {s.cooldown_s}s: {wait}s left since the last entry")


def _check_max_signals(s: RiskSettings, entries: int) -> Rejection | None:
    if s.max_signals is None or entries < s.max_signals:
        return None
    return Rejection(
        "max_signals", f"{entries} entries this session, the maximum is {s.max_signals}"
    )


def _check_every_nth(s: RiskSettings, seen: int) -> Rejection | None:
    n = s.every_nth
    number = seen + 1
    if n <= 1 or number % n == 0:
        return None
    return Rejection(
        "every_nth", f"signal {number} of this session; only every {ordinal(n)} is taken"
    )


def ordinal(n: int) -> str:
    """2nd, 3rd, 11th, 21st: the refusal is read by people."""
    last_two = n % 100
    suffix = "th" if 11 <= last_two <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _check_daily_loss(s: RiskSettings, st: TraderState) -> Rejection | None:
    if s.max_daily_loss is None:
        return None
    if not st.pnl_counted:
        return Rejection(
            "max_daily_loss",
            "today's P&L is not known: the latest fills are not counted yet (is the database"
            " behind?)",
        )
    realized, limit = st.realized_pnl_today, s.max_daily_loss
    if st.open_pnl is None:
        # Judged as flat, a position under water let the entry add to it (fail closed).
        if realized > -limit:
            why = st.open_pnl_unknown or OPEN_UNMARKED
            return Rejection(
                "max_daily_loss",
                f"open P&L unknown: {why} (realized today {_usd(realized)} USD, max daily loss"
                f" {_usd(limit)} USD)",
            )
        return Rejection(
            "max_daily_loss",
            f"today's realized P&L {_usd(realized)} USD (open unknown) reached the max daily loss"
            f" {_usd(limit)} USD",
        )
    pnl = realized + st.open_pnl
    if pnl > -limit:
        return None
    return Rejection(
        "max_daily_loss",
        f"today's P&L {_usd(pnl)} USD (realized {_usd(realized)}, open {_usd(st.open_pnl)}) "
        f"reached the max daily loss {_usd(limit)} USD",
    )


def _usd(amount: Decimal) -> str:
    """Money as the tables show it (``money.cents``): the reasons said 66.500 and 21.3333…"""
    return cents(amount)


def _gate(
    sig: Signal, *, enabled: bool, disabled_name: str, owner_active: bool, halted: bool
) -> Rejection | None:
    if not enabled:
        what = "recording is" if disabled_name == "recording_disabled" else "the trader is"
        return Rejection(disabled_name, f"{what} disabled")
    if not owner_active:
        return Rejection("owner_not_approved", "the owner is not an approved, active user")
    if halted and not is_exit(sig):
        reason = "trading is halted (kill switch); only closes pass"
        return Rejection("halted", reason, entry_only=_may_reverse(sig))
    return None


def _may_reverse(sig: Signal) -> bool:
    """A buy or sell that is no exit: held against an opposite position, it closes it first."""
    return sig.action in (Action.BUY, Action.SELL) and not is_exit(sig)


def _entry_refusal(sig: Signal, rej: Rejection | None) -> Rejection | None:
    if rej is None or not _may_reverse(sig):
        return rej
    return dataclasses.replace(rej, entry_only=True)


def _skips_entry_checks(sig: Signal) -> bool:
    return is_exit(sig) or sig.action is Action.CANCEL


def check_recorder(
    signal: Signal,
    s: RiskSettings,
    st: RecorderState,
    now: datetime,
    tz: ZoneInfo,
    *,
    enabled: bool,
    owner_active: bool,
    halted: bool,
) -> Rejection | None:
    """The recorder-level chain, once per signal; None = accepted. ``signal`` is the raw signal."""
    sig = apply_inverse(signal, s.inverse)
    gate = _gate(
        sig,
        enabled=enabled,
        disabled_name="recording_disabled",
        owner_active=owner_active,
        halted=halted,
    )
    if gate is not None or _skips_entry_checks(sig):
        return gate
    if not _may_open(sig, s):
        return _entry_refusal(sig, _check_direction(sig, s))
    return check_entry(signal, s, st, now, tz)


def other_instrument(ticker: str | None, symbol: str) -> Rejection | None:
    """An alert naming another instrument than the recorder's: refused whole (a close too).
    The recorder's risk settings (ticks, dollars, sizes, the daily loss) are for its symbol,
    and TradingView's ``{{ticker}}`` follows whatever chart the alert sits on: a PickMyTrade
    template naming NQ1!, posted to an MNQ recorder, opened full-size NQ, ten times the money
    per point. The same root in another spelling (``CME_MINI:MNQ1!``, ``MNQZ6``) is its own."""
    if not ticker or _root(ticker) == _root(symbol):
        return None
    return Rejection("symbol", f"the alert is for {ticker}; this recorder trades {symbol}")


def _root(symbol: str) -> str:
    """The instrument's root; for a root outside the built-in table (``MBT``, a recorder's
    ``--symbol`` the broker knows), the text left once an exchange prefix and a continuous
    ``1!``/``2!`` or a month and year are taken off."""
    try:
        return split_symbol(symbol).root
    except InvalidSignal:
        text = symbol.strip().upper().rpartition(":")[2]
        return _SUFFIX.sub("", text) or text


# a continuous suffix (``1!``, ``2!``, ``!``) or a contract month and year (``Z6``, ``Z2026``)
_SUFFIX = re.compile(r"(?:[12]?!|[FGHJKMNQUVXZ]\d{1,4})$")


def check_entry(
    signal: Signal, s: RiskSettings, st: RecorderState, now: datetime, tz: ZoneInfo
) -> Rejection | None:
    """The recorder's entry filters after its direction (window → every-Nth) for an entry
    under its gate: ``check_recorder``'s own end, and alone for a trader's entry in a buy/sell
    the recorder's reading cannot open (``forbidden_side``), which that chain never judged."""
    return _entry_refusal(
        signal,  # raw: inversion changes neither what is a buy/sell nor what is an exit
        _check_window(s, now, tz)
        or _check_auto_flat(s, now, tz)
        or _check_cooldown(s, st.last_entry_at, now)
        or _check_max_signals(s, st.entries_this_session)
        or _check_every_nth(s, st.seen_this_session),
    )


def check_gate(
    signal: Signal, s: RiskSettings, *, enabled: bool, owner_active: bool, halted: bool
) -> Rejection | None:
    """A trader's (or one sub-account's) gate alone: for a signal whose entry the recorder's
    chain already refused (its close half still goes where the trader may trade)."""
    return _gate(
        apply_inverse(signal, s.inverse),
        enabled=enabled,
        disabled_name="trader_disabled",
        owner_active=owner_active,
        halted=halted,
    )


def check_trader(
    signal: Signal,
    s: RiskSettings,
    st: TraderState,
    now: datetime,
    tz: ZoneInfo,
    *,
    enabled: bool,
    owner_active: bool,
    halted: bool,
    overridden: Collection[str] | None = None,
) -> Rejection | None:
    """The trader-level chain with the trader's effective settings; None = accepted.

    ``tz`` is the trader owner's zone; ``overridden`` names the RiskSettings fields the trader
    sets itself (``RiskOverrides.values``; None = all of them, as if there were no recorder).

    What runs where (DESIGN §2: recorder-level filters run once per signal, trader-level
    overrides run per trader). ``check_recorder`` has already passed the signal:

    - ``windows`` and ``auto_flat_after``: an inherited one was applied by the recorder's check,
      on the recorder owner's wall clock. Here only the trader's own, on the trader owner's
      (``tz``). Re-running an inherited one in a follower's other zone would apply it twice,
      in two zones: a 09:30-16:00 New York window followed from Los Angeles would trade only
      12:30-16:00 New York, which nobody set.
    - ``cooldown_s``, ``max_signals``, ``every_nth``: an inherited one was counted on the
      recorder's counters; here only the trader's own, on the trader's counters. Counting an
      inherited one again would compound it (every 2nd of every 2nd = every 4th).
    - ``direction``: here when the trader sets ``direction`` or ``inverse``. With both inherited
      the trader reads the signal as the recorder did and the recorder's answer stands; an own
      ``inverse`` reads it the other way, and the effective direction applies to that reading,
      as it does in the planner (``planning``), which always uses the effective settings. Such
      a trader is judged on its own reading: a buy/sell the recorder's reading cannot open
      (``forbidden_side``; refused or not by the recorder's direction) may be its entry, and
      the caller then asks the recorder's other entry filters first (``check_entry``).
    - ``max_daily_loss``: always, inherited or not. The recorder has no money and never checks
      it: this is its only application, to the trader's own P&L.
    - ``max_contracts`` is no filter: the planner caps each sub-account's position with the
      effective value, once.

    Since the recorder's chain (or ``check_entry``) runs first, a trader's own window, cutoff,
    cooldown, max signals or every-Nth can only narrow the recorder's, never widen it. Its own
    direction or inverse decides which side it opens, on its reading. Its ``max_daily_loss`` and
    ``max_contracts`` replace the recorder's, up or down (they are the trader's alone).
    """
    sig = apply_inverse(signal, s.inverse)
    gate = _gate(
        sig,
        enabled=enabled,
        disabled_name="trader_disabled",
        owner_active=owner_active,
        halted=halted,
    )
    if gate is not None or _skips_entry_checks(sig):
        return gate

    def own(name: str) -> bool:
        return overridden is None or name in overridden

    if not _may_open(sig, s):
        direction = own("direction") or own("inverse")
        return _entry_refusal(sig, _check_direction(sig, s) if direction else None)
    return _entry_refusal(
        sig,
        (_check_window(s, now, tz) if own("windows") else None)
        or (_check_auto_flat(s, now, tz) if own("auto_flat_after") else None)
        or (_check_cooldown(s, st.last_entry_at, now) if own("cooldown_s") else None)
        or (_check_max_signals(s, st.entries_this_session) if own("max_signals") else None)
        or _check_daily_loss(s, st)
        or (_check_every_nth(s, st.seen_this_session) if own("every_nth") else None),
    )
