"""Input at the edges, the pure parts: names ending in a newline, a paper login given a
username, and sizes no single order can hold (the integration side: test_cli_input_edges)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from jtrades.broker.base import Contract, SubAccount
from jtrades.cli.risk_options import RiskInput, parse_risk_input
from jtrades.engine.instruments import split_symbol
from jtrades.engine.parse_values import MAX_QUANTITY
from jtrades.engine.plan_context import CANNOT_PLAN
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings
from jtrades.engine.signal import Action, Signal
from jtrades.engine.sizing import over_order_limit
from jtrades.errors import InvalidInput, InvalidSignal
from jtrades.store.accounts import check_label, check_new
from jtrades.store.traders import check_order_sizes
from jtrades.store.users import check_email, check_name

D = Decimal
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)
ACCT = SubAccount(101, "DEMO101")


# --- 1. a trailing newline: Python's "$" matches before it, Postgres' CHECK does not ---------


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (check_name, "bob\n"),
        (check_label, "ap\n"),
        (check_email, "carol@x.io\n"),
    ],
)
def test_a_value_ending_in_a_newline_is_refused_by_its_rule(check: object, value: str) -> None:
    with pytest.raises(InvalidInput, match=r"letters, digits|not an email address"):
        check(value)  # type: ignore[operator]


def test_an_exchange_prefix_ending_in_a_newline_is_no_exchange() -> None:
    with pytest.raises(InvalidSignal, match="is not an exchange prefix"):
        split_symbol("CME\n:MNQ1!")


# --- 2. a paper login takes no username, as it takes no password ------------------------------


@pytest.mark.parametrize("username", ["alice_tv", ""])
def test_a_paper_login_refuses_a_username(username: str) -> None:
    with pytest.raises(InvalidInput, match="paper accounts need no --username"):
        check_new("paper", username, has_password=False)


def test_a_paper_login_without_one_and_a_demo_login_with_one_pass() -> None:
    check_new("paper", None, has_password=False)
    check_new("demo", "alice_tv", has_password=True)


# --- 3. sizes: an order holds at most what an alert may ask ----------------------------------


def test_the_order_limit_is_what_an_alert_may_ask() -> None:
    assert over_order_limit(MAX_QUANTITY) is None
    assert over_order_limit(4_294_967_294) == (
        f"size 4294967294 exceeds the {MAX_QUANTITY} contracts an order may hold"
    )


@pytest.mark.parametrize("option", ["size", "add_size"])
def test_a_configured_size_past_the_order_limit_is_refused(option: str) -> None:
    assert parse_risk_input(RiskInput(**{option: str(MAX_QUANTITY)})) == {option: MAX_QUANTITY}
    with pytest.raises(InvalidInput, match=f"more than the {MAX_QUANTITY} contracts"):
        parse_risk_input(RiskInput(**{option: "2147483647"}))


def test_a_multiplier_is_refused_when_the_entry_or_add_it_makes_is_past_the_limit() -> None:
    with pytest.raises(InvalidInput, match=r"ap:ap: --size 60000 × 2 makes an entry of 120000"):
        check_order_sizes(RiskSettings(size=60_000), D(2), "ap:ap")
    with pytest.raises(InvalidInput, match=r"--add-size 60000 × 2 makes a DCA add of 120000"):
        check_order_sizes(RiskSettings(add_size=60_000), D(2), "ap:ap")
    check_order_sizes(RiskSettings(size=50_000, add_size=50_000), D(2), "ap:ap")


def test_max_contracts_caps_the_order_before_the_limit_is_judged() -> None:
    """The planner caps each entry by ``--max-contracts``: such an order fits, whatever the
    size × multiplier."""
    check_order_sizes(RiskSettings(size=60_000, add_size=60_000, max_contracts=10), D(2), "ap")


def _open(quantity: int | None, s: RiskSettings, mult: str) -> AccountPlan:
    sig = Signal(Action.BUY, price=D("21500"), quantity=quantity)
    return plan_account(
        sig, s, D(mult), ACCT, MNQ, AccountState(0, None),
        signal_price=D("21500"), cl_ord_prefix="s1-101",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("quantity", "size", "mult", "qty"),
    [(None, 2_147_483_647, "2", 4_294_967_294), (60_000, 1, "2", 120_000)],
)
def test_an_entry_past_the_order_limit_is_not_planned_and_says_why(
    quantity: int | None, size: int, mult: str, qty: int
) -> None:
    plan = _open(quantity, RiskSettings(size=size), mult)
    assert (plan.action, plan.orders) == (PositionAction.IGNORE, ())
    why = f"cannot plan: size {qty} exceeds the {MAX_QUANTITY} contracts an order may hold"
    assert plan.reason == why
    assert plan.short is not None
    assert plan.short.cause == CANNOT_PLAN


def test_an_entry_at_the_order_limit_is_planned() -> None:
    plan = _open(MAX_QUANTITY, RiskSettings(), "1")
    assert plan.action is PositionAction.OPEN, plan.reason


def test_a_reversal_past_the_order_limit_still_closes() -> None:
    sig = Signal(Action.BUY, price=D("21500"), quantity=60_000)
    plan = plan_account(
        sig, RiskSettings(), D(2), ACCT, MNQ, AccountState(-3, D("21500")),
        signal_price=D("21500"), cl_ord_prefix="s1-101",
    )  # fmt: skip
    assert plan.action is PositionAction.CLOSE
    assert [o.kind for o in plan.orders] == ["liquidate"]
    assert "exceeds the 100000 contracts an order may hold" in plan.reason
