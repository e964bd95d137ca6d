"""What a signal's reason says of other users (verdicts ``Judged._owners``): the reason is the
webhook's answer too, read by whoever holds the recorder's token, so another user's traders and
accounts are counted or said in general words, never their P&L, limits, logins or names.

Found in review: a public recorder's owner read a follower's daily P&L and limit, that the
follower's user was not approved, the follower's halted login and its position cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from jtrades.db import Database
from tests.integration.test_engine import (
    buy,
    close,
    make_paper_account,
    make_recorder,
    make_trader,
    make_user,
    net_pos,
    send,
    wait_for,
)
from tests.integration.test_engine import (
    engine_factory as engine_factory,  # the fixture
)
from tests.integration.test_verdict_shortfalls import _halt


@dataclass(frozen=True)
class Public:
    """Alice's public recorder, followed by bob's trader (and alice's own, when asked)."""

    rec: int
    bob: int
    a_sub: int
    b_sub: int
    t_alice: int | None
    t_bob: int


async def _public(
    pool: Any,
    alice_trader: dict[str, Any] | None,
    bob_trader: dict[str, Any],
    bob_multiplier: int = 1,
    **recorder: Any,
) -> Public:
    alice, bob = await make_user(pool, "alice"), await make_user(pool, "bob")
    rec = await make_recorder(pool, alice, "pub", size=1, is_private=False, **recorder)
    (a_sub,) = await make_paper_account(pool, alice, "alice-paper")
    (b_sub,) = await make_paper_account(pool, bob, "bob-paper")
    t_bob = await make_trader(pool, bob, rec, [(b_sub, bob_multiplier)], **bob_trader)
    t_alice = None
    if alice_trader is not None:
        t_alice = await make_trader(pool, alice, rec, [(a_sub, 1)], **alice_trader)
    return Public(rec, bob, a_sub, b_sub, t_alice, t_bob)


async def _a_losing_trade(engine: Any, pool: Any, rec: int) -> None:
    """Both followers lose 20 points, mirrored: bob's --max-daily-loss 100 (×5) is hit."""
    await send(engine, pool, rec, buy("21500"))
    await send(engine, pool, rec, close("21480"))

    async def mirrored() -> bool:
        return int(await pool.fetchval("SELECT count(*) FROM trades")) == 2

    await wait_for(mirrored, "both losing trades mirrored")


async def test_accepted_answer_does_not_carry_a_followers_pnl(
    database: Database, engine_factory: Any
) -> None:
    """Alice's trader takes the buy, bob's is refused for his daily loss: the accepted row's
    reason (the answer alice reads) quoted bob's P&L and his limit."""
    pool = database.pool
    w = await _public(pool, {}, {"max_daily_loss": Decimal(100)}, 5)
    engine = await engine_factory()
    await _a_losing_trade(engine, pool, w.rec)
    out = await send(engine, pool, w.rec, buy("21480"))
    assert out.verdict == "accepted", out
    assert await net_pos(engine, pool, w.a_sub) == 1
    assert await net_pos(engine, pool, w.b_sub) == 0
    reason = out.reason or ""
    assert f"trader {w.t_bob}" not in reason, f"alice's answer names bob's trader: {reason!r}"
    assert "USD" not in reason, f"alice's accepted answer quotes bob's daily P&L: {reason!r}"
    assert reason == "1 trader of other users refused", reason


async def test_accepted_answer_does_not_say_another_user_is_not_approved(
    database: Database, engine_factory: Any
) -> None:
    pool = database.pool
    w = await _public(pool, {}, {})
    await pool.execute("UPDATE users SET status = 'disabled' WHERE id = $1", w.bob)
    engine = await engine_factory()
    out = await send(engine, pool, w.rec, buy("21500"))
    assert out.verdict == "accepted", out
    assert f"trader {w.t_bob}" not in (out.reason or ""), out.reason


async def test_rejected_answer_quotes_another_users_daily_pnl(
    database: Database, engine_factory: Any
) -> None:
    """_first (filtered): every trader refused; the first rejection is bob's (lower id)."""
    pool = database.pool
    w = await _public(pool, {"cooldown_s": 3600}, {"max_daily_loss": Decimal(100)}, 5)
    rec, t_bob = w.rec, w.t_bob
    engine = await engine_factory()
    await _a_losing_trade(engine, pool, rec)
    out = await send(engine, pool, rec, buy("21480"))
    assert out.verdict == "rejected", out
    reason = out.reason or ""
    assert f"trader {t_bob}" not in reason, f"{out.filter}: {reason!r}"
    assert "USD" not in reason, f"alice's rejected answer quotes bob's P&L: {reason!r}"
    assert out.filter == "cooldown", (out.filter, reason)  # alice's own trader's refusal


async def test_rejected_answer_says_another_user_is_not_approved(
    database: Database, engine_factory: Any
) -> None:
    """_first (filtered) names an inert refusal: the only follower's owner is disabled."""
    pool = database.pool
    w = await _public(pool, None, {})
    t_bob = w.t_bob
    await pool.execute("UPDATE users SET status = 'disabled' WHERE id = $1", w.bob)
    engine = await engine_factory()
    out = await send(engine, pool, w.rec, buy("21500"))
    assert f"trader {t_bob}" not in (out.reason or ""), (out.verdict, out.filter, out.reason)
    assert (out.filter, out.reason) == ("followers", "refused for 1 trader of other users"), out


async def test_accepted_answer_names_another_users_halted_account(
    database: Database, engine_factory: Any
) -> None:
    """_shortfalls: bob's login halted (halt --account bob-paper); alice's trader trades."""
    pool = database.pool
    w = await _public(pool, {}, {})
    engine = await engine_factory()
    await _halt(engine, pool, "bob-paper", True)
    out = await send(engine, pool, w.rec, buy("21500"))
    assert out.verdict == "accepted", out
    assert await net_pos(engine, pool, w.a_sub) == 1
    assert "bob-paper" not in (out.reason or ""), f"alice's accepted answer: {out.reason!r}"
    assert out.reason == "1 account of other users did less than asked", out.reason


async def test_accepted_answer_tells_another_users_position_cap(
    database: Database, engine_factory: Any
) -> None:
    """_shortfalls: bob's own --max-contracts (a position of his at the cap)."""
    pool = database.pool
    w = await _public(pool, {}, {"max_contracts": 1}, same_direction="add", add_size=1)
    engine = await engine_factory()
    await send(engine, pool, w.rec, buy("21500"))
    out = await send(engine, pool, w.rec, buy("21500"))
    assert out.verdict == "accepted", out
    assert "bob-paper" not in (out.reason or ""), f"alice's accepted answer: {out.reason!r}"
    assert "max" not in (out.reason or ""), f"alice's accepted answer: {out.reason!r}"


async def test_rejected_answer_names_another_users_halted_account(
    database: Database, engine_factory: Any
) -> None:
    """_limit/_halted_on: bob is the only follower; his login is halted."""
    pool = database.pool
    w = await _public(pool, None, {})
    engine = await engine_factory()
    await _halt(engine, pool, "bob-paper", True)
    out = await send(engine, pool, w.rec, buy("21500"))
    assert "bob-paper" not in (out.reason or ""), (out.verdict, out.filter, out.reason)
    assert (out.verdict, out.filter) == ("rejected", "followers"), out
