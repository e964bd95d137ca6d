"""DAY orders on paper: when a session ends, and whether an order's has.

Tradovate expires a DAY order at the end of the session it was placed in: the CME trading day,
which starts at 17:00 Chicago (``jtrades.engine.tradingday``). The engine sends its entries DAY
and its exits GTC. The paper broker has no clock of its own and learns the time only from prices,
so it expires orders at the first price after their session (``PaperBroker.on_price``) and when
it puts orders back after a restart (``paper_restore``).

Each order keeps the start of its session. Checking a price then means comparing that start with
the start of the current session. The current session is worked out again only once it is over,
so no time zone conversion runs per order or per price.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from jtrades.broker.base import TimeInForce
from jtrades.engine.tradingday import session_open, session_start, trading_day


def utc_now() -> datetime:
    return datetime.now(UTC)


class SessionClock:
    """The time and the current session for one paper login. ``now`` can be replaced in tests."""

    __slots__ = ("_end", "_start", "now")

    def __init__(self, now: Callable[[], datetime] = utc_now) -> None:
        self.now = now
        self._start = self._end = datetime.min.replace(tzinfo=UTC)

    def session(self) -> datetime:
        """The start of the session that is under way now (UTC)."""
        t = self.now()
        if not self._start <= t < self._end:  # the cached session is over (or not begun)
            self._start = session_start(t)
            # it ends where the next trading day's session opens (Friday's: at Monday's)
            self._end = session_open(trading_day(t) + timedelta(days=1))
        return self._start


def expires(time_in_force: TimeInForce | None, session: datetime | None, current: datetime) -> bool:
    """Whether an order ``time_in_force`` placed in the session starting at ``session`` has
    expired by the session starting at ``current``."""
    return time_in_force is TimeInForce.DAY and session is not None and session < current
