"""The configuration read again when an account's plan runs, under its lock: an alert may
have waited for that lock (an earlier alert settling, a protection) while the CLI changed what
the alert was judged on. Apart from ``fanout`` (which judges traders on the configuration the
alert arrived with) because this is the other reading, at the last moment, and what it may
still stop: the kill switch (``halted_since``), and the trader's hold on the sub-account
(``no_longer_traded``).
"""

from __future__ import annotations

from typing import Any

from jtrades.engine.config_cache import LinkConfig, Snapshot
from jtrades.engine.filters import check_gate
from jtrades.engine.planning import Shortfall
from jtrades.engine.signal import Signal


def no_longer_traded(link: LinkConfig, snap: Snapshot) -> Shortfall | None:
    """Why ``link`` is no longer its trader's to trade in the configuration as it is now (the
    plan runs under the account's lock, which an alert may have waited for): unlinked, the
    trader deleted or switched off, its owner no longer approved. Planned from the
    configuration the alert arrived with, it opened a position on a sub-account the trader no
    longer trades (its next close went elsewhere), or after `users disable` or the recorder's
    `disable-recording` had committed."""
    t = snap.traders.get(link.trader_id)
    if t is None:
        why = "the trader was deleted while the alert waited: nothing sent"
        return Shortfall("trader_deleted", why)
    rec = snap.recorders.get(t.recorder_id)
    if rec is None or not rec.recording_enabled or not rec.owner_active:
        # as the recorder's own gate refuses an alert arriving now (closes included)
        why = "the recorder stopped (deleted, recording off, or its owner) while the alert waited"
        return Shortfall("recording_disabled", why)
    if not t.enabled:
        return Shortfall("trader_disabled", "the trader was switched off while the alert waited")
    if not t.owner_active:
        return Shortfall("owner_not_approved", "its owner may no longer trade (changed meanwhile)")
    if all(lk.sub_account_id != link.sub_account_id for lk in t.links):
        why = "the sub-account was unlinked from the trader while the alert waited: nothing sent"
        return Shortfall("unlinked", why)
    return None


def halted_since(signal: Signal, s: Any, link: LinkConfig, snap: Snapshot) -> str | None:
    """The kill switch read again when the plan runs, under the account's lock: an alert
    that passed the gate, then waited for another sub-account's lock, opened a position on a
    login halted and flattened meanwhile (the flatten had already been marked done)."""
    live = snap.links_by_sub.get(link.sub_account_id)
    if not snap.halted and (live is None or not live.halted):
        return None
    why = check_gate(signal, s, enabled=True, owner_active=True, halted=True)
    return f"{why.filter}: {why.reason}" if why is not None else None
