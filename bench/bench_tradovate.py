"""The Tradovate client against the simulator, next to a bare ``websockets`` loop doing only the
framing: what the client's session, view and request matching cost on top of the wire.

Measured in one run, in one process (simulator included, so both sides share the CPU alike):
- round trip: sequential ``account/list`` requests, p50/p99 in microseconds;
- pipelined orders: N ``order/placeorder`` Limit orders far from the market sent without waiting,
  then all answers awaited; orders per second.
Both sockets sync the login, so both receive the same ``props`` events the orders cause.

    python -m bench tradovate          (BENCH_N=1000 requests and orders by default)
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from decimal import Decimal
from typing import Any

import orjson
from websockets.asyncio.client import connect

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.tradovate.pool import TradovatePool
from jtrades.config import TradovateSettings
from jtrades.sim.app import start
from jtrades.sim.config import default_config
from jtrades.sim.world import Simulator

LOGIN, PASSWORD = "sim", "sim"


def pct(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def order_body(account: SubAccount, symbol: str, i: int) -> dict[str, Any]:
    return {
        "accountSpec": account.name,
        "accountId": account.account_id,
        "action": "Buy",
        "symbol": symbol,
        "orderQty": 1,
        "orderType": "Limit",
        "price": 20000 - (i % 100) * 0.25,
        "timeInForce": "Day",
        "clOrdId": f"bench-{i}",
        "isAutomated": True,
    }


async def through_client(
    settings: TradovateSettings, n: int
) -> tuple[list[float], float, str, SubAccount, str]:
    pool = TradovatePool(settings)
    try:
        broker = await pool.broker("demo", LOGIN, PASSWORD)
        session = broker.session
        contract = await broker.find_contract("MNQ1!")
        acct_id = session.view.account_ids[0]
        account = SubAccount(acct_id, session.view.account_name(acct_id) or "")
        for _ in range(50):  # warm up
            await session.request("account/list")
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter()
            await session.request("account/list")
            rtts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(
            *(
                broker.place_order(
                    OrderRequest(
                        account,
                        contract.symbol,
                        Side.BUY,
                        1,
                        OrderType.LIMIT,
                        f"c-{i}",
                        price=Decimal(str(order_body(account, "", i)["price"])),
                    )
                )
                for i in range(n)
            )
        )
        rate = n / (time.perf_counter() - t0)
        token = pool.tokens.peek("demo", LOGIN)
        assert token is not None
        return rtts, rate, token.token, account, contract.symbol
    finally:
        await pool.close()


async def through_bare_loop(
    ws_url: str, token: str, account: SubAccount, symbol: str, n: int, user_id: int
) -> tuple[list[float], float]:
    async with connect(ws_url, max_size=16 * 1024 * 1024, ping_interval=None, proxy=None) as ws:
        assert await ws.recv() == "o"
        next_id = 0

        async def call(endpoint: str, body: str = "") -> None:
            nonlocal next_id
            next_id += 1
            await ws.send(f"{endpoint}\n{next_id}\n\n{body}")

        async def answer(want: int) -> None:
            while True:
                frame = await ws.recv()
                if isinstance(frame, bytes) or frame[0] != "a":
                    continue
                for m in orjson.loads(frame[1:]):
                    if isinstance(m, dict) and m.get("i") == want:
                        return

        await call("authorize", token)
        await answer(next_id)
        await call("user/syncrequest", orjson.dumps({"users": [user_id]}).decode())
        await answer(next_id)
        for _ in range(50):
            await call("account/list")
            await answer(next_id)
        rtts = []
        for _ in range(n):
            t0 = time.perf_counter()
            await call("account/list")
            await answer(next_id)
            rtts.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        first = next_id + 1
        for i in range(n):
            await call(
                "order/placeorder", orjson.dumps(order_body(account, symbol, n + i)).decode()
            )
        pending = set(range(first, next_id + 1))
        while pending:
            frame = await ws.recv()
            if isinstance(frame, bytes) or frame[0] != "a":
                continue
            for m in orjson.loads(frame[1:]):
                if isinstance(m, dict) and "i" in m:
                    pending.discard(m["i"])
        rate = n / (time.perf_counter() - t0)
        return rtts, rate


async def run(n: int) -> None:
    world = Simulator(default_config())
    runner, port = await start(world, "127.0.0.1", 0)
    try:
        settings = TradovateSettings(
            demo_rest_url=f"http://127.0.0.1:{port}/v1",
            demo_ws_url=f"ws://127.0.0.1:{port}/v1/websocket",
            connect_stagger_s=0,
            request_timeout_s=60,
        )
        c_rtt, c_rate, token, account, symbol = await through_client(settings, n)
        login = world.auth.login(LOGIN)
        assert login is not None
        b_rtt, b_rate = await through_bare_loop(
            settings.demo_ws_url, token, account, symbol, n, login.user_id
        )
    finally:
        await runner.cleanup()
    us = 1e6
    rows = [
        ("round trip p50 (us)", pct(c_rtt, 50) * us, pct(b_rtt, 50) * us),
        ("round trip p99 (us)", pct(c_rtt, 99) * us, pct(b_rtt, 99) * us),
        ("round trip mean (us)", statistics.fmean(c_rtt) * us, statistics.fmean(b_rtt) * us),
        ("pipelined orders/s", c_rate, b_rate),
    ]
    print(f"n={n} requests and {n} orders each; simulator in-process on 127.0.0.1")
    print(f"{'metric':<24}{'client':>12}{'bare ws':>12}{'client/bare':>13}")
    for name, c, b in rows:
        print(f"{name:<24}{c:>12.1f}{b:>12.1f}{c / b:>13.2f}")


def main() -> None:
    asyncio.run(run(int(os.environ.get("BENCH_N", "1000"))))


if __name__ == "__main__":
    main()
