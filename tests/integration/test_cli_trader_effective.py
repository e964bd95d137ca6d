"""``trader show`` says what the trader trades with, and ``trader create/edit`` refuse an override
the recorder's filters make moot.

The recorder's window, auto-flat cutoff, cooldown, max signals and every-Nth run on every signal
before the trader's own (``filters.check_recorder`` then ``check_trader``): a trader's value of
one of them can only tighten it. Before, ``trader create --cooldown 0 --window none
--every-nth 1`` on a recorder with 60 s, 08:30-15:00 and every 2nd was accepted without a word,
and ``trader show`` (table and ``--json`` "effective") reported (0, [], 1) while the engine
went on applying 60 s, the window and every 2nd to every signal.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from pathlib import Path

import pytest

from jtrades.cli.trader_layers import looser_overrides
from jtrades.engine.risk import RiskSettings, Window
from tests.integration.test_cli_recorder import Cli, seed_account, seed_user, sql

# A Wednesday 15:00 UTC: the trading day that opened Tuesday 17:00 Chicago.
NOW = datetime(2026, 3, 18, 15, 0, tzinfo=UTC)


@pytest.fixture
def cli(db_url: str, data_dir: Path) -> Cli:
    alice = seed_user(db_url, "alice")
    bob = seed_user(db_url, "bob")
    sql(db_url, "UPDATE users SET timezone = 'America/New_York' WHERE name = 'bob'")
    seed_account(db_url, alice, "alice-acc", ["A1"])
    seed_account(db_url, bob, "bob-acc", ["B1"])
    c = Cli(db_url, data_dir)
    c.ok("recorder", "create", "nq", "--user", "alice", "--symbol", "MNQ1!", "--public",
         "--cooldown", "60", "--window", "08:30-15:00", "--every-nth", "2")  # fmt: skip
    return c


def _trader(cli: Cli, *args: str, user: str = "alice") -> str:
    t = cli.ok("trader", "create", "--user", user, "--recorder", "nq",
               "--account", f"{user}-acc", *args)["trader"]  # fmt: skip
    return str(t["id"])


def _filters(effective: dict[str, object]) -> tuple[object, ...]:
    return (effective["cooldown_s"], effective["windows"], effective["every_nth"])


def test_create_refuses_overrides_looser_than_the_recorders_and_writes_nothing(cli: Cli) -> None:
    """The reviewer's trader was created as asked, and shown as trading with what it asked."""
    line = cli.fails("trader", "create", "--user", "alice", "--recorder", "nq",
                     "--account", "alice-acc",
                     "--cooldown", "0", "--window", "none", "--every-nth", "1")  # fmt: skip
    assert "--cooldown 0" in line
    assert "--cooldown 60" in line
    assert "--window none" in line
    assert "08:30-15:00" in line
    assert "--every-nth 1" in line
    assert "--every-nth 2" in line
    assert sql(cli.db_url, "SELECT count(*) FROM traders")[0][0] == 0


def test_edit_refuses_a_looser_override_and_keeps_the_old_one(cli: Cli) -> None:
    tid = _trader(cli, "--cooldown", "120")
    assert "--cooldown 60" in cli.fails("trader", "edit", tid, "--cooldown", "30")
    assert cli.ok("trader", "show", tid)["overrides"] == {"cooldown_s": 120}
    # equal to the recorder's, or tighter: taken
    assert cli.ok("trader", "edit", tid, "--cooldown", "60")["trader"]["overrides"] == {
        "cooldown_s": 60
    }


def test_show_reports_the_recorders_filters_once_a_recorder_edit_made_the_overrides_moot(
    cli: Cli,
) -> None:
    """A recorder edit can make an accepted override looser: ``show`` must be right anyway."""
    cli.ok("recorder", "edit", "nq", "--cooldown", "0", "--window", "none", "--every-nth", "1")
    tid = _trader(cli, "--cooldown", "30", "--window", "07:00-16:00", "--every-nth", "1")
    assert _filters(cli.ok("trader", "show", tid)["effective"]) == (30, ["07:00-16:00"], 1)

    cli.ok("recorder", "edit", "nq", "--cooldown", "60", "--window", "08:30-15:00",
           "--every-nth", "2")  # fmt: skip
    shown = cli.ok("trader", "show", tid)
    assert _filters(shown["effective"]) == (60, ["08:30-15:00"], 2)
    assert shown["overrides"] == {"cooldown_s": 30, "windows": ["07:00-16:00"], "every_nth": 1}
    assert shown["recorder_filters"]["cooldown_s"] == 60
    assert set(shown["looser"]) == {"cooldown", "window", "every-nth"}
    table = cli("trader", "show", tid)
    assert table.exit_code == 0
    assert "no effect" in table.stdout
    # an unrelated edit is not refused for a stored override the recorder made moot
    assert cli.ok("trader", "edit", tid, "--size", "2")["trader"]["overrides"]["size"] == 2


def test_show_gives_both_layers_when_the_trader_tightens(cli: Cli) -> None:
    tid = _trader(cli, "--cooldown", "120", "--window", "09:00-12:00", "--every-nth", "3")
    shown = cli.ok("trader", "show", tid)
    assert _filters(shown["effective"]) == (120, ["09:00-12:00"], 3)
    rec = shown["recorder_filters"]
    assert (rec["cooldown_s"], rec["windows"], rec["every_nth"]) == (60, ["08:30-15:00"], 2)
    assert shown["looser"] == {}
    table = cli("trader", "show", tid).stdout
    assert "recorder's 60 applies first" in table
    assert "recorder's 08:30-15:00 applies first" in table


def test_a_follower_in_another_zone_is_refused_only_what_no_zone_can_tighten(cli: Cli) -> None:
    """bob (New York) follows alice's (Chicago) recorder: his window is read on his clock, so
    it is not compared with hers; ``none`` is looser in any zone."""
    assert "08:30-15:00" in cli.fails("trader", "create", "--user", "bob", "--recorder", "nq",
                                      "--account", "bob-acc", "--window", "none")  # fmt: skip
    tid = _trader(cli, "--window", "07:00-17:00", user="bob")
    shown = cli.ok("trader", "show", tid)
    assert shown["effective"]["windows"] == ["07:00-17:00"]
    assert shown["recorder_filters"]["windows"] == ["08:30-15:00"]
    table = cli("trader", "show", tid).stdout
    assert "America/Chicago" in table
    assert "America/New_York" in table


def test_looser_overrides_judges_each_tighten_only_option() -> None:
    rec = RiskSettings(
        windows=(Window(time(8, 30), time(15, 0)),),
        cooldown_s=60,
        max_signals=3,
        every_nth=2,
        auto_flat_after=time(15, 0),
    )

    def looser(same_zone: bool = True, **own: object) -> set[str]:
        trader_tz = "America/Chicago" if same_zone else "America/New_York"
        return set(looser_overrides(rec, own, trader_tz=trader_tz, recorder_tz="America/Chicago",
                                    now=NOW))  # fmt: skip

    assert looser(cooldown_s=59) == {"cooldown"}
    assert looser(cooldown_s=60, max_signals=3, every_nth=2) == set()
    assert looser(max_signals=4) == {"max-signals"}
    assert looser(every_nth=1) == {"every-nth"}
    assert looser(every_nth=3) == set()  # every 3rd of what the recorder passes: tighter
    assert looser(windows=()) == looser(windows=(), same_zone=False) == {"window"}
    assert looser(windows=(Window(time(8, 0), time(12, 0)),)) == {"window"}
    assert looser(windows=(Window(time(9, 0), time(10, 0)), Window(time(14, 0), time(15, 0)))) == (
        set()
    )
    assert looser(windows=(Window(time(22, 0), time(2, 0)),)) == {"window"}
    assert looser(windows=(Window(time(8, 0), time(12, 0)),), same_zone=False) == set()
    assert looser(auto_flat_after=time(15, 30)) == {"auto-flat-after"}
    assert looser(auto_flat_after=time(14, 0)) == set()
    assert looser(auto_flat_after=time(18, 30)) == set()  # after the 17:00 open: the earliest
    assert looser(auto_flat_after=time(15, 30), same_zone=False) == set()
    # a recorder without the filter: any value of the trader's tightens
    none = {"cooldown_s": 0, "windows": (), "every_nth": 1}
    assert looser_overrides(RiskSettings(), none, trader_tz="America/Chicago",
                            recorder_tz="America/Chicago", now=NOW) == {}  # fmt: skip
