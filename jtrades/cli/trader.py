"""``jtrades trader``: follow a recorder on some of a user's broker sub-accounts.

A trader is created disabled unless ``--enabled``: orders start only when someone says so.
Its risk options are overrides of the recorder's (absent = inherit; ``--clear OPTION`` goes back
to inheriting); the recorder's window, cutoff, cooldown, max signals and every-Nth apply first
all the same, so an override of one can only tighten it: a looser one typed is refused, and
``show`` gives both. The database refuses another user's sub-account, a private recorder of another
user and an enabled trader for an unapproved user; those refusals come back as one-line errors.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

import typer

from jtrades.cli.common import JsonOpt, actor, done, emit, run, transaction
from jtrades.cli.risk_options import (
    RiskInput,
    describe,
    overrides_for_trader,
    parse_amount,
    parse_risk_input,
    risk_options,
)
from jtrades.cli.trader_layers import Layers, layers, looser_overrides
from jtrades.db import Database
from jtrades.engine.risk import RiskOverrides
from jtrades.errors import Conflict, InvalidInput
from jtrades.store import recorders as recorder_store
from jtrades.store import traders as store
from jtrades.store.recorders import Recorder, encode_values
from jtrades.store.traders import MAX_MULTIPLIER, AccountSpec, Trader

app = typer.Typer(
    help="Traders: a recorder followed on a user's broker sub-accounts, with overrides.",
    no_args_is_help=True,
)

_SPEC = re.compile(
    r"^(?P<label>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})(?::(?P<sub>[^:*\s]+))?(?:\*(?P<mult>[^*\s]+))?$"
)

IdArg = Annotated[
    int,
    typer.Argument(metavar="ID", min=1, max=2**63 - 1, help="Trader id (see `trader list`)."),
]
AccountOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--account",
        metavar="LABEL[:SUBACCOUNT][*MULT]",
        help="A login (all its sub-accounts) or one sub-account, with a size multiplier "
        "(0 < MULT ≤ 1000, default 1). Repeat for more.",
    ),
]


def parse_account_spec(text: str) -> AccountSpec:
    """``LABEL``, ``LABEL:SUBACCOUNT``, ``LABEL*0.5``, ``LABEL:SUBACCOUNT*2``."""
    m = _SPEC.match(text.strip())
    if not m:
        raise InvalidInput(f"--account {text!r}: expected LABEL[:SUBACCOUNT][*MULT]")
    multiplier = Decimal(1)
    if m.group("mult") is not None:
        multiplier = parse_amount(m.group("mult"), f"--account {text!r} multiplier")
        if not (Decimal(0) < multiplier <= MAX_MULTIPLIER):
            raise InvalidInput(f"--account {text!r}: multiplier must be > 0 and ≤ {MAX_MULTIPLIER}")
    return AccountSpec(m.group("label"), m.group("sub"), multiplier)


def trader_json(t: Trader) -> dict[str, Any]:
    return {
        "id": t.id,
        "user": t.user_name,
        "recorder": t.recorder_name,
        "enabled": t.enabled,
        "overrides": encode_values(t.overrides.values),
        "accounts": [
            {
                "account": link.account_label,
                "sub_account": link.sub_account_name,
                "sub_account_id": link.sub_account_id,
                "broker_account_id": link.broker_account_id,
                "multiplier": link.multiplier,
                "enabled": link.enabled,
            }
            for link in t.links
        ],
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    }


def _accounts_text(t: Trader) -> str:
    return ", ".join(
        f"{link.account_label}:{link.sub_account_name}*{link.multiplier}" for link in t.links
    )


# --- the recorder's filters under a trader's own ---------------------------------------------
#
# The recorder's window, cutoff, cooldown, max signals and every-Nth run on every signal before
# the trader's own (``filters.check_recorder``, then ``check_trader``, which runs only the
# trader's own values, on its own counters and its owner's clock). So both apply, and a trader's
# value looser than the recorder's has no effect: ``trader show`` says so, and ``trader create``
# and ``edit`` refuse one typed (a later ``recorder edit`` can still make a stored one looser).


def _refuse_looser(
    rec: Recorder, overrides: RiskOverrides, risk: RiskInput, trader_tz: str
) -> None:
    """Refuse the tighten-only values typed in this command that are looser than the
    recorder's: stored, they would read as what the trader trades with, and it does not.
    Only what was typed: an edit of the size is not refused for a cooldown a later
    ``recorder edit`` made moot (``trader show`` tells of that one)."""
    typed = parse_risk_input(risk)
    own = {name: v for name, v in overrides.values.items() if name in typed}
    looser = looser_overrides(
        rec.settings, own, trader_tz=trader_tz, recorder_tz=rec.owner_timezone, now=_now()
    )
    if looser:
        raise InvalidInput(
            "; ".join(looser.values())
            + ": a trader's own value can only tighten the recorder's (leave it out to inherit it)"
        )


def _now() -> datetime:
    return datetime.now(UTC)


@app.command("create")
@risk_options
def create_cmd(
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="Who trades.")],
    recorder: Annotated[
        str, typer.Option("--recorder", metavar="NAME", help="The recorder to follow.")
    ],
    account: AccountOpt = None,
    enabled: Annotated[
        bool, typer.Option("--enabled", help="Start trading at once (default: created disabled).")
    ] = False,
    json: JsonOpt = False,
    *,
    risk: RiskInput,
) -> None:
    """Create a trader (disabled unless --enabled); risk options override the recorder's.

    Example: jtrades trader create --user alice --recorder nq-trend --account apex1:APEX-01*2 --size 1
    """

    async def go(db: Database) -> Trader:
        specs = [parse_account_spec(a) for a in account or ()]
        if not specs:
            raise InvalidInput("give at least one --account LABEL[:SUBACCOUNT][*MULT]")
        async with transaction(db) as conn:
            owner, rec = await store.visible_recorder(conn, user, recorder)
            overrides = overrides_for_trader(risk, rec.settings)
            _refuse_looser(rec, overrides, risk, owner.timezone)
            return await store.create(
                conn,
                user=owner,
                recorder=rec,
                accounts=specs,
                overrides=overrides,
                enabled=enabled,
                actor=actor(),
            )

    t = run(go)
    done(
        json,
        f"trader {t.id} created for {t.user_name} following {t.recorder_name!r} "
        f"({'enabled' if t.enabled else 'disabled: enable it with `jtrades trader enable ' + str(t.id) + '`'})",
        {"trader": trader_json(t)},
    )


@app.command("list")
def list_cmd(
    user: Annotated[
        str | None, typer.Option("--user", metavar="NAME", help="Only this user's traders.")
    ] = None,
    json: JsonOpt = False,
) -> None:
    """List traders.

    Example: jtrades trader list --user alice --json
    """

    async def go(db: Database) -> list[Trader]:
        user_id = None
        if user is not None:
            user_id = (await recorder_store.user_by_name(db.pool, user)).id
        return await store.list_traders(db.pool, user_id=user_id)

    traders = run(go)
    emit(
        json,
        [trader_json(t) for t in traders],
        "traders",
        ["id", "user", "recorder", "enabled", "accounts", "overrides"],
        [
            (
                t.id,
                t.user_name,
                t.recorder_name,
                t.enabled,
                _accounts_text(t),
                " ".join(f"--{k} {v}" for k, v in describe(t.overrides.values).items()) or "—",
            )
            for t in traders
        ],
    )


@app.command("show")
def show_cmd(trader_id: IdArg, json: JsonOpt = False) -> None:
    """Show a trader: its links, its overrides and the effective settings it trades with.

    The recorder's window, cutoff, cooldown, max signals and every-Nth apply first to every
    signal: a trader's own value of one of them shows beside the recorder's, and one looser
    than the recorder's as having no effect (``--json``: "recorder_filters", "looser").

    Example: jtrades trader show 3
    """

    async def go(db: Database) -> tuple[Trader, Layers]:
        t = await store.get_trader(db.pool, trader_id)
        rec = await recorder_store.get_by_id(db.pool, t.recorder_id)
        owner = await recorder_store.user_by_name(db.pool, t.user_name)
        return t, layers(
            rec.settings,
            t.overrides,
            trader_tz=owner.timezone,
            recorder_tz=rec.owner_timezone,
            now=_now(),
        )

    t, lay = run(go)
    if json:
        data = {
            **trader_json(t),
            "effective": encode_values(lay.effective),
            "recorder_filters": encode_values(lay.recorder_filters),
            "looser": lay.looser,
        }
        emit(True, data, "", [], [])
        return
    rows: list[tuple[str, str]] = [
        ("user", t.user_name),
        ("recorder", t.recorder_name),
        ("enabled", "yes" if t.enabled else "no"),
        ("accounts", _accounts_text(t) or "none"),
    ]
    overridden = describe(t.overrides.values)
    for opt, value in describe(lay.effective).items():
        if opt in lay.shown:
            value = lay.shown[opt]
        elif opt in overridden:
            value += " (override)"
        rows.append((f"--{opt}", value))
    emit(False, None, f"trader {t.id}", ["setting", "value"], rows)


def _set_enabled(trader_id: int, enabled: bool, json: bool) -> None:
    async def go(db: Database) -> Trader:
        async with transaction(db) as conn:
            t = await store.lock(conn, trader_id)
            await store.set_enabled(conn, t, enabled, actor=actor())
            return await store.get_trader(conn, trader_id)

    t = run(go)
    done(
        json,
        f"trader {t.id} {'enabled' if enabled else 'disabled'}",
        {"trader": trader_json(t)},
    )


ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Even while its sub-accounts hold positions only its recorder's alerts close.",
    ),
]


def _refuse_held(t: Trader, held: list[tuple[str, str, str]], done_to: str) -> None:
    """Positions only this trader's alerts close, on sub-accounts it would no longer trade:
    `recorder delete` refused this, `trader delete` and `edit --account` did it silently, and
    the strategy's next close left the position open."""
    if held:
        raise Conflict(
            f"trader {t.id}'s sub-accounts hold positions only its recorder's alerts close"
            f" ({recorder_store.name_held(held)}): none could once {done_to}. Close them first,"
            " or pass --force (they stay at the broker, where halt --flatten and the protective"
            " stops still reach them)"
        )


@app.command("enable")
def enable_cmd(trader_id: IdArg, json: JsonOpt = False) -> None:
    """Start trading (the user must be approved).

    Example: jtrades trader enable 3
    """
    _set_enabled(trader_id, True, json)


@app.command("disable")
def disable_cmd(trader_id: IdArg, json: JsonOpt = False) -> None:
    """Stop taking new signals (open positions and their orders are left as they are).

    Example: jtrades trader disable 3
    """
    _set_enabled(trader_id, False, json)


@app.command("edit")
@risk_options
def edit_cmd(
    trader_id: IdArg,
    account: AccountOpt = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            metavar="OPTION",
            help="Drop an override and inherit the recorder's again (e.g. --clear tp); "
            "repeatable; 'all' drops every override.",
        ),
    ] = None,
    force: ForceOpt = False,
    json: JsonOpt = False,
    *,
    risk: RiskInput,
) -> None:
    """Change overrides (--clear OPTION to inherit again) or replace the linked accounts.

    Example: jtrades trader edit 3 --size 2 --clear tp --account apex1*0.5
    """

    async def go(db: Database) -> Trader:
        specs = [parse_account_spec(a) for a in account] if account else None
        if not risk.given() and not clear and specs is None:
            raise InvalidInput("nothing to change: give a risk option, --clear or --account")
        async with transaction(db) as conn:
            t = await store.lock(conn, trader_id)
            await recorder_store.lock_shared(conn, recorder_id=t.recorder_id)
            rec = await recorder_store.get_by_id(conn, t.recorder_id)
            overrides = overrides_for_trader(risk, rec.settings, t.overrides, clear or ())
            owner = await recorder_store.user_by_name(conn, t.user_name)
            _refuse_looser(rec, overrides, risk, owner.timezone)
            if specs is not None and not force:
                kept = {sid for sid, _mult in await store.resolve_accounts(conn, specs)}
                _refuse_held(t, await store.held_positions(conn, t, rec, kept), "unlinked from it")
            return await store.update(conn, t, overrides=overrides, accounts=specs, actor=actor())

    t = run(go)
    done(json, f"trader {t.id} updated", {"trader": trader_json(t)})


@app.command("delete")
def delete_cmd(trader_id: IdArg, force: ForceOpt = False, json: JsonOpt = False) -> None:
    """Delete a trader (its order history stays).

    Example: jtrades trader delete 3
    """

    async def go(db: Database) -> None:
        async with transaction(db) as conn:
            t = await store.lock(conn, trader_id)
            if not force:
                rec = await recorder_store.get_by_id(conn, t.recorder_id)
                _refuse_held(t, await store.held_positions(conn, t, rec), "deleted")
            await store.delete(conn, t, actor=actor())

    run(go)
    done(json, f"trader {trader_id} deleted", {"id": trader_id})
