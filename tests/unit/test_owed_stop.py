"""The stop the daemon owes a position whose trader has no stop loss (``engine.owed_stop``):
the newest stop of the last plan that reached the broker which itself never did, on the side
that closes the position, for what the live stops leave uncovered; never an older trade's, nor
one deliberately removed."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from jtrades.broker.base import Contract, Position, Side
from jtrades.engine.dispatch import NOT_SENT_ON_PURPOSE
from jtrades.engine.owed_stop import OwedStop, StopLevel, owed_stop, stop_leg, stop_level
from jtrades.engine.plan_context import OPENING_ENTRY, PROTECTION_PREFIX
from jtrades.engine.risk import RiskSettings, SlType
from jtrades.queries import q
from jtrades.store.owed_stops import PlanStep, StopEvidence

D = Decimal
MNQ = Contract("MNQZ6", "MNQ", D("0.25"), D(2), 42)


def pos(net: int, avg: str = "21500") -> Position:
    return Position(7, 42, "MNQZ6", net, D(avg))


def leg(side: str, qty: int, kind: str = "Stop", stop: str | None = "21490.0", **kw: Any) -> dict:
    return {
        "qty": qty,
        "side": side,
        "order_type": kind,
        "stop_price": stop,
        "price": None,
        "peg_difference": None,
        "symbol": "MNQZ6",
        "time_in_force": "GTC",
        **kw,
    }


def step(
    n: int,
    kind: str,
    state: str,
    request: dict | None = None,
    side: str | None = None,
    **kw: Any,
) -> PlanStep:
    doc: dict[str, Any] = {"type": kind, "note": ""}
    if request is not None:
        doc["request"] = request
    return PlanStep(n, f"jt-3-1-{n}", kind, state, side, doc, **kw)


def add(state: str = "filled") -> PlanStep:
    return step(2, "order", state, leg("Buy", 1, "Market", None), "Buy")


UNCONFIRMED = "outcome not confirmed by the broker; not repeated"


def cancel(
    state: str = "expired", n: int = 3, target: str | None = "Stop", status: str | None = "Canceled"
) -> PlanStep:
    """A cancel of the entry's stop (``target``: its stored type), its outcome not confirmed
    after a crash; the stop's stored row Canceled (``status``)."""
    reason = UNCONFIRMED if state == "expired" else None
    return step(n, "cancel", state, reason=reason, target_type=target, target_status=status)


def stop(state: str = "expired", side: str = "Sell", qty: int = 2, **kw: Any) -> PlanStep:
    return step(4, "order", state, leg(side, qty, **kw), side)


def cut_dca(*, fill: bool | None = True, **kw: Any) -> StopEvidence:
    """A DCA add whose plan stopped after its cancel: the add filled, the cancel's outcome is
    not confirmed but the entry's stop is stored Canceled, the stop for the averaged position
    never went (newest first)."""
    return StopEvidence((stop(**kw), cancel(), add()), fill)


# --- what is owed ------------------------------------------------------------------------------


def test_the_stop_a_cut_dca_planned_is_owed_for_the_uncovered_position() -> None:
    assert owed_stop(cut_dca(), pos(2), 0) == OwedStop(Side.SELL, 2, D("21490.0"), None, "jt-3-1-4")


@pytest.mark.parametrize("state", ["expired", "rejected"])
def test_a_stop_expired_unsent_or_refused_is_owed(state: str) -> None:
    assert owed_stop(cut_dca(state=state), pos(2), 0) is not None


def test_quantity_is_only_what_the_live_stops_leave_uncovered() -> None:
    """Cut after the add, before the cancel: the old stop for 1 still works on a long 2."""
    owed = owed_stop(cut_dca(), pos(2), 1)
    assert owed is not None
    assert owed.qty == 1
    assert owed_stop(cut_dca(), pos(2), 2) is None  # covered: nothing owed
    assert owed_stop(cut_dca(), pos(2), 3) is None  # over-covered: trimmed, never topped up


def test_the_quantity_is_the_position_s_not_the_planned_stop_s() -> None:
    """A reduce cut after its cancel, before the reduce: the stop was planned for the 1 left,
    the position is still 2, and all of it is naked."""
    ev = StopEvidence(
        (
            stop(qty=1),
            step(3, "order", "expired", leg("Sell", 1, "Market", None)),
            cancel(n=2),
        ),
        True,
    )
    owed = owed_stop(ev, pos(2), 0)
    assert owed is not None
    assert owed.qty == 2


def test_an_oco_take_profit_leg_s_stop_is_owed() -> None:
    oco = {"first": leg("Sell", 1, "Limit", None, price="21520.0"), "second": leg("Sell", 1)}
    ev = StopEvidence((step(5, "oco", "expired", oco, "Sell"), cancel(), add()), True)
    owed = owed_stop(ev, pos(2), 0)
    assert owed is not None
    assert (owed.stop_price, owed.qty, owed.source) == (D("21490.0"), 2, "jt-3-1-5")


def test_the_newest_unsent_stop_of_the_plan_is_the_one_owed() -> None:
    newer = step(5, "order", "expired", leg("Sell", 1, stop="21495.0"), "Sell")
    ev = StopEvidence((newer, stop(), cancel(), add()), True)
    owed = owed_stop(ev, pos(2), 0)
    assert owed is not None
    assert owed.stop_price == D("21495.0")


def test_a_trailing_stop_is_owed_trailing_by_its_planned_distance() -> None:
    ev = cut_dca(kind="TrailingStop", peg_difference="-10.0")
    owed = owed_stop(ev, pos(2), 0)
    assert owed is not None
    assert owed.trail_by == D("10.0")
    # a TrailingStop recorded without a distance goes back plain at its level
    plain = owed_stop(cut_dca(kind="TrailingStop"), pos(2), 0)
    assert plain is not None
    assert plain.trail_by is None


def test_a_short_is_owed_its_buy_stop() -> None:
    ev = cut_dca(side="Buy", stop="21510.0")
    owed = owed_stop(ev, pos(-2), 0)
    assert owed is not None
    assert (owed.side, owed.stop_price) == (Side.BUY, D("21510.0"))


# --- what is not -------------------------------------------------------------------------------


def test_the_side_must_close_the_position() -> None:
    """A sell stop does not protect a short (it would add to it), a buy stop not a long."""
    assert owed_stop(cut_dca(), pos(-2), 0) is None
    assert owed_stop(cut_dca(side="Buy", stop="21510.0"), pos(2), 0) is None


@pytest.mark.parametrize("state", ["pending", "sent", "unknown", "working", "done", "cancelled"])
def test_a_stop_that_may_have_reached_the_broker_is_not_owed(state: str) -> None:
    """Pending or in doubt: reconciliation settles it first (it may be working); working,
    done or cancelled: it was placed (and a cancelled one was removed on purpose)."""
    assert owed_stop(cut_dca(state=state), pos(2), 0) is None


def test_an_older_trade_s_stop_is_never_resurrected() -> None:
    """The evidence is the last plan that reached the broker: after the trade whose stop was
    cut, the next trade's entry is that plan, and it owes nothing; the cut trade's stop is not
    looked at."""
    entry = step(9, "strategy", "filled", {"entry": leg("Buy", 1, "Market", None)}, "Buy")
    assert owed_stop(StopEvidence((entry,), True), pos(1), 0) is None


def test_a_position_a_person_traded_by_hand_since_is_not_owed_the_stop() -> None:
    """The contract's latest fill was by hand (a trade opened by hand after the cut one was
    closed), or no fill is stored: what is held is not the position the stop was planned for."""
    assert owed_stop(cut_dca(fill=False), pos(2), 0) is None
    assert owed_stop(cut_dca(fill=None), pos(2), 0) is None


def test_a_stop_removed_by_a_close_is_not_resurrected() -> None:
    """A close after the cut one is the last plan: a liquidation and cancels, no stop."""
    ev = StopEvidence((step(8, "cancel", "done"), step(7, "liquidate", "done")), True)
    assert owed_stop(ev, pos(1), 0) is None


def test_a_stop_removed_by_an_alert_that_changed_the_exits_is_not_resurrected() -> None:
    """An alert whose plan cancelled the stop and placed take-profits only: it left no stop
    unplaced, so none is owed, however naked the position."""
    tp = step(9, "order", "working", leg("Sell", 2, "Limit", None, price="21550.0"), "Sell")
    ev = StopEvidence((tp, step(8, "cancel", "done")), True)
    assert owed_stop(ev, pos(2), 0) is None


def test_nothing_without_evidence_or_a_position() -> None:
    assert owed_stop(None, pos(2), 0) is None
    assert owed_stop(cut_dca(), pos(0), 0) is None


def test_a_recorded_request_that_is_not_a_stop_is_skipped() -> None:
    assert stop_leg(step(4, "order", "expired", leg("Sell", 2, "Limit", None))) is None
    assert stop_leg(step(4, "cancel", "expired")) is None
    assert stop_leg(step(4, "order", "expired", None)) is None
    bad = cut_dca(stop="not a price")
    assert owed_stop(bad, pos(2), 0) is None


# --- only a plan that took a stop away and failed to put it back owes one --------------------

NOT_FOUND = "no order at the broker with this clOrdId: not sent, never sent late"


def test_a_take_profit_leg_the_dispatcher_chose_not_to_send_is_not_owed() -> None:
    """A DCA add's first leg reached at the broker's average: its contracts went to the next
    leg, which went out with its stop. Nothing failed; exits a person cancels stay cancelled."""
    oco = {"first": leg("Sell", 1, "Limit", None, price="21503.0"), "second": leg("Sell", 1)}
    why = f"{NOT_SENT_ON_PURPOSE}its contracts go to another leg"
    placed = {"first": leg("Sell", 2, "Limit", None, price="21510.0"), "second": leg("Sell", 2)}
    ev = StopEvidence(
        (
            step(6, "oco", "working", placed, "Sell"),
            step(5, "oco", "expired", oco, "Sell", reason=why),
            cancel("done"),
            add(),
        ),
        True,
    )
    assert owed_stop(ev, pos(2), 0) is None
    # the same leg not sent because a step before it failed is owed
    failed = step(5, "oco", "expired", oco, "Sell", reason="not sent: step 3 rejected")
    assert owed_stop(StopEvidence((failed, cancel("done"), add()), True), pos(2), 0) is not None


def test_a_cancel_in_doubt_of_a_stop_still_working_removed_nothing() -> None:
    """Killed before the cancel went: its stop worked on; cancelled later by a person."""
    ev = StopEvidence((stop(), cancel(status="Working"), add()), True)
    assert owed_stop(ev, pos(2), 0) is None
    unknown = StopEvidence((stop(), cancel(status=None), add()), True)  # its row not stored
    assert owed_stop(unknown, pos(2), 0) is None


def test_a_cancel_after_a_step_that_never_left_never_left_either() -> None:
    """A DCA killed before its first call: the add was never at the broker, so its cancel was
    never sent, whoever cancelled the stop its row shows Canceled (a person, later)."""
    never = step(2, "order", "expired", leg("Buy", 1, "Market", None), "Buy", reason=NOT_FOUND)
    ev = StopEvidence((stop(), cancel(), never), True)
    assert owed_stop(ev, pos(1), 0) is None


def test_a_protection_s_cancel_not_sent_proves_nothing_of_the_next() -> None:
    """The protector sends each of its cancels whatever became of the one before."""
    first = step(2, "cancel", "expired", reason="not sent: broker unavailable (429)")
    ev = StopEvidence((stop(), cancel(), first), True)
    assert owed_stop(ev, pos(2), 0) is not None


def test_a_cancel_never_sent_removed_nothing_whatever_its_stop_shows() -> None:
    """Written 'not sent' (its signal too old): whoever cancelled the stop, not this plan."""
    why = "not sent: signal older than its TTL"
    never = step(3, "cancel", "expired", reason=why, target_type="Stop", target_status="Canceled")
    ev = StopEvidence((stop(), never, add()), True)
    assert owed_stop(ev, pos(2), 0) is None


def test_a_confirmed_cancel_of_a_stop_is_enough_a_cancel_of_a_take_profit_is_not() -> None:
    assert owed_stop(StopEvidence((stop(), cancel("done", status=None), add()), True), pos(2), 0)
    assert owed_stop(
        StopEvidence((stop(), cancel("done", status="Working"), add()), True), pos(2), 0
    )
    tp = cancel("done", target="Limit")
    assert owed_stop(StopEvidence((stop(), tp, add()), True), pos(2), 0) is None
    # not stored: the dispatcher's note names what it cancelled
    noted = PlanStep(3, "jt-3-1-3", "cancel", "done", None, {"type": "cancel", "note": "Stop 1"})
    assert owed_stop(StopEvidence((stop(), noted, add()), True), pos(2), 0) is not None


def test_a_refused_cancel_of_a_stop_already_gone_with_its_oco_partner_counts() -> None:
    """The take-profit's cancel took its OCO partner, the stop, with it: the stop's own cancel
    is refused, its row Canceled, and the stop after it never went."""
    ev = StopEvidence((stop(), cancel("rejected"), add()), True)
    assert owed_stop(ev, pos(2), 0) is not None


def test_a_stop_that_failed_before_the_cancel_is_not_owed() -> None:
    """Only a stop planned to go back after the cancel took one away."""
    early = step(2, "order", "rejected", leg("Sell", 2), "Sell")
    ev = StopEvidence((cancel("done"), early), True)
    assert owed_stop(ev, pos(2), 0) is None


# --- the level a protection stops at -------------------------------------------------------


def test_the_owed_level_is_put_on_the_tick_away_from_the_market() -> None:
    owed = OwedStop(Side.SELL, 2, D("21490.1"), None, "x")
    assert stop_level(None, owed, pos(2), MNQ) == StopLevel(D("21490.00"), None, False)
    short = OwedStop(Side.BUY, 2, D("21510.1"), None, "x")
    assert stop_level(None, short, pos(-2), MNQ) == StopLevel(D("21510.25"), None, False)


def test_an_owed_trailing_stop_trails_by_its_distance_on_the_tick() -> None:
    owed = OwedStop(Side.SELL, 2, D("21490"), D("10.1"), "x")
    assert stop_level(None, owed, pos(2), MNQ) == StopLevel(D("21490.00"), D("10.00"), True)


def test_a_configured_stop_loss_comes_first() -> None:
    s = RiskSettings(sl=D(40))  # 40 ticks: 10 points under the average
    owed = OwedStop(Side.SELL, 2, D("21400"), None, "x")
    assert stop_level(s, owed, pos(2), MNQ) == StopLevel(D("21490.00"), D("10.00"), False)
    trailing = RiskSettings(sl=D(40), sl_type=SlType.TRAILING)
    assert stop_level(trailing, None, pos(-1), MNQ) == StopLevel(D("21510.00"), D("10.00"), True)


def test_without_either_the_level_is_the_average() -> None:
    """Only stops over the position are brought down then: the plan keeps their price."""
    assert stop_level(None, None, pos(2, "21500.5"), MNQ) == StopLevel(D("21500.5"), None, False)


def test_the_evidence_query_spells_the_protection_prefix_and_the_opening_note_as_the_code() -> None:
    """``sql/queries/owed_stops.sql`` cannot import them: a protection's clOrdId prefix and an
    opening entry's note are literals there, held here to the constants the code writes."""
    sql = q("owed_stops.evidence")
    assert f"starts_with(i.cl_ord_id, '{PROTECTION_PREFIX}')" in sql
    assert f"<> '{OPENING_ENTRY}'" in sql
