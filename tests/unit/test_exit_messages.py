"""Exit alerts as TradersPost and PickMyTrade users write them.

- TradersPost's partial exit, ``{"action": "exit", "quantity": 2}`` on a long 5, exits 2 and
  keeps 3 ("Partial Exits", its Signal Message Reference); jtrades liquidated all 5.
- An exit asking for a limit or a stop went at market at once: a "get out at 21400" stop
  flattened the position at the market. Exits go at market, so those are refused.
- PickMyTrade's ``breakeven`` was kept in ``extra`` and ignored: refused unless 0.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from jtrades.broker.base import OrderRequest, Side
from jtrades.engine.parsing import parse_payload
from jtrades.engine.planning import AccountPlan, AccountState, PositionAction
from jtrades.engine.risk import RiskSettings
from jtrades.errors import InvalidSignal
from tests.unit.test_resize_market import plan

D = Decimal
PRICE = D(21500)


def _plan(body: str, held: int, mult: str = "1") -> AccountPlan:
    sig = parse_payload(body.encode(), "application/json")
    return plan(sig, RiskSettings(size=1), AccountState(held, D(21490)), PRICE, mult)


def _sold(p: AccountPlan) -> list[tuple[str, int]]:
    return [
        (o.kind, o.request.qty)
        for o in p.orders
        if isinstance(o.request, OrderRequest) and o.request.side is Side.SELL
    ]


@pytest.mark.parametrize(
    ("held", "mult", "sold"),
    [(5, "1", 2), (10, "2", 4), (3, "0.5", 1)],
)
def test_an_exit_with_a_quantity_exits_that_many(held: int, mult: str, sold: int) -> None:
    p = _plan('{"ticker": "MNQ1!", "action": "exit", "quantity": 2}', held, mult)
    assert p.action is PositionAction.REDUCE, p.reason
    assert _sold(p) == [("order", sold)]
    assert "partial exit" in p.reason


@pytest.mark.parametrize(
    ("body", "held"),
    [
        ('{"ticker": "MNQ1!", "action": "exit", "quantity": 5}', 5),  # all of it
        ('{"ticker": "MNQ1!", "action": "exit", "quantity": 2}', 1),  # more than held
        ('{"ticker": "MNQ1!", "action": "exit"}', 5),  # no quantity
        ('{"ticker": "MNQ1!", "action": "close", "quantity": 2}', 5),  # close: everything
        ('{"ticker": "MNQ1!", "action": "exit", "sentiment": "flat", "quantity": 2}', 5),
    ],
)
def test_other_exits_close_everything(body: str, held: int) -> None:
    p = _plan(body, held)
    assert p.action is PositionAction.CLOSE, p.reason
    assert [o.kind for o in p.orders] == ["liquidate"]


@pytest.mark.parametrize(
    "body",
    [
        '{"ticker":"MNQ1!","action":"exit","orderType":"stop","stopPrice":21400}',
        '{"ticker":"MNQ1!","action":"close","orderType":"limit","limitPrice":21600}',
        '{"ticker":"MNQ1!","action":"sell","sentiment":"flat","orderType":"limit","limitPrice":21600}',
        '{"ticker":"MNQ1!","action":"sell","sentiment":"bullish","quantity":1,"orderType":"limit",'
        '"limitPrice":21600}',
    ],
)
def test_an_exit_asking_for_a_limit_or_a_stop_is_refused(body: str) -> None:
    with pytest.raises(InvalidSignal, match="exits go at market"):
        parse_payload(body.encode(), "application/json")


def test_a_market_exit_and_a_limit_entry_still_go() -> None:
    p = _plan('{"ticker":"MNQ1!","action":"exit","orderType":"market"}', 2)
    assert p.action is PositionAction.CLOSE
    body = '{"ticker":"MNQ1!","action":"buy","orderType":"limit","limitPrice":21490}'
    assert _plan(body, 0).action is PositionAction.OPEN


def test_a_limit_sell_that_would_trim_is_not_sent_at_market() -> None:
    body = '{"ticker":"MNQ1!","action":"sell","quantity":2,"orderType":"limit","limitPrice":21600}'
    p = _plan(body, 5)
    assert p.action is PositionAction.IGNORE, p.reason
    assert not p.orders
    assert "exits go at market" in p.reason


def test_a_pickmytrade_breakeven_is_refused_unless_zero() -> None:
    base = '{"symbol":"MNQ1!","data":"buy","quantity":1,"price":21500,"breakeven":%s}'
    with pytest.raises(InvalidSignal, match="breakeven"):
        parse_payload((base % "8").encode(), "application/json")
    assert parse_payload((base % "0").encode(), "application/json").quantity == 1


@pytest.mark.parametrize(
    ("action", "held", "closes"),
    [("buy", -2, True), ("buy", 2, False), ("sell", 2, True), ("sell", -2, False)],
)
def test_sentiment_flat_exits_only_the_side_its_action_covers(
    action: str, held: int, closes: bool
) -> None:
    """TradersPost: ``buy`` + ``sentiment: flat`` is "Exit short ONLY" (a sell, a long only);
    a buy flattening a long sold it, where TradersPost leaves it."""
    body = f'{{"ticker": "MNQ1!", "action": "{action}", "sentiment": "flat"}}'
    p = _plan(body, held)
    if closes:
        assert p.action is PositionAction.CLOSE, p.reason
        assert [o.kind for o in p.orders] == ["liquidate"]
    else:
        assert p.action is PositionAction.NOTHING, p.reason
        assert p.orders == ()
        assert "sentiment flat exits a" in p.reason
        assert f"{abs(held)} stays" in p.reason


@pytest.mark.parametrize("held", [2, -2])
def test_market_position_flat_closes_either_side(held: int) -> None:
    """TradingView's ``market_position`` is the target alone (DESIGN §4): flat closes whatever
    is held, and so does a sentiment beside it (``market_position`` wins)."""
    for body in (
        '{"ticker": "MNQ1!", "action": "buy", "market_position": "flat"}',
        '{"ticker": "MNQ1!", "action": "buy", "market_position": "flat", "sentiment": "flat"}',
    ):
        p = _plan(body, held)
        assert p.action is PositionAction.CLOSE, (body, p.reason)


def test_an_inverse_follower_exits_its_mirror_position_on_sentiment_flat() -> None:
    """The strategy's covering ``buy`` + ``sentiment: flat`` is a sell exiting a long to an
    ``--inverse`` follower (holding the mirror long): the swap left ``closes_only`` a short,
    and the long stayed open while the strategy was flat."""
    inverse = RiskSettings(size=1, inverse=True)
    cover = parse_payload(
        b'{"ticker": "MNQ1!", "action": "buy", "sentiment": "flat"}', "application/json"
    )
    p = plan(cover, inverse, AccountState(1, D(21500)), PRICE)
    assert p.action is PositionAction.CLOSE, p.reason
    p = plan(cover, inverse, AccountState(-1, D(21500)), PRICE)
    assert p.action is PositionAction.NOTHING, p.reason
