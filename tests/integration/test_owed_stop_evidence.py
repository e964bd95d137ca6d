"""The evidence of an owed stop as the database holds it (``store.owed_stops``, decided by
``engine.owed_stop.lookup``): the last plan on the contract that may have reached the broker,
and who made the latest fill. A stop is owed only to the position its plan left; an older
trade's stop, or one a later plan removed on purpose, never comes back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from jtrades.broker.base import Position
from jtrades.db import Database
from jtrades.engine.owed_stop import lookup
from tests.integration.test_engine import make_user

D = Decimal
BID, SYM = 700004, "MNQZ6"
NOT_FOUND = "no order at the broker with this clOrdId: not sent, never sent late"
UNCONFIRMED = "outcome not confirmed by the broker; not repeated"
TOO_LATE = "not sent: signal older than its TTL"


def order_doc(side: str, qty: int, kind: str, stop: str | None = None) -> dict[str, Any]:
    return {
        "qty": qty,
        "side": side,
        "order_type": kind,
        "stop_price": stop,
        "price": None,
        "peg_difference": None,
        "symbol": SYM,
    }


@dataclass
class Db:
    pool: asyncpg.Pool
    subs: list[int]
    order_ids: dict[str, int] = field(default_factory=dict)  # clOrdId -> broker order id
    next_id: int = 1000
    stop_id: int = 0  # the entry's stop bracket (broker order id)

    async def signal(self) -> int:
        return int(
            await self.pool.fetchval(
                "INSERT INTO signals (raw_body, verdict) VALUES ('x', 'accepted') RETURNING id"
            )
        )

    async def intent(
        self,
        cl: str,
        kind: str,
        state: str,
        *,
        signal: int | None,
        reason: str | None = None,
        side: str | None = None,
        qty: int | None = None,
        request: dict[str, Any] | None = None,
        sub: int | None = None,
        cancels: int | None = None,
    ) -> int:
        doc: dict[str, Any] = {"type": kind, "note": ""}
        if request is not None:
            doc["request"] = request
        if cancels is not None:
            doc["cancel_order_id"] = cancels
        return int(
            await self.pool.fetchval(
                "INSERT INTO order_intents (signal_id, sub_account_id, cl_ord_id, step, kind,"
                " symbol, side, qty, request, state, reason, expires_at)"
                " VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                signal,
                sub or self.subs[0],
                cl,
                kind,
                SYM,
                side,
                qty,
                doc,
                state,
                reason,
                datetime.now(UTC) + timedelta(seconds=30),
            )
        )

    async def filled(
        self,
        cl: str | None,
        *,
        intent: int | None = None,
        parent: str | None = None,
        side: str = "Buy",
        sub: int | None = None,
    ) -> None:
        """An order (its clOrdId and intent, or a bracket of ``parent``) and its fill."""
        self.next_id += 10
        oid = self.next_id
        if cl is not None:
            self.order_ids[cl] = oid
        await self.pool.execute(
            "INSERT INTO orders (sub_account_id, broker_order_id, intent_id, cl_ord_id, symbol,"
            " side, qty, order_type, status, parent_id)"
            " VALUES ($1, $2, $3, $4, $5, $6, 1, 'Market', 'Filled', $7)",
            sub or self.subs[0],
            oid,
            intent,
            cl,
            SYM,
            side,
            self.order_ids[parent] if parent is not None else None,
        )
        await self.pool.execute(
            "INSERT INTO fills (sub_account_id, broker_fill_id, broker_order_id, symbol, side,"
            " qty, price, filled_at) VALUES ($1, $2, $3, $4, $5, 1, 21500, now())",
            sub or self.subs[0],
            oid + 1,
            oid,
            SYM,
            side,
        )

    async def entry(self) -> str:
        """An alert opened long 1 (an order strategy, its stop a bracket without an intent,
        stored working: ``stop_id``); its clOrdId."""
        sig = await self.signal()
        cl = f"jt-{sig}-{self.subs[0]}-1"
        i = await self.intent(cl, "strategy", "filled", signal=sig, side="Buy", qty=1)
        await self.filled(cl, intent=i)
        self.next_id += 10
        self.stop_id = self.next_id
        await self.pool.execute(
            "INSERT INTO orders (sub_account_id, broker_order_id, symbol, side, qty, order_type,"
            " stop_price, status, parent_id) VALUES ($1, $2, $3, 'Sell', 1, 'Stop', 21490,"
            " 'Working', $4)",
            self.subs[0],
            self.stop_id,
            SYM,
            self.order_ids[cl],
        )
        return cl

    async def stop_status(self, status: str) -> None:
        """The entry's stop as the mirror stores it now (``Canceled``: gone at the broker)."""
        await self.pool.execute(
            "UPDATE orders SET status = $1 WHERE broker_order_id = $2", status, self.stop_id
        )

    async def cut_dca(self, stop: str = "21490.0", *, stop_state: str = "expired") -> int:
        """A DCA add whose plan stopped after its cancel (the daemon killed): the add filled,
        the cancel's outcome unconfirmed (the entry's stop stored Canceled: it went), the stop
        for the long 2 never sent."""
        sig = await self.signal()
        p = f"jt-{sig}-{self.subs[0]}"
        add = await self.intent(
            f"{p}-1",
            "order",
            "filled",
            signal=sig,
            side="Buy",
            qty=1,
            request=order_doc("Buy", 1, "Market"),
        )
        await self.filled(f"{p}-1", intent=add)
        await self.intent(
            f"{p}-2", "cancel", "expired", signal=sig, reason=UNCONFIRMED, cancels=self.stop_id
        )
        await self.stop_status("Canceled")
        await self.intent(
            f"{p}-3x",
            "order",
            stop_state,
            signal=sig,
            reason=NOT_FOUND,
            side="Sell",
            qty=2,
            request=order_doc("Sell", 2, "Stop", stop),
        )
        return sig

    async def owed(self, net: int = 2, coverage: int = 0, subs: list[int] | None = None) -> Any:
        return await lookup(
            self.pool, subs or self.subs, Position(BID, 42, SYM, net, D(21500)), coverage
        )


async def world(database: Database, name: str = "ow") -> Db:
    pool = database.pool
    u = await make_user(pool, name)
    aid = await pool.fetchval(
        "INSERT INTO accounts (user_id, label, env, username) VALUES ($1, $2, 'demo', $3)"
        " RETURNING id",
        u,
        f"{name}-demo",
        f"{name}_tv",
    )
    sub = await pool.fetchval(
        "INSERT INTO sub_accounts (account_id, broker_account_id, name) VALUES ($1, $2, 'KA')"
        " RETURNING id",
        aid,
        BID,
    )
    return Db(pool, [int(sub)])


async def test_the_stop_a_cut_dca_planned_is_owed(database: Database) -> None:
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    owed = await db.owed()
    assert owed is not None
    assert (owed.stop_price, owed.qty) == (D("21490.0"), 2)


async def test_not_while_the_stop_s_outcome_is_in_doubt(database: Database) -> None:
    """Still pending after a restart: reconciliation looks it up first (it may be working)."""
    db = await world(database)
    await db.entry()
    await db.cut_dca(stop_state="pending")
    assert await db.owed() is None


async def test_an_older_trade_s_stop_is_never_resurrected(database: Database) -> None:
    """The cut trade was closed; the next one, opened by an alert without a stop, is naked
    and stays so: its entry is the last plan that reached the broker."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    sig = await db.signal()
    p = f"jt-{sig}-{db.subs[0]}"
    await db.intent(f"{p}-1", "liquidate", "done", signal=sig)
    await db.entry()
    assert await db.owed(net=1) is None


async def test_a_stop_removed_by_a_close_is_not_resurrected(database: Database) -> None:
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    sig = await db.signal()
    p = f"jt-{sig}-{db.subs[0]}"
    await db.intent(f"{p}-1", "cancel", "done", signal=sig)
    await db.intent(f"{p}-2", "liquidate", "done", signal=sig)
    assert await db.owed() is None


async def test_a_position_traded_by_hand_since_is_not_owed_the_stop(database: Database) -> None:
    """A fill by hand (no clOrdId, no intent) after the cut: what is held is not the position
    the stop was planned for."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    await db.filled(None)
    assert await db.owed(net=3) is None


async def test_a_bracket_s_fill_is_the_daemon_s(database: Database) -> None:
    """A take-profit bracket of the entry's strategy filled after the cut (the position went
    from 2 to 1): still the daemon's doing, and the stop is owed for what is left."""
    db = await world(database)
    entry = await db.entry()
    await db.cut_dca()
    await db.filled(None, parent=entry, side="Sell")
    owed = await db.owed(net=1)
    assert owed is not None
    assert owed.qty == 1


async def test_a_plan_that_never_reached_the_broker_neither_owes_nor_hides(
    database: Database,
) -> None:
    """An alert whose every step expired unsent (past its TTL) changed nothing: its stop is
    not owed, and the stop the cut plan before it owes still is."""
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    sig = await db.signal()
    p = f"jt-{sig}-{db.subs[0]}"
    await db.intent(
        f"{p}-1",
        "order",
        "expired",
        signal=sig,
        reason=TOO_LATE,
        side="Buy",
        qty=1,
        request=order_doc("Buy", 1, "Market"),
    )
    await db.intent(f"{p}-2", "cancel", "expired", signal=sig, reason=TOO_LATE)
    await db.intent(
        f"{p}-3x",
        "order",
        "expired",
        signal=sig,
        reason=TOO_LATE,
        side="Sell",
        qty=3,
        request=order_doc("Sell", 3, "Stop", "21480.0"),
    )
    owed = await db.owed()
    assert owed is not None
    assert owed.stop_price == D("21490.0")


async def test_a_refused_protection_keeps_the_stop_owed_a_placed_one_ends_it(
    database: Database,
) -> None:
    db = await world(database)
    await db.entry()
    await db.cut_dca()
    prot = f"jt-p-{db.subs[0]}-{SYM}-1733000000000"
    await db.intent(
        f"{prot}-1",
        "order",
        "rejected",
        signal=None,
        reason="past the market",
        side="Sell",
        qty=2,
        request=order_doc("Sell", 2, "Stop", "21490.00"),
    )
    owed = await db.owed()
    assert owed is not None
    assert owed.stop_price == D("21490.0")  # the cut plan's: the attempt reached nothing
    placed = f"jt-p-{db.subs[0]}-{SYM}-1733000030000"
    i = await db.intent(
        f"{placed}-1",
        "order",
        "working",
        signal=None,
        side="Sell",
        qty=2,
        request=order_doc("Sell", 2, "Stop", "21490.00"),
    )
    assert await db.owed() is None
    # cancelled by a person later: it was placed, it is not owed again
    await db.pool.execute("UPDATE order_intents SET state = 'cancelled' WHERE id = $1", i)
    assert await db.owed() is None


async def test_a_protection_cut_after_its_cancels_owes_its_stop(database: Database) -> None:
    db = await world(database)
    await db.entry()
    prot = f"jt-p-{db.subs[0]}-{SYM}-1733000000000"
    await db.intent(f"{prot}-1", "cancel", "done", signal=None, cancels=db.stop_id)
    await db.intent(
        f"{prot}-2",
        "order",
        "expired",
        signal=None,
        reason="not sent: broker down",
        side="Sell",
        qty=1,
        request=order_doc("Sell", 1, "Stop", "21495.00"),
    )
    owed = await db.owed(net=1)
    assert owed is not None
    assert owed.stop_price == D("21495.00")


async def test_another_user_s_row_of_the_same_account_counts(database: Database) -> None:
    """Two users' rows for one Tradovate account: the other row's later add, which placed its
    own stop (a plain add is passed over: test_owed_stop_holes), is the last plan on the
    account's position."""
    db = await world(database)
    other = await world(database, "ow2")
    await db.entry()
    await db.cut_dca()
    sig = await db.signal()
    cl = f"jt-{sig}-{other.subs[0]}-1"
    i = await db.intent(
        cl,
        "order",
        "filled",
        signal=sig,
        side="Buy",
        qty=1,
        request=order_doc("Buy", 1, "Market"),
        sub=other.subs[0],
    )
    await db.filled(cl, intent=i, sub=other.subs[0])
    await db.intent(
        f"jt-{sig}-{other.subs[0]}-2",
        "order",
        "working",
        signal=sig,
        side="Sell",
        qty=1,
        request=order_doc("Sell", 1, "Stop", "21480.0"),
        sub=other.subs[0],
    )
    assert await db.owed(net=3) is not None  # one row alone does not see it
    assert await db.owed(net=3, subs=[db.subs[0], other.subs[0]]) is None
