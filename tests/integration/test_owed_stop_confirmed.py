"""The owed stop's evidence as the database holds it, under the rule of the second review
(``engine.owed_stop``): the plan's cancel of a live stop must have taken effect (the broker took
it, or the stop's stored row shows it Canceled and the cancel may have been sent), and the stop
it planned in its place must have failed to reach the broker. A step the dispatcher chose not
to send, or a plan nothing of which was sent, owes nothing."""

from __future__ import annotations

from jtrades.db import Database
from jtrades.engine.dispatch import NOT_SENT_ON_PURPOSE
from tests.integration.test_owed_stop_evidence import (
    NOT_FOUND,
    UNCONFIRMED,
    Db,
    order_doc,
    world,
)


async def _dca_killed_before_its_first_call(db: Db) -> int:
    """A DCA add killed before anything of it was sent, closed by reconciliation after the
    restart: the add and the stop not found at the broker, the cancel 'outcome not
    confirmed'."""
    sig = await db.signal()
    p = f"jt-{sig}-{db.subs[0]}"
    add, stop = order_doc("Buy", 1, "Market"), order_doc("Sell", 2, "Stop", "21490.0")
    await db.intent(f"{p}-1", "order", "expired", signal=sig, reason=NOT_FOUND, request=add)
    await db.intent(
        f"{p}-2", "cancel", "expired", signal=sig, reason=UNCONFIRMED, cancels=db.stop_id
    )
    await db.intent(f"{p}-3x", "order", "expired", signal=sig, reason=NOT_FOUND, request=stop)
    return sig


async def test_a_plan_killed_before_its_first_call_owes_nothing(database: Database) -> None:
    db = await world(database)
    await db.entry()
    await _dca_killed_before_its_first_call(db)
    assert await db.owed(net=1) is None  # the entry's stop works on
    await db.stop_status("Canceled")  # a person cancels it, later
    assert await db.owed(net=1) is None


async def test_a_cancel_in_doubt_of_a_stop_still_working_owes_nothing(database: Database) -> None:
    """The add went, the cancel did not take (its stop stored Working): nothing was taken away;
    the position's uncovered add is the trader's to leave naked (no stop loss)."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    await db.stop_status("Working")
    assert await db.owed() is None


async def test_a_leg_not_sent_on_purpose_is_not_owed(database: Database) -> None:
    """A DCA add's first take-profit leg reached at the broker's average, its contracts given
    to the next leg, which went with its stop: exits cancelled by hand later are not owed."""
    db = await world(database)
    await db.entry()
    sig = await db.signal()
    p = f"jt-{sig}-{db.subs[0]}"
    add = await db.intent(
        f"{p}-1", "order", "filled", signal=sig, request=order_doc("Buy", 1, "Market")
    )
    await db.filled(f"{p}-1", intent=add)
    await db.intent(f"{p}-2", "cancel", "done", signal=sig, cancels=db.stop_id)
    await db.stop_status("Canceled")
    oco = {"first": order_doc("Sell", 2, "Limit"), "second": order_doc("Sell", 2, "Stop", "21490")}
    passed = f"{NOT_SENT_ON_PURPOSE}its contracts go to another leg"
    await db.intent(f"{p}-3x", "oco", "expired", signal=sig, reason=passed, request=oco)
    await db.intent(f"{p}-4x", "oco", "cancelled", signal=sig, request=oco)  # by a person, later
    assert await db.owed() is None


async def test_a_plan_whose_signal_is_gone_is_still_read_whole(database: Database) -> None:
    """A deleted recorder takes its signals, and its intents keep no signal id: the plan is
    then told by its clOrdIds, and the cut plan's stop is still owed."""
    db = await world(database)
    await db.entry()
    sig = await db.cut_dca()
    await db.pool.execute("DELETE FROM signals WHERE id = $1", sig)
    owed = await db.owed()
    assert owed is not None
    assert owed.qty == 2
