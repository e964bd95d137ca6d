"""Bracket order strategies (``startorderstrategy``): one entry, then per leg a take-profit limit
and a share of a stop.

Legs with the same stop (offset, trailing, autoTrail) share ONE stop order whose quantity is the sum
of their quantities: when a leg's target fills, the stop shrinks by that leg (a new orderVersion);
when the stop fills, the targets of the legs it covered are canceled. A one-leg pair is a plain OCO.
Offsets are signed points from the entry's fill price; the prices are rounded to the tick.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jtrades.sim.config import Contract
from jtrades.sim.entities import (
    OPEN_STATUSES,
    PENDING_NEW,
    Leg,
    Order,
    OrderSpec,
    PropsEvent,
    Rejected,
    Strategy,
    to_tick,
)


class StrategyBook:
    """The strategy half of ``Exchange`` (a mixin: it uses the exchange's order primitives)."""

    if TYPE_CHECKING:
        orders: dict[int, Order]
        orders_by_account: dict[int, list[Order]]
        strategies: dict[int, Strategy]
        strategies_by_account: dict[int, list[Strategy]]
        _ids: Iterator[int]
        _out: list[PropsEvent]
        now: Callable[[], datetime]

        def check_spec(self, contract: Contract, spec: OrderSpec) -> None: ...
        def _emit(
            self, account_id: int, entity_type: str, event_type: str, entity: dict[str, Any]
        ) -> None: ...
        def _emit_version(self, order: Order) -> None: ...
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
        ) -> Order: ...
        def _activate(self, order: Order) -> None: ...
        def _cancel(self, order: Order, with_children: bool = True) -> None: ...

    def start_strategy(
        self,
        account_id: int,
        contract: Contract,
        action: str,
        params: str,
        entry: OrderSpec,
        legs: list[Leg],
        uuid: str | None = None,
    ) -> tuple[Strategy, list[PropsEvent]]:
        """A bracket strategy: one entry, then per leg a TP limit and a share of a stop."""
        self._out = []
        self.check_spec(contract, entry)
        if sum(leg.qty for leg in legs) != entry.qty:
            raise Rejected("UnknownReason", "Invalid or missed parameters: bracket qty")
        st = Strategy(
            next(self._ids), account_id, contract, action, params, self.now(), legs, uuid=uuid
        )
        self.strategies[st.id] = st
        self.strategies_by_account.setdefault(account_id, []).append(st)
        self._emit(account_id, "orderStrategy", "Created", st.json())
        order = self._new_order(account_id, contract, entry, strategy_id=st.id, role="entry")
        st.entry_id = order.id
        self._activate(order)
        return st, self._out

    def interrupt_strategy(self, strategy_id: int) -> list[PropsEvent]:
        """Stop a strategy: its open orders are canceled (entry, TPs and stops alike)."""
        self._out = []
        st = self.strategies.get(strategy_id)
        if st is None:
            raise Rejected("UnknownReason", f"order strategy {strategy_id} not found")
        self._interrupt(st)
        return self._out

    def _interrupt(self, st: Strategy) -> None:
        for order in self.orders_by_account.get(st.account_id, []):
            if order.strategy_id == st.id and order.status in OPEN_STATUSES:
                self._cancel(order)
        if st.status == "ActiveStrategy":
            st.status = "ExecutionInterrupted"
            self._emit(st.account_id, "orderStrategy", "Updated", st.json())

    def _strategy_fill(self, order: Order) -> None:
        st = self.strategies[order.strategy_id]  # type: ignore[index]
        if order.role == "entry":
            self._strategy_brackets(st, order)
        elif order.role == "tp":
            for leg in st.legs:
                if leg.tp_id == order.id and not leg.done:
                    leg.done = True
                    self._shrink_stop(leg)
        elif order.role == "sl":
            for leg in st.legs:
                if leg.sl_id == order.id and not leg.done:
                    leg.done = True
                    if leg.tp_id is not None and self.orders[leg.tp_id].status in OPEN_STATUSES:
                        self._cancel(self.orders[leg.tp_id])
        if st.status == "ActiveStrategy" and all(leg.done for leg in st.legs):
            st.status = "ExecutionFinished"
            self._emit(st.account_id, "orderStrategy", "Updated", st.json())

    def _strategy_brackets(self, st: Strategy, entry: Order) -> None:
        fp = entry.fill_price
        assert fp is not None
        tick = st.contract.root.tick
        exit_action = "Sell" if entry.spec.action == "Buy" else "Buy"
        created: list[Order] = []
        groups: dict[tuple[Any, ...], list[Leg]] = {}
        for leg in st.legs:
            if leg.target:
                spec = OrderSpec(
                    exit_action, leg.qty, "Limit", price=to_tick(fp + leg.target, tick)
                )
                tp = self._new_order(st.account_id, st.contract, spec, strategy_id=st.id, role="tp")
                leg.tp_id = tp.id
                created.append(tp)
            if leg.stop:
                at = tuple(sorted(leg.auto_trail.items())) if leg.auto_trail else None
                groups.setdefault((leg.stop, leg.trailing, at), []).append(leg)
            if not leg.target and not leg.stop:
                leg.done = True
        for (offset, trailing, _), legs in groups.items():
            spec = OrderSpec(
                exit_action,
                sum(leg.qty for leg in legs),
                "TrailingStop" if trailing else "Stop",
                stop_price=to_tick(fp + offset, tick),
                peg=offset if trailing else None,
            )
            stop = self._new_order(st.account_id, st.contract, spec, strategy_id=st.id, role="sl")
            stop.auto_trail = legs[0].auto_trail
            stop.anchor = fp
            for leg in legs:
                leg.sl_id = stop.id
            created.append(stop)
        for leg in st.legs:  # a one-leg pair is a plain OCO
            if leg.tp_id and leg.sl_id and sum(1 for x in st.legs if x.sl_id == leg.sl_id) == 1:
                self.orders[leg.tp_id].oco_id = leg.sl_id
                self.orders[leg.sl_id].oco_id = leg.tp_id
        for order in created:
            if order.status == PENDING_NEW:
                self._activate(order)

    def _shrink_stop(self, leg: Leg) -> None:
        if leg.sl_id is None:
            return
        stop = self.orders[leg.sl_id]
        if stop.status not in OPEN_STATUSES:
            return
        remaining = stop.spec.qty - leg.qty
        if remaining <= 0:
            self._cancel(stop)
            return
        stop.spec.qty = remaining
        stop.version_id = next(self._ids)
        self._emit_version(stop)
        self._emit(stop.account_id, "order", "Updated", stop.json())
