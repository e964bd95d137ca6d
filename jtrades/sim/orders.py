"""Order endpoints: strict checks in Tradovate's order, then the exchange.

Failures are HTTP-200 bodies, as Tradovate answers them: ``{"failureReason", "failureText"}`` for
placeorder/placeoso/placeoco/modifyorder/cancelorder/liquidateposition, and ``{"errorText"}`` for
the orderStrategy endpoints (their spec type is OrderStrategyStatusResponse). Checks, in order:
field names and types, ``isAutomated`` (must be ``true`` on place and modify; optional on cancel,
liquidate and strategies, where the 2021 spec lacks it — if sent it must be ``true``), the
account (another login's account, or a user id in ``accountId``: "Access is denied"), the contract
(unknown: ``InvalidContract`` — TRADOVATE.md notes "Access is denied" is also seen; we chose the
spec's enum value), an injected rejection, then the exchange's own checks (tick: ``InvalidPrice``).
Strategy offsets are points from the entry fill; the resulting prices are rounded to the tick.
"""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson

from jtrades.sim import validate as v
from jtrades.sim.config import AccountSpec, Contract, LoginSpec
from jtrades.sim.entities import Leg, OrderSpec
from jtrades.sim.exchange import Rejected

if TYPE_CHECKING:
    from jtrades.sim.world import Simulator

Result = tuple[int, Any]
DENIED = "Access is denied"
NOT_AUTOMATED = "isAutomated must be true for orders placed by an automated system"


def fail(reason: str, text: str) -> Result:
    return 200, {"failureReason": reason, "failureText": text}


class OrderApi:
    def __init__(self, world: Simulator) -> None:
        self.world = world
        self.ex = world.exchange

    # --- shared checks -------------------------------------------------------------------------

    def _account(self, login: LoginSpec, body: dict[str, Any]) -> AccountSpec | None:
        acc_id, spec = body.get("accountId"), body.get("accountSpec")
        if acc_id is None and spec is None:
            return None
        found = None
        if acc_id is not None:
            entry = self.world.accounts.get(acc_id)
            found = entry[0] if entry and entry[1] is login else None
            if found is not None and spec is not None and found.name != spec:
                return None
        else:
            found = next((a for a in login.accounts if a.name == spec), None)
        return found

    def _order_prelude(
        self,
        login: LoginSpec,
        body: Any,
        schema: dict[str, Any],
        required: tuple[str, ...],
        can_accept: bool = False,
        endpoint: str = "placeorder",
    ) -> tuple[AccountSpec, Contract]:
        """The account and contract of an order body, or ``Rejected``."""
        err = v.check(body, schema, required)
        if err:
            raise Rejected("UnknownReason", err)
        if body.get("isAutomated") is not True:
            raise Rejected("UnknownReason", NOT_AUTOMATED)
        acc = self._account(login, body)
        if acc is None:
            raise Rejected("Unauthorized", DENIED)
        contract = self.world.contracts_by_name.get(str(body["symbol"]).upper())
        if contract is None:
            raise Rejected("InvalidContract", f"Invalid contract: {body['symbol']}")
        reject = self.world.faults.take_reject(can_accept, endpoint, body.get("orderType"))
        if reject is not None:
            raise Rejected(*reject)
        return acc, contract

    @staticmethod
    def _spec(body: dict[str, Any], leg_of: OrderSpec | None = None) -> OrderSpec:
        """The order of a body; ``leg_of``: the body is a RestrainedOrderVersion (an OCO's
        ``other``, an OSO's bracket), whose order works the quantity of ``leg_of``, the main
        order (it has no orderQty). A leg's clOrdId and text are its own, as any order's."""
        return OrderSpec(
            action=body["action"],
            qty=leg_of.qty if leg_of is not None else body["orderQty"],
            order_type=body["orderType"],
            price=v.dec(body.get("price")),
            stop_price=v.dec(body.get("stopPrice")),
            peg=v.dec(body.get("pegDifference")),
            tif=body.get("timeInForce") or "Day",
            cl_ord_id=body.get("clOrdId"),
            text=body.get("text"),
        )

    def _owned(self, login: LoginSpec, order_id: int) -> bool:
        order = self.ex.orders.get(order_id)
        if order is None:
            return False
        entry = self.world.accounts.get(order.account_id)
        return entry is not None and entry[1] is login

    # --- endpoints -----------------------------------------------------------------------------

    def placeorder(self, login: LoginSpec, body: Any) -> Result:
        req = ("action", "symbol", "orderQty", "orderType")
        try:
            acc, contract = self._order_prelude(login, body, v.PLACE_ORDER, req, can_accept=True)
            late = self.world.faults.take_late_reject(body.get("orderType"))
            if late is not None:
                oid, events = self.ex.place_rejected(acc.id, contract, self._spec(body), *late)
            else:
                oid, events = self.ex.place(acc.id, contract, self._spec(body))
        except Rejected as r:
            return fail(r.reason, r.text)
        self.world.stats.orders += 1
        self.world.queue(events)
        return 200, {"orderId": oid}

    def placeoso(self, login: LoginSpec, body: Any) -> Result:
        req = ("action", "symbol", "orderQty", "orderType", "bracket1")
        try:
            acc, contract = self._order_prelude(login, body, v.PLACE_OSO, req, endpoint="placeoso")
        except Rejected as r:
            return fail(r.reason, r.text)
        keys = [k for k in ("bracket1", "bracket2") if body.get(k) is not None]
        for k in keys:
            err = v.check(body[k], v.RESTRAINED, v.RESTRAINED_REQUIRED, at=f"{k}.")
            if err:
                return fail("UnknownReason", err)
        entry = self._spec(body)
        try:
            ids, events = self.ex.place_oso(
                acc.id, contract, entry, [self._spec(body[k], entry) for k in keys]
            )
        except Rejected as r:
            return fail(r.reason, r.text)
        self.world.stats.orders += 1
        self.world.queue(events)
        out = {"orderId": ids[0], "oso1Id": ids[1]}
        if len(ids) > 2:
            out["oso2Id"] = ids[2]
        return 200, out

    def placeoco(self, login: LoginSpec, body: Any) -> Result:
        req = ("action", "symbol", "orderQty", "orderType", "other")
        try:
            acc, contract = self._order_prelude(login, body, v.PLACE_OCO, req, endpoint="placeoco")
        except Rejected as r:
            return fail(r.reason, r.text)
        err = v.check(body["other"], v.RESTRAINED, v.RESTRAINED_REQUIRED, at="other.")
        if err:
            return fail("UnknownReason", err)
        first = self._spec(body)
        try:
            ids, events = self.ex.place_oco(
                acc.id, contract, first, self._spec(body["other"], first)
            )
        except Rejected as r:
            return fail(r.reason, r.text)
        self.world.stats.orders += 1
        self.world.queue(events)
        return 200, {"orderId": ids[0], "ocoId": ids[1]}

    def modifyorder(self, login: LoginSpec, body: Any) -> Result:
        err = v.check(body, v.MODIFY_ORDER, ("orderId", "orderQty", "orderType"))
        if err:
            return fail("UnknownReason", err)
        if body.get("isAutomated") is not True:
            return fail("UnknownReason", NOT_AUTOMATED)
        if not self._owned(login, body["orderId"]):
            return fail("Unauthorized", DENIED)
        reject = self.world.faults.take_reject(endpoint="modifyorder")
        if reject is not None:
            return fail(*reject)
        try:
            cmd, events = self.ex.modify(
                body["orderId"],
                body["orderQty"],
                body["orderType"],
                v.dec(body.get("price")),
                v.dec(body.get("stopPrice")),
                v.dec(body.get("pegDifference")),
                body.get("timeInForce"),
            )
        except Rejected as r:
            return fail(r.reason, r.text)
        self.world.queue(events)
        return 200, {"commandId": cmd}

    def cancelorder(self, login: LoginSpec, body: Any) -> Result:
        err = v.check(body, v.CANCEL_ORDER, ("orderId",))
        if err:
            return fail("UnknownReason", err)
        if body.get("isAutomated") is False:
            return fail("UnknownReason", NOT_AUTOMATED)
        if not self._owned(login, body["orderId"]):
            return fail("Unauthorized", DENIED)
        try:
            cmd, events = self.ex.cancel(body["orderId"])
        except Rejected as r:
            return fail(r.reason, r.text)
        self.world.queue(events)
        return 200, {"commandId": cmd}

    def liquidateposition(self, login: LoginSpec, body: Any) -> Result:
        """Returns ``{"orderId"}`` of the closing market order; ``{}`` when already flat."""
        err = v.check(body, v.LIQUIDATE, ("accountId", "contractId", "admin"))
        if err:
            return fail("UnknownReason", err)
        entry = self.world.accounts.get(body["accountId"])
        if entry is None or entry[1] is not login:
            return fail("Unauthorized", DENIED)
        reject = self.world.faults.take_reject(endpoint="liquidateposition")
        if reject is not None:
            return fail(*reject)
        try:
            oid, events = self.ex.liquidate(body["accountId"], body["contractId"])
        except Rejected as r:
            return fail(r.reason, r.text)
        self.world.queue(events)
        return 200, ({} if oid is None else {"orderId": oid})

    def startorderstrategy(self, login: LoginSpec, body: Any) -> Result:
        req = ("symbol", "orderStrategyTypeId", "action", "params")
        err = v.check(body, v.START_STRATEGY, req)
        if err:
            return 200, {"errorText": err}
        if body.get("isAutomated") is False:
            return 200, {"errorText": NOT_AUTOMATED}
        if body["orderStrategyTypeId"] != 2:
            return 200, {"errorText": "Invalid or missed parameters: orderStrategyTypeId"}
        acc = self._account(login, body)
        if acc is None:
            return 200, {"errorText": DENIED}
        contract = self.world.contracts_by_name.get(body["symbol"].upper())
        if contract is None:
            return 200, {"errorText": f"Invalid contract: {body['symbol']}"}
        parsed = _strategy_params(body["params"])
        if isinstance(parsed, str):
            return 200, {"errorText": parsed}
        entry_body, legs = parsed
        reject = self.world.faults.take_reject(endpoint="startorderstrategy")
        if reject is not None:
            return 200, {"errorText": reject[1]}
        if entry_body.get("isAutomated") is False:
            return 200, {"errorText": NOT_AUTOMATED}
        entry = self._spec({"action": body["action"], **entry_body})
        try:
            st, events = self.ex.start_strategy(
                acc.id, contract, body["action"], body["params"], entry, legs, body.get("uuid")
            )
        except Rejected as r:
            return 200, {"errorText": r.text}
        self.world.stats.orders += 1
        self.world.queue(events)
        return 200, {"orderStrategy": st.json()}

    def interruptorderstrategy(self, login: LoginSpec, body: Any) -> Result:
        err = v.check(body, v.INTERRUPT_STRATEGY, ("orderStrategyId",))
        if err:
            return 200, {"errorText": err}
        st = self.ex.strategies.get(body["orderStrategyId"])
        entry = self.world.accounts.get(st.account_id) if st else None
        if st is None or entry is None or entry[1] is not login:
            return 200, {"errorText": DENIED}
        self.world.queue(self.ex.interrupt_strategy(st.id))
        return 200, {"orderStrategy": st.json()}


def _strategy_params(text: str) -> tuple[dict[str, Any], list[Leg]] | str:
    bad = "Invalid or missed parameters"
    try:
        params = orjson.loads(text)
    except orjson.JSONDecodeError:
        return f"{bad}: params is not JSON"
    if not isinstance(params, dict) or set(params) - {"entryVersion", "brackets"}:
        return f"{bad}: params"
    entry = params.get("entryVersion")
    err = v.check(entry, v.STRATEGY_ENTRY, ("orderQty", "orderType"), at="entryVersion.")
    if err:
        return err
    brackets = params.get("brackets")
    if not isinstance(brackets, list) or not brackets:
        return f"{bad}: brackets"
    legs: list[Leg] = []
    for b in brackets:
        err = v.check(b, v.STRATEGY_BRACKET, ("qty",), at="brackets.")
        if err:
            return err
        at = b.get("autoTrail")
        auto = None
        if at:
            if any(at.get(k) is None for k in ("stopLoss", "trigger", "freq")):
                return f"{bad}: brackets.autoTrail"
            auto = {k: v.dec(at[k]) or Decimal(0) for k in ("stopLoss", "trigger", "freq")}
            if any(x <= 0 for x in auto.values()):  # distances in points, never signed
                return f"{bad}: brackets.autoTrail"
        legs.append(
            Leg(
                qty=b["qty"],
                target=v.dec(b.get("profitTarget")),
                stop=v.dec(b.get("stopLoss")),
                trailing=bool(b.get("trailingStop")),
                auto_trail=auto,
            )
        )
    assert isinstance(entry, dict)
    return entry, legs
