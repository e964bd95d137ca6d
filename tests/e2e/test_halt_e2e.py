"""The operator's kill switch end to end (``jtrades serve`` against the simulator): ``halt
--flatten`` reaches every position of every stored login, linked to a trader or not any more,
retries a liquidation the broker refused, and ``resume`` says which logins it left halted.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_pipeline_e2e import World, buy, settle
from tests.e2e.test_pipeline_e2e import world as world  # the fixture

pytestmark = pytest.mark.e2e


async def flattened(w: World, n: int = 100) -> list[dict[str, Any]]:
    """The flatten requests once none is pending any more (or after ``n`` looks)."""
    flattens: list[dict[str, Any]] = []
    for _ in range(n):
        flattens = (await w.cli.ok("status"))["flattens"]
        if flattens and all(f["state"] != "pending" for f in flattens):
            break
        await asyncio.sleep(0.1)
    return flattens


async def long_on(w: World, user: str, sub: str, *, size: int = 1) -> int:
    """``user`` with the demo login ``{user}-demo`` (sub-accounts ``sub`` and ``{sub}b``) long
    ``size`` on ``sub`` through recorder ``r``; returns the trader's id."""
    await w.user(user)
    await w.demo(user, f"{user}-demo", f"{user}_tv", [sub, f"{sub}b"])
    await w.recorder("r", user, "--size", str(size), "--sl", "40")
    return await w.trader(user, "r", f"{user}-demo:{sub}")


async def test_halt_flatten_closes_a_position_whose_trader_was_deleted(
    world: World, tmp_path: Path
) -> None:
    """The trader is gone, its position is not: the kill switch closes every position."""
    w = world
    tid = await long_on(w, "kim", "K1", size=2)
    await w.start(tmp_path)
    await w.alert("r", buy(id="k1"))
    await settle()
    assert w.net("K1") == 2
    # refused without --force: no alert of its recorder could close the position any more
    await w.cli.ok("trader", "delete", str(tid), "--force")
    await w.loaded()

    await w.cli.ok("halt", "--flatten")
    (f,) = await flattened(w)
    await settle()

    assert w.net("K1") == 0, (f, w.account("K1"))
    assert f["state"] == "done"
    assert f["progress"]["closed"] == 1
    assert w.orders("K1") == []  # the stop went with the liquidation


async def test_halt_flatten_closes_a_position_whose_link_was_replaced(
    world: World, tmp_path: Path
) -> None:
    """The trader now trades another sub-account of the login: the old one's position is
    still the login's, and a flatten of that login alone closes it too."""
    w = world
    tid = await long_on(w, "lou", "L1")
    await w.start(tmp_path)
    await w.alert("r", buy(id="l1"))
    await settle()
    assert w.net("L1") == 1
    await w.cli.ok("trader", "edit", str(tid), "--account", "lou-demo:L1b", "--force")
    await w.loaded()

    await w.cli.ok("halt", "--account", "lou-demo", "--flatten")
    (f,) = await flattened(w)
    await settle()

    assert w.net("L1") == 0, (f, w.account("L1"))
    assert f["state"] == "done"


async def test_halt_flatten_closes_a_followers_position_after_the_owner_deletes_the_recorder(
    world: World, tmp_path: Path
) -> None:
    """Another user's public recorder deleted by its owner takes the follower's trader with it
    (and with that the follower's login's only link: the daemon had no reason to keep its
    session); the follower's position is still closed."""
    w = world
    await w.user("own")
    await w.user("fol")
    await w.demo("own", "own-demo", "own_tv", ["O1"])
    await w.demo("fol", "fol-demo", "fol_tv", ["F1"])
    await w.recorder("pub", "own", "--size", "1", "--sl", "40")
    await w.cli.ok("recorder", "private", "pub", "off")
    await w.trader("fol", "pub", "fol-demo:F1*3")
    await w.start(tmp_path)
    await w.alert("pub", buy(id="p1"))
    await settle()
    assert w.net("F1") == 3
    await w.cli.ok("recorder", "delete", "pub", "--force")  # the follower holds its position
    await w.loaded()

    await w.cli.ok("halt", "--flatten")
    (f,) = await flattened(w)
    await settle()

    assert w.net("F1") == 0, (f, w.account("F1")["positions"])
    assert f["state"] == "done"


async def test_halt_flatten_retries_a_liquidation_the_broker_refused(
    world: World, tmp_path: Path
) -> None:
    """One refusal (a risk check, a busy venue) does not end the request with the position
    open: the liquidation is tried again after the back-off until it is flat."""
    w = world
    await long_on(w, "max", "M1")
    await w.start(tmp_path)
    await w.alert("r", buy(id="m1"))
    await settle()
    assert w.net("M1") == 1
    w.sim.fault("reject_order", endpoint="liquidateposition", text="Temporarily unavailable")

    await w.cli.ok("halt", "--flatten")
    (f,) = await flattened(w)
    await settle()

    assert w.sim.faults.reject_next is None, "the fault never fired"
    assert w.net("M1") == 0, (f, w.account("M1")["positions"])
    assert f["state"] == "done"
    assert f["progress"]["refused"] == []
    rows = await w.pool.fetch(
        "SELECT state, reason FROM order_intents WHERE kind = 'liquidate' ORDER BY id"
    )
    assert [r["state"] for r in rows] == ["rejected", "done"], rows
    assert "Temporarily unavailable" in rows[0]["reason"]


async def test_resume_of_everything_says_which_logins_stay_halted(
    world: World, tmp_path: Path
) -> None:
    """A login halted on its own stays halted through ``jtrades resume`` (which lifts the
    global switch): the answer names it, and ``resume --account`` lifts it."""
    w = world
    await long_on(w, "tia", "T1")
    await w.start(tmp_path)
    await w.cli.ok("halt", "--account", "tia-demo")
    said = await w.cli.ok("resume")
    assert said["resumed"] == "all"
    assert said["still_halted"] == ["tia-demo"]
    text = await w.cli("resume")
    assert text.exit_code == 0
    assert "still halted: tia-demo (resume --account LABEL to lift)" in text.stderr
    await w.loaded()
    out = await w.alert("r", buy(id="t1"))
    await settle()
    assert w.net("T1") == 0, out  # still halted: the entry is refused

    await w.cli.ok("resume", "--account", "tia-demo")
    await w.loaded()
    out = await w.alert("r", buy(id="t2"))
    await settle()
    assert w.net("T1") == 1, out
