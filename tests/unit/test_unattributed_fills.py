"""The fills a login's stream published before their orders (no account yet), which keep the
mirror from taking that login's positions of their contract as the truth until they come
again with their account (``engine.unattributed_fills``)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from structlog.testing import capture_logs

from jtrades.broker.base import BrokerEvent, Fill, Side
from jtrades.engine.unattributed_fills import UnattributedFills

T = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)


def _fill(fill_id: int, account: int, contract: int) -> BrokerEvent:
    f = Fill(fill_id, 1, account, contract, "MNQZ6", Side.BUY, 1, Decimal(100), T)
    return BrokerEvent("fill", account or None, f)


def test_a_fill_with_no_account_stands_in_the_way_of_its_contract_on_its_login() -> None:
    u = UnattributedFills()
    assert not u.blocks(7, 1000)
    u.note(7, _fill(61, 0, 1000), now=0.0)
    u.note(7, _fill(61, 0, 1000), now=1.0)  # published again (a replay): still one
    assert u.blocks(7, 1000)
    assert not u.blocks(7, 2000)  # another contract
    assert not u.blocks(8, 1000)  # another login
    u.note(7, _fill(62, 5, 1000), now=1.0)  # another fill, attributed: not this one
    assert u.blocks(7, 1000)
    u.note(7, _fill(61, 5, 1000), now=1.0)  # its order came: published with its account
    assert not u.blocks(7, 1000)


def test_a_fill_naming_no_contract_stands_in_the_way_of_every_contract_of_its_login() -> None:
    u = UnattributedFills()
    u.note(7, _fill(61, 0, 0), now=0.0)
    assert u.blocks(7, 1000)
    assert u.blocks(7, 2000)
    u.note(7, _fill(61, 5, 1000), now=0.0)  # named by its order's contract once attributed
    assert not u.blocks(7, 1000)


def test_one_whose_order_never_comes_is_let_go_with_a_warning() -> None:
    """The order follows its fill within milliseconds on the stream: one that never comes must
    not keep the login's positions of the contract from being the truth for good."""
    u = UnattributedFills()
    u.note(7, _fill(61, 0, 1000), now=0.0)
    u.expire(now=u.wait_s - 1)
    assert u.blocks(7, 1000)
    with capture_logs() as logs:
        u.expire(now=u.wait_s + 1)
    assert not u.blocks(7, 1000)
    assert [(e["event"], e["fill_id"]) for e in logs] == [("mirror.fill_unattributed", 61)]
