"""``signals|orders|positions|trades list``, ``halt``, ``resume`` and ``status`` on a real database."""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from jtrades.db import _init_connection
from jtrades.engine.config_cache import build_snapshot
from jtrades.engine.signal import Action, Signal
from jtrades.store import flatten as flatten_store
from jtrades.store import signals as signal_store
from jtrades.store import status as status_store
from jtrades.store import trading as trading_store
from tests.cli import ainvoke

NOW = datetime.now(UTC)
TOKEN = "tok-SECRET-abcdefghijklmnop"


async def _claim(pool: asyncpg.Pool, **fields: Any) -> signal_store.Claim:
    """A delivery stored as the daemon stores one: with an id drawn first, kept 24 hours."""
    sid = await pool.fetchval("SELECT nextval(pg_get_serial_sequence('signals', 'id'))")
    delivery = signal_store.Delivery(signal_id=sid, window=timedelta(hours=24), **fields)
    return await signal_store.claim_delivery(pool, delivery)


async def seed(pool: asyncpg.Pool) -> dict[str, int]:
    ids: dict[str, int] = {}
    for name in ("alice", "bob"):
        ids[name] = await pool.fetchval(
            "INSERT INTO users (name, email, status) VALUES ($1, $1 || '@x.io', 'approved') "
            "RETURNING id",
            name,
        )
    for label, user in (("apex-1", "alice"), ("bob-demo", "bob")):
        aid = await pool.fetchval(
            "INSERT INTO accounts (user_id, label, env) VALUES ($1, $2, 'paper') RETURNING id",
            ids[user],
            label,
        )
        ids[label] = await pool.fetchval(
            "INSERT INTO sub_accounts (account_id, broker_account_id, name) "
            "VALUES ($1, $2, $3) RETURNING id",
            aid,
            aid * 100,
            f"{label}-sub",
        )
    for rec, user in (("nq-scalp", "alice"), ("es-swing", "bob")):
        ids[rec] = await pool.fetchval(
            "INSERT INTO recorders (user_id, name, symbol, token_hash) "
            "VALUES ($1, $2, 'MNQ1!', $3) RETURNING id",
            ids[user],
            rec,
            os.urandom(32),
        )
    body = b'{"action":"buy","token":"%s"}' % TOKEN.encode()
    buy = Signal(Action.BUY, ticker="MNQ1!", quantity=2, price=Decimal("21500.25"))
    first = await _claim(
        pool,
        recorder_id=ids["nq-scalp"],
        idem_key="id:1",
        received_at=NOW,
        remote_addr="10.1.2.3",
        content_type="application/json",
        raw_body=body,
        signal=buy,
    )
    await signal_store.set_outcome(pool, first.signal_id, verdict="accepted", orders=3)
    rejected = await _claim(
        pool,
        recorder_id=ids["nq-scalp"],
        idem_key="id:2",
        received_at=NOW,
        remote_addr=None,
        content_type="text/plain",
        raw_body=b"sell",
        signal=Signal(Action.SELL),
    )
    await signal_store.set_outcome(
        pool,
        rejected.signal_id,
        verdict="rejected",
        filter="cooldown",
        reason="12s left of a 60s cooldown",
    )
    await _claim(
        pool,
        recorder_id=ids["nq-scalp"],
        idem_key="id:1",
        received_at=NOW,
        remote_addr=None,
        content_type=None,
        raw_body=body,
        signal=buy,
    )
    old = await signal_store.insert(
        pool,
        recorder_id=ids["es-swing"],
        received_at=NOW - timedelta(hours=3),
        remote_addr=None,
        content_type=None,
        raw_body=b"{",
        verdict="invalid",
        http_status=400,
        reason="malformed JSON",
        filter="invalid_signal",
    )
    ids.update(first=first.signal_id, rejected=rejected.signal_id, old=old)
    for sub, sym, net in (("apex-1", "MNQZ6", 2), ("apex-1", "MESZ6", 0), ("bob-demo", "ESZ6", -1)):
        await pool.execute(
            "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price) VALUES ($1,$2,$3,$4)",
            ids[sub],
            sym,
            net,
            Decimal("21500.25") if net else None,
        )
    await pool.execute(
        "INSERT INTO order_intents (signal_id, sub_account_id, cl_ord_id, step, kind, symbol, side,"
        " qty, request, state, broker_order_id, expires_at) VALUES"
        " ($1, $2, 'jt-1-a', 0, 'strategy', 'MNQZ6', 'Buy', 2, '{}', 'working', 555, now()),"
        " ($1, $3, 'jt-1-b', 0, 'order', 'ESZ6', 'Sell', 1, '{}', 'rejected', NULL, now())",
        first.signal_id,
        ids["apex-1"],
        ids["bob-demo"],
    )
    await pool.execute(
        "INSERT INTO orders (sub_account_id, broker_order_id, symbol, side, qty, order_type, price,"
        " status) VALUES ($1, 556, 'MNQZ6', 'Sell', 2, 'Limit', 21510.25, 'Working')",
        ids["apex-1"],
    )
    await pool.execute(
        "INSERT INTO trades (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl,"
        " opened_at, closed_at) VALUES ($1, 'MNQZ6', 'long', 1, 21500, 21510, 20, $2, $3),"
        " ($4, 'ESZ6', 'short', 1, 6000, 6010, -500, $2, $3)",
        ids["apex-1"],
        NOW - timedelta(hours=5),
        NOW - timedelta(hours=4),
        ids["bob-demo"],
    )
    return ids


@pytest.fixture
async def seeded(pool: asyncpg.Pool) -> dict[str, int]:
    return await seed(pool)


async def cli(db_url: str, data_dir: Path, *args: str) -> object:
    r = await ainvoke(list(args), db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    assert TOKEN not in r.stdout + r.stderr
    return r.json() if "--json" in args else r.stdout


async def test_signals_list_says_verdict_and_why(
    seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    rows = await cli(db_url, data_dir, "signals", "list", "--json")
    assert isinstance(rows, list)
    assert len(rows) == 4
    by_id = {r["id"]: r for r in rows}
    assert by_id[seeded["first"]]["verdict"] == "accepted"
    assert by_id[seeded["first"]]["orders"] == 3
    assert by_id[seeded["first"]]["price"] == "21500.25"
    rej = by_id[seeded["rejected"]]
    assert (rej["filter"], rej["reason"]) == ("cooldown", "12s left of a 60s cooldown")
    dup = [r for r in rows if r["verdict"] == "duplicate"]
    assert [d["duplicate_of"] for d in dup] == [seeded["first"]]
    assert [r["id"] for r in rows] == sorted(by_id, reverse=True)

    table = await cli(db_url, data_dir, "signals", "list")
    assert "cooldown: 12s left of a 60s cooldown" in str(table)
    assert f"duplicate of {seeded['first']}" in str(table)
    assert "invalid (400)" in str(table)


async def test_a_reason_that_opens_with_its_filter_is_not_prefixed_twice(
    seeded: dict[str, int], pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """The cooldown's reason opens with its name: the table read "cooldown: cooldown 60s: …"
    (found by a README walkthrough)."""
    claim = await _claim(
        pool,
        recorder_id=seeded["nq-scalp"],
        idem_key="id:cool",
        received_at=NOW,
        remote_addr=None,
        content_type="text/plain",
        raw_body=b"buy",
        signal=Signal(Action.BUY),
    )
    why = "cooldown 60s: 44s left since the last entry"
    await signal_store.set_outcome(
        pool, claim.signal_id, verdict="rejected", filter="cooldown", reason=why
    )
    table = str(await cli(db_url, data_dir, "signals", "list"))
    assert why in table
    assert "cooldown: cooldown" not in table


async def test_stored_text_is_shown_as_stored_not_read_as_markup(
    pool: asyncpg.Pool, seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    """A refusal's reason quotes the alert's own text: a "[/x]" in it ended the listing with
    rich's MarkupError, and a "[bold]" or ":x:" vanished or became an emoji."""
    reason = "quantityType '[/x]' not [bold]fixed :x:"
    await signal_store.insert(
        pool,
        recorder_id=seeded["nq-scalp"],
        received_at=NOW,
        remote_addr=None,
        content_type="application/json",
        raw_body=b"{}",
        verdict="invalid",
        http_status=422,
        reason=reason,
        filter="invalid_signal",
    )
    table = await cli(db_url, data_dir, "signals", "list")
    assert reason in str(table)


async def test_signals_list_filters(seeded: dict[str, int], db_url: str, data_dir: Path) -> None:
    rows = await cli(db_url, data_dir, "signals", "list", "--recorder", "ES-SWING", "--json")
    assert [r["id"] for r in rows] == [seeded["old"]]  # type: ignore[union-attr]
    rows = await cli(db_url, data_dir, "signals", "list", "--since", "1h", "--json")
    assert seeded["old"] not in [r["id"] for r in rows]  # type: ignore[union-attr]
    assert len(rows) == 3  # type: ignore[arg-type]
    rows = await cli(db_url, data_dir, "signals", "list", "--user", "bob", "--json")
    assert [r["recorder"] for r in rows] == ["es-swing"]  # type: ignore[union-attr]
    rows = await cli(db_url, data_dir, "signals", "list", "--verdict", "rejected", "--json")
    assert [r["filter"] for r in rows] == ["cooldown"]  # type: ignore[union-attr]
    rows = await cli(db_url, data_dir, "signals", "list", "--limit", "1", "--json")
    assert len(rows) == 1  # type: ignore[arg-type]


async def test_bad_since_is_one_line_exit_1(
    seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    r = await ainvoke(["signals", "list", "--since", "yesterday"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 1
    assert "--since" in r.error_line()


async def test_orders_list_by_user_and_account(
    seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    rows = await cli(db_url, data_dir, "orders", "list", "--json")
    assert {r["cl_ord_id"] for r in rows} == {"jt-1-a", "jt-1-b"}  # type: ignore[union-attr]
    rows = await cli(db_url, data_dir, "orders", "list", "--user", "alice", "--json")
    assert [(r["cl_ord_id"], r["state"]) for r in rows] == [("jt-1-a", "working")]  # type: ignore[union-attr]
    rows = await cli(db_url, data_dir, "orders", "list", "--account", "bob-demo", "--json")
    assert [r["state"] for r in rows] == ["rejected"]  # type: ignore[union-attr]
    rows = await cli(db_url, data_dir, "orders", "list", "--broker", "--json")
    assert [(r["broker_order_id"], r["status"]) for r in rows] == [(556, "Working")]  # type: ignore[union-attr]
    table = await cli(db_url, data_dir, "orders", "list")
    assert "working" in str(table)


async def test_positions_list_open_only_unless_all(
    seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    rows = await cli(db_url, data_dir, "positions", "list", "--json")
    assert {(r["account"], r["symbol"], r["net_pos"]) for r in rows} == {  # type: ignore[union-attr]
        ("apex-1", "MNQZ6", 2),
        ("bob-demo", "ESZ6", -1),
    }
    rows = await cli(db_url, data_dir, "positions", "list", "--all", "--user", "alice", "--json")
    assert {r["symbol"] for r in rows} == {"MNQZ6", "MESZ6"}  # type: ignore[union-attr]


async def test_trades_list(seeded: dict[str, int], db_url: str, data_dir: Path) -> None:
    rows = await cli(db_url, data_dir, "trades", "list", "--user", "bob", "--json")
    assert [(r["symbol"], r["pnl"]) for r in rows] == [("ESZ6", "-500")]  # type: ignore[union-attr]
    rows = await cli(db_url, data_dir, "trades", "list", "--since", "1h", "--json")
    assert rows == []
    table = await cli(db_url, data_dir, "trades", "list")
    assert "MNQZ6" in str(table)


async def test_listing_times_are_in_each_owners_time_zone(
    pool: asyncpg.Pool, seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    """DESIGN §4: "Times are in the user's time zone". They were in the machine's: on a UTC
    VPS, alice in New York read a 10:00 exit as 15:00. Each row in its owner's zone (bob has
    the default, Chicago), and the listing says which."""
    await pool.execute("UPDATE users SET timezone = 'America/New_York' WHERE name = 'alice'")
    closed = datetime(2026, 1, 5, 15, 0, tzinfo=UTC)  # 10:00 in New York, 09:00 in Chicago
    await pool.execute("UPDATE trades SET opened_at = $1, closed_at = $1", closed)

    rows = await cli(db_url, data_dir, "trades", "list", "--json")
    assert {(r["user_name"], r["closed_at"], r["opened_at"], r["timezone"]) for r in rows} == {  # type: ignore[union-attr]
        ("alice", "2026-01-05T10:00:00-05:00", "2026-01-05T10:00:00-05:00", "America/New_York"),
        ("bob", "2026-01-05T09:00:00-06:00", "2026-01-05T09:00:00-06:00", "America/Chicago"),
    }
    table = str(await cli(db_url, data_dir, "trades", "list", "--user", "alice"))
    assert "2026-01-05 10:00:00" in table
    assert "times in America/New_York" in table
    table = str(await cli(db_url, data_dir, "trades", "list"))  # two zones: each row says
    assert "times in each user's zone" in table
    assert "zone" in table
    alice = next(ln for ln in table.splitlines() if "apex-1" in ln)
    assert "2026-01-05 10:00:00" in alice
    assert "America/New_York" in alice
    bob = next(ln for ln in table.splitlines() if "bob-demo" in ln)
    assert "2026-01-05 09:00:00" in bob
    assert "America/Chicago" in bob

    new_york = ZoneInfo("America/New_York")
    for command, time_keys in (
        (["signals", "list", "--recorder", "nq-scalp"], ["received_at"]),
        (["orders", "list"], ["created_at"]),
        (["orders", "list", "--broker"], ["updated_at"]),
        (["positions", "list", "--all"], ["updated_at"]),
    ):
        rows = await cli(db_url, data_dir, *command, "--user", "alice", "--json")
        assert rows, command
        for r in rows:  # type: ignore[union-attr]
            assert r["timezone"] == "America/New_York", (command, r)
            for key in time_keys:
                at = datetime.fromisoformat(r[key])
                assert at.utcoffset() == new_york.utcoffset(at.replace(tzinfo=None)), (command, r)
        table = str(await cli(db_url, data_dir, *command, "--user", "alice"))
        assert "times in America/New_York" in table, (command, table)


async def test_a_zone_stored_before_zones_were_checked_shows_the_operators(
    pool: asyncpg.Pool, seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    """A folder of the zone database ("America") stored as a user's zone: the listing shows
    that user's times in the operator's ``[trading] timezone``, and says so."""
    await pool.execute("UPDATE users SET timezone = 'America' WHERE name = 'bob'")
    await pool.execute(
        "UPDATE trades SET opened_at = $1, closed_at = $1", datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    )
    r = await ainvoke(
        ["trades", "list", "--user", "bob", "--json"],
        db_url=db_url,
        data_dir=data_dir,
        env={"JTRADES_TRADING__TIMEZONE": "Europe/London"},
    )
    assert r.exit_code == 0, r.stderr
    assert [(t["closed_at"], t["timezone"]) for t in r.json()] == [
        ("2026-07-01T13:00:00+01:00", "Europe/London")
    ]


async def test_halt_resume_and_status(
    seeded: dict[str, int], pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    st = await cli(db_url, data_dir, "status", "--json")
    assert st["daemon"]["state"] == "never started"  # type: ignore[index]
    assert st["halted"] is False  # type: ignore[index]
    assert len(st["positions"]) == 2  # type: ignore[index]

    await cli(db_url, data_dir, "halt")
    flag = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    assert flag["halted"] is True
    st = await cli(db_url, data_dir, "status", "--json")
    assert st["halted"] is True  # type: ignore[index]

    await cli(db_url, data_dir, "resume")
    flag = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    assert flag["halted"] is False

    out = await cli(db_url, data_dir, "halt", "--account", "APEX-1", "--flatten", "--json")
    assert out["halted"] == "account:apex-1"  # type: ignore[index]
    assert [p["symbol"] for p in out["open_positions"]] == ["MNQZ6"]  # type: ignore[index]
    assert await pool.fetchval("SELECT halted FROM accounts WHERE label = 'apex-1'") is True
    assert await pool.fetchval("SELECT halted FROM accounts WHERE label = 'bob-demo'") is False
    flag = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    assert flag["halted"] is False  # an account halt leaves the global switch alone
    (request,) = flag["flattens"].values()
    assert request["account"] == "apex-1"
    st = await cli(db_url, data_dir, "status", "--json")
    assert st["halted_accounts"] == [{"account": "apex-1", "user": "alice"}]  # type: ignore[index]

    await cli(db_url, data_dir, "resume", "--account", "apex-1")
    assert await pool.fetchval("SELECT halted FROM accounts WHERE label = 'apex-1'") is False
    st = await cli(db_url, data_dir, "status", "--json")
    (ended,) = st["flattens"]  # type: ignore[index]
    assert ended["state"] == "cancelled"  # resuming the login ended its flatten, and says so
    assert "resume --account apex-1" in ended["cancelled"]
    actions = await pool.fetch("SELECT action, target FROM audit_log ORDER BY id")
    assert [(a["action"], a["target"]) for a in actions] == [
        ("halt", "all"),
        ("resume", "all"),
        ("halt", "account:apex-1"),
        ("resume", "account:apex-1"),
    ]

    r = await ainvoke(["halt", "--account", "nope"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 1
    assert "nope" in r.error_line()


async def test_a_resume_of_everything_names_the_logins_still_halted(
    seeded: dict[str, int], pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """``resume`` answered "resumed: all" while a login halted on its own stayed halted: it
    still lifts the global switch only, and now says which logins stay halted."""
    await cli(db_url, data_dir, "halt", "--account", "apex-1")
    await cli(db_url, data_dir, "halt")

    out = await cli(db_url, data_dir, "resume", "--json")
    assert out["resumed"] == "all"  # type: ignore[index]
    assert out["still_halted"] == ["apex-1"]  # type: ignore[index]
    assert await pool.fetchval("SELECT halted FROM accounts WHERE label = 'apex-1'") is True
    r = await ainvoke(["resume"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0
    assert "still halted: apex-1 (resume --account LABEL to lift)" in r.stderr

    await cli(db_url, data_dir, "resume", "--account", "apex-1")
    r = await ainvoke(["resume"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0
    assert "still halted" not in r.stderr


async def test_halting_again_keeps_a_flatten_still_in_progress(
    seeded: dict[str, int], pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """A second ``halt`` (say, a teammate's) dropped the pending request: the daemon stopped
    closing the positions it had been asked to close."""
    await cli(db_url, data_dir, "halt", "--flatten")
    asked = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")

    await cli(db_url, data_dir, "halt")
    flag = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    assert flag["halted"] is True
    assert flag["flattens"] == asked["flattens"]

    (requested_at,) = flag["flattens"]
    await flatten_store.mark_done(pool, requested_at, datetime.now(UTC), {})
    await cli(db_url, data_dir, "halt")  # a finished one is not carried along
    flag = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    assert "flattens" not in flag


async def flag_requests(pool: asyncpg.Pool) -> dict[str, dict[str, Any]]:
    value = await pool.fetchval("SELECT value FROM system_flags WHERE name = 'halted'")
    return dict(value["flattens"])


async def test_flatten_requests_accumulate_until_done(
    seeded: dict[str, int], pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """A second ``halt --flatten`` replaced the pending request: the positions the first had
    asked to close were forgotten."""
    one = await cli(db_url, data_dir, "halt", "--account", "apex-1", "--flatten", "--json")
    two = await cli(db_url, data_dir, "halt", "--account", "bob-demo", "--flatten", "--json")
    again = await cli(db_url, data_dir, "halt", "--account", "APEX-1", "--flatten", "--json")
    pending = await pending_flattens(pool)
    assert pending is not None
    assert {r["account"] for r in pending.values()} == {"apex-1", "bob-demo"}
    assert again["flatten_request"] == one["flatten_request"]  # type: ignore[index]
    assert again["flatten_pending_already"] is True  # type: ignore[index]

    # everything covers them: one request closes each position, the others say why they ended
    everything = await cli(db_url, data_dir, "halt", "--flatten", "--json")
    key = everything["flatten_request"]  # type: ignore[index]
    pending = await pending_flattens(pool)
    assert pending is not None
    assert list(pending) == [key]
    assert pending[key]["account"] is None
    ended = await flag_requests(pool)
    for r in (one, two):
        assert "covered by the flatten of everything" in ended[r["flatten_request"]]["cancelled"]  # type: ignore[index]
    # and a login's request while everything is pending is that request
    three = await cli(db_url, data_dir, "halt", "--account", "apex-1", "--flatten", "--json")
    assert three["flatten_request"] == key  # type: ignore[index]
    assert list(await pending_flattens(pool) or {}) == [key]

    # a login's resume does not end the flatten of everything (the global switch is still on),
    # and says that it keeps closing the login's positions
    told = await cli(db_url, data_dir, "resume", "--account", "apex-1", "--json")
    assert told["still_flattening"] == [key]  # type: ignore[index]
    assert list(await pending_flattens(pool) or {}) == [key]
    await cli(db_url, data_dir, "halt", "--account", "apex-1")
    said = await ainvoke(["resume", "--account", "apex-1"], db_url=db_url, data_dir=data_dir)
    assert said.exit_code == 0
    assert "a flatten of everything is still pending" in said.stdout + said.stderr
    out = await cli(db_url, data_dir, "resume", "--json")
    assert out["cancelled_flattens"] == [key]  # type: ignore[index]
    # bob-demo stays halted on its own: the flatten asked for it (covered until now) goes on;
    # apex-1's ended for good with its `resume --account`
    pending = await pending_flattens(pool)
    assert pending is not None
    assert list(pending) == [two["flatten_request"]]  # type: ignore[index]
    assert out["flattens_kept"] == [two["flatten_request"]]  # type: ignore[index]
    st = await cli(db_url, data_dir, "status", "--json")
    assert sorted(r["state"] for r in st["flattens"]) == ["cancelled", "pending"]  # type: ignore[index]
    shown = datetime.fromisoformat(key).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    assert f"everything, requested {shown}: cancelled (resume" in str(
        await cli(db_url, data_dir, "status")
    )
    audit = await pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'resume' ORDER BY id DESC LIMIT 1"
    )
    assert audit == {"cancelled_flattens": [key]}


async def pending_flattens(pool: asyncpg.Pool) -> Any:
    """What the engine takes for pending ``halt --flatten`` requests."""
    return build_snapshot(await trading_store.load_config(pool)).flatten


async def blocked_on_a_lock(pool: asyncpg.Pool) -> bool:
    n = await pool.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    return bool(n)


async def test_a_halt_does_not_undo_a_flatten_the_daemon_finished_meanwhile(
    seeded: dict[str, int], pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """``halt`` read the flag, the daemon marked the request done, then ``halt`` wrote back its
    old copy: the finished request was pending again, and the next start liquidated anew."""
    await cli(db_url, data_dir, "halt", "--flatten")
    (requested_at,) = await flag_requests(pool)
    daemon = await asyncpg.connect(db_url)
    await _init_connection(daemon)
    try:
        finishing = daemon.transaction()
        await finishing.start()
        assert await flatten_store.mark_done(daemon, requested_at, datetime.now(UTC), {})
        # `halt` runs while the daemon's write is not committed yet, and waits for its row
        halting = asyncio.create_task(cli(db_url, data_dir, "halt"))
        await wait_until(lambda: blocked_on_a_lock(pool), "halt waiting for the flag")
        await finishing.commit()
        await halting
    finally:
        await daemon.close()
    assert await pending_flattens(pool) is None


async def test_the_daemon_finishing_a_flatten_keeps_a_request_made_meanwhile(
    seeded: dict[str, int], pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """The daemon marks its request done while ``halt`` holds the flag to add another: the
    daemon's write waits, then applies to what ``halt`` committed."""
    await cli(db_url, data_dir, "halt", "--account", "apex-1", "--flatten")
    (first,) = await flag_requests(pool)
    cli_conn = await asyncpg.connect(db_url)
    await _init_connection(cli_conn)
    try:
        halting = cli_conn.transaction()
        await halting.start()
        flag = await status_store.lock_halted(cli_conn, create=True)
        flattens, second = flatten_store.add(
            flatten_store.pending(flag), datetime.now(UTC), "bob-demo", "cli:test"
        )
        await status_store.set_halted(cli_conn, {**(flag or {}), "flattens": flattens})
        finishing = asyncio.create_task(
            flatten_store.mark_done(pool, first, datetime.now(UTC), {"left": []})
        )
        await wait_until(lambda: blocked_on_a_lock(pool), "the daemon waiting for the flag")
        await halting.commit()
        assert await finishing
    finally:
        await cli_conn.close()
    requests = await flag_requests(pool)
    assert requests[first]["done_at"]
    assert requests[first]["progress"] == {"left": []}
    assert flatten_store.is_pending(requests[second])
    # and a cancelled request is not marked done, nor given progress, after the fact
    await cli(db_url, data_dir, "resume", "--account", "bob-demo")
    assert not await flatten_store.record_progress(pool, second, {"left": []})
    assert not await flatten_store.mark_done(pool, second, datetime.now(UTC), {})
    assert "done_at" not in (await flag_requests(pool))[second]


async def wait_until(cond: Any, what: str, limit_s: float = 5.0) -> None:
    for _ in range(int(limit_s / 0.01)):
        if await cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


async def test_status_reads_the_heartbeat(pool: asyncpg.Pool, db_url: str, data_dir: Path) -> None:
    await status_store.heartbeat(
        pool,
        pid=4242,
        started_at=NOW,
        detail={"state": "running", "ready": True, "host": "127.0.0.1", "port": 8080,
                "sessions": [{"account_id": 1, "env": "demo"}], "config_changes": "heard"},
    )  # fmt: skip
    st = await cli(db_url, data_dir, "status", "--json")
    daemon = st["daemon"]  # type: ignore[index]
    assert (daemon["alive"], daemon["pid"], daemon["ready"]) == (True, 4242, True)
    assert daemon["config_changes"] == "heard"
    assert daemon["sessions"] == [{"account_id": 1, "env": "demo"}]
    table = await cli(db_url, data_dir, "status")
    assert "running" in str(table)

    assert await cli(db_url, data_dir, "status", "--check")
    await pool.execute("UPDATE daemon_status SET heartbeat_at = now() - interval '1 minute'")
    r = await ainvoke(["status", "--check"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 1
    assert "no heartbeat for 60" in r.error_line()
    st = await cli(db_url, data_dir, "status", "--json")
    assert st["daemon"]["alive"] is False  # type: ignore[index]
    assert st["daemon"]["state"] == "not running"  # type: ignore[index]


UNKNOWN_NAME_CASES = [
    *(
        ([*cmd, "--user"], "user")
        for cmd in (["orders", "list"], ["orders", "list", "--broker"], ["positions", "list"],
                    ["positions", "list", "--all"], ["trades", "list"], ["signals", "list"],
                    ["accounts", "list"], ["trader", "list"])
    ),
    *(
        ([*cmd, "--account"], "account")
        for cmd in (["orders", "list"], ["orders", "list", "--broker"], ["positions", "list"],
                    ["trades", "list"])
    ),
    (["signals", "list", "--recorder"], "recorder"),
    (["recorder", "list", "--as"], "user"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("command", "what"), UNKNOWN_NAME_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
async def test_unknown_filter_name_is_a_user_error(
    seeded: dict[str, int], db_url: str, data_dir: Path, command: list[str], what: str
) -> None:
    """DESIGN §4: a mistyped name is exit 1 with one line, not an empty listing."""
    for fmt in ([], ["--json"]):
        r = await ainvoke([*command, "no-such-name", *fmt], db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 1, (r.stdout, r.stderr)
        line = r.error_line()
        assert what in line, line
        assert "no-such-name" in line, line
        assert r.stdout == ""


async def test_known_name_with_nothing_to_list_is_still_exit_0(
    pool: asyncpg.Pool, seeded: dict[str, int], db_url: str, data_dir: Path
) -> None:
    carol = await pool.fetchval(
        "INSERT INTO users (name, email, status) VALUES ('carol', 'c@x.io', 'approved') RETURNING id"
    )
    await pool.execute(
        "INSERT INTO accounts (user_id, label, env) VALUES ($1, 'carol-paper', 'paper')", carol
    )
    await pool.execute(
        "INSERT INTO recorders (user_id, name, symbol, token_hash) VALUES ($1, 'quiet', 'MNQ1!', $2)",
        carol,
        os.urandom(32),
    )
    for command, empty in (
        (["orders", "list"], "no orders"),
        (["orders", "list", "--broker"], "no orders"),
        (["positions", "list"], "no open positions"),
        (["trades", "list"], "no trades"),
    ):
        for option, name in (("--user", "Carol"), ("--account", "CAROL-PAPER")):
            assert await cli(db_url, data_dir, *command, option, name, "--json") == []
            r = await ainvoke([*command, option, name], db_url=db_url, data_dir=data_dir)
            assert r.exit_code == 0, r.stderr
            assert empty in r.stderr
        # both names exist, but the account is not that user's: an empty listing, not an error
        assert (
            await cli(
                db_url, data_dir, *command, "--user", "alice", "--account", "carol-paper", "--json"
            )
            == []
        )
    for option, name in (("--user", "carol"), ("--recorder", "QUIET")):
        assert await cli(db_url, data_dir, "signals", "list", option, name, "--json") == []


async def test_status_says_which_broker_sessions_are_down(
    pool: asyncpg.Pool, db_url: str, data_dir: Path
) -> None:
    """A session reconnecting (the broker unreachable) was listed like a working one."""
    await status_store.heartbeat(
        pool,
        pid=4243,
        started_at=NOW,
        detail={"state": "running", "ready": True, "host": "127.0.0.1", "port": 8080,
                "config_changes": "heard",
                "sessions": [{"account_id": 1, "env": "paper", "up": True},
                             {"account_id": 2, "env": "demo", "up": False}]},
    )  # fmt: skip
    r = await ainvoke(["status"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).splitlines() if "demo" in ln or "paper" in ln]
    assert any("paper" in ln and " up" in ln for ln in lines), lines
    assert any("demo" in ln and "down (reconnecting)" in ln for ln in lines), lines
