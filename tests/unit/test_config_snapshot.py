"""What the engine's snapshot marks as a trader's own settings, and whose zone each one reads."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from jtrades.engine.config_cache import build_snapshot
from jtrades.engine.risk import OVERRIDABLE, RiskSettings, TpLeg, Window
from jtrades.store.recorders import risk_params, settings_params
from jtrades.store.trading import ConfigRows

RTH = (Window(time(9, 30), time(16)),)


def _recorder() -> dict[str, Any]:
    risk = dict(zip(OVERRIDABLE, settings_params(RiskSettings(windows=RTH)), strict=True))
    return risk | {
        "id": 1,
        "user_id": 1,
        "name": "rth",
        "symbol": "MNQ1!",
        "recording_enabled": True,
        "owner_status": "approved",
        "owner_timezone": "America/New_York",
    }


def _trader(tid: int, **overrides: Any) -> dict[str, Any]:
    risk = dict(zip(OVERRIDABLE, risk_params(overrides), strict=True))
    return risk | {
        "id": tid,
        "user_id": 2,
        "recorder_id": 1,
        "enabled": True,
        "owner_status": "approved",
        "owner_timezone": "America/Los_Angeles",
    }


def test_only_a_set_column_is_the_traders_own_and_the_trader_keeps_its_owners_zone() -> None:
    snap = build_snapshot(
        ConfigRows(
            recorders=[_recorder()],
            traders=[
                _trader(1),
                _trader(2, windows=RTH, cooldown_s=60),
                _trader(3, windows=()),  # `--window none`: an own "any time", not inheriting
                _trader(4, size=1, tp=(TpLeg(Decimal(10), 5),)),  # a ladder over --size: bad
            ],
            links=[],
            halted=None,
            fingerprint="x",
        )
    )
    rec = snap.recorders[1]
    assert rec.tz == ZoneInfo("America/New_York")
    inherits, own, none, bad = (snap.traders[i] for i in (1, 2, 3, 4))
    assert inherits.overridden == frozenset()
    assert inherits.settings.windows == RTH  # effective, but applied by the recorder's check
    assert inherits.tz == ZoneInfo("America/Los_Angeles")
    assert own.overridden == {"windows", "cooldown_s"}
    assert none.overridden == {"windows"}
    assert none.settings.windows == ()
    # kept but never trading, and nothing of its broken overrides counts as its own
    assert not bad.enabled
    assert bad.overridden == frozenset()
    assert bad.settings == rec.settings


def test_a_stored_zone_that_names_a_tzdata_folder_reads_chicago() -> None:
    """A zone stored before check_timezone refused folders ("America") or overlong names made
    ZoneInfo raise OSError, so the whole snapshot failed to build."""
    rows = ConfigRows(
        recorders=[_recorder() | {"owner_timezone": "America"}],
        traders=[_trader(1) | {"owner_timezone": "x" * 300}],
        links=[],
        halted=None,
        fingerprint="x",
    )
    snap = build_snapshot(rows)
    assert snap.recorders[1].tz == ZoneInfo("America/Chicago")
    assert snap.traders[1].tz == ZoneInfo("America/Chicago")


def _sub(sid: int, label: str, **kw: Any) -> dict[str, Any]:
    return {
        "sub_account_id": sid,
        "broker_account_id": 100 + sid,
        "sub_name": f"S{sid}",
        "account_id": 10 if label == "a" else 20,
        "env": "demo",
        "label": label,
        "user_id": 2,
        "account_halted": False,
        "sub_halted": False,
    } | kw


def test_a_flatten_reaches_sub_accounts_no_trader_links() -> None:
    """A position outlives its trader: the kill switch's reach is every stored sub-account,
    its login's session is wanted while a flatten of it is pending, and its events mirrored."""
    link = _sub(1, "a") | {"trader_id": 7, "multiplier": 2, "enabled": True, "active": True}
    subs = [_sub(1, "a"), _sub(2, "a", sub_halted=True), _sub(3, "B")]
    flag = {"halted": True, "flattens": {"t": {"requested_at": "t", "account": "b"}}}
    snap = build_snapshot(ConfigRows([], [], [link], flag, "x", subs))
    assert list(snap.links_by_sub) == [1]
    assert snap.subs[1].trader_id == 7  # a linked one is its link
    assert (snap.subs[2].trader_id, snap.subs[2].halted) == (0, True)
    assert [lk.sub_account_id for lk in snap.flatten_subs(None)] == [1, 2, 3]
    assert [lk.sub_account_id for lk in snap.flatten_subs("A")] == [1, 2]
    assert [lk.sub_account_id for lk in snap.flattening()] == [3]
    assert snap.sub_account_id(20, 103) == 3
    assert build_snapshot(ConfigRows([], [], [link], None, "x", subs)).flattening() == []
