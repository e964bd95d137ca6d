"""The "not sent" convention of an intent's reason (``engine.unsent``): the texts its builders
write are the ones stored by earlier versions (rows in existing databases classify the same),
and the owed-stop evidence query, which cannot import the prefix, spells it the same."""

from __future__ import annotations

import re

import pytest

from jtrades.engine.unsent import (
    NOT_SENT,
    NOT_SENT_ON_PURPOSE,
    UNAVAILABLE,
    broker_unavailable,
    not_sent,
    not_sent_on_purpose,
    says_not_sent,
    says_on_purpose,
)
from jtrades.errors import TransientBrokerError
from jtrades.queries import q


def test_the_reasons_built_are_the_texts_stored_before() -> None:
    assert not_sent("signal older than its TTL") == "not sent: signal older than its TTL"
    assert not_sent("step 3 rejected") == "not sent: step 3 rejected"
    assert (
        not_sent("the order intents could not be written")
        == "not sent: the order intents could not be written"
    )
    assert UNAVAILABLE == "not sent: broker unavailable"
    assert broker_unavailable(TransientBrokerError("429")) == "not sent: broker unavailable (429)"
    assert not_sent_on_purpose("its contracts go to another leg") == (
        "not sent, on purpose: its contracts go to another leg"
    )


@pytest.mark.parametrize(
    ("reason", "unsent", "on_purpose"),
    [
        ("not sent: signal older than its TTL", True, False),
        ("not sent: step 3 rejected", True, False),
        ("not sent: broker unavailable (429)", True, False),
        (
            "not sent: broker unavailable (no contract id for MNQZ6 (lookup failed: x);"
            " liquidation not sent)",
            True,
            False,
        ),
        ("not sent, on purpose: its contracts go to another leg", True, True),
        # reconciliation's miss of a cancel: in doubt, it may have reached the broker
        ("outcome not confirmed by the broker; not repeated", False, False),
        # its miss of an order: never sent, but said after the finding (only a cancel,
        # liquidation or modify is ever classified by its reason)
        ("no order at the broker with this clOrdId: not sent, never sent late", False, False),
        (None, False, False),
        ("", False, False),
    ],
)
def test_stored_reasons_classify_as_before(
    reason: str | None, unsent: bool, on_purpose: bool
) -> None:
    assert says_not_sent(reason) is unsent
    assert says_on_purpose(reason) is on_purpose
    # the rule the owed-stop evidence query applies: ``reason NOT LIKE 'not sent%'``
    assert says_not_sent(reason) is (reason or "").startswith("not sent")


def test_the_owed_stop_query_spells_the_prefix_as_the_constant() -> None:
    """``sql/queries/owed_stops.sql`` cannot import ``NOT_SENT``: its literal is checked here,
    so the query and ``owed_stop.never_sent`` cannot tell a step's fate apart."""
    patterns = re.findall(r"NOT LIKE '([^']*)'", q("owed_stops.evidence"))
    assert patterns == [f"{NOT_SENT}%"]
    # a LIKE wildcard in the prefix would match more than ``startswith`` does
    assert not set(NOT_SENT) & {"%", "_", "\\"}


def test_every_prefix_starts_with_not_sent() -> None:
    """What the evidence query and ``never_sent`` read as "never left": all of them."""
    assert NOT_SENT_ON_PURPOSE.startswith(NOT_SENT)
    assert UNAVAILABLE.startswith(NOT_SENT)
