"""The whole pipeline as a trader runs it: ``jtrades serve`` as a subprocess, the Tradovate
simulator in this test's event loop (over real sockets), the test Postgres, configuration made
with the real CLI, and TradingView-style alerts posted with aiohttp. Assertions are on the
simulator's state (what the broker holds) and on the stored signal rows (verdict, filter, reason).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest

from jtrades.store.trading import config_fingerprint
from tests.cli import Result, ainvoke, cli_env
from tests.e2e.test_serve_lifecycle import free_port
from tests.simutil import SimHandle, running_sim

pytestmark = pytest.mark.e2e

PASSWORD = "e2e-Pa55word"
PRICE = 21500


class Cli:
    def __init__(self, db_url: str, data_dir: Path, env: dict[str, str | None]) -> None:
        self.db_url, self.data_dir, self.env = db_url, data_dir, env

    async def __call__(self, *args: str, input: str | None = None) -> Result:
        return await ainvoke(
            list(args), db_url=self.db_url, data_dir=self.data_dir, input=input, env=self.env
        )

    async def ok(self, *args: str, input: str | None = None) -> Any:
        r = await self(*args, "--json", input=input)
        assert r.exit_code == 0, (args, r.stderr)
        return r.json()


class World:
    """The simulator, the CLI, the daemon, an HTTP client, and the recorders' webhook URLs."""

    def __init__(self, sim: SimHandle, cli: Cli, pool: asyncpg.Pool) -> None:
        self.sim, self.cli, self.pool = sim, cli, pool
        self.hooks: dict[str, str] = {}
        self.base = ""
        self.http: aiohttp.ClientSession | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.log: Path | None = None

    async def user(self, name: str) -> None:
        await self.cli.ok("users", "register", name, "--email", f"{name}@example.com")
        await self.cli.ok("users", "approve", name)

    async def demo(self, user: str, label: str, login: str, subs: list[str]) -> None:
        self.sim.add_login(login, PASSWORD, subs)
        await self.cli.ok(
            "accounts", "add", label, "--user", user, "--env", "demo",
            "--username", login, "--password-stdin", input=PASSWORD + "\n",
        )  # fmt: skip
        await self.cli.ok("accounts", "sync", label)

    async def recorder(self, name: str, user: str, *opts: str) -> None:
        out = await self.cli.ok(
            "recorder", "create", name, "--user", user, "--symbol", "MNQ1!", *opts
        )
        self.hooks[name] = out["webhook_url"].rsplit("/", 1)[1]

    async def trader(
        self, user: str, recorder: str, *accounts: str, opts: tuple[str, ...] = ()
    ) -> int:
        args = ["trader", "create", "--user", user, "--recorder", recorder, "--enabled", *opts]
        for a in accounts:
            args += ["--account", a]
        return int((await self.cli.ok(*args))["trader"]["id"])

    async def start(self, tmp_path: Path) -> None:
        port = free_port()
        full = dict(os.environ)
        overrides = cli_env(db_url=self.cli.db_url, data_dir=self.cli.data_dir, env=self.cli.env)
        overrides["JTRADES_SERVER__PORT"] = str(port)
        for k, v in overrides.items():
            if v is None:
                full.pop(k, None)
            else:
                full[k] = v
        self.log = tmp_path / "daemon.log"
        with self.log.open("wb") as fh:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "jtrades.cli",
                "serve",
                stdout=fh,
                stderr=subprocess.STDOUT,
                env=full,
                cwd=tmp_path,
            )
        self.base = f"http://127.0.0.1:{port}"
        self.http = aiohttp.ClientSession()
        for _ in range(600):  # the bound only stops a hung start
            assert self.proc.returncode is None, f"daemon exited:\n{self.output()}"
            try:
                async with self.http.get(self.base + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"daemon never ready:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    async def loaded(self) -> None:
        """Wait until the daemon trades with the configuration the database holds now (its
        ``/metrics`` names the fingerprint of the snapshot it loaded): a CLI change reaches it
        by NOTIFY, and an alert sent before the reload is judged by the old configuration."""
        assert self.http is not None
        want = f'jtrades_config_info{{fingerprint="{await config_fingerprint(self.pool)}"}} 1'
        for _ in range(300):  # the bound only stops a daemon that never reloads
            async with self.http.get(self.base + "/metrics") as r:
                if want in await r.text():
                    return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the daemon never loaded the configuration:\n{self.output()}")

    async def stop(self) -> None:
        if self.http is not None:
            await self.http.close()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await asyncio.wait_for(self.proc.wait(), 60)

    async def alert(self, recorder: str, body: dict[str, Any] | str) -> dict[str, Any]:
        """Post like TradingView: JSON as application/json, anything else as text/plain."""
        assert self.http is not None
        data = orjson.dumps(body) if isinstance(body, dict) else body.encode()
        ctype = "application/json" if isinstance(body, dict) else "text/plain"
        async with self.http.post(
            f"{self.base}/webhook/{self.hooks[recorder]}",
            data=data,
            headers={"Content-Type": ctype},
        ) as r:
            out = dict(await r.json())
            assert r.status == 200, (r.status, out)
            return out

    def account(self, name: str) -> dict[str, Any]:
        return dict(self.sim.state()["accounts"][name])

    def net(self, name: str) -> int:
        return sum(p["netPos"] for p in self.account(name)["positions"])

    def orders(self, name: str) -> list[dict[str, Any]]:
        return [o for o in self.account(name)["orders"] if o["status"] in ("Working", "Suspended")]


@pytest.fixture
async def world(
    db_url: str, data_dir: Path, pool: asyncpg.Pool, tmp_path: Path
) -> AsyncIterator[World]:
    async with running_sim() as sim:
        await sim.set_price("MNQ", PRICE)
        w = World(sim, Cli(db_url, data_dir, dict(sim.tradovate_env())), pool)
        try:
            yield w
        finally:
            await w.stop()


def buy(**kw: Any) -> dict[str, Any]:
    return {"action": "buy", "ticker": "MNQ1!", "price": PRICE, **kw}


def sell(**kw: Any) -> dict[str, Any]:
    return {"action": "sell", "ticker": "MNQ1!", "price": PRICE, **kw}


async def settle() -> None:
    """Let the simulator's fills and the daemon's follow-ups land (event-driven, short)."""
    await asyncio.sleep(0.3)


async def test_ladder_x3_on_two_users_reversal_close_and_duplicates(
    world: World, tmp_path: Path
) -> None:
    w = world
    await w.user("alice")
    await w.user("bob")
    await w.demo("alice", "alice-demo", "alice_tv", ["A1", "A2"])
    await w.demo("bob", "bob-demo", "bob_tv", ["B1"])
    await w.recorder("ladder", "alice", "--size", "3", "--tp", "20:1,40:1,60", "--sl", "40")
    await w.cli.ok("recorder", "private", "ladder", "off")
    await w.trader("alice", "ladder", "alice-demo:A1*3")
    await w.trader("bob", "ladder", "bob-demo:B1*3")
    await w.start(tmp_path)

    # 50 copies of one alert at once (one explicit id) → one set of orders
    outs = await asyncio.gather(*(w.alert("ladder", buy(id="e2e-1")) for _ in range(50)))
    assert sum(o["orders"] for o in outs) == 2, outs
    await settle()
    for acct in ("A1", "B1"):
        assert w.net(acct) == 9, w.account(acct)
        work = w.orders(acct)
        tps = sorted((o for o in work if o["orderType"] == "Limit"), key=lambda o: o["price"])
        assert [o["qty"] for o in tps] == [3, 3, 3]
        assert [o["price"] for o in tps] == [21505.0, 21510.0, 21515.0]
        assert sum(o["qty"] for o in work if o["orderType"] == "Stop") == 9
    assert w.net("A2") == 0  # not linked

    # reversal: the short replaces the long
    out = await w.alert("ladder", sell())
    assert out["verdict"] == "accepted", out
    await settle()
    for acct in ("A1", "B1"):
        assert w.net(acct) == -9, w.account(acct)
        assert {o["action"] for o in w.orders(acct)} == {"Buy"}

    # close: flat, nothing working
    await w.alert("ladder", "close")
    await settle()
    for acct in ("A1", "B1"):
        assert w.net(acct) == 0
        assert w.orders(acct) == []
    rows = await w.pool.fetch("SELECT verdict, orders FROM signals ORDER BY id")
    assert [r["verdict"] for r in rows].count("duplicate") == 49


async def test_dca_re_places_exits_and_racing_alerts(world: World, tmp_path: Path) -> None:
    w = world
    await w.user("carol")
    await w.demo("carol", "carol-demo", "carol_tv", ["C1", "C2"])
    await w.recorder(
        "dca", "carol", "--size", "1", "--add-size", "1", "--tp", "20", "--sl", "40",
        "--dca", "--same-direction", "add",
    )  # fmt: skip
    await w.recorder("race", "carol", "--size", "1", "--sl", "40")
    await w.trader("carol", "dca", "carol-demo:C1")
    await w.trader("carol", "race", "carol-demo:C2")
    await w.start(tmp_path)

    # distinct ids: two identical bodies in one minute are one delivery (dedup)
    await w.alert("dca", buy(id="d1"))
    await settle()
    await w.sim.set_price("MNQ", PRICE - 5)  # the market dips; the add fills there
    out = await w.alert("dca", buy(id="d2", price=PRICE - 5))
    assert out["orders"] >= 1, out
    await settle()
    assert w.net("C1") == 2
    work = w.orders("C1")
    # exits re-placed for the whole averaged position (avg 21497.5): TP +5, SL -10 points
    assert [(o["qty"], o["price"]) for o in work if o["orderType"] == "Limit"] == [(2, 21502.5)]
    assert [(o["qty"], o["stopPrice"]) for o in work if o["orderType"] == "Stop"] == [(2, 21487.5)]
    kinds = await w.pool.fetch(
        "SELECT kind FROM order_intents WHERE signal_id = $1 ORDER BY step", out["signal_id"]
    )
    assert "oco" in [r["kind"] for r in kinds]  # the re-placed TP leg with its stop

    for i in range(3):  # two different alerts at once on one sub-account
        await asyncio.gather(w.alert("race", buy(id=f"b{i}")), w.alert("race", sell(id=f"s{i}")))
        await settle()
        assert abs(w.net("C2")) == 1, w.account("C2")
        stops = [o for o in w.orders("C2") if o["orderType"] == "Stop"]
        assert sum(o["qty"] for o in stops) == 1


async def test_filters_block_and_allow_with_their_reason(world: World, tmp_path: Path) -> None:
    w = world
    await w.user("dan")
    await w.demo("dan", "dan-demo", "dan_tv", ["D1", "D2", "D3", "D4", "D5", "D6"])
    await w.recorder("longonly", "dan", "--direction", "long")
    await w.recorder("nth", "dan", "--every-nth", "2")
    await w.recorder("maxsig", "dan", "--max-signals", "1")
    await w.recorder("cool", "dan", "--cooldown", "3600")
    # windows on the owner's wall clock (America/Chicago): one around now, one an hour away
    from datetime import UTC, datetime, timedelta

    from jtrades.engine.tradingday import CHICAGO

    now = datetime.now(UTC).astimezone(CHICAGO)
    around = f"{now - timedelta(minutes=30):%H:%M}-{now + timedelta(minutes=30):%H:%M}"
    away = f"{now + timedelta(minutes=60):%H:%M}-{now + timedelta(minutes=61):%H:%M}"
    await w.recorder("shut", "dan")
    await w.cli.ok("recorder", "edit", "shut", "--window", away)
    await w.recorder("open", "dan")
    await w.cli.ok("recorder", "edit", "open", "--window", around)
    await w.recorder("off", "dan")
    for i, name in enumerate(("longonly", "nth", "maxsig", "cool", "shut", "open"), 1):
        await w.trader("dan", name, f"dan-demo:D{i}")
    await w.start(tmp_path)

    cases = [
        ("longonly", sell(market_position="short", prev_market_position="flat"), "direction"),
        ("longonly", buy(), None),
        ("nth", buy(id="n1"), "every_nth"),
        ("nth", buy(id="n2"), None),
        ("maxsig", buy(id="m1"), None),
        ("maxsig", buy(id="m2"), "max_signals"),
        ("cool", buy(id="c1"), None),
        ("cool", buy(id="c2"), "cooldown"),
        ("off", buy(), None),  # no trader: accepted, nothing to do
        ("open", buy(id="o1"), None),  # inside its window
    ]
    for rec, body, expected in cases:
        out = await w.alert(rec, body)
        assert out.get("filter") == expected, (rec, out)
        if expected is not None:
            assert out["verdict"] == "rejected"
            assert out["reason"]
    out = await w.alert("shut", buy())
    assert (out["verdict"], out["filter"]) == ("rejected", "window")
    rows = await w.pool.fetch(
        "SELECT filter, reason FROM signals WHERE verdict = 'rejected' ORDER BY id"
    )
    assert [r["filter"] for r in rows] == [
        "direction", "every_nth", "max_signals", "cooldown", "window",
    ]  # fmt: skip
    assert all(r["reason"] for r in rows)
    await settle()
    assert w.net("D6") == 1
    # closes pass every entry filter
    out = await w.alert("maxsig", "close")
    assert out["verdict"] == "accepted"
    await settle()
    assert w.net("D3") == 0
    # a reversal whose new side a filter refuses still closes the side the strategy left
    assert w.net("D4") == 1
    out = await w.alert("cool", sell(id="c3"))
    assert (out["verdict"], out["filter"], out["orders"]) == ("rejected", "cooldown", 1), out
    await settle()
    assert w.net("D4") == 0
    assert w.orders("D4") == []


def fills(w: World, acct: str) -> int:
    return len(w.account(acct)["fills"])


async def test_what_a_signal_does_table(world: World, tmp_path: Path) -> None:
    """DESIGN.md §2: every cell of the position table, on the broker's side."""
    w = world
    await w.user("eve")
    await w.demo("eve", "eve-demo", "eve_tv", ["IGN", "ADD", "RE", "MP", "INV", "DIR"])
    await w.recorder("ign", "eve", "--sl", "40")  # same direction: ignore (default)
    await w.recorder("add", "eve", "--same-direction", "add")
    await w.recorder("re", "eve", "--same-direction", "reenter")
    await w.recorder("mp", "eve", "--size", "2")
    await w.recorder("inv", "eve", "--inverse")
    await w.recorder("dir", "eve", "--direction", "long")
    for rec, acct in [("ign", "IGN"), ("add", "ADD"), ("re", "RE"), ("mp", "MP"),
                      ("inv", "INV"), ("dir", "DIR")]:  # fmt: skip
        await w.trader("eve", rec, f"eve-demo:{acct}")
    await w.start(tmp_path)

    async def step(rec: str, body: dict[str, Any] | str, acct: str, net: int) -> dict[str, Any]:
        out = await w.alert(rec, body)
        await settle()
        assert w.net(acct) == net, (rec, body, out, w.account(acct))
        return out

    # flat: close does nothing (logged); buy opens long; sell opens short
    out = await step("ign", {"action": "close", "ticker": "MNQ1!", "id": "i0"}, "IGN", 0)
    assert (out["verdict"], out["orders"]) == ("accepted", 0)
    await step("ign", buy(id="i1"), "IGN", 1)
    # long + buy, same-direction ignore: unchanged, exits untouched
    out = await step("ign", buy(id="i2"), "IGN", 1)
    assert out["orders"] == 0
    assert out["reason"] == "not traded: already long 1 (--same-direction ignore)", out
    assert [o["qty"] for o in w.orders("IGN") if o["orderType"] == "Stop"] == [1]
    # long + sell: reverse
    await step("ign", sell(id="i3"), "IGN", -1)
    await step("ign", sell(id="i4"), "IGN", -1)  # short + sell: ignore
    await step("ign", buy(id="i5"), "IGN", 1)  # short + buy: reverse
    await step("ign", {"action": "exit", "ticker": "MNQ1!", "id": "i6"}, "IGN", 0)
    assert w.orders("IGN") == []
    # flat with a limit entry resting: a close cancels it, or it would open a position after
    # the strategy closed (its stop waits in the strategy until the entry fills)
    await step("ign", buy(id="i7", orderType="limit", limitPrice=PRICE - 10), "IGN", 0)
    assert [o["orderType"] for o in w.orders("IGN")] == ["Limit"]
    out = await step("ign", {"action": "close", "ticker": "MNQ1!", "id": "i8"}, "IGN", 0)
    assert out["orders"] == 1, out
    assert w.orders("IGN") == []
    await w.sim.set_price("MNQ", PRICE - 20)  # through the old limit: nothing fills
    await settle()
    assert w.net("IGN") == 0
    await w.sim.set_price("MNQ", PRICE)
    # flat with a buy limit resting, a sell opens short and cancels it first: it would have
    # bought against the short
    await step("ign", buy(id="i9", orderType="limit", limitPrice=PRICE - 10), "IGN", 0)
    out = await step("ign", sell(id="i10"), "IGN", -1)
    assert [o for o in w.orders("IGN") if o["orderType"] == "Limit"] == [], w.orders("IGN")
    await w.sim.set_price("MNQ", PRICE - 20)  # through the old limit: the short stays
    await settle()
    assert w.net("IGN") == -1
    await w.sim.set_price("MNQ", PRICE)
    await step("ign", {"action": "exit", "ticker": "MNQ1!", "id": "i11"}, "IGN", 0)
    # same direction add (no exits anywhere: a plain add) and reenter
    await step("add", buy(id="a1"), "ADD", 1)
    await step("add", buy(id="a2"), "ADD", 2)
    await step("add", sell(id="a3"), "ADD", -1)  # reverse opens the configured size
    await step("re", buy(id="r1"), "RE", 1)
    before = fills(w, "RE")
    await step("re", buy(id="r2"), "RE", 1)
    assert fills(w, "RE") == before + 2  # closed and opened fresh
    # market_position is the target: a sell with long reduces, flat closes
    await step("mp", buy(id="m1"), "MP", 2)
    await step("mp", sell(id="m2", quantity=1, market_position="long"), "MP", 1)
    await step("mp", sell(id="m3", market_position="flat"), "MP", 0)
    await step("mp", buy(id="m4", market_position="short"), "MP", 0)  # flat + reduce: nothing
    # no market position: a sell of fewer than the long held trims it (as TradersPost reads
    # it), as many or more reverses
    await step("mp", buy(id="m5"), "MP", 2)
    out = await step("mp", sell(id="m6", quantity=1), "MP", 1)
    assert (out["verdict"], out["orders"]) == ("accepted", 1), out
    assert out["reason"].startswith("closed only: "), out
    await step("mp", sell(id="m7", quantity=1), "MP", -1)
    # --inverse: a buy opens a short
    await step("inv", buy(id="v1"), "INV", -1)
    # --direction long: a reversal out of a long into a forbidden short only closes
    await step("dir", buy(id="d1"), "DIR", 1)
    await step("dir", sell(id="d2", market_position="short", prev_market_position="long"), "DIR", 0)


async def test_gates_halt_and_daily_loss(world: World, tmp_path: Path) -> None:
    """The filters that depend on people and money: each blocks with its reason, closes pass."""
    w = world
    for u in ("fred", "gina"):
        await w.user(u)
    await w.demo("fred", "fred-demo", "fred_tv", ["F1", "F2", "F3", "F4"])
    await w.demo("gina", "gina-demo", "gina_tv", ["G1"])
    await w.recorder("rec", "fred", "--size", "1")
    await w.recorder("loss", "fred", "--size", "5", "--max-daily-loss", "100")
    await w.recorder("gated", "fred")
    await w.recorder("ginas", "gina")
    await w.recorder("late", "fred")
    await w.trader("fred", "rec", "fred-demo:F1")
    await w.trader("fred", "loss", "fred-demo:F2")
    gated = await w.trader("fred", "gated", "fred-demo:F3")
    await w.trader("gina", "ginas", "gina-demo:G1")
    from datetime import UTC, datetime

    from jtrades.engine.tradingday import CHICAGO, session_open, trading_day

    now = datetime.now(UTC)
    opened = session_open(trading_day(now))
    # passed, after today's open (on a weekend the open is still ahead and the cutoff with it)
    cutoff = (opened + (now - opened) / 2).astimezone(CHICAGO)
    await w.cli.ok("recorder", "edit", "late", "--auto-flat-after", f"{cutoff:%H:%M}")
    await w.trader("fred", "late", "fred-demo:F4")
    await w.start(tmp_path)

    # max daily loss: a 5-lot loses 10 points ($100 on MNQ), the next entry is refused
    await w.alert("loss", buy(id="l1"))
    await settle()
    await w.sim.set_price("MNQ", PRICE - 10)
    await w.alert("loss", {"action": "close", "ticker": "MNQ1!", "price": PRICE - 10, "id": "l2"})
    await settle()
    out = await w.alert("loss", buy(id="l3", price=PRICE - 10))
    assert (out["verdict"], out["filter"]) == ("rejected", "max_daily_loss"), out
    out = await w.alert("late", buy(id="late1"))
    if now >= opened:
        assert (out["verdict"], out["filter"]) == ("rejected", "auto_flat"), out
    else:  # the weekend, before Sunday's open: no cutoff has passed yet, the entry goes through
        assert out["verdict"] == "accepted", out

    await w.alert("rec", buy(id="h1"))
    await settle()
    status = await w.cli.ok("status")
    assert status["daemon"]["config_changes"] == "heard", status
    await w.cli.ok("recorder", "disable-recording", "ginas")
    await w.cli.ok("trader", "disable", str(gated))
    await w.loaded()  # the daemon hears of each change as it commits (NOTIFY)
    for rec, flt in [("ginas", "recording_disabled"), ("gated", "trader_disabled")]:
        out = await w.alert(rec, buy(id=f"x-{rec}"))
        assert (out["verdict"], out.get("filter")) == ("rejected", flt), (rec, out)
        assert out["reason"]
    await w.cli.ok("recorder", "enable-recording", "ginas")
    await w.cli.ok("users", "disable", "gina")
    await w.cli.ok("halt")
    await w.loaded()
    for rec, flt in [("ginas", "owner_not_approved"), ("rec", "halted")]:
        out = await w.alert(rec, buy(id=f"y-{rec}"))
        assert (out["verdict"], out.get("filter")) == ("rejected", flt), (rec, out)
        assert out["reason"]
    # the kill switch lets closes through
    out = await w.alert("rec", {"action": "close", "ticker": "MNQ1!", "id": "h2"})
    assert out["verdict"] == "accepted"
    await settle()
    assert w.net("F1") == 0

    # halt --flatten also cancels what still works on a flat account: a resting limit entry
    # would open a position later, under the kill switch, with nobody to close it
    await w.cli.ok("resume")
    await w.loaded()
    # the market is at PRICE - 10 since the daily-loss case
    out = await w.alert("rec", buy(id="h3", orderType="limit", limitPrice=PRICE - 30))
    assert out["orders"] == 1, out
    await settle()
    assert [o["orderType"] for o in w.orders("F1")] == ["Limit"]
    await w.cli.ok("halt", "--flatten")
    for _ in range(100):  # the bound only stops a hung flatten
        flattens = (await w.cli.ok("status"))["flattens"]
        if w.orders("F1") == [] and [f["state"] for f in flattens] == ["done"]:
            break
        await asyncio.sleep(0.1)
    assert w.orders("F1") == []
    assert [f["state"] for f in flattens] == ["done"], flattens
    assert flattens[0]["progress"]["cancelled"] == 1, flattens
    await w.sim.set_price("MNQ", PRICE - 40)  # through the old limit: nothing fills
    await settle()
    assert w.net("F1") == 0


async def test_partial_fills_are_mirrored_and_the_next_signal_sees_the_whole_position(
    world: World, tmp_path: Path
) -> None:
    """The broker fills every order in lots of two: the reversal after a 5-lot entry closes all
    five and opens five (it plans against the whole position, not the first lot), every lot is
    mirrored once, and the realized P&L the daily-loss filter reads is the broker's own."""
    w = world
    await w.user("hank")
    await w.demo("hank", "hank-demo", "hank_tv", ["H1"])
    await w.recorder("lots", "hank", "--size", "1")
    await w.trader("hank", "lots", "hank-demo:H1*5")
    await w.start(tmp_path)
    w.sim.fault("partial_fills", lot=2)

    await w.alert("lots", buy(id="p1"))
    await settle()
    assert w.net("H1") == 5
    await w.sim.set_price("MNQ", PRICE + 10)
    out = await w.alert("lots", sell(id="p2", price=PRICE + 10))
    assert out["verdict"] == "accepted", out
    await settle()
    assert w.net("H1") == -5, w.account("H1")
    await w.sim.set_price("MNQ", PRICE + 5)
    await w.alert("lots", {"action": "close", "ticker": "MNQ1!", "price": PRICE + 5, "id": "p3"})
    await settle()
    assert w.net("H1") == 0
    broker_fills = w.account("H1")["fills"]
    assert sorted(f["qty"] for f in broker_fills) == [1] * 4 + [2] * 8  # four 5-lots, in lots
    # long +10 and short +5 points on 5 MNQ at $2 a point
    assert w.account("H1")["realizedPnL"] == 150

    for _ in range(50):  # the mirror writes behind the answers
        rows = await w.pool.fetch("SELECT qty FROM fills")
        pnl = await w.pool.fetchval("SELECT coalesce(sum(pnl), 0) FROM trades")
        if len(rows) == len(broker_fills) and pnl == 150:
            break
        await asyncio.sleep(0.1)
    assert sorted(r["qty"] for r in rows) == sorted(f["qty"] for f in broker_fills)
    assert pnl == 150


async def test_a_signal_after_a_slowly_filling_entry_waits_for_the_whole_position(
    world: World, tmp_path: Path
) -> None:
    """The entry's five contracts show up two, two and one, 150 ms apart; an add posted right
    after the entry's answer plans against all five (capped to one more by --max-contracts 6),
    not against the first lot (which would add four and breach the cap)."""
    w = world
    await w.user("ivan")
    await w.demo("ivan", "ivan-demo", "ivan_tv", ["I1"])
    await w.recorder(
        "slow", "ivan", "--size", "1", "--add-size", "1", "--same-direction", "add",
        "--max-contracts", "6",
    )  # fmt: skip
    await w.trader("ivan", "slow", "ivan-demo:I1*5")
    await w.start(tmp_path)
    w.sim.fault("partial_fills", lot=2, ms=150)

    first = await w.alert("slow", buy(id="s1"))
    assert first["orders"] == 1, first
    added = await w.alert("slow", buy(id="s2"))
    assert added["orders"] == 1, added
    await asyncio.sleep(0.6)  # the last lots of both orders
    assert w.net("I1") == 6, w.account("I1")
    assert sorted(f["qty"] for f in w.account("I1")["fills"]) == [1, 1, 2, 2]


async def test_a_limit_entry_sent_again_replaces_the_one_still_working(
    world: World, tmp_path: Path
) -> None:
    """A strategy moving its limit entry (below the market: it stays working) sends the alert
    again at the new price: the entry still working is cancelled and the new one placed, each
    sized alone within --max-contracts. Added beside each other, a --size 3 follower held
    entries for 3 + 2 and was long 5 once the market fell through them."""
    w = world
    await w.user("jane")
    await w.demo("jane", "jane-demo", "jane_tv", ["J1"])
    await w.recorder("limits", "jane", "--size", "3", "--max-contracts", "5")
    await w.trader("jane", "limits", "jane-demo:J1")
    await w.start(tmp_path)

    def limit(n: int) -> dict[str, Any]:
        return buy(id=f"lim{n}", orderType="limit", limitPrice=PRICE - 10 * n)

    outs = [await w.alert("limits", limit(n)) for n in (1, 2, 3)]
    assert [o["orders"] for o in outs] == [1, 2, 2], outs  # the cancel, then the new entry
    await settle()
    assert [(o["qty"], o["price"]) for o in w.orders("J1")] == [(3, PRICE - 30)]
    assert w.net("J1") == 0
