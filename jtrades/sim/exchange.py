"""The simulated exchange: orders, matching against one price per contract, positions and P&L.

Pure state and rules, no I/O: every command returns the ``props`` events it caused, in the order
Tradovate plausibly sends them (order Created PendingNew, orderVersion, command, order Updated
Working; a fill: fill, position, fillPair (what it closed, FIFO), cashBalance, order Updated
Filled; then what the fill set off:
OCO cancels, OSO brackets going Working, strategy brackets). The web layer only fans them out.

Matching rules (a simulator's choices, not Tradovate's documented behaviour):
- Market fills at the current price.
- Limit buy fills when the price is ≤ the limit, sell when ≥. An order marketable when it is placed
  (or when a bracket becomes active) fills at the current price; one reached by a price move fills
  at its limit.
- Stop buy triggers when the price is ≥ the stop, sell when ≤, and fills at the price. StopLimit
  becomes a limit at ``price`` once its stop is hit. MIT is a limit that fills at the price.
- TrailingStop: ``|pegDifference|`` points behind the best price since placement, on the tick.
- A fill is for the whole quantity, unless ``fill_lot`` is set (the ``partial_fills`` fault): then
  an order fills in lots of at most that many contracts, each its own fill, position, fill pairs
  and cash event, and the order goes Filled after the last (Tradovate has no partially filled
  status: the order stays Working until then).
- ``netPrice`` is the average price of the open quantity; realized P&L (cashBalance) is booked from
  FIFO fill pairs at the product's value per point (the arithmetic is ``ledger``'s).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from jtrades.sim import order_rules
from jtrades.sim.config import Contract
from jtrades.sim.entities import (
    CANCELED,
    FILLED,
    OPEN_STATUSES,
    PENDING_NEW,
    SUSPENDED,
    WORKING,
    CashBalance,
    Fill,
    Order,
    OrderSpec,
    Position,
    PropsEvent,
    Rejected,
    Strategy,
    strategy_link_json,
    to_tick,
)
from jtrades.sim.ledger import apply_fill, pair_fill
from jtrades.sim.strategies import StrategyBook

__all__ = ["Exchange", "Rejected", "to_tick"]


class Exchange(StrategyBook):
    def __init__(
        self,
        contracts: Iterable[Contract],
        prices: dict[int, Decimal],
        starting_balance: Decimal = Decimal(50000),
        now: Callable[[], datetime] | None = None,
    ) -> None:
        self.contracts = {c.id: c for c in contracts}
        self.prices = dict(prices)
        self.starting_balance = starting_balance
        self.now = now or (lambda: datetime.now(UTC))
        self.orders: dict[int, Order] = {}
        self.orders_by_account: dict[int, list[Order]] = {}
        self.working: dict[int, dict[int, Order]] = {cid: {} for cid in self.contracts}
        self.fills_by_account: dict[int, list[Fill]] = {}
        self.positions: dict[tuple[int, int], Position] = {}
        self.cash: dict[int, CashBalance] = {}
        self.strategies: dict[int, Strategy] = {}
        self.strategies_by_account: dict[int, list[Strategy]] = {}
        self.strategy_links: dict[int, list[dict[str, Any]]] = {}
        self.fill_pairs: dict[int, list[dict[str, Any]]] = {}
        self.fill_lot: int | None = None  # fill in lots of at most this many (None: at once)
        self._ids = itertools.count(1_000_001)
        self._out: list[PropsEvent] = []

    # --- commands ------------------------------------------------------------------------------

    def place(
        self, account_id: int, contract: Contract, spec: OrderSpec, is_automated: bool = True
    ) -> tuple[int, list[PropsEvent]]:
        self._out = []
        self.check_spec(contract, spec)
        order = self._new_order(account_id, contract, spec, is_automated=is_automated)
        self._activate(order)
        return order.id, self._out

    def place_rejected(
        self, account_id: int, contract: Contract, spec: OrderSpec, reason: str, text: str
    ) -> tuple[int, list[PropsEvent]]:
        """An order accepted, then rejected (a risk check after acceptance)."""
        self._out = []
        order = self._new_order(account_id, contract, spec)
        order.status = "Rejected"
        report = {
            "id": next(self._ids),
            "commandId": order.commands[-1]["id"],
            "timestamp": order.commands[-1]["timestamp"],
            "commandStatus": "RiskRejected",
            "rejectReason": reason,
            "text": text,
        }
        self._emit(account_id, "commandReport", "Created", report)
        self._emit(account_id, "order", "Updated", order.json())
        return order.id, self._out

    def place_oso(
        self, account_id: int, contract: Contract, entry: OrderSpec, brackets: list[OrderSpec]
    ) -> tuple[list[int], list[PropsEvent]]:
        """An entry whose brackets go Working (OCO with each other) once it fills."""
        self._out = []
        for spec in (entry, *brackets):
            self.check_spec(contract, spec)
        parent = self._new_order(account_id, contract, entry)
        kids = [
            self._new_order(account_id, contract, b, status=SUSPENDED, parent_id=parent.id)
            for b in brackets
        ]
        if len(kids) == 2:
            kids[0].oco_id, kids[1].oco_id = kids[1].id, kids[0].id
        parent.children = [k.id for k in kids]
        self._activate(parent)
        return [parent.id, *(k.id for k in kids)], self._out

    def place_oco(
        self, account_id: int, contract: Contract, first: OrderSpec, other: OrderSpec
    ) -> tuple[list[int], list[PropsEvent]]:
        self._out = []
        self.check_spec(contract, first)
        self.check_spec(contract, other)
        a = self._new_order(account_id, contract, first)
        b = self._new_order(account_id, contract, other)
        a.oco_id, b.oco_id = b.id, a.id
        self._activate(a)
        if b.status == PENDING_NEW:
            self._activate(b)
        return [a.id, b.id], self._out

    def modify(
        self,
        order_id: int,
        qty: int,
        order_type: str,
        price: Decimal | None,
        stop_price: Decimal | None,
        peg: Decimal | None = None,
        tif: str | None = None,
    ) -> tuple[int, list[PropsEvent]]:
        self._out = []
        order = self.orders.get(order_id)
        if order is None:
            raise Rejected("UnknownReason", f"order {order_id} not found")
        if order.status not in OPEN_STATUSES:
            raise Rejected("TooLate", f"order {order_id} is {order.status}")
        if order_type != order.spec.order_type:
            raise Rejected("UnknownReason", "orderType cannot be changed by modifyorder")
        old = order.spec
        new = OrderSpec(
            old.action,
            qty,
            order_type,
            price,
            stop_price,
            peg if peg is not None else old.peg,
            tif or old.tif,
            old.cl_ord_id,
            old.text,
        )
        self.check_spec(order.contract, new)
        order.spec = new
        order.triggered = False
        order.version_id = next(self._ids)
        self._emit_version(order)
        command_id = self._command(order, "Modify")
        self._emit(order.account_id, "order", "Updated", order.json())
        if order.status == WORKING:
            self._check(order, self.prices[order.contract.id], placing=True)
        return command_id, self._out

    def cancel(self, order_id: int) -> tuple[int, list[PropsEvent]]:
        self._out = []
        order = self.orders.get(order_id)
        if order is None:
            raise Rejected("UnknownReason", f"order {order_id} not found")
        if order.status not in OPEN_STATUSES:
            raise Rejected("TooLate", f"order {order_id} is {order.status}")
        command_id = self._command(order, "Cancel")
        self._cancel(order)
        if order.strategy_id is not None and order.role == "entry":
            st = self.strategies[order.strategy_id]
            st.status = "ExecutionInterrupted"
            self._emit(st.account_id, "orderStrategy", "Updated", st.json())
        return command_id, self._out

    def liquidate(self, account_id: int, contract_id: int) -> tuple[int | None, list[PropsEvent]]:
        """Cancel this account's working orders on this contract, then flatten it at market."""
        self._out = []
        contract = self.contracts.get(contract_id)
        if contract is None:
            raise Rejected("InvalidContract", f"contract {contract_id} not found")
        for st in self.strategies_by_account.get(account_id, []):
            if st.contract.id == contract_id and st.status == "ActiveStrategy":
                self._interrupt(st)
        for order in list(self.orders_by_account.get(account_id, [])):
            if order.contract.id == contract_id and order.status in OPEN_STATUSES:
                self._cancel(order)
        pos = self.positions.get((account_id, contract_id))
        order_id: int | None = None
        if pos is not None and pos.net_pos:
            action = "Sell" if pos.net_pos > 0 else "Buy"
            spec = OrderSpec(action, abs(pos.net_pos), "Market", text="Liquidate")
            order = self._new_order(account_id, contract, spec)
            self._activate(order)
            order_id = order.id
        return order_id, self._out

    def set_price(self, contract_id: int, price: Decimal) -> list[PropsEvent]:
        """Move a contract's price and fill what it reaches."""
        self._out = []
        self.prices[contract_id] = price
        book = self.working[contract_id]
        if book:
            for order in list(book.values()):
                if order.status == WORKING:
                    self._check(order, price, placing=False)
        return self._out

    # --- validation ----------------------------------------------------------------------------

    def check_spec(self, contract: Contract, spec: OrderSpec) -> None:
        """Raise ``Rejected`` for an order the exchange does not take (see ``order_rules``)."""
        order_rules.check_spec(contract, spec)

    # --- internals -----------------------------------------------------------------------------

    def _emit(
        self, account_id: int, entity_type: str, event_type: str, entity: dict[str, Any]
    ) -> None:
        self._out.append((account_id, entity_type, event_type, entity))

    def _emit_version(self, order: Order) -> None:
        self._emit(order.account_id, "orderVersion", "Created", order.version_json())

    def _new_order(
        self,
        account_id: int,
        contract: Contract,
        spec: OrderSpec,
        *,
        status: str = PENDING_NEW,
        is_automated: bool = True,
        parent_id: int | None = None,
        strategy_id: int | None = None,
        role: str = "",
    ) -> Order:
        if spec.order_type == "TrailingStop" and spec.stop_price is None:
            assert spec.peg is not None
            px = self.prices[contract.id]
            start = px - abs(spec.peg) if spec.action == "Sell" else px + abs(spec.peg)
            spec.stop_price = to_tick(start, contract.root.tick)
        order = Order(
            id=next(self._ids),
            account_id=account_id,
            contract=contract,
            spec=spec,
            status=status,
            timestamp=self.now(),
            version_id=next(self._ids),
            is_automated=is_automated,
            parent_id=parent_id,
            strategy_id=strategy_id,
            role=role,
        )
        self.orders[order.id] = order
        self.orders_by_account.setdefault(account_id, []).append(order)
        self._emit(account_id, "order", "Created", order.json())
        self._emit_version(order)
        self._command(order, "New")
        if strategy_id is not None:
            link = strategy_link_json(next(self._ids), strategy_id, order.id, role)
            self.strategy_links.setdefault(account_id, []).append(link)
            self._emit(account_id, "orderStrategyLink", "Created", link)
        if spec.tif in ("IOC", "FOK"):
            order.immediate = True
        return order

    def _command(self, order: Order, command_type: str) -> int:
        command_id = next(self._ids)
        cmd = order.command_json(command_id, command_type, self.now())
        order.commands.append(cmd)
        self._emit(order.account_id, "command", "Created", cmd)
        return command_id

    def _activate(self, order: Order) -> None:
        order.status = WORKING
        self.working[order.contract.id][order.id] = order
        self._emit(order.account_id, "order", "Updated", order.json())
        self._check(order, self.prices[order.contract.id], placing=True)
        if order.immediate and order.status == WORKING:
            self._cancel(order)  # IOC/FOK: what does not fill at once is canceled

    def _check(self, order: Order, px: Decimal, placing: bool) -> None:
        """Fill ``order`` if ``px`` reaches it; trailing stops follow the price first."""
        s = order.spec
        kind = s.order_type
        buy = s.action == "Buy"
        if kind == "Market":
            self._fill(order, px)
            return
        if kind in ("Stop", "TrailingStop"):
            if kind == "TrailingStop" or order.auto_trail is not None:
                self._trail(order, px)
            assert s.stop_price is not None
            if (buy and px >= s.stop_price) or (not buy and px <= s.stop_price):
                self._fill(order, px)
            return
        if kind == "StopLimit" and not order.triggered:
            assert s.stop_price is not None
            if (buy and px >= s.stop_price) or (not buy and px <= s.stop_price):
                order.triggered = True
                placing = True  # the limit is born now, at this price
            else:
                return
        assert s.price is not None
        if (buy and px <= s.price) or (not buy and px >= s.price):
            self._fill(order, px if placing or kind == "MIT" else s.price)

    def _trail(self, order: Order, px: Decimal) -> None:
        s = order.spec
        assert s.stop_price is not None
        tick = order.contract.root.tick
        sell = s.action == "Sell"
        new = s.stop_price
        # autoTrail first: a trailing bracket with a trigger (what a strategy with trailingStop
        # and autoTrail asks for) waits for the trigger and moves in steps of freq
        if order.auto_trail is not None and order.anchor is not None:
            at = order.auto_trail
            profit = (px - order.anchor) if sell else (order.anchor - px)
            if profit >= at["trigger"]:
                cand = px - at["stopLoss"] if sell else px + at["stopLoss"]
                step = at["freq"] if at["freq"] > 0 else tick
                moved = ((cand - new) if sell else (new - cand)) // step * step
                if moved > 0:
                    new = to_tick(new + moved if sell else new - moved, tick)
        elif s.order_type == "TrailingStop" and s.peg is not None:
            dist = abs(s.peg)
            cand = (
                to_tick(px - dist, tick, ROUND_FLOOR)
                if sell
                else to_tick(px + dist, tick, ROUND_CEILING)
            )
            new = max(new, cand) if sell else min(new, cand)
        if new != s.stop_price:
            s.stop_price = new
            order.version_id = next(self._ids)
            self._emit_version(order)

    def _fill(self, order: Order, px: Decimal) -> None:
        order.status = FILLED
        order.fill_price = px
        self.working[order.contract.id].pop(order.id, None)
        lot = self.fill_lot or order.spec.qty
        for done in range(0, order.spec.qty, lot):
            self._fill_lot(order, px, min(lot, order.spec.qty - done))
        # then what the complete fill sets off: the order's final state, its OCO partner
        # cancelled, its OSO brackets working, its strategy's next step
        self._emit(order.account_id, "order", "Updated", order.json())
        if order.oco_id is not None:
            other = self.orders[order.oco_id]
            if other.status in OPEN_STATUSES:
                self._cancel(other, with_children=True)
        for child_id in order.children:
            child = self.orders[child_id]
            if child.status == SUSPENDED:
                self._activate(child)
        if order.strategy_id is not None:
            self._strategy_fill(order)

    def _fill_lot(self, order: Order, px: Decimal, qty: int) -> None:
        """One fill of ``qty`` contracts: the fill, the position, what it closed, the cash."""
        now = self.now()
        contract = order.contract
        fill = Fill(next(self._ids), order.id, order.account_id, contract, now,
                    order.spec.action, qty, px)  # fmt: skip
        self.fills_by_account.setdefault(order.account_id, []).append(fill)
        self._emit(order.account_id, "fill", "Created", fill.json())
        key = (order.account_id, contract.id)
        pos = self.positions.get(key)
        created = pos is None
        if pos is None:
            pos = self.positions[key] = Position(next(self._ids), order.account_id, contract, now)
        pos.timestamp = now
        apply_fill(pos, order.sign, qty, px)
        self._emit(order.account_id, "position", "Created" if created else "Updated", pos.json())
        # Realized P&L from FIFO fill pairs: exact on tick prices, where the average-cost figure
        # of a partial close can carry a repeating decimal.
        points = Decimal(0)
        for buy_id, sell_id, n, buy_px, sell_px in pair_fill(
            pos.lots, fill.id, order.sign, qty, px
        ):
            points += (sell_px - buy_px) * n
            pair = {
                "id": next(self._ids),
                "positionId": pos.id,
                "buyFillId": buy_id,
                "sellFillId": sell_id,
                "qty": n,
                "buyPrice": float(buy_px),
                "sellPrice": float(sell_px),
                "active": True,
            }
            self.fill_pairs.setdefault(order.account_id, []).append(pair)
            self._emit(order.account_id, "fillPair", "Created", pair)
        cash = self.cash_of(order.account_id)
        cash.realized += points * contract.root.value_per_point
        cash.timestamp = now
        self._emit(order.account_id, "cashBalance", "Updated", cash.json())

    def _cancel(self, order: Order, with_children: bool = True) -> None:
        order.status = CANCELED
        self.working[order.contract.id].pop(order.id, None)
        self._emit(order.account_id, "order", "Updated", order.json())
        if with_children:
            for child_id in order.children:
                child = self.orders[child_id]
                if child.status in OPEN_STATUSES:
                    self._cancel(child)

    # --- reads ---------------------------------------------------------------------------------

    def cash_of(self, account_id: int) -> CashBalance:
        cash = self.cash.get(account_id)
        if cash is None:
            cash = self.cash[account_id] = CashBalance(
                next(self._ids), account_id, self.now(), self.starting_balance
            )
        return cash

    def positions_of(self, account_id: int) -> list[Position]:
        return [p for (acc, _), p in self.positions.items() if acc == account_id]

    def open_orders(self, account_id: int) -> list[Order]:
        return [o for o in self.orders_by_account.get(account_id, []) if o.status in OPEN_STATUSES]
