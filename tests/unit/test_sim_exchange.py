"""The simulator's exchange: matching, OSO/OCO links, strategy ladders, positions and P&L."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jtrades.sim.config import ROOTS, Contract, build_contracts, front_months
from jtrades.sim.entities import Leg, OrderSpec, Position
from jtrades.sim.exchange import Exchange, Rejected
from jtrades.sim.ledger import apply_fill

A, B = 11, 22
D = Decimal


def make() -> tuple[Exchange, Contract, Contract]:
    contracts = build_contracts(date(2026, 11, 25))
    prices = {c.id: c.root.start for c in contracts}
    ex = Exchange(contracts, prices)
    mnq = next(c for c in contracts if c.name == "MNQZ6")
    es = next(c for c in contracts if c.name == "ESZ6")
    ex.prices[mnq.id] = D("21500")
    return ex, mnq, es


def working(
    ex: Exchange, account: int
) -> list[tuple[str, str, int, Decimal | None, Decimal | None]]:
    return sorted(
        (o.spec.action, o.spec.order_type, o.spec.qty, o.spec.price, o.spec.stop_price)
        for o in ex.open_orders(account)
        if o.status == "Working"
    )


def net(ex: Exchange, account: int, c: Contract) -> int:
    pos = ex.positions.get((account, c.id))
    return pos.net_pos if pos else 0


# --- contracts --------------------------------------------------------------------------------


def test_front_months_by_calendar() -> None:
    names = {c.name for c in build_contracts(date(2026, 11, 25)) if c.is_front}
    assert {"MNQZ6", "ESZ6", "GCG7", "CLF7", "ZNH7", "6EZ6"} <= names
    # a week before December's third Friday (Dec 18 2026) the equity front rolls to March
    assert front_months(ROOTS["MNQ"], date(2026, 12, 11))[0] == (2027, 3)
    assert front_months(ROOTS["MNQ"], date(2026, 12, 9))[0] == (2026, 12)


# --- matching ---------------------------------------------------------------------------------


def test_market_fills_at_price_and_events_in_order() -> None:
    ex, mnq, _ = make()
    oid, events = ex.place(A, mnq, OrderSpec("Buy", 2, "Market"))
    kinds = [(t, e, ent.get("ordStatus")) for _, t, e, ent in events]
    assert kinds == [
        ("order", "Created", "PendingNew"),
        ("orderVersion", "Created", None),
        ("command", "Created", None),
        ("order", "Updated", "Working"),
        ("fill", "Created", None),
        ("position", "Created", None),
        ("cashBalance", "Updated", None),
        ("order", "Updated", "Filled"),
    ]
    assert ex.orders[oid].fill_price == D("21500")
    assert net(ex, A, mnq) == 2


def test_limit_fills_at_limit_on_a_move_and_at_price_when_marketable() -> None:
    ex, mnq, _ = make()
    oid, _ = ex.place(A, mnq, OrderSpec("Buy", 1, "Limit", price=D("21490")))
    assert ex.set_price(mnq.id, D("21495")) == []
    ex.set_price(mnq.id, D("21480"))
    assert ex.orders[oid].fill_price == D("21490")
    marketable, _ = ex.place(A, mnq, OrderSpec("Sell", 1, "Limit", price=D("21470")))
    assert ex.orders[marketable].fill_price == D("21480")


def test_stops_trigger_and_fill_at_the_price() -> None:
    ex, mnq, _ = make()
    buy, _ = ex.place(A, mnq, OrderSpec("Buy", 1, "Stop", stop_price=D("21510")))
    sell, _ = ex.place(A, mnq, OrderSpec("Sell", 1, "Stop", stop_price=D("21480")))
    ex.set_price(mnq.id, D("21509.75"))
    assert ex.orders[buy].status == "Working"
    ex.set_price(mnq.id, D("21512"))
    assert (ex.orders[buy].status, ex.orders[buy].fill_price) == ("Filled", D("21512"))
    ex.set_price(mnq.id, D("21470"))
    assert ex.orders[sell].fill_price == D("21470")


def test_stop_limit_becomes_a_limit_once_triggered() -> None:
    ex, mnq, _ = make()
    oid, _ = ex.place(
        A, mnq, OrderSpec("Buy", 1, "StopLimit", price=D("21505"), stop_price=D("21510"))
    )
    ex.set_price(mnq.id, D("21504"))
    assert ex.orders[oid].status == "Working"
    ex.set_price(mnq.id, D("21515"))  # stop hit, but the limit 21505 is below the price
    assert ex.orders[oid].status == "Working"
    assert ex.orders[oid].triggered
    ex.set_price(mnq.id, D("21505"))
    assert ex.orders[oid].fill_price == D("21505")


def test_trailing_stop_follows_the_price_and_never_backs_off() -> None:
    ex, mnq, _ = make()
    oid, _ = ex.place(A, mnq, OrderSpec("Sell", 1, "TrailingStop", peg=D("-10")))
    order = ex.orders[oid]
    assert order.spec.stop_price == D("21490")
    ex.set_price(mnq.id, D("21530"))
    assert order.spec.stop_price == D("21520")
    ex.set_price(mnq.id, D("21525"))
    assert order.spec.stop_price == D("21520")
    ex.set_price(mnq.id, D("21519"))
    assert order.fill_price == D("21519")


def test_off_tick_and_missing_prices_are_rejected() -> None:
    ex, mnq, _ = make()
    for spec in (
        OrderSpec("Buy", 1, "Limit", price=D("21500.1")),
        OrderSpec("Buy", 1, "Limit"),
        OrderSpec("Buy", 1, "Stop", stop_price=D("21500.3")),
        OrderSpec("Sell", 1, "TrailingStop", peg=D("2.1")),
    ):
        with pytest.raises(Rejected) as info:
            ex.place(A, mnq, spec)
        assert info.value.reason == "InvalidPrice"
    with pytest.raises(Rejected) as info:
        ex.place(A, mnq, OrderSpec("Buy", 1, "QTS"))
    assert info.value.reason == "Unsupported"
    assert ex.orders == {}


# --- links ------------------------------------------------------------------------------------


def test_oso_brackets_wait_for_the_entry_then_cancel_each_other() -> None:
    ex, mnq, _ = make()
    ids, _ = ex.place_oso(
        A,
        mnq,
        OrderSpec("Buy", 2, "Limit", price=D("21490")),
        [
            OrderSpec("Sell", 2, "Limit", price=D("21520")),
            OrderSpec("Sell", 2, "Stop", stop_price=D("21470")),
        ],
    )
    entry, tp, sl = (ex.orders[i] for i in ids)
    assert (tp.status, sl.status) == ("Suspended", "Suspended")
    assert tp.parent_id == entry.id
    ex.set_price(mnq.id, D("21460"))  # below the stop too: a suspended stop must not fire
    assert entry.status == "Filled"
    assert sl.status == "Filled"  # activated at 21460, already through its stop
    assert tp.status == "Canceled"
    assert net(ex, A, mnq) == 0


def test_oso_take_profit_cancels_the_stop() -> None:
    ex, mnq, _ = make()
    ids, _ = ex.place_oso(
        A,
        mnq,
        OrderSpec("Buy", 1, "Market"),
        [
            OrderSpec("Sell", 1, "Limit", price=D("21520")),
            OrderSpec("Sell", 1, "Stop", stop_price=D("21470")),
        ],
    )
    assert working(ex, A) == [
        ("Sell", "Limit", 1, D("21520"), None),
        ("Sell", "Stop", 1, None, D("21470")),
    ]
    ex.set_price(mnq.id, D("21525"))
    assert ex.orders[ids[1]].fill_price == D("21520")
    assert ex.orders[ids[2]].status == "Canceled"
    assert ex.cash_of(A).realized == D("20") * D("2")  # 20 points × $2/point


def test_canceling_an_oso_entry_cancels_its_brackets() -> None:
    ex, mnq, _ = make()
    ids, _ = ex.place_oso(
        A,
        mnq,
        OrderSpec("Buy", 1, "Limit", price=D("21400")),
        [OrderSpec("Sell", 1, "Limit", price=D("21520"))],
    )
    ex.cancel(ids[0])
    assert [ex.orders[i].status for i in ids] == ["Canceled", "Canceled"]


def test_oco_pair() -> None:
    ex, mnq, _ = make()
    ids, _ = ex.place_oco(
        A,
        mnq,
        OrderSpec("Buy", 1, "Limit", price=D("21490")),
        OrderSpec("Buy", 1, "Stop", stop_price=D("21510")),
    )
    ex.set_price(mnq.id, D("21511"))
    assert [ex.orders[i].status for i in ids] == ["Canceled", "Filled"]


# --- strategies -------------------------------------------------------------------------------


def ladder(stop: str = "-10") -> list[Leg]:
    return [Leg(1, D(t), D(stop)) for t in ("5", "10", "20")]


def test_three_leg_ladder_shares_one_stop_which_shrinks_as_targets_fill() -> None:
    ex, mnq, _ = make()
    st, _ = ex.start_strategy(A, mnq, "Buy", "{}", OrderSpec("Buy", 3, "Market"), ladder())
    assert net(ex, A, mnq) == 3
    assert working(ex, A) == [
        ("Sell", "Limit", 1, D("21505"), None),
        ("Sell", "Limit", 1, D("21510"), None),
        ("Sell", "Limit", 1, D("21520"), None),
        ("Sell", "Stop", 3, None, D("21490")),
    ]
    ex.set_price(mnq.id, D("21506"))
    assert net(ex, A, mnq) == 2
    assert ("Sell", "Stop", 2, None, D("21490")) in working(ex, A)
    ex.set_price(mnq.id, D("21489"))
    assert net(ex, A, mnq) == 0
    assert working(ex, A) == []
    assert st.status == "ExecutionFinished"
    # 1 @ +5 and 2 @ -11 (filled at the price, 21489): (5 - 22) points × $2
    assert ex.cash_of(A).realized == D("-34")


def test_short_ladder_uses_signed_offsets_and_finishes_on_the_last_target() -> None:
    ex, mnq, _ = make()
    legs = [Leg(1, D("-5"), D("8")), Leg(1, D("-10"), D("8"))]
    st, _ = ex.start_strategy(A, mnq, "Sell", "{}", OrderSpec("Sell", 2, "Market"), legs)
    assert working(ex, A) == [
        ("Buy", "Limit", 1, D("21490"), None),
        ("Buy", "Limit", 1, D("21495"), None),
        ("Buy", "Stop", 2, None, D("21508")),
    ]
    ex.set_price(mnq.id, D("21490"))
    assert net(ex, A, mnq) == 0
    assert working(ex, A) == []
    assert st.status == "ExecutionFinished"


def test_strategy_with_limit_entry_places_brackets_from_the_fill() -> None:
    ex, mnq, _ = make()
    ex.start_strategy(
        A,
        mnq,
        "Buy",
        "{}",
        OrderSpec("Buy", 1, "Limit", price=D("21480")),
        [Leg(1, D("10"), D("-5"))],
    )
    assert working(ex, A) == [("Buy", "Limit", 1, D("21480"), None)]
    ex.set_price(mnq.id, D("21478"))
    assert working(ex, A) == [
        ("Sell", "Limit", 1, D("21490"), None),
        ("Sell", "Stop", 1, None, D("21475")),
    ]


def test_strategy_quantities_must_add_up() -> None:
    ex, mnq, _ = make()
    with pytest.raises(Rejected):
        ex.start_strategy(A, mnq, "Buy", "{}", OrderSpec("Buy", 2, "Market"), ladder())


def test_auto_trail_moves_the_stop_after_the_trigger() -> None:
    ex, mnq, _ = make()
    leg = Leg(
        1, D("50"), D("-10"), auto_trail={"stopLoss": D("5"), "trigger": D("10"), "freq": D("1")}
    )
    ex.start_strategy(A, mnq, "Buy", "{}", OrderSpec("Buy", 1, "Market"), [leg])
    stop = ex.orders[leg.sl_id]
    ex.set_price(mnq.id, D("21505"))
    assert stop.spec.stop_price == D("21490")  # below the trigger: unchanged
    ex.set_price(mnq.id, D("21512"))
    assert stop.spec.stop_price == D("21507")
    ex.set_price(mnq.id, D("21508"))
    assert stop.spec.stop_price == D("21507")
    ex.set_price(mnq.id, D("21506.5"))
    assert stop.fill_price == D("21506.5")


def test_interrupt_cancels_the_strategy_orders() -> None:
    ex, mnq, _ = make()
    st, _ = ex.start_strategy(A, mnq, "Buy", "{}", OrderSpec("Buy", 3, "Market"), ladder())
    ex.interrupt_strategy(st.id)
    assert working(ex, A) == []
    assert st.status == "ExecutionInterrupted"
    assert net(ex, A, mnq) == 3


# --- liquidate --------------------------------------------------------------------------------


def test_liquidate_is_scoped_to_one_account_and_one_contract() -> None:
    ex, mnq, es = make()
    for acc in (A, B):
        ex.start_strategy(acc, mnq, "Buy", "{}", OrderSpec("Buy", 3, "Market"), ladder())
    ex.place(A, es, OrderSpec("Buy", 1, "Limit", price=D("5900")))
    before_b = working(ex, B)
    oid, _ = ex.liquidate(A, mnq.id)
    assert oid is not None
    assert net(ex, A, mnq) == 0
    assert working(ex, A) == [("Buy", "Limit", 1, D("5900"), None)]
    assert working(ex, B) == before_b
    assert net(ex, B, mnq) == 3
    flat, _ = ex.liquidate(A, mnq.id)
    assert flat is None


def test_modify_changes_the_price_and_can_fill() -> None:
    ex, mnq, _ = make()
    oid, _ = ex.place(A, mnq, OrderSpec("Buy", 1, "Limit", price=D("21400")))
    old_version = ex.orders[oid].version_id
    _, events = ex.modify(oid, 2, "Limit", D("21450"), None)
    assert ex.orders[oid].version_id != old_version
    assert ("orderVersion", "Created") in [(t, e) for _, t, e, _ in events]
    assert working(ex, A) == [("Buy", "Limit", 2, D("21450"), None)]
    ex.modify(oid, 2, "Limit", D("21500"), None)
    assert ex.orders[oid].status == "Filled"
    with pytest.raises(Rejected) as info:
        ex.modify(oid, 1, "Limit", D("21500"), None)
    assert info.value.reason == "TooLate"


# --- positions and P&L ------------------------------------------------------------------------


def test_average_price_and_reversal() -> None:
    _, mnq, _ = make()
    pos = Position(1, A, mnq, None)
    assert apply_fill(pos, 1, 1, D("100")) == 0
    assert apply_fill(pos, 1, 3, D("104")) == 0
    assert (pos.net_pos, pos.net_price) == (4, D("103"))
    assert apply_fill(pos, -1, 6, D("110")) == D("28")  # 4 × +7, then 2 short at 110
    assert (pos.net_pos, pos.net_price) == (-2, D("110"))


fills = st.lists(
    st.tuples(
        st.sampled_from([1, -1]),
        st.integers(min_value=1, max_value=20),
        st.integers(min_value=80_000, max_value=90_000).map(lambda q: D(q) / 4),
    ),
    min_size=1,
    max_size=30,
)


@given(fills, st.integers(min_value=80_000, max_value=90_000).map(lambda q: D(q) / 4))
def test_realized_plus_open_equals_cash_flow(
    seq: list[tuple[int, int, Decimal]], mark: Decimal
) -> None:
    """Whatever the fills, realized P&L + open P&L at any mark = what was received − paid + mark × position."""
    _, mnq, _ = make()
    pos = Position(1, A, mnq, None)
    realized = D(0)
    for sign, qty, price in seq:
        realized += apply_fill(pos, sign, qty, price)
    assert pos.net_pos == pos.bought - pos.sold
    open_pnl = (mark - pos.net_price) * pos.net_pos
    flow = pos.sold_value - pos.bought_value + mark * pos.net_pos
    assert abs((realized + open_pnl) - flow) < D("1e-12")


@given(
    st.lists(
        st.integers(min_value=84_000, max_value=88_000).map(lambda q: D(q) / 4),
        min_size=1,
        max_size=15,
    )
)
def test_a_long_ladder_never_leaves_more_stop_than_position(path: list[Decimal]) -> None:
    """Along any price path, the strategy's stop quantity equals the open position, and
    the position never goes short."""
    ex, mnq, _ = make()
    ex.start_strategy(A, mnq, "Buy", "{}", OrderSpec("Buy", 3, "Market"), ladder())
    for px in path:
        ex.set_price(mnq.id, px)
        stops = sum(o.spec.qty for o in ex.open_orders(A) if o.spec.order_type == "Stop")
        position = net(ex, A, mnq)
        assert position >= 0
        assert stops == position


# --- random order flow --------------------------------------------------------------------------

ticks = st.integers(min_value=-40, max_value=40).map(lambda n: D("21500") + D(n) / 4)
order_specs = st.one_of(
    st.builds(
        lambda a, q: OrderSpec(a, q, "Market"), st.sampled_from(["Buy", "Sell"]), st.integers(1, 3)
    ),
    st.builds(
        lambda a, q, p: OrderSpec(a, q, "Limit", price=p),
        st.sampled_from(["Buy", "Sell"]),
        st.integers(1, 3),
        ticks,
    ),
    st.builds(
        lambda a, q, p: OrderSpec(a, q, "Stop", stop_price=p),
        st.sampled_from(["Buy", "Sell"]),
        st.integers(1, 3),
        ticks,
    ),
)
steps = st.lists(
    st.one_of(
        st.tuples(st.just("order"), st.sampled_from([A, B]), order_specs),
        st.tuples(st.just("oco"), st.sampled_from([A, B]), st.tuples(order_specs, order_specs)),
        st.tuples(st.just("price"), st.just(0), ticks),
    ),
    max_size=25,
)


@given(steps)
def test_random_flow_keeps_the_book_consistent(flow: list[tuple[str, int, object]]) -> None:
    """After any sequence: nothing Working is marketable at the current price, OCO pairs never
    both fill, and each position equals the signed sum of its account's fills."""
    ex, mnq, _ = make()
    for kind, account, arg in flow:
        try:
            if kind == "order":
                ex.place(account, mnq, arg)
            elif kind == "oco":
                first, other = arg
                ex.place_oco(account, mnq, first, other)
            else:
                ex.set_price(mnq.id, arg)
        except Rejected:
            pass
        px = ex.prices[mnq.id]
        for o in ex.working[mnq.id].values():
            s = o.spec
            if s.order_type == "Limit":
                assert not (s.action == "Buy" and px <= s.price)
                assert not (s.action == "Sell" and px >= s.price)
            if s.order_type == "Stop":
                assert not (s.action == "Buy" and px >= s.stop_price)
                assert not (s.action == "Sell" and px <= s.stop_price)
    for o in ex.orders.values():
        if o.oco_id is not None:
            assert not (o.status == "Filled" and ex.orders[o.oco_id].status == "Filled")
    for account in (A, B):
        signed = sum(
            (1 if f.action == "Buy" else -1) * f.qty for f in ex.fills_by_account.get(account, [])
        )
        assert net(ex, account, mnq) == signed


# --- config -------------------------------------------------------------------------------------


def test_config_file_toml_and_json(tmp_path: object) -> None:
    from pathlib import Path

    from jtrades.errors import ConfigError
    from jtrades.sim.config import load_config

    base = Path(str(tmp_path))
    toml = base / "w.toml"
    toml.write_text(
        'token_lifetime_s = 120\nmax_sessions = 1\n[prices]\nMNQ = "21000.25"\n'
        '[[logins]]\nname = "a"\npassword = "p"\naccounts = ["A1"]\n'
        '[[logins]]\nname = "b"\naccount_count = 3\n'
    )
    cfg = load_config(toml)
    assert (cfg.token_lifetime_s, cfg.max_sessions) == (120, 1)
    assert cfg.prices == {"MNQ": D("21000.25")}
    assert [(lg.name, [a.name for a in lg.accounts]) for lg in cfg.logins] == [
        ("a", ["A1"]),
        ("b", ["B-1", "B-2", "B-3"]),
    ]
    ids = [a.id for lg in cfg.logins for a in lg.accounts] + [lg.user_id for lg in cfg.logins]
    assert len(set(ids)) == len(ids)
    bad = base / "w.json"
    bad.write_text('{"logins": [], "bogus": 1}')
    with pytest.raises(ConfigError):
        load_config(bad)
    dup = base / "d.json"
    dup.write_text(
        '{"logins": [{"name": "a", "accounts": ["X"]}, {"name": "b", "accounts": ["X"]}]}'
    )
    with pytest.raises(ConfigError):
        load_config(dup)


@given(fills)
def test_fifo_pairs_match_the_position(seq: list[tuple[int, int, Decimal]]) -> None:
    """FIFO lots always add up to the position, and once flat the pairs' P&L (what the cash
    balance books) equals the average-cost realized P&L: both are then the whole cash flow."""
    from jtrades.sim.ledger import pair_fill

    _, mnq, _ = make()
    pos = Position(1, A, mnq, None)
    realized = D(0)
    paired = D(0)
    for n, (sign, qty, price) in enumerate(seq):
        realized += apply_fill(pos, sign, qty, price)
        for _, _, q, buy, sell in pair_fill(pos.lots, n, sign, qty, price):
            paired += (sell - buy) * q
        assert sum(lot[1] for lot in pos.lots) == pos.net_pos
        assert all((lot[1] > 0) == (pos.net_pos > 0) for lot in pos.lots)
        if pos.net_pos == 0:
            assert abs(paired - realized) < D("1e-12")


def test_fill_pairs_are_emitted_when_a_position_closes() -> None:
    ex, mnq, _ = make()
    ex.place(A, mnq, OrderSpec("Buy", 2, "Market"))
    ex.set_price(mnq.id, D("21510"))
    _, events = ex.place(A, mnq, OrderSpec("Sell", 3, "Market"))
    pairs = [e for _, t, _, e in events if t == "fillPair"]
    buy_fill = ex.fills_by_account[A][0].id
    assert [(p["buyFillId"], p["qty"], p["buyPrice"], p["sellPrice"]) for p in pairs] == [
        (buy_fill, 2, 21500.0, 21510.0)
    ]
    kinds = [t for _, t, _, _ in events]
    assert kinds.index("position") < kinds.index("fillPair") < kinds.index("cashBalance")


def test_partial_fills_come_in_lots_and_the_order_fills_after_the_last() -> None:
    ex, mnq, _ = make()
    ex.fill_lot = 2
    oid, events = ex.place(A, mnq, OrderSpec("Buy", 5, "Market"))
    kinds = [
        (t, ent.get("qty"), ent.get("netPos"), ent.get("ordStatus")) for _, t, _, ent in events
    ]
    fills = [q for t, q, _, _ in kinds if t == "fill"]
    assert fills == [2, 2, 1]
    assert [n for t, _, n, _ in kinds if t == "position"] == [2, 4, 5]
    statuses = [s for t, _, _, s in kinds if t == "order"]
    assert statuses == ["PendingNew", "Working", "Filled"]  # never Filled before the last lot
    assert kinds[-1][0] == "order"
    assert ex.orders[oid].status == "Filled"

    # closing at a better price in lots: FIFO pairs per lot, cash for the whole round trip
    ex.set_price(mnq.id, D("21510"))
    _, events = ex.place(A, mnq, OrderSpec("Sell", 5, "Market"))
    pairs = [e for _, t, _, e in events if t == "fillPair"]
    assert sum(p["qty"] for p in pairs) == 5
    assert net(ex, A, mnq) == 0
    # 10 points on 5 MNQ at $2 a point
    assert ex.cash_of(A).realized == D(100)
    assert len(ex.fills_by_account[A]) == 6
