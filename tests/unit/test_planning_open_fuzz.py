"""Opening from flat with any mix of per-alert exits, entry types, ladders and multipliers.

Adopted from a review's fuzzing: whatever the alert says, an OPEN is one order or one strategy
whose prices are on the tick, whose brackets add up to the entry (money rule 4) and point the
right way, or nothing with a "cannot plan" reason. An alert's dollars for the whole position
(TradersPost ``pnlAmount``) never risk more than it says on the contracts it asks for.
"""

from __future__ import annotations

import dataclasses
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from jtrades.broker.base import Contract, OrderRequest, StrategyRequest, SubAccount
from jtrades.engine.planning import AccountState, PositionAction, plan_account
from jtrades.engine.risk import RiskSettings, parse_tp
from jtrades.engine.signal import Action, ExitSpec, Signal, Units

D = Decimal
ACCT = SubAccount(101, "DEMO101")
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D("2"), contract_id=42)
GC = Contract("GCZ6", "GC", D("0.1"), D("100"), contract_id=7)
ZB = Contract("ZBZ6", "ZB", D("0.03125"), D("1000"), contract_id=9)
E6 = Contract("6EZ6", "6E", D("0.00005"), D("125000"), contract_id=10)
CL = Contract("CLZ6", "CL", D("0.01"), D("1000"), contract_id=11)
REF = {MNQ: D("21500.25"), GC: D("2650.3"), ZB: D("117.15625"), E6: D("1.08315"), CL: D("71.23")}

specs = st.one_of(
    st.none(),
    st.tuples(
        st.sampled_from(list(Units)), st.decimals(min_value=D("0.01"), max_value=D("50"), places=2)
    ),
)


@settings(max_examples=400)
@given(
    contract=st.sampled_from([MNQ, GC, ZB, E6, CL]),
    buy=st.booleans(),
    tp=specs,
    sl=specs,
    trailing=st.booleans(),
    qty=st.integers(1, 7),
    mult=st.sampled_from(["0.5", "1", "1.5", "3"]),
    ladder=st.sampled_from(["", "20", "20:1,40:1,60", "8:2,30"]),
    cfg_sl=st.integers(0, 40),
    kind=st.sampled_from([None, "limit", "stop", "stop_limit"]),
    off=st.integers(-30, 30),
    off2=st.integers(-30, 30),
)
def test_an_open_is_on_tick_sized_and_points_the_right_way(
    contract: Contract,
    buy: bool,
    tp: tuple[Units, Decimal] | None,
    sl: tuple[Units, Decimal] | None,
    trailing: bool,
    qty: int,
    mult: str,
    ladder: str,
    cfg_sl: int,
    kind: str | None,
    off: int,
    off2: int,
) -> None:
    tick = contract.tick_size
    ref = REF[contract]
    side = 1 if buy else -1

    def level(units: Units, value: Decimal, d: int) -> ExitSpec:  # d: +1 = the exit is above
        if units is Units.PRICE:
            return ExitSpec(ref + d * value * tick * 4, units)
        return ExitSpec(value, units)

    take = (level(*tp, side),) if tp else ()
    stop = None
    if sl:
        units, value = sl
        if trailing and units is Units.PRICE:
            units = Units.POINTS
        stop = dataclasses.replace(level(units, value, -side), trailing=trailing)
    sig = Signal(
        Action.BUY if buy else Action.SELL, quantity=qty, price=ref, order_type=kind,
        limit_price=ref + off * tick + tick / 3 if kind in ("limit", "stop_limit") else None,
        stop_price=ref + off2 * tick + tick / 7 if kind in ("stop", "stop_limit") else None,
        take_profit=take, stop_loss=stop,
    )  # fmt: skip
    s = RiskSettings(size=3, tp=parse_tp(ladder), sl=D(cfg_sl)).validate()
    p = plan_account(sig, s, D(mult), ACCT, contract, AccountState(0, None), signal_price=ref,
                     cl_ord_prefix="s1-101")  # fmt: skip
    if p.action is PositionAction.IGNORE:
        assert p.reason.startswith("cannot plan"), p.reason
        return
    assert p.action is PositionAction.OPEN, p.reason
    (o,) = p.orders
    r = o.request
    if isinstance(r, OrderRequest):
        return
    assert isinstance(r, StrategyRequest)
    e = r.entry
    for v in (e.price, e.stop_price):
        if v is not None:
            assert v % tick == 0
    assert sum(b.qty for b in r.brackets) == e.qty
    for b in r.brackets:
        assert b.qty >= 1
        if b.profit_target is not None:
            assert b.profit_target * side > 0, b
            assert b.profit_target % tick == 0, b
        if b.stop_loss is not None:
            assert b.stop_loss * side < 0, b
            assert b.stop_loss % tick == 0, b
            if stop is not None and stop.units is Units.POSITION_DOLLARS:
                # the alert's cap on its own contracts (a stop is at least one tick away)
                risk = -b.stop_loss * side * contract.value_per_point * qty
                assert risk <= max(stop.value, tick * contract.value_per_point * qty), b
        for v in (b.trail_trigger, b.trail_freq):
            if v is not None:
                assert v > 0
                assert v % tick == 0
