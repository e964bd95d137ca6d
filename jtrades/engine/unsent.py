"""How an intent's reason says its step never reached the broker: it starts with "not sent".

The reason is the only durable word on it for a cancel, a liquidation or a modify that expired:
reconciliation cannot look those up by clOrdId, so one it closed after a crash ("outcome not
confirmed") may have reached the broker, and only a reason starting with ``NOT_SENT`` proves it
did not. The owed stop reads it so (``owed_stop.never_sent``, and the evidence query,
``sql/queries/owed_stops.sql``, which spells the prefix as a literal: ``tests/unit/test_unsent``
holds the two equal). The texts are stored: changing one changes how rows already written
classify.

Every step that never left says so through here: one held back (past its TTL, after a step that
failed: ``not_sent``), one the broker would not take the request for (a p-ticket, a 429, the
session reconnecting, a liquidation with no contract id: ``broker_unavailable``), one the
dispatcher chose not to send (``not_sent_on_purpose``: a DCA take-profit leg whose contracts
went to another leg; nothing failed there, so a stop it carries is not owed). Reconciliation's
miss of an order or a strategy ("no order at the broker with this clOrdId: not sent, never sent
late") says it after the finding, not as the prefix: their fate is read from the kind, never
the reason.
"""

from __future__ import annotations

NOT_SENT = "not sent"
# A step the dispatcher chose not to send (``owed_stop.skipped``): still "not sent".
NOT_SENT_ON_PURPOSE = f"{NOT_SENT}, on purpose: "
# A step the broker would not take the request for: the signal's verdict names it (``verdicts``).
UNAVAILABLE = f"{NOT_SENT}: broker unavailable"


def not_sent(why: str) -> str:
    """The reason of a step held back: ``why`` it was not sent."""
    return f"{NOT_SENT}: {why}"


def not_sent_on_purpose(why: str) -> str:
    """The reason of a step the dispatcher chose not to send, and ``why``."""
    return f"{NOT_SENT_ON_PURPOSE}{why}"


def broker_unavailable(exc: object) -> str:
    """The reason of a step refused before its request left (``TransientBrokerError``)."""
    return f"{UNAVAILABLE} ({exc})"


def says_not_sent(reason: str | None) -> bool:
    """Whether an intent's ``reason`` says its step never reached the broker."""
    return (reason or "").startswith(NOT_SENT)


def says_on_purpose(reason: str | None) -> bool:
    """Whether an intent's ``reason`` says the dispatcher chose not to send its step."""
    return (reason or "").startswith(NOT_SENT_ON_PURPOSE)
