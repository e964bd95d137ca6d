"""Recorders: signal sources, their webhook token hashes and their risk settings.

For the daemon (the webhook pipeline calls these; all take a pool or a connection):

- ``all_token_hashes(conn) -> dict[bytes, int]``: SHA-256 of every webhook token → recorder id,
  for the in-memory token cache (rebuild it after ``recorder create``/``rotate-token``/``delete``).
- ``load_recorder_for_token(conn, token_hash) -> Recorder | None``: the recorder behind a token,
  with its complete ``RiskSettings``, ``recording_enabled`` and its owner's status and time zone
  (``Recorder.owner_approved`` False = an inactive or unapproved owner: never trade).
- ``jtrades.store.traders.load_active_traders(conn, recorder_id)``: the tradable traders of a
  recorder with their effective settings and enabled sub-account links (see that module).

For the CLI: ``create``, ``get``, ``list_visible``, ``update_settings``, ``set_private``,
``set_recording``, ``set_token_hash``, ``delete``; each change writes an ``audit_log`` row in the
caller's transaction. The token itself never reaches this module: only its hash.

The risk columns are the ``RiskSettings`` field names; ``risk_params``/``settings_from_row``
convert both ways (a ladder and windows are JSON arrays, enums their text value) and are shared
with the traders' override columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

from jtrades.engine.instruments import root_of
from jtrades.engine.risk import (
    OVERRIDABLE,
    Direction,
    RiskOverrides,
    RiskSettings,
    SameDirection,
    SlType,
    SlUnits,
    TpLeg,
    TpUnits,
    parse_window,
)
from jtrades.errors import Conflict, InvalidInput, NotFound
from jtrades.queries import q
from jtrades.store import Executor, translate_errors
from jtrades.store import audit as audit_store

_ENUMS: dict[str, type[Any]] = {
    "tp_units": TpUnits,
    "sl_units": SlUnits,
    "sl_type": SlType,
    "direction": Direction,
    "same_direction": SameDirection,
}


# --- risk columns <-> model -------------------------------------------------------------------


def _encode(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "tp":
        return [
            {"target": str(leg.target), **({"qty": leg.qty} if leg.qty is not None else {})}
            for leg in value
        ]
    if name == "windows":
        return [str(w) for w in value]
    if name in _ENUMS:
        return str(value.value)
    return value


def _decode(name: str, value: Any) -> Any:
    if value is None:
        return None
    if name == "tp":
        return tuple(TpLeg(Decimal(str(d["target"])), d.get("qty")) for d in value)
    if name == "windows":
        return tuple(parse_window(s) for s in value)
    if name in _ENUMS:
        return _ENUMS[name](value)
    return value


def risk_params(values: Mapping[str, Any]) -> list[Any]:
    """The 22 risk column values in query order; a missing name is NULL (inherit, on a trader)."""
    return [_encode(name, values.get(name)) for name in OVERRIDABLE]


def encode_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Risk values as their column (and JSON) form, for audit details and ``--json`` output."""
    return {name: _encode(name, v) for name, v in values.items()}


def settings_params(settings: RiskSettings) -> list[Any]:
    return risk_params({f.name: getattr(settings, f.name) for f in fields(RiskSettings)})


def settings_from_row(row: Mapping[str, Any]) -> RiskSettings:
    return RiskSettings(**{name: _decode(name, row[name]) for name in OVERRIDABLE})


def overrides_from_row(row: Mapping[str, Any]) -> RiskOverrides:
    return RiskOverrides(
        {name: _decode(name, row[name]) for name in OVERRIDABLE if row[name] is not None}
    )


# --- model ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recorder:
    id: int
    name: str
    user_id: int
    user_name: str
    symbol: str
    is_private: bool
    recording_enabled: bool
    settings: RiskSettings
    owner_status: str
    owner_timezone: str
    created_at: datetime
    updated_at: datetime

    @property
    def owner_approved(self) -> bool:
        return self.owner_status == "approved"

    def visible_to(self, user_id: int) -> bool:
        return self.user_id == user_id or not self.is_private


@dataclass(frozen=True, slots=True)
class UserRef:
    id: int
    name: str
    status: str
    timezone: str


def _recorder(row: Mapping[str, Any]) -> Recorder:
    return Recorder(
        id=row["id"],
        name=row["name"],
        user_id=row["user_id"],
        user_name=row["user_name"],
        symbol=row["symbol"],
        is_private=row["is_private"],
        recording_enabled=row["recording_enabled"],
        settings=settings_from_row(row),
        owner_status=row["owner_status"],
        owner_timezone=row["owner_timezone"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


# --- shared helpers ---------------------------------------------------------------------------


async def user_by_name(conn: Executor, name: str) -> UserRef:
    with translate_errors():
        row = await conn.fetchrow(q("recorders.user_by_name"), name)
    if row is None:
        raise NotFound(f"no user named {name!r}")
    return UserRef(row["id"], row["name"], row["status"], row["timezone"])


async def audit(
    conn: Executor, actor: str, action: str, target: str, detail: Mapping[str, Any] | None
) -> None:
    """One audit_log row in the caller's transaction (``jtrades.store.audit``); no secrets."""
    await audit_store.record(conn, actor, action, target, dict(detail) if detail else None)


# --- daemon -----------------------------------------------------------------------------------


async def all_token_hashes(conn: Executor) -> dict[bytes, int]:
    """Every webhook token hash → recorder id, for the daemon's in-memory cache."""
    with translate_errors():
        rows = await conn.fetch(q("recorders.token_hashes"))
    return {bytes(r["token_hash"]): r["id"] for r in rows}


async def load_recorder_for_token(conn: Executor, token_hash: bytes) -> Recorder | None:
    """The recorder whose webhook token hashes to ``token_hash``, or None."""
    with translate_errors():
        row = await conn.fetchrow(q("recorders.select_by_token_hash"), token_hash)
    return None if row is None else _recorder(row)


# --- CLI --------------------------------------------------------------------------------------


async def get(conn: Executor, name: str, *, as_user_id: int | None = None) -> Recorder:
    """A recorder by name; with ``as_user_id``, another user's private recorder is NotFound."""
    with translate_errors():
        row = await conn.fetchrow(q("recorders.select"), None, name, as_user_id)
    if row is None:
        raise NotFound(f"no recorder named {name!r}")
    return _recorder(row)


async def get_by_id(conn: Executor, recorder_id: int) -> Recorder:
    with translate_errors():
        row = await conn.fetchrow(q("recorders.select"), recorder_id, None, None)
    if row is None:
        raise NotFound(f"no recorder with id {recorder_id}")
    return _recorder(row)


async def list_visible(conn: Executor, *, as_user_id: int | None = None) -> list[Recorder]:
    """All recorders (admin view), or those a user may see: their own and public ones."""
    with translate_errors():
        rows = await conn.fetch(q("recorders.select"), None, None, as_user_id)
    return [_recorder(r) for r in rows]


async def create(
    conn: Executor,
    *,
    user_name: str,
    name: str,
    symbol: str,
    token_hash: bytes,
    is_private: bool,
    settings: RiskSettings,
    actor: str,
) -> Recorder:
    """Insert a recorder (settings validated first); run inside a transaction."""
    settings.validate()
    if len(token_hash) != 32:
        raise InvalidInput("a webhook token hash is 32 bytes (SHA-256)")
    user = await user_by_name(conn, user_name)
    with translate_errors():
        rid = await conn.fetchval(
            q("recorders.insert"),
            user.id,
            name,
            symbol,
            token_hash,
            is_private,
            *settings_params(settings),
        )
    rec = await get_by_id(conn, rid)
    await audit(
        conn,
        actor,
        "recorders.create",
        rec.name,
        {"user": user.name, "symbol": symbol, "private": is_private, **_settings_detail(settings)},
    )
    return rec


async def lock(conn: Executor, name: str) -> Recorder:
    """The recorder, its row locked until the transaction ends (read-merge-write edits)."""
    with translate_errors():
        rid = await conn.fetchval(q("recorders.lock_by_name"), name)
    if rid is None:
        raise NotFound(f"no recorder named {name!r}")
    return await get_by_id(conn, rid)


async def lock_shared(
    conn: Executor, *, recorder_id: int | None = None, name: str | None = None
) -> None:
    """Hold the recorder against edits and private switches until the transaction ends."""
    with translate_errors():
        await conn.fetch(q("recorders.lock_shared"), recorder_id, name)


async def update_settings(
    conn: Executor, rec: Recorder, *, symbol: str, settings: RiskSettings, actor: str
) -> Recorder:
    """Replace the settings (validated as a whole); the caller checks followers' overrides."""
    settings.validate()
    with translate_errors():
        await conn.execute(
            q("recorders.update_settings"), rec.id, symbol, *settings_params(settings)
        )
    changed = _diff(rec.settings, settings)
    if symbol != rec.symbol:
        changed["symbol"] = symbol
    await audit(conn, actor, "recorders.edit", rec.name, changed)
    return await get_by_id(conn, rec.id)


async def set_private(conn: Executor, rec: Recorder, private: bool, *, actor: str) -> None:
    """Refused (``Conflict``) while other users' traders follow it; the database trigger
    ``recorders_followed`` is the backstop for a follower added in between."""
    if private and not rec.is_private:
        with translate_errors():
            counts = await conn.fetchrow(q("recorders.follower_count"), rec.id)
        others = int(counts["other_users"]) if counts else 0
        if others:
            raise Conflict(
                f"{others} trader(s) of other users follow {rec.name!r}: it cannot be made "
                "private until they are deleted"
            )
    with translate_errors():
        await conn.execute(q("recorders.set_private"), rec.id, private)
    await audit(conn, actor, "recorders.private", rec.name, {"private": private})


async def set_recording(conn: Executor, rec: Recorder, enabled: bool, *, actor: str) -> None:
    with translate_errors():
        await conn.execute(q("recorders.set_recording"), rec.id, enabled)
    await audit(conn, actor, "recorders.recording", rec.name, {"enabled": enabled})


async def set_token_hash(conn: Executor, rec: Recorder, token_hash: bytes, *, actor: str) -> None:
    if len(token_hash) != 32:
        raise InvalidInput("a webhook token hash is 32 bytes (SHA-256)")
    with translate_errors():
        await conn.execute(q("recorders.set_token_hash"), rec.id, token_hash)
    await audit(conn, actor, "recorders.rotate_token", rec.name, None)


def name_followers(rows: Sequence[Any]) -> str:
    """Other users' traders (rows of ``owner``, ``trader_id``), at most ten named."""
    who = ", ".join(f"{r['owner']} (trader {r['trader_id']})" for r in rows[:10])
    return who + (f" and {len(rows) - 10} more" if len(rows) > 10 else "")


def name_held(held: Sequence[tuple[str, str, str]]) -> str:
    """Positions and working entries (``label:sub``, symbol, "+1" or "buy 1 working"), at
    most ten named."""
    return "; ".join(f"{where} {sym} {what}" for where, sym, what in held[:10])


async def followers_positions(ex: Executor, rec: Recorder) -> list[tuple[str, str, str]]:
    """(``label:sub``, symbol, net) of each position of the recorder's root its traders'
    sub-accounts hold that only its alerts close: not one another recorder of the root
    linking the same sub-account still reaches (nor another root's, another recorder's)."""
    with translate_errors():
        rows = await ex.fetch(q("recorders.followers_positions"), rec.id)
    return only_closed_by(rows, rec)


def only_closed_by(rows: Sequence[Mapping[str, Any]], rec: Recorder) -> list[tuple[str, str, str]]:
    """(``label:sub``, symbol, what) of the positions and working orders ``rows`` (label,
    sub_name, symbol, net_pos, ``working``: the order's words, the symbols ``others`` follow on
    the same sub-account) in ``rec``'s root that no other recorder of the root reaches."""
    root = root_of(rec.symbol)
    return [
        (f"{r['label']}:{r['sub_name']}", r["symbol"], r["working"] or f"{r['net_pos']:+d}")
        for r in rows
        if root_of(r["symbol"]) == root and all(root_of(o) != root for o in r["others"])
    ]


async def delete(conn: Executor, rec: Recorder, *, actor: str, force: bool = False) -> int:
    """Delete (its traders and signals cascade; the order intents they caused stay, their
    signal_id cleared); returns how many traders went with it. Refused, unless ``force``,
    while other users' traders follow it (`users reject` refuses the same: they would go with
    it) or its followers hold positions (no alert could reach them any more)."""
    if not force:
        with translate_errors():
            others = await conn.fetch(q("recorders.followed_by_others"), rec.id)
        if others:
            raise Conflict(
                f"recorder {rec.name!r} is followed by other users' traders: {name_followers(others)};"
                " they would be deleted with it. Pass --force to delete them too"
            )
        held = await followers_positions(conn, rec)
        if held:
            raise Conflict(
                f"followers of {rec.name!r} hold positions only its alerts close ({name_held(held)}):"
                " none could once it is gone. Close them first, or pass --force (they stay at"
                " the broker, where halt --flatten and the protective stops still reach them)"
            )
    with translate_errors():
        counts = await conn.fetchrow(q("recorders.follower_count"), rec.id)
        await conn.execute(q("recorders.delete"), rec.id)
    traders = int(counts["traders"]) if counts else 0
    await audit(conn, actor, "recorders.delete", rec.name, {"traders_deleted": traders})
    return traders


def _settings_detail(settings: RiskSettings) -> dict[str, Any]:
    return dict(zip(OVERRIDABLE, settings_params(settings), strict=True))


def _diff(old: RiskSettings, new: RiskSettings) -> dict[str, Any]:
    before, after = _settings_detail(old), _settings_detail(new)
    return {k: {"from": before[k], "to": v} for k, v in after.items() if before[k] != v}
