"""The engine's in-memory picture of who trades what: recorders → traders → sub-account links.

The hot path reads this snapshot and never queries the configuration per signal (the intent
write is the only database round trip). The snapshot is immutable and replaced whole, so a
signal sees either the old or the new configuration, never half of each. ``refresh`` rebuilds it
when a fingerprint of every cached column has changed: after every change the database announces
(``changes.ChangeFeed``), and on demand when a signal names a recorder the snapshot does not
know yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import structlog

from jtrades.engine.risk import RiskSettings
from jtrades.store import flatten as flatten_store
from jtrades.store import recorders as recorder_store
from jtrades.store import trading as trading_store

log = structlog.get_logger(__name__)

_CHICAGO = ZoneInfo("America/Chicago")


# The account at the broker (``account_plans.broker_account``): (env, the login, the broker's
# account id). The login is the lower-cased Tradovate username for demo/live rows that hold a
# credential of it (a proven password, or an OAuth connection; two users who add one login
# each have a row for its accounts: one account), and the login row's own id (an int, never a
# username) for paper (a paper login numbers its own accounts) and for a demo/live row holding
# no credential (or only a password nothing has proven yet).
AccountKey = tuple[str, str | int, int]


def account_key(
    env: str,
    account_id: int,
    username: str | None,
    broker_account_id: int,
    *,
    has_credential: bool,
) -> AccountKey:
    """The account at the broker that a login row (``accounts.id``, its Tradovate username)
    names by ``broker_account_id``.

    The login is part of it: keyed by (env, broker id) alone, a sub-account typed by hand
    (``accounts add-sub``) on mallory's login with the id of alice's account, on another
    login, was taken for alice's account: mallory's ``halt --account`` stopped alice's
    entries and her ``--flatten`` liquidated alice's position through alice's session. A
    login sees only its own accounts, so rows of two logins are never one account, even where
    they name the same id. Usernames compare in any case (as ``accounts.same_login``).

    A username is typed as freely as an id: a row is one of its login's accounts only while it
    ``has_credential`` (a proven password — a session or sync with it succeeded, or a proven
    row of the login holds the same, ``accounts.password_proven_at``, which a later
    set-password keeps — or an OAuth connection, whose user is checked as stored). Mallory's
    row naming ``ALICE_TV`` with no password, and then with a guessed one (`accounts
    set-password` stores any), was keyed as alice's account, and her `halt --account
    --flatten` liquidated it through alice's session. One holding neither (nor a username) is
    keyed by its own row, as a paper login: the int never equals a username."""
    if env == "paper" or not has_credential or not username:
        return (env, account_id, broker_account_id)
    return (env, username.lower(), broker_account_id)


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """One enabled sub-account of a trader, with where its orders go (``trader_id`` 0: a
    sub-account no trader links, which only ``halt --flatten`` sends orders to)."""

    trader_id: int
    sub_account_id: int
    multiplier: Decimal
    account_id: int  # accounts.id: the login (one broker session)
    env: str  # paper | demo | live
    broker_account_id: int
    sub_name: str
    label: str
    user_id: int
    halted: bool  # the account's or the sub-account's kill switch
    # the login's Tradovate username, lower-cased (None for paper): with ``env`` and
    # ``broker_account_id``, the account at the broker (``account_key``)
    username: str | None = None
    # whether the login row holds a credential of the login (a proven password, or an OAuth
    # connection; never the secret itself): only then is it one of the login's accounts
    has_credential: bool = False


@dataclass(frozen=True, slots=True)
class TraderConfig:
    id: int
    user_id: int
    recorder_id: int
    enabled: bool
    settings: RiskSettings  # effective: the recorder's with this trader's overrides
    # The fields the trader sets itself (a non-NULL override column). Only these of the
    # recorder's filters run again for the trader: the inherited ones were applied once by the
    # recorder's check, in the recorder owner's zone (``filters.check_trader``).
    overridden: frozenset[str]
    owner_active: bool
    tz: ZoneInfo  # the trader owner's: its own windows and cutoff are read on this clock
    links: tuple[LinkConfig, ...]


@dataclass(frozen=True, slots=True)
class RecorderConfig:
    id: int
    user_id: int
    name: str
    symbol: str
    settings: RiskSettings
    recording_enabled: bool
    owner_active: bool
    tz: ZoneInfo
    traders: tuple[TraderConfig, ...]


@dataclass(frozen=True, slots=True)
class Snapshot:
    recorders: dict[int, RecorderConfig]
    traders: dict[int, TraderConfig]
    links_by_sub: dict[int, LinkConfig]  # sub_account_id -> a link (its account/env info)
    halted: bool
    fingerprint: str
    # the pending ``halt --flatten`` requests by requested_at ({"requested_at": …, "account":
    # label | None, …}: ``store.flatten``); None when there is none
    flatten: dict[str, dict[str, Any]] | None = None

    # (accounts.id, broker account id) -> sub_accounts.id, for the event mirror: every
    # sub-account in ``subs``, so a flatten's fills on one no trader links are mirrored too
    by_broker: dict[tuple[int, int], int] = field(default_factory=dict)
    # sub_account_id -> every sub-account ``halt --flatten`` reaches: the linked ones (their
    # link) and each other active one of a stored login. A position outlives the trader that
    # opened it (deleted, moved to another sub-account, gone with its recorder): the kill
    # switch closes every position, not the linked ones only.
    subs: dict[int, LinkConfig] = field(default_factory=dict)
    # the labels of demo/live logins with no sub-account row (never synced): a flatten can
    # reach none of their positions, so it names them rather than calling itself done
    rowless_logins: tuple[str, ...] = ()

    def sub_account_id(self, account_id: int, broker_account_id: int | None) -> int | None:
        """Our sub_accounts.id for a broker account id seen on a login's event stream."""
        if broker_account_id is None:
            return None
        return self.by_broker.get((account_id, broker_account_id))

    @property
    def paper_account_ids(self) -> set[int]:
        return {lk.account_id for lk in self.links_by_sub.values() if lk.env == "paper"}

    def flatten_subs(self, label: str | None) -> list[LinkConfig]:
        """The sub-accounts a flatten of the login ``label`` (None: of everything) reaches,
        by sub_accounts.id."""
        return [
            lk
            for _, lk in sorted(self.subs.items())
            if label is None or lk.label.lower() == label.lower()
        ]

    def flattening(self) -> list[LinkConfig]:
        """The sub-accounts the pending flatten requests reach: their logins need a session
        (and a paper login its restored state) while one is pending, linked or not."""
        labels = [r.get("account") for r in (self.flatten or {}).values()]
        if any(not label for label in labels):
            return self.flatten_subs(None)
        wanted = {str(label).lower() for label in labels}
        return [lk for _, lk in sorted(self.subs.items()) if lk.label.lower() in wanted]


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else _CHICAGO
    # OSError: a tzdata folder or an overlong name, stored before check_timezone refused them;
    # one user's bad zone must not stop the whole snapshot from building
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return _CHICAGO


def _flatten_request(value: Any) -> dict[str, dict[str, Any]] | None:
    """The flag's pending flatten requests: not done, nor cancelled (by ``resume``)."""
    return flatten_store.pending(value) or None


def _halted_flag(value: Any) -> bool:
    """The global kill switch: ``true``, or an object with a true ``halted``/``on``."""
    if isinstance(value, dict):
        return bool(value.get("halted") or value.get("on"))
    return bool(value)


def _link(r: Any, trader_id: int, multiplier: Decimal) -> LinkConfig:
    """A sub-account's row as the link the engine trades it through."""
    return LinkConfig(
        trader_id=trader_id,
        sub_account_id=r["sub_account_id"],
        multiplier=multiplier,
        account_id=r["account_id"],
        env=r["env"],
        broker_account_id=r["broker_account_id"],
        sub_name=r["sub_name"],
        label=r["label"],
        user_id=r["user_id"],
        halted=bool(r["account_halted"] or r["sub_halted"]),
        username=_login(r.get("username")),
        has_credential=bool(r.get("has_credential")),
    )


def _login(username: str | None) -> str | None:
    """A login's username as accounts are grouped by it: in any case (``same_login``)."""
    return username.lower() if username else None


def link_account(link: LinkConfig) -> AccountKey:
    """The account at the broker ``link`` trades (``account_key``)."""
    return account_key(
        link.env,
        link.account_id,
        link.username,
        link.broker_account_id,
        has_credential=link.has_credential,
    )


def halted_by_others(rows: trading_store.ConfigRows, label: str) -> list[str]:
    """The other login rows whose own kill switch stops an account at the broker that a row
    labelled ``label`` names too (``build_snapshot``: one row's halt stops the account for
    every row of it): `resume --account` of one of them lifts its own switch only, and its
    entries there stay refused while these are halted."""
    raw = [_link(r, 0, Decimal(1)) for r in (*rows.subs, *rows.links)]
    mine = {link_account(lk) for lk in raw if lk.label.lower() == label.lower()}
    return sorted(
        {
            lk.label
            for lk in raw
            if lk.halted and lk.label.lower() != label.lower() and link_account(lk) in mine
        }
    )


def _stopped(link: LinkConfig, stopped: set[AccountKey]) -> LinkConfig:
    if link.halted or link_account(link) not in stopped:
        return link
    return dataclasses.replace(link, halted=True)


def build_snapshot(rows: trading_store.ConfigRows) -> Snapshot:
    """Assemble the snapshot from rows (pure). A trader whose overrides make an invalid
    combination is kept but disabled, so its signals say why instead of crashing the load."""
    links_by_trader: dict[int, list[LinkConfig]] = {}
    links_by_sub: dict[int, LinkConfig] = {}
    for r in rows.links:
        link = _link(r, r["trader_id"], Decimal(r["multiplier"]))
        links_by_sub.setdefault(link.sub_account_id, link)
        if r["enabled"] and r["active"]:
            links_by_trader.setdefault(link.trader_id, []).append(link)

    subs: dict[int, LinkConfig] = dict(links_by_sub)
    for r in rows.subs:  # no trader links them: only ``halt --flatten`` sends orders there
        subs.setdefault(r["sub_account_id"], _link(r, 0, Decimal(1)))
    # The kill switch of one row stops the account at the broker, whichever row of its login
    # names it: two users who add one Tradovate login each have a row, and alice's `halt
    # --account` (and its flatten) left bob's alerts opening positions on the account she had
    # just flattened. Only its login's rows: another login's row naming the same id (typed by
    # hand), or a row that only typed the login's username (no credential), is not that
    # account, and its halt stopped the owner's entries (``account_key``).
    stopped = {link_account(lk) for lk in (*subs.values(), *links_by_sub.values()) if lk.halted}
    if stopped:
        links_by_sub = {s: _stopped(lk, stopped) for s, lk in links_by_sub.items()}
        subs = {s: _stopped(lk, stopped) for s, lk in subs.items()}
        links_by_trader = {
            t: [_stopped(lk, stopped) for lk in lks] for t, lks in links_by_trader.items()
        }

    rec_settings: dict[int, RiskSettings] = {}
    for r in rows.recorders:
        rec_settings[r["id"]] = recorder_store.settings_from_row(r)

    traders_by_rec: dict[int, list[TraderConfig]] = {}
    traders: dict[int, TraderConfig] = {}
    for r in rows.traders:
        base = rec_settings.get(r["recorder_id"])
        if base is None:
            continue
        overrides = recorder_store.overrides_from_row(r)
        enabled = bool(r["enabled"])
        own = frozenset(overrides.values)
        try:
            eff = overrides.apply(base)
        except Exception as exc:  # an override that breaks the ladder: keep, but never trade
            log.warning("engine.config.bad_overrides", trader_id=r["id"], error=str(exc))
            eff, enabled, own = base, False, frozenset()
        t = TraderConfig(
            id=r["id"],
            user_id=r["user_id"],
            recorder_id=r["recorder_id"],
            enabled=enabled,
            settings=eff,
            overridden=own,
            owner_active=r["owner_status"] == "approved",
            tz=_zone(r["owner_timezone"]),
            links=tuple(sorted(links_by_trader.get(r["id"], []), key=lambda lk: lk.sub_account_id)),
        )
        traders[t.id] = t
        traders_by_rec.setdefault(t.recorder_id, []).append(t)

    recorders: dict[int, RecorderConfig] = {}
    for r in rows.recorders:
        recorders[r["id"]] = RecorderConfig(
            id=r["id"],
            user_id=r["user_id"],
            name=r["name"],
            symbol=r["symbol"],
            settings=rec_settings[r["id"]],
            recording_enabled=bool(r["recording_enabled"]),
            owner_active=r["owner_status"] == "approved",
            tz=_zone(r["owner_timezone"]),
            traders=tuple(sorted(traders_by_rec.get(r["id"], []), key=lambda t: t.id)),
        )
    return Snapshot(
        recorders,
        traders,
        links_by_sub,
        _halted_flag(rows.halted),
        rows.fingerprint,
        _flatten_request(rows.halted),
        {(lk.account_id, lk.broker_account_id): sid for sid, lk in subs.items()},
        subs,
        tuple(rows.rowless),
    )


class ConfigCache:
    """Holds the current ``Snapshot`` and rebuilds it when the database's configuration changes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._snap: Snapshot | None = None
        self._lock = asyncio.Lock()
        self._listeners: list[Any] = []

    @property
    def snapshot(self) -> Snapshot:
        if self._snap is None:
            raise RuntimeError("ConfigCache.load() was not awaited")
        return self._snap

    def on_change(self, callback: Any) -> None:
        """Call ``callback(snapshot)`` after every rebuild (the engine adds broker sessions)."""
        self._listeners.append(callback)

    async def load(self) -> Snapshot:
        async with self._lock:
            rows = await trading_store.load_config(self._pool)
            snap = build_snapshot(rows)
            self._snap = snap
        for cb in self._listeners:
            cb(snap)
        log.debug("engine.config.loaded", recorders=len(snap.recorders), traders=len(snap.traders))
        return snap

    async def refresh(self) -> bool:
        """Rebuild if anything cached changed; True when it did."""
        fp = await trading_store.config_fingerprint(self._pool)
        if self._snap is not None and fp == self._snap.fingerprint:
            return False
        await self.load()
        return True
