"""One entry point for every endpoint, shared by REST and the WebSocket (same name, same body).

Names are case-insensitive and methods are not enforced, like Tradovate. Every call but the token
endpoints needs a live bearer token (401 "Access is denied" otherwise). An unknown endpoint is
404 with the body ``"Not found: x/y"`` (a JSON string; over the WebSocket ``d`` carries that same
text, quotes included, as TRADOVATE.md records). Reads follow Tradovate's entity API: every
entity offers ``list``, ``item?id=``, ``items?ids=``, ``deps?masterid=``, ``ldeps?masterids=``, and
``find?name=`` / ``suggest?t=&l=`` where it has a name. A missing item or name is a 404 here (the
real server's answer for that case is not documented).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from jtrades.sim.auth import Session
from jtrades.sim.config import Contract, LoginSpec
from jtrades.sim.orders import OrderApi

if TYPE_CHECKING:
    from jtrades.sim.world import Simulator

DENIED = "Access is denied"


@dataclass(slots=True)
class Answer:
    status: int
    data: Any
    revoked: list[Session] = field(default_factory=list)  # sessions to shut down afterwards
    session: Session | None = None


def not_found(endpoint: str) -> Answer:
    return Answer(404, f'"Not found: {endpoint}"')


class Api:
    def __init__(self, world: Simulator) -> None:
        self.world = world
        self.orders = OrderApi(world)
        self.sources = self._sources()
        o = self.orders
        self.commands: dict[str, Callable[[LoginSpec, Any], tuple[int, Any]]] = {
            "order/placeorder": o.placeorder,
            "order/placeoso": o.placeoso,
            "order/placeoco": o.placeoco,
            "order/modifyorder": o.modifyorder,
            "order/cancelorder": o.cancelorder,
            "order/liquidateposition": o.liquidateposition,
            "orderstrategy/startorderstrategy": o.startorderstrategy,
            "orderstrategy/interruptorderstrategy": o.interruptorderstrategy,
            "cashbalance/getcashbalancesnapshot": self.cash_snapshot,
            "contract/rollcontract": self.roll_contract,
            "user/syncrequest": lambda login, body: (200, self.snapshot(login, body)),
        }

    def call(
        self,
        endpoint: str,
        params: dict[str, str],
        body: Any,
        token: str | None,
        session: Session | None = None,
    ) -> Answer:
        """Answer one call. ``session``: an authorized WebSocket's session, which keeps working
        past its token's expiry (as on Tradovate) but not past a revocation."""
        key = endpoint.strip("/").lower()
        stats = self.world.stats
        stats.requests += 1
        stats.by_endpoint[key] = stats.by_endpoint.get(key, 0) + 1
        faults = self.world.faults
        if faults.too_many:
            faults.too_many -= 1
            return Answer(429, None)
        if (instead := faults.take_refusal(key)) is not None:
            return Answer(*instead)
        auth = self.world.auth
        if key == "auth/accesstokenrequest":
            status, data, revoked = auth.access_token_request(body)
            return Answer(status, data, revoked)
        if key == "auth/oauthtoken":
            data, revoked = auth.oauth_token({**params, **(body if isinstance(body, dict) else {})})
            return Answer(200, data, revoked)
        if session is None:
            tok = auth.token(token) if token else None
            session = tok.session if tok else None
        if session is None or session.revoked or self.world.faults.take_unauthorized(token or ""):
            return Answer(401, DENIED)
        login = session.login
        if key == "auth/renewaccesstoken":
            renewed = auth.renew(token or "", body)
            return Answer(200, renewed) if renewed else Answer(401, DENIED)
        if key == "auth/me":
            return Answer(200, _user(login))
        if key == "user/syncrequest" and (refused := faults.take_sync_error()) is not None:
            return Answer(refused, DENIED if refused == 401 else "Sync refused (simulator fault)")
        command = self.commands.get(key)
        if command is not None:
            status, data = command(login, body)
            if faults.take_lost_answer(key):  # carried out all the same (its events go)
                return Answer(500, "Internal server error (simulator fault)", session=session)
            return Answer(status, data, session=session)
        return self.query(login, key, endpoint, params)

    # --- reads ---------------------------------------------------------------------------------

    def query(self, login: LoginSpec, key: str, endpoint: str, params: dict[str, str]) -> Answer:
        entity, _, op = key.partition("/")
        source = self.sources.get(entity)
        if source is None:
            return not_found(endpoint)
        rows_fn, master = source
        try:
            if op == "list":
                return Answer(200, rows_fn(login))
            if op == "item":
                want = int(params["id"])
                row = next((r for r in rows_fn(login) if r["id"] == want), None)
                return Answer(200, row) if row else not_found(endpoint)
            if op == "items":
                ids = {int(x) for x in params["ids"].split(",") if x}
                return Answer(200, [r for r in rows_fn(login) if r["id"] in ids])
            if op in ("deps", "ldeps") and master:
                raw = params.get("masterid") or params.get("masterids") or ""
                ids = {int(x) for x in raw.split(",") if x}
                return Answer(200, [r for r in rows_fn(login) if r.get(master) in ids])
            if op == "find":
                name = params["name"]
                row = next((r for r in rows_fn(login) if r.get("name") == name), None)
                return Answer(200, row) if row else not_found(endpoint)
            if op == "suggest":
                return Answer(200, self._suggest(entity, login, params))
        except (KeyError, ValueError):
            return Answer(400, f"Invalid or missed parameters: {endpoint}")
        return not_found(endpoint)

    def _sources(self) -> dict[str, tuple[Callable[[LoginSpec], list[dict[str, Any]]], str]]:
        ex = self.world.exchange

        def accounts_of(login: LoginSpec) -> list[int]:
            return [a.id for a in login.accounts]

        def orders(login: LoginSpec) -> list[Any]:
            return [o for acc in accounts_of(login) for o in ex.orders_by_account.get(acc, [])]

        return {
            "account": (lambda lg: [_account(a.id, a.name, lg) for a in lg.accounts], "userId"),
            "user": (lambda lg: [_user(lg)], ""),
            "position": (
                lambda lg: [p.json() for acc in accounts_of(lg) for p in ex.positions_of(acc)],
                "accountId",
            ),
            "order": (lambda lg: [o.json() for o in orders(lg)], "accountId"),
            "orderversion": (lambda lg: [o.version_json() for o in orders(lg)], "orderId"),
            "command": (lambda lg: [c for o in orders(lg) for c in o.commands], "orderId"),
            "fillpair": (
                lambda lg: [p for acc in accounts_of(lg) for p in ex.fill_pairs.get(acc, [])],
                "positionId",
            ),
            "orderstrategylink": (
                lambda lg: [
                    link for acc in accounts_of(lg) for link in ex.strategy_links.get(acc, [])
                ],
                "orderStrategyId",
            ),
            "fill": (
                lambda lg: [
                    f.json() for acc in accounts_of(lg) for f in ex.fills_by_account.get(acc, [])
                ],
                "orderId",
            ),
            "cashbalance": (
                lambda lg: [ex.cash_of(acc).json() for acc in accounts_of(lg)],
                "accountId",
            ),
            "orderstrategy": (
                lambda lg: [
                    s.json()
                    for acc in accounts_of(lg)
                    for s in ex.strategies_by_account.get(acc, [])
                ],
                "accountId",
            ),
            "contract": (
                lambda lg: [_contract(c) for c in self.world.contracts.values()],
                "contractMaturityId",
            ),
            "contractmaturity": (
                lambda lg: [_maturity(c) for c in self.world.contracts.values()],
                "productId",
            ),
            "product": (lambda lg: list(self._products().values()), ""),
        }

    def _products(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for c in self.world.contracts.values():
            r = c.root
            out.setdefault(
                r.name,
                {
                    "id": c.product_id,
                    "name": r.name,
                    "currencyId": 1,
                    "productType": "Futures",
                    "description": r.description,
                    "exchangeId": 1,
                    "contractGroupId": 1,
                    "status": "Verified",
                    "months": r.months,
                    "valuePerPoint": float(r.value_per_point),
                    "priceFormatType": "Decimal",
                    "priceFormat": -abs(r.tick.as_tuple().exponent),  # type: ignore[arg-type]
                    "tickSize": float(r.tick),
                },
            )
        return out

    def _suggest(self, entity: str, login: LoginSpec, params: dict[str, str]) -> list[Any]:
        text = params.get("t", "").upper()
        limit = int(params.get("l", "10"))
        if entity == "contract":
            hits = [c for c in self.world.contracts.values() if c.name.upper().startswith(text)]
            hits.sort(key=lambda c: (c.root.name != text, c.root.name, c.expiration))
            return [_contract(c) for c in hits[:limit]]
        rows = self.sources[entity][0](login)
        return [r for r in rows if text in str(r.get("name", "")).upper()][:limit]

    # --- special commands ----------------------------------------------------------------------

    def cash_snapshot(self, login: LoginSpec, body: Any) -> tuple[int, Any]:
        acc_id = body.get("accountId") if isinstance(body, dict) else None
        entry = self.world.accounts.get(acc_id) if isinstance(acc_id, int) else None
        if entry is None or entry[1] is not login:
            return 200, {"errorText": DENIED}
        ex = self.world.exchange
        cash = ex.cash_of(entry[0].id)
        open_pnl = Decimal(0)
        for p in ex.positions_of(entry[0].id):
            if p.net_pos:
                move = ex.prices[p.contract.id] - p.net_price
                open_pnl += move * p.net_pos * p.contract.root.value_per_point
        total = cash.start + cash.realized
        return 200, {
            "totalCashValue": float(total),
            "totalPnL": float(cash.realized + open_pnl),
            "initialMargin": 0.0,
            "maintenanceMargin": 0.0,
            "netLiq": float(total + open_pnl),
            "openPnL": float(open_pnl),
            "realizedPnL": float(cash.realized),
            "weekRealizedPnL": float(cash.realized),
        }

    def roll_contract(self, login: LoginSpec, body: Any) -> tuple[int, Any]:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str):
            return 200, {"errorText": "Invalid or missed parameters: name"}
        listed = self.world.contracts_for(name)
        if not listed:
            return 200, {"errorText": f"Invalid contract: {name}"}
        root = listed[0].root.name
        chain = sorted(self.world.contracts_for(root), key=lambda c: c.expiration)
        pick = chain[0]
        if body.get("forward") and name.upper() != root:
            later = [c for c in chain if c.expiration > listed[0].expiration]
            pick = later[0] if later else listed[0]
        return 200, {"contract": _contract(pick)}

    def snapshot(self, login: LoginSpec, body: Any) -> dict[str, Any]:
        """``user/syncrequest``: the login's current state (the socket then streams changes)."""
        ex = self.world.exchange
        accounts = [a for a in login.accounts if a.id in self.sync_accounts(login, body)]
        ids = [a.id for a in accounts]
        orders = [o for acc in ids for o in ex.orders_by_account.get(acc, [])]
        positions = [p for acc in ids for p in ex.positions_of(acc)]
        used = {o.contract.id for o in orders} | {p.contract.id for p in positions}
        return {
            "users": [_user(login)],
            "accounts": [_account(a.id, a.name, login) for a in accounts],
            "positions": [p.json() for p in positions],
            "orders": [o.json() for o in orders],
            "orderVersions": [o.version_json() for o in orders],
            "commands": [c for o in orders for c in o.commands],
            "orderStrategyLinks": [link for acc in ids for link in ex.strategy_links.get(acc, [])],
            "fills": [f.json() for acc in ids for f in ex.fills_by_account.get(acc, [])],
            "fillPairs": [p for acc in ids for p in ex.fill_pairs.get(acc, [])],
            "cashBalances": [ex.cash_of(acc).json() for acc in ids],
            "contracts": [_contract(self.world.contracts[c]) for c in sorted(used)],
            "orderStrategies": [
                s.json() for acc in ids for s in ex.strategies_by_account.get(acc, [])
            ],
            "currencies": [{"id": 1, "name": "USD", "symbol": "$"}],
            "contractGroups": [],
        }

    @staticmethod
    def sync_accounts(login: LoginSpec, body: Any) -> set[int]:
        """The accounts a syncrequest asks for (its own login's only); none named = all."""
        mine = {a.id for a in login.accounts}
        if isinstance(body, dict) and isinstance(body.get("accounts"), list):
            return mine & {x for x in body["accounts"] if isinstance(x, int)}
        return mine


def _user(login: LoginSpec) -> dict[str, Any]:
    return {
        "id": login.user_id,
        "userId": login.user_id,
        "name": login.name,
        "fullName": login.name,
        "email": f"{login.name}@sim.invalid",
        "emailVerified": True,
        "isTrial": False,
        "status": "Active",
    }


def _account(acc_id: int, name: str, login: LoginSpec) -> dict[str, Any]:
    return {
        "id": acc_id,
        "name": name,
        "userId": login.user_id,
        "accountType": "Customer",
        "active": True,
        "clearingHouseId": 1,
        "riskCategoryId": 1,
        "autoLiqProfileId": 1,
        "marginAccountType": "Speculator",
        "legalStatus": "Individual",
        "archived": False,
    }


def _contract(c: Contract) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "contractMaturityId": c.maturity_id,
        "status": "DefaultStatus",
        "providerTickSize": float(c.root.tick),
    }


def _maturity(c: Contract) -> dict[str, Any]:
    return {
        "id": c.maturity_id,
        "productId": c.product_id,
        "expirationMonth": c.year * 100 + c.month,
        "expirationDate": f"{c.expiration.isoformat()}T21:00:00.000Z",
        "archived": False,
        "seqNo": 1,
        "isFront": c.is_front,
    }
