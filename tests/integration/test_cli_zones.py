"""Times in the user's zone (DESIGN §4), everywhere a listing shows them and where they are typed
back: ``status`` and ``halt`` showed an open position's time in the machine's zone, unlabelled,
where ``positions list`` shows it in its owner's; and a time copied from a listing into
``--since`` was read as UTC, not in the zone the listing shows it in."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from tests.cli import ainvoke, invoke_process


async def _ok(args: list[str], db_url: str, data_dir: Path) -> str:
    r = await ainvoke(args, db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    return r.stdout


async def _user_with_trades(
    db_url: str, data_dir: Path, name: str, zone: str, label: str, *, admin: bool = False
) -> None:
    """``name`` (in ``zone``) with a paper login ``label``, an open MNQZ6 position updated at
    15:00 UTC and two trades closed at 12:00 and 15:00 UTC on 2026-11-27."""
    register = ["users", "register", name, "--email", f"{name}@x.com", "--timezone", zone]
    await _ok([*register, *(["--admin"] if admin else [])], db_url, data_dir)
    await _ok(["accounts", "add", label, "--user", name, "--env", "paper"], db_url, data_dir)
    c = await asyncpg.connect(db_url)
    try:
        sub = await c.fetchval(
            "SELECT s.id FROM sub_accounts s JOIN accounts a ON a.id = s.account_id"
            " WHERE a.label = $1",
            label,
        )
        await c.execute(
            "INSERT INTO positions (sub_account_id, symbol, net_pos, net_price, updated_at)"
            " VALUES ($1, 'MNQZ6', 2, 21500.25, '2026-11-27 15:00:00+00')",
            sub,
        )
        await c.execute(
            "INSERT INTO trades (sub_account_id, symbol, side, qty, entry_price, exit_price, pnl,"
            " opened_at, closed_at) SELECT $1, 'MNQZ6', 'long', 1, 1, 2, 2, t - interval '1 min', t"
            " FROM (VALUES ('2026-11-27 12:00+00'::timestamptz),"
            " ('2026-11-27 15:00+00'::timestamptz)) v(t)",
            sub,
        )
    finally:
        await c.close()


async def _alice(db_url: str, data_dir: Path) -> None:
    await _user_with_trades(db_url, data_dir, "alice", "America/New_York", "ap", admin=True)


# --- status and halt ---------------------------------------------------------------------------


async def test_status_and_halt_show_position_times_in_the_owners_zone(
    db_url: str, data_dir: Path
) -> None:
    """On a machine in Tokyo, 15:00 UTC showed as 2026-11-28 00:00:00, unlabelled."""
    await _alice(db_url, data_dir)
    listing = await _ok(["positions", "list"], db_url, data_dir)
    assert "2026-11-27 10:00:00" in listing
    assert "times in America/New_York" in listing
    tokyo = {"TZ": "Asia/Tokyo"}
    for args in (["status"], ["halt", "--account", "ap"]):
        r = invoke_process(args, db_url=db_url, data_dir=data_dir, env=tokyo)
        assert r.exit_code == 0, r.stderr
        assert "2026-11-27 10:00:00" in r.stdout, (args, r.stdout[-600:])
        assert "open positions (times in America/New_York)" in r.stdout, r.stdout[-600:]
        assert "2026-11-28" not in r.stdout


async def test_status_and_halt_json_give_the_owners_offset_and_zone(
    db_url: str, data_dir: Path
) -> None:
    """As ``positions list --json``: ISO-8601 with the owner's offset, and the zone named."""
    await _alice(db_url, data_dir)
    listed = await ainvoke(["positions", "list", "--json"], db_url=db_url, data_dir=data_dir)
    want = {"updated_at": "2026-11-27T10:00:00-05:00", "timezone": "America/New_York"}
    assert {k: listed.json()[0][k] for k in want} == want
    status = await ainvoke(["status", "--json"], db_url=db_url, data_dir=data_dir)
    halt = await ainvoke(["halt", "--account", "ap", "--json"], db_url=db_url, data_dir=data_dir)
    for rows in (status.json()["positions"], halt.json()["open_positions"]):
        assert len(rows) == 1
        assert {k: rows[0][k] for k in want} == want
        assert rows[0]["symbol"] == "MNQZ6"


async def test_positions_of_owners_in_several_zones_name_each_zone(
    db_url: str, data_dir: Path
) -> None:
    await _alice(db_url, data_dir)
    await _user_with_trades(db_url, data_dir, "bob", "Europe/London", "bp")
    out = await _ok(["status"], db_url, data_dir)
    assert "open positions (times in each user's zone)" in out
    assert "2026-11-27 10:00:00" in out
    assert "2026-11-27 15:00:00" in out
    assert "Europe/London" in out
    assert "America/New_York" in out


# --- --since -----------------------------------------------------------------------------------


async def _closed(args: list[str], db_url: str, data_dir: Path) -> list[str]:
    r = await ainvoke([*args, "--json"], db_url=db_url, data_dir=data_dir)
    assert r.exit_code == 0, r.stderr
    return [t["closed_at"] for t in r.json()]


async def test_a_time_copied_from_a_listing_means_the_listing_zone(
    db_url: str, data_dir: Path
) -> None:
    """The table shows the trades at 10:00 and 07:00 "times in America/New_York": --since
    09:00 listed both, read as 09:00 UTC."""
    await _alice(db_url, data_dir)
    shown = await _ok(["trades", "list"], db_url, data_dir)
    assert "times in America/New_York" in shown
    assert "2026-11-27 10:00:00" in shown
    assert "2026-11-27 07:00:00" in shown
    later = ["2026-11-27T10:00:00-05:00"]
    both = [*later, "2026-11-27T07:00:00-05:00"]
    assert (
        await _closed(["trades", "list", "--since", "2026-11-27 09:00:00"], db_url, data_dir)
        == later
    )
    assert (
        await _closed(["trades", "list", "--since", "2026-11-27T09:00"], db_url, data_dir) == later
    )
    by_user = ["trades", "list", "--user", "alice", "--since", "2026-11-27 09:00"]
    assert await _closed(by_user, db_url, data_dir) == later
    # an offset says where it is
    utc = ["trades", "list", "--since", "2026-11-27T09:00:00+00:00"]
    assert await _closed(utc, db_url, data_dir) == both
    # a span is still before now
    assert await _closed(["trades", "list", "--since", "1h"], db_url, data_dir) == []
    # a date alone is its midnight there
    assert await _closed(["trades", "list", "--since", "2026-11-27"], db_url, data_dir) == both


async def test_with_users_in_several_zones_a_bare_time_needs_a_user_or_an_offset(
    db_url: str, data_dir: Path
) -> None:
    await _alice(db_url, data_dir)
    await _user_with_trades(db_url, data_dir, "bob", "Europe/London", "bp")
    for cmd in (["trades", "list"], ["orders", "list"], ["signals", "list"]):
        r = await ainvoke([*cmd, "--since", "2026-11-27 09:00"], db_url=db_url, data_dir=data_dir)
        assert r.exit_code == 1, (cmd, r.stderr)
        line = r.error_line()
        assert "several zones" in line, line
        assert "America/New_York, Europe/London" in line, line
        assert "Traceback" not in r.stderr
    # bob's listing is in London: 09:00 there is 09:00 UTC, before both of his trades
    bob = ["trades", "list", "--user", "bob", "--since", "2026-11-27 09:00"]
    assert await _closed(bob, db_url, data_dir) == [
        "2026-11-27T15:00:00+00:00",
        "2026-11-27T12:00:00+00:00",
    ]
    # the login names its owner too
    alice_login = ["trades", "list", "--account", "ap", "--since", "2026-11-27 09:00"]
    assert await _closed(alice_login, db_url, data_dir) == ["2026-11-27T10:00:00-05:00"]
    # with an offset, everyone's
    utc = ["trades", "list", "--since", "2026-11-27T13:00:00+00:00"]
    assert sorted(await _closed(utc, db_url, data_dir)) == [
        "2026-11-27T10:00:00-05:00",
        "2026-11-27T15:00:00+00:00",
    ]


async def test_a_local_time_the_clocks_skip_or_repeat_is_refused(
    db_url: str, data_dir: Path
) -> None:
    await _alice(db_url, data_dir)
    gap = await ainvoke(
        ["trades", "list", "--since", "2026-03-08 02:30"], db_url=db_url, data_dir=data_dir
    )
    assert gap.exit_code == 1
    assert "does not exist in America/New_York" in gap.error_line()
    fold = await ainvoke(
        ["orders", "list", "--since", "2026-11-01 01:30"], db_url=db_url, data_dir=data_dir
    )
    assert fold.exit_code == 1
    line = fold.error_line()
    assert "happens twice in America/New_York" in line
    assert "2026-11-01T01:30:00-04:00" in line
    assert "2026-11-01T01:30:00-05:00" in line
    # either, with its offset, is fine
    ok = await ainvoke(
        ["orders", "list", "--since", "2026-11-01T01:30:00-05:00"], db_url=db_url, data_dir=data_dir
    )
    assert ok.exit_code == 0, ok.stderr


async def test_an_unknown_user_in_a_since_listing_is_not_found(db_url: str, data_dir: Path) -> None:
    await _alice(db_url, data_dir)
    r = await ainvoke(
        ["trades", "list", "--user", "nobody", "--since", "2026-11-27 09:00"],
        db_url=db_url,
        data_dir=data_dir,
    )
    assert r.exit_code == 1
    assert "no user named 'nobody'" in r.error_line()


def test_since_help_says_which_zone(db_url: str, data_dir: Path) -> None:
    from tests.cli import invoke

    r = invoke(["trades", "list", "--help"], db_url=db_url, data_dir=data_dir)
    flat = " ".join(r.stdout.split())
    assert "read in the listing's zone" in flat
    assert "give an offset" in flat
