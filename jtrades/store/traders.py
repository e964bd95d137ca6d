"""Traders: one user's link from a recorder to some of their broker sub-accounts, with overrides.

For the daemon:

- ``load_active_traders(conn, recorder_id) -> list[ActiveTrader]``: every trader of the recorder
  that may trade now (trader enabled, its user approved and still able to see the recorder), each
  with its effective ``RiskSettings`` (the recorder's with the trader's overrides applied through
  ``RiskOverrides``) and its enabled links to active sub-accounts (``ActiveLink``: sub_account_id,
  broker_account_id, name, account_id, account_label, env, username, multiplier, halted).
  ``halted`` is reported, not filtered: a halt blocks entries, but a close must still go out.
  A trader with no tradable link is left out; so is everything when the recorder's owner is
  not approved. ``recording_enabled`` is not checked here: the pipeline rejects (and records)
  such a signal before it asks for traders.

For the CLI: ``create``, ``get``, ``list_traders``, ``set_enabled``, ``update``, ``delete``.
The database has the last word on the rules (a trader links only its own user's sub-accounts, an
unapproved user cannot have an enabled trader, a private recorder is followed only by its owner);
its refusals arrive here as ``PermissionDenied`` with a clear message (``translate_errors``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import structlog

from jtrades.engine.parse_values import MAX_QUANTITY
from jtrades.engine.risk import RiskOverrides, RiskSettings
from jtrades.engine.sizing import cap_qty, over_order_limit, scale_qty
from jtrades.errors import InvalidInput, NotFound
from jtrades.queries import q
from jtrades.store import Executor, translate_errors
from jtrades.store.recorders import (
    Recorder,
    UserRef,
    audit,
    encode_values,
    get,
    get_by_id,
    lock_shared,
    only_closed_by,
    overrides_from_row,
    risk_params,
    settings_from_row,
    user_by_name,
)

log = structlog.get_logger(__name__)

MAX_MULTIPLIER = Decimal(1000)


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """``LABEL[:SUBACCOUNT][*MULT]`` as typed: no sub-account = all of the login's active ones."""

    label: str
    sub_account: str | None = None
    multiplier: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class TraderLink:
    sub_account_id: int
    account_label: str
    sub_account_name: str
    broker_account_id: int
    multiplier: Decimal
    enabled: bool


@dataclass(frozen=True, slots=True)
class Trader:
    id: int
    user_id: int
    user_name: str
    recorder_id: int
    recorder_name: str
    enabled: bool
    overrides: RiskOverrides
    links: tuple[TraderLink, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class ActiveLink:
    sub_account_id: int
    broker_account_id: int
    name: str
    account_id: int
    account_label: str
    env: str
    username: str | None
    multiplier: Decimal
    halted: bool


@dataclass(frozen=True, slots=True)
class ActiveTrader:
    trader_id: int
    user_id: int
    user_name: str
    timezone: str
    settings: RiskSettings
    links: tuple[ActiveLink, ...]


# --- daemon -----------------------------------------------------------------------------------


async def load_active_traders(conn: Executor, recorder_id: int) -> list[ActiveTrader]:
    """The recorder's tradable traders with effective settings and tradable links."""
    with translate_errors():
        base_row = await conn.fetchrow(q("recorders.select"), recorder_id, None, None)
        # An inactive or unapproved owner's recorder never trades, whoever follows it.
        if base_row is None or base_row["owner_status"] != "approved":
            return []
        rows = await conn.fetch(q("traders.active_for_recorder"), recorder_id)
    base = settings_from_row(base_row)
    grouped: dict[int, list[Mapping[str, Any]]] = {}
    for row in rows:
        grouped.setdefault(row["trader_id"], []).append(row)
    result = []
    for trader_id, trows in grouped.items():
        first = trows[0]
        try:
            effective = overrides_from_row(first).apply(base)
        except InvalidInput as exc:
            # Edits validate every follower, so this means a hand-edited row: never trade on it.
            log.error("trader.settings_invalid", trader_id=trader_id, reason=str(exc))
            continue
        links = tuple(
            ActiveLink(
                sub_account_id=r["sub_account_id"],
                broker_account_id=r["broker_account_id"],
                name=r["sub_account_name"],
                account_id=r["account_id"],
                account_label=r["account_label"],
                env=r["env"],
                username=r["username"],
                multiplier=r["multiplier"],
                halted=r["halted"],
            )
            for r in trows
        )
        result.append(
            ActiveTrader(
                trader_id, first["user_id"], first["user_name"], first["timezone"], effective, links
            )
        )
    return result


# --- reading ----------------------------------------------------------------------------------


async def _with_links(conn: Executor, rows: Sequence[Mapping[str, Any]]) -> list[Trader]:
    with translate_errors():
        link_rows = await conn.fetch(q("traders.links"), [r["id"] for r in rows])
    links: dict[int, list[TraderLink]] = {}
    for lr in link_rows:
        links.setdefault(lr["trader_id"], []).append(
            TraderLink(
                lr["sub_account_id"],
                lr["account_label"],
                lr["sub_account_name"],
                lr["broker_account_id"],
                lr["multiplier"],
                lr["enabled"],
            )
        )
    return [
        Trader(
            id=r["id"],
            user_id=r["user_id"],
            user_name=r["user_name"],
            recorder_id=r["recorder_id"],
            recorder_name=r["recorder_name"],
            enabled=r["enabled"],
            overrides=overrides_from_row(r),
            links=tuple(links.get(r["id"], ())),
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )
        for r in rows
    ]


async def get_trader(conn: Executor, trader_id: int) -> Trader:
    with translate_errors():
        rows = await conn.fetch(q("traders.select"), trader_id, None, None)
    if not rows:
        raise NotFound(f"no trader with id {trader_id}")
    return (await _with_links(conn, rows))[0]


async def list_traders(
    conn: Executor, *, user_id: int | None = None, recorder_id: int | None = None
) -> list[Trader]:
    with translate_errors():
        rows = await conn.fetch(q("traders.select"), None, user_id, recorder_id)
    return await _with_links(conn, rows)


async def lock(conn: Executor, trader_id: int) -> Trader:
    with translate_errors():
        found = await conn.fetchval(q("traders.lock"), trader_id)
    if found is None:
        raise NotFound(f"no trader with id {trader_id}")
    return await get_trader(conn, trader_id)


# --- writing ----------------------------------------------------------------------------------


async def resolve_accounts(
    conn: Executor, specs: Sequence[AccountSpec]
) -> list[tuple[int, Decimal]]:
    """(sub_account_id, multiplier) per sub-account named by the specs, each once.

    Ownership is not checked here on purpose: the database trigger refuses another user's
    sub-account inside the same transaction, so there is one rule, not two that could drift.
    """
    if not specs:
        raise InvalidInput("a trader needs at least one --account LABEL[:SUBACCOUNT][*MULT]")
    chosen: dict[int, Decimal] = {}
    for spec in specs:
        if not (Decimal(0) < spec.multiplier <= MAX_MULTIPLIER):
            raise InvalidInput(
                f"--account {spec.label}: multiplier must be > 0 and ≤ {MAX_MULTIPLIER}, "
                f"got {spec.multiplier}"
            )
        with translate_errors():
            rows = await conn.fetch(q("traders.sub_accounts_for_label"), spec.label)
        if not rows:
            raise NotFound(f"no account labelled {spec.label!r}")
        subs = [r for r in rows if r["sub_account_id"] is not None]
        if spec.sub_account is None:
            picked = [r for r in subs if r["active"]]
            if not picked:
                raise InvalidInput(
                    f"account {spec.label!r} has no active sub-accounts: "
                    f"run `jtrades accounts sync {spec.label}` first"
                )
        else:
            picked = _named(subs, spec.label, spec.sub_account)
            if not picked[0]["active"]:
                raise InvalidInput(f"sub-account {spec.label}:{spec.sub_account} is inactive")
        for r in picked:
            if r["sub_account_id"] in chosen:
                raise InvalidInput(f"sub-account {spec.label}:{r['name']} is named twice")
            chosen[r["sub_account_id"]] = spec.multiplier
    return list(chosen.items())


def _named(subs: Sequence[Any], label: str, wanted: str) -> list[Any]:
    """The one sub-account named ``wanted``: as written, else in any case if only one matches.

    Names are unique per login only as written ("sim1" and "SIM1" are two), so a match in
    any case linked both and the trader traded one nobody named."""
    exact = [r for r in subs if r["name"] == wanted]
    if exact:
        return exact
    similar = [r for r in subs if r["name"].lower() == wanted.lower()]
    if len(similar) > 1:
        names = ", ".join(repr(r["name"]) for r in similar)
        raise InvalidInput(
            f"account {label!r} has several sub-accounts named {wanted!r} in another case"
            f" ({names}): write the one you mean exactly"
        )
    if not similar:
        raise NotFound(f"account {label!r} has no sub-account {wanted!r}")
    return similar


async def _replace_links(
    conn: Executor, trader_id: int, links: Sequence[tuple[int, Decimal]]
) -> None:
    with translate_errors():
        await conn.execute(q("traders.delete_links"), trader_id)
        await conn.execute(
            q("traders.insert_links"),
            trader_id,
            [s for s, _ in links],
            [m for _, m in links],
        )


def _links_detail(links: Sequence[tuple[int, Decimal]]) -> list[dict[str, Any]]:
    return [{"sub_account_id": s, "multiplier": str(m)} for s, m in links]


async def visible_recorder(
    conn: Executor, user_name: str, recorder_name: str
) -> tuple[UserRef, Recorder]:
    """The user and the recorder they want to follow, if they may see it (own or public)."""
    user = await user_by_name(conn, user_name)
    await lock_shared(conn, name=recorder_name)
    try:
        recorder = await get(conn, recorder_name, as_user_id=user.id)
    except NotFound:
        raise NotFound(
            f"no recorder named {recorder_name!r} visible to user {user.name!r}"
        ) from None
    return user, recorder


def check_order_sizes(settings: RiskSettings, multiplier: Decimal, where: str) -> None:
    """An entry of ``--size`` and a DCA add of ``--add-size``, × ``multiplier`` and capped by
    ``--max-contracts`` as the planner sizes them, must each fit in one order.

    Each bound alone let ``--size 2147483647`` on ×2 through: every entry of the follower was
    then 4,294,967,294 contracts, refused by no rule but the database's, as a storage failure."""
    for option, what, base in (
        ("--size", "an entry", settings.size),
        ("--add-size", "a DCA add", settings.add_size),
    ):
        qty = cap_qty(scale_qty(base, multiplier), settings.max_contracts)
        if over_order_limit(qty) is not None:
            raise InvalidInput(
                f"{where}: {option} {base} × {multiplier.normalize():f} makes {what} of {qty}"
                f" contracts, more than the {MAX_QUANTITY} an order may hold"
            )


def _check_specs(settings: RiskSettings, specs: Sequence[AccountSpec]) -> None:
    for spec in specs:
        sub = f":{spec.sub_account}" if spec.sub_account is not None else ""
        check_order_sizes(settings, spec.multiplier, f"--account {spec.label}{sub}")


def _check_links(settings: RiskSettings, trader: Trader) -> None:
    """The trader's linked sub-accounts, against settings an edit (its own or the recorder's)
    is about to give it."""
    for link in trader.links:
        where = f"{link.account_label}:{link.sub_account_name}"
        check_order_sizes(settings, link.multiplier, where)


async def create(
    conn: Executor,
    *,
    user: UserRef,
    recorder: Recorder,
    accounts: Sequence[AccountSpec],
    overrides: RiskOverrides,
    enabled: bool,
    actor: str,
) -> Trader:
    """Create a trader (disabled unless ``enabled``); run inside a transaction."""
    effective = overrides.apply(recorder.settings)  # the effective settings must make sense
    links = await resolve_accounts(conn, accounts)
    _check_specs(effective, accounts)
    with translate_errors():
        tid = await conn.fetchval(
            q("traders.insert"), user.id, recorder.id, enabled, *risk_params(overrides.values)
        )
    await _replace_links(conn, tid, links)
    await audit(
        conn,
        actor,
        "traders.create",
        str(tid),
        {
            "user": user.name,
            "recorder": recorder.name,
            "enabled": enabled,
            "overrides": encode_values(overrides.values),
            "accounts": _links_detail(links),
        },
    )
    return await get_trader(conn, tid)


async def update(
    conn: Executor,
    trader: Trader,
    *,
    overrides: RiskOverrides,
    accounts: Sequence[AccountSpec] | None,
    actor: str,
) -> Trader:
    """Replace the overrides (validated against the recorder) and, if given, the links."""
    await lock_shared(conn, recorder_id=trader.recorder_id)
    recorder = await get_by_id(conn, trader.recorder_id)
    effective = overrides.apply(recorder.settings)
    if accounts is None:
        _check_links(effective, trader)
    with translate_errors():
        await conn.execute(q("traders.update_overrides"), trader.id, *risk_params(overrides.values))
    detail: dict[str, Any] = {"overrides": encode_values(overrides.values)}
    if accounts is not None:
        links = await resolve_accounts(conn, accounts)
        _check_specs(effective, accounts)
        await _replace_links(conn, trader.id, links)
        detail["accounts"] = _links_detail(links)
    await audit(conn, actor, "traders.edit", str(trader.id), detail)
    return await get_trader(conn, trader.id)


async def set_enabled(conn: Executor, trader: Trader, enabled: bool, *, actor: str) -> None:
    """Refused by the database for an unapproved user's trader."""
    if enabled and not trader.links:
        raise InvalidInput(f"trader {trader.id} has no sub-accounts: add one with --account")
    with translate_errors():
        await conn.execute(q("traders.set_enabled"), trader.id, enabled)
    await audit(
        conn, actor, "traders.enable" if enabled else "traders.disable", str(trader.id), None
    )


async def held_positions(
    ex: Executor, trader: Trader, recorder: Recorder, keep: Collection[int] = ()
) -> list[tuple[str, str, str]]:
    """(``label:sub``, symbol, what) of each position (or entry still working) of the
    recorder's root the trader's
    sub-accounts hold that only its alerts close (no other trader linking the sub-account
    follows a recorder of the root), on sub-accounts not in ``keep`` (those an edit links
    still). Deleting the trader or unlinking them leaves these where no alert closes them, as
    ``recorders.followers_positions`` says of a recorder's delete."""
    with translate_errors():
        rows = await ex.fetch(q("traders.held_positions"), trader.id)
    return only_closed_by([r for r in rows if r["sub_account_id"] not in keep], recorder)


async def delete(conn: Executor, trader: Trader, *, actor: str) -> None:
    with translate_errors():
        await conn.execute(q("traders.delete"), trader.id)
    await audit(
        conn,
        actor,
        "traders.delete",
        str(trader.id),
        {"user": trader.user_name, "recorder": trader.recorder_name},
    )


# A trader's distances read in the recorder's units (``tp_units``, ``sl_units``) unless it set
# its own: the values each kind of units measures
_IN_UNITS: dict[str, tuple[str, ...]] = {
    "tp_units": ("tp",),
    "sl_units": ("sl", "breakeven_trigger", "breakeven_offset", "trail_trigger", "trail_freq"),
}


async def check_followers(
    conn: Executor,
    recorder_id: int,
    settings: RiskSettings,
    *,
    before: RiskSettings | None = None,
    actor: str = "",
) -> list[str]:
    """Every trader of a recorder must still have valid effective settings after an edit.

    A follower's own distance keeps the units it was given in: stored as a bare number, it
    was read in the recorder's units, and the owner's switch from ticks to percent made a
    follower's 40-tick stop a 40 % one (no stop at all) without a word to him. Such a trader
    gets the units it had as an override of its own (``before``: the recorder's settings
    before the edit); returns what was kept, to say so."""
    kept: list[str] = []
    for trader in await list_traders(conn, recorder_id=recorder_id):
        overrides = trader.overrides
        if before is not None:
            pins = {
                units: getattr(before, units)
                for units, measured in _IN_UNITS.items()
                if getattr(before, units) != getattr(settings, units)
                and units not in overrides.values
                and any(overrides.values.get(name) is not None for name in measured)
            }
            if pins:
                overrides = RiskOverrides({**overrides.values, **pins})
                with translate_errors():
                    await conn.execute(
                        q("traders.update_overrides"), trader.id, *risk_params(overrides.values)
                    )
                await audit(
                    conn,
                    actor,
                    "traders.units_kept",
                    str(trader.id),
                    {"overrides": encode_values(overrides.values)},
                )
                what = ", ".join(f"--{u.replace('_', '-')} {v}" for u, v in pins.items())
                kept.append(f"trader {trader.id} ({trader.user_name}) keeps its own {what}")
        try:
            _check_links(overrides.apply(settings), trader)
        except InvalidInput as exc:
            raise InvalidInput(
                f"trader {trader.id} ({trader.user_name}) would be invalid: {exc}"
            ) from None
    return kept
