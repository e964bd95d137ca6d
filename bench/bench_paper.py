"""What a paper login's history costs an alert: one price and one read of the working orders,
on a fresh login and on one that has finished N orders (``BENCH_PAPER_N``, default 100,000;
a login with 50 sub-accounts and ~80 orders a day gets there in about a month).

Every price and read used to walk every order the login ever had; they now walk the open ones.
Prints microseconds per (price + read), median of ``BENCH_PAPER_ROUNDS`` rounds.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from decimal import Decimal

from jtrades.broker.base import OrderRequest, OrderType, Side, SubAccount
from jtrades.broker.paper import PaperBroker

SYM = "MNQZ6"
A = SubAccount(1, "A")


async def _login(finished: int) -> PaperBroker:
    """A paper login with ``finished`` filled orders behind it and two resting."""
    b = PaperBroker()
    await b.find_contract(SYM)
    b.on_price(SYM, Decimal(21500))
    for n in range(finished // 2):
        await b.place_order(OrderRequest(A, SYM, Side.BUY, 1, cl_ord_id=f"b{n}"))
        await b.place_order(OrderRequest(A, SYM, Side.SELL, 1, cl_ord_id=f"s{n}"))
    for side, price in ((Side.BUY, 21400), (Side.SELL, 21600)):
        await b.place_order(OrderRequest(A, SYM, side, 1, OrderType.LIMIT, price=Decimal(price)))
    return b


def _per_alert_us(b: PaperBroker, rounds: int) -> float:
    samples = []
    for n in range(rounds):
        t0 = time.perf_counter()
        b.on_price(SYM, Decimal(21500) + Decimal(n % 4) / 4)
        b.working_orders(A.account_id)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    finished = int(os.environ.get("BENCH_PAPER_N", "100000"))
    rounds = int(os.environ.get("BENCH_PAPER_ROUNDS", "200"))
    fresh = _per_alert_us(asyncio.run(_login(0)), rounds)
    aged = _per_alert_us(asyncio.run(_login(finished)), rounds)
    print(f"paper login, one price + one read of its working orders (median of {rounds}):")
    print(f"  fresh                    {fresh:9.1f} us")
    print(f"  {finished:,} finished orders {aged:9.1f} us  (ratio {aged / fresh:.2f})")


if __name__ == "__main__":
    main()
