"""Contract names and continuous symbols as Tradovate lists them, as pure text rules.

``MNQZ6`` names one listed contract; ``MNQ1!``/``MNQ2!`` name the front / next one by expiry and
move as the front month rolls. The broker resolves them with requests and caches the answer; the
rules for reading a name and picking the nth contract live here, where they need no session.
"""

from __future__ import annotations

import re
from collections.abc import Callable

MONTHS = "FGHJKMNQUVXZ"
CONTINUOUS_SYMBOL = re.compile(r"^([A-Z0-9]{1,4}?)([12])!$")
CONTRACT_NAME = re.compile(r"^([A-Z0-9]{1,4}?)([FGHJKMNQUVXZ])(\d{1,2})$")


def front(
    names: list[str],
    root: str,
    nth: int,
    this_year: int,
    rolled: Callable[[str, int, int], bool] | None = None,
) -> str | None:
    """The nth listed contract of ``root`` by expiry (``MNQ1!`` → front, ``MNQ2!`` → next),
    leaving out those ``rolled(root, year, month)`` says are past their roll date.

    Why leave them out: Tradovate lists a contract until it expires, a week and more after the
    volume (and TradingView's ``1!``) moved to the next one; taken as the front in roll week,
    every alert traded the thin, expiring month, its price levels a roll spread off the chart's.
    When that leaves fewer than ``nth``, the listing is taken as it is.

    Contract names carry a one- or two-digit year; it is read as the first matching year not
    before last year (Z9 listed in 2029 is 2029, H0 then is 2030)."""
    dated = []
    for name in names:
        m = CONTRACT_NAME.match(name)
        if m is None or m.group(1) != root:
            continue  # whole root only: GC is not MGC
        digits = m.group(3)
        span = 10 ** len(digits)
        year = this_year - this_year % span + int(digits)
        if year < this_year - 1:
            year += span
        dated.append((year, MONTHS.index(m.group(2)), name))
    dated.sort()
    live = [d for d in dated if rolled is None or not rolled(root, d[0], d[1] + 1)]
    if len(live) >= nth:
        return live[nth - 1][2]
    return dated[nth - 1][2] if len(dated) >= nth else None
