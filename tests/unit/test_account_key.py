"""The account at the broker: what groups sub-account rows into one account (its lock, its
protection, its flatten, its kill switch). Rows of one Tradovate login added by two users are
one account; rows of two logins naming the same broker account id never are (a hand-typed
``accounts add-sub`` id is not proof the login can see that account), nor is a row that only
typed the login's username (it holds no credential of the login: no password, no OAuth)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from jtrades.engine.account_plans import broker_account, by_broker_account
from jtrades.engine.config_cache import AccountKey, LinkConfig, account_key, build_snapshot
from jtrades.engine.dispatch import Dispatcher
from jtrades.store.trading import ConfigRows


def _link(
    sid: int,
    account_id: int,
    username: str | None,
    bid: int = 7,
    env: str = "demo",
    *,
    credential: bool = True,
) -> LinkConfig:
    return LinkConfig(
        trader_id=0,
        sub_account_id=sid,
        multiplier=Decimal(1),
        account_id=account_id,
        env=env,
        broker_account_id=bid,
        sub_name=f"S{sid}",
        label=f"acct-{account_id}",
        user_id=account_id,
        halted=False,
        username=username,
        has_credential=credential,
    )


def _key(
    env: str, account_id: int, username: str | None, bid: int, held: bool = True
) -> AccountKey:
    return account_key(env, account_id, username, bid, has_credential=held)


def test_one_login_in_any_case_is_one_account_two_logins_are_two() -> None:
    assert _key("demo", 1, "Alice_TV", 7) == _key("demo", 2, "alice_tv", 7)
    assert _key("demo", 1, "alice_tv", 7) != _key("demo", 2, "mal_tv", 7)
    assert _key("demo", 1, "alice_tv", 7) != _key("live", 1, "alice_tv", 7)
    assert _key("demo", 1, "alice_tv", 7) != _key("demo", 1, "alice_tv", 8)


def test_paper_is_keyed_by_its_own_login_row() -> None:
    assert _key("paper", 1, None, 1) != _key("paper", 2, None, 1)
    assert _key("paper", 3, None, 3) == ("paper", 3, 3)
    assert _key("paper", 3, None, 3, held=False) == ("paper", 3, 3)
    # a paper login's id is never taken for a demo/live login's name
    assert _key("paper", 1, None, 7) != _key("demo", 1, "1", 7)


def test_a_row_holding_no_credential_is_keyed_by_its_own_row() -> None:
    """Typing a username proves nothing: a row with no password nor OAuth connection is not
    one of the login's accounts, and its key is never one a username makes, whatever the
    username (a string) is."""
    alice = _key("demo", 1, "alice_tv", 7)
    mallory = _key("demo", 2, "ALICE_TV", 7, held=False)
    assert mallory != alice
    assert mallory != _key("demo", 3, "ALICE_TV", 7, held=False)  # two such rows: two
    assert mallory == _key("demo", 2, "ALICE_TV", 7, held=False)
    for name in ("2", "row:2", "row-2", ""):
        assert _key("demo", 9, name, 7) != mallory
    assert _key("demo", 2, None, 7) == ("demo", 2, 7)  # no username: its own row too


def test_by_broker_account_groups_one_logins_rows_only() -> None:
    alice, bob = _link(1, 10, "px_tv"), _link(2, 20, "PX_TV")
    mallory = _link(3, 30, "mal_tv")  # a hand-typed sub-account with alice's account id
    groups = by_broker_account([mallory, bob, alice])
    assert list(groups.values()) == [[alice, bob], [mallory]]
    assert broker_account(alice) == broker_account(bob) != broker_account(mallory)


def test_by_broker_account_leaves_a_row_holding_no_credential_alone() -> None:
    alice, bob = _link(1, 10, "px_tv"), _link(2, 20, "PX_TV")
    typed = _link(3, 30, "Px_Tv", credential=False)  # mallory typed the username only
    groups = by_broker_account([typed, bob, alice])
    assert list(groups.values()) == [[alice, bob], [typed]]


def test_the_dispatcher_locks_one_login_once_and_another_login_apart() -> None:
    d = Dispatcher(None, ttl_s=1)  # type: ignore[arg-type]  # no statement is run
    alice, bob, mallory = _link(1, 10, "px_tv"), _link(2, 20, "Px_Tv"), _link(3, 30, "mal_tv")
    typed = _link(4, 40, "PX_TV", credential=False)
    assert d.lock_for(alice) is d.lock_for(bob)
    assert d.lock_for(mallory) is not d.lock_for(alice)
    # a row naming the login with no proven credential (yet) is serialised with it (it may
    # trade through the login's session), and still planned, halted and flattened apart
    assert d.lock_for(typed) is d.lock_for(alice)
    assert broker_account(typed) != broker_account(alice)


async def test_busy_sees_the_lock_of_the_account_an_intent_was_written_for() -> None:
    """Reconciliation asks by (env, login row, broker id): the lock of that row's account is
    seen whichever row of its login took it."""
    d = Dispatcher(None, ttl_s=1)  # type: ignore[arg-type]
    alice = _link(1, 10, "px_tv")  # bob's row (account 20) names the same login
    paper = _link(4, 40, None, bid=40, env="paper")
    assert not d.busy("demo", 20, 7)
    async with d.lock_for(alice):
        assert d.busy("demo", 20, 7)  # bob's row, alice's lock: one account
        assert d.busy("demo", 10, 7)
        assert not d.busy("demo", 10, 8)
        assert not d.busy("live", 10, 7)
    assert not d.busy("demo", 20, 7)
    async with d.lock_for(paper):
        assert d.busy("paper", 40, 40)
        assert not d.busy("paper", 41, 40)
    assert not d.busy("paper", 40, 40)


def _row(sid: int, account_id: int, username: str, label: str, **kw: Any) -> dict[str, Any]:
    return {
        "sub_account_id": sid,
        "broker_account_id": 7,
        "sub_name": f"S{sid}",
        "account_id": account_id,
        "env": "demo",
        "label": label,
        "user_id": account_id,
        "username": username,
        "has_credential": True,
        "account_halted": False,
        "sub_halted": False,
    } | kw


def test_a_halt_stops_the_rows_of_its_own_login_only() -> None:
    """`halt --account mallory-demo` marked alice's link halted when mallory's row named
    alice's account id by hand; bob's row of alice's own login is stopped, as before."""
    linked = {"trader_id": 1, "multiplier": 1, "enabled": True, "active": True}
    links = [
        _row(1, 10, "alice_tv", "alice-demo") | linked,
        _row(2, 20, "ALICE_TV", "bob-demo") | linked,
    ]
    subs = [*links, _row(3, 30, "mal_tv", "mallory-demo", account_halted=True)]
    snap = build_snapshot(ConfigRows([], [], links, None, "x", subs))
    assert snap.subs[3].halted
    assert not snap.links_by_sub[1].halted
    assert not snap.links_by_sub[2].halted
    assert snap.subs[1].username == "alice_tv" == snap.subs[2].username

    links[0] = subs[0] = links[0] | {"account_halted": True}  # alice's own halt
    snap = build_snapshot(ConfigRows([], [], links, None, "x", subs))
    assert snap.links_by_sub[2].halted  # bob's row of alice's login: the same account
    assert snap.links_by_sub[1].halted


def test_a_halt_of_a_row_holding_no_credential_stops_that_row_only() -> None:
    """mallory's row typed alice's username (no password): `halt --account mallory-demo`
    stopped alice's entries, as if her row were one of the login's."""
    linked = {"trader_id": 1, "multiplier": 1, "enabled": True, "active": True}
    links = [_row(1, 10, "alice_tv", "alice-demo") | linked]
    typed = {"account_halted": True, "has_credential": False}
    subs = [*links, _row(3, 30, "ALICE_TV", "mallory-demo") | typed]
    snap = build_snapshot(ConfigRows([], [], links, None, "x", subs))
    assert snap.subs[3].halted
    assert not snap.subs[3].has_credential
    assert not snap.links_by_sub[1].halted
    assert snap.links_by_sub[1].has_credential
