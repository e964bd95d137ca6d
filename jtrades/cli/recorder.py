"""``jtrades recorder``: signal sources, their webhook URL and their risk settings.

The webhook token is shown once (at ``create`` and ``rotate-token``); only its SHA-256 is stored,
so a lost URL is replaced, never recovered. Visibility: with ``--as USER`` a listing shows that
user's recorders and public ones, never another user's private recorder; without it, all of them
(the operator's view).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from jtrades.cli.common import (
    JsonOpt,
    actor,
    done,
    emit,
    err,
    out,
    print_json,
    run,
    settings,
    transaction,
)
from jtrades.cli.risk_options import RiskInput, describe, risk_options, settings_for_recorder
from jtrades.cli.risk_options import settings_values as values_of
from jtrades.db import Database
from jtrades.engine.instruments import PRODUCTS, root_of
from jtrades.errors import Conflict, InvalidInput
from jtrades.security import hash_token, new_webhook_token
from jtrades.store import recorders as store
from jtrades.store import traders as trader_store
from jtrades.store.recorders import Recorder, encode_values

app = typer.Typer(
    help="Recorders: a TradingView strategy's webhook and its risk settings.",
    no_args_is_help=True,
)

# fullmatch, as users._NAME: "$" alone lets a trailing newline through to the schema's CHECK
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9_:!]{1,40}$")

# TradingView fills the placeholders; the id makes a re-sent alert a duplicate, not a new trade.
# The README's message, field for field: without the order's contracts a partial exit (sell 1 of
# a long 2) was sized by --size and closed everything; without the position size after the order
# a reversal only closes.
EXAMPLE_ALERT = """{
  "action": "{{strategy.order.action}}",
  "ticker": "{{ticker}}",
  "quantity": "{{strategy.order.contracts}}",
  "price": "{{close}}",
  "market_position": "{{strategy.market_position}}",
  "prev_market_position": "{{strategy.prev_market_position}}",
  "market_position_size": "{{strategy.market_position_size}}",
  "id": "{{strategy.order.id}}-{{timenow}}"
}"""

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="Recorder name.")]
AsOpt = Annotated[
    str | None,
    typer.Option("--as", metavar="USER", help="Only what this user may see (own + public)."),
]


def _check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidInput(
            f"recorder name {name!r}: use 1-64 letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    return name


def _check_symbol(symbol: str) -> str:
    s = symbol.strip().upper()
    # a futures symbol, as the daemon reads one (``split_symbol``): BTCUSD or AAPL passed the
    # pattern, and every alert of the recorder was then refused as no futures symbol
    if not _SYMBOL.fullmatch(s) or root_of(s) is None:
        raise InvalidInput(
            f"--symbol {symbol!r}: expected a futures ticker like MNQ1!, MNQZ6 or CME_MINI:MNQ1!"
        )
    return s


def _refuse_held_root(rec: Recorder, held: list[tuple[str, str, str]]) -> None:
    """A symbol of another root while followers hold the old one: every later alert names the
    new root, and one for the old (a close) is refused for ``symbol``, so those positions
    would stay open with no alert able to close them."""
    if held:
        raise Conflict(
            f"followers of {rec.name!r} hold {root_of(rec.symbol)} positions"
            f" ({store.name_held(held)}) that"
            " only its alerts close: no alert of the new symbol could. Close them first (a"
            " close alert of this recorder), then change the symbol"
        )


def warn_unknown_product(symbol: str) -> None:
    """A symbol of no built-in product is kept (Tradovate may list it: MBT), but said on stderr:
    a paper account cannot trade it (no tick size nor point value to fill it with), and a
    Tradovate account only if the broker knows it. Accepted silently, the first alert said so."""
    root = root_of(symbol)
    if root is None or root in PRODUCTS:  # None: refused by ``_check_symbol``
        return
    err.print(
        f"warning: {root} is not a built-in product: paper accounts cannot trade it,"
        " and Tradovate must know it"
    )


def webhook_url(token: str) -> str:
    server = settings().server
    base = server.public_url
    return f"{base.rstrip('/')}/webhook/{token}"


def recorder_json(rec: Recorder) -> dict[str, Any]:
    return {
        "id": rec.id,
        "name": rec.name,
        "user": rec.user_name,
        "symbol": rec.symbol,
        "private": rec.is_private,
        "recording_enabled": rec.recording_enabled,
        "created_at": rec.created_at,
        "updated_at": rec.updated_at,
        "settings": encode_values(values_of(rec.settings)),
    }


def _print_token(json: bool, rec: Recorder, token: str, what: str) -> None:
    url = webhook_url(token)
    if json:
        print_json(
            {
                "ok": True,
                "recorder": recorder_json(rec),
                "webhook_url": url,
                "example_alert": EXAMPLE_ALERT,
            }
        )
        return
    err.print(f"{what}. The webhook URL is shown only now; only its hash is kept.")
    out.print("Webhook URL:")
    out.print(f"  {url}")
    out.print("TradingView alert message (strategy alerts):")
    out.print(EXAMPLE_ALERT)


async def _as_user_id(db: Database, as_user: str | None) -> int | None:
    if as_user is None:
        return None
    return (await store.user_by_name(db.pool, as_user)).id


@app.command("create")
@risk_options
def create_cmd(
    name: NameArg,
    user: Annotated[str, typer.Option("--user", metavar="NAME", help="Owner of the recorder.")],
    symbol: Annotated[
        str, typer.Option("--symbol", metavar="TICKER", help="What it trades, e.g. MNQ1!.")
    ],
    private: Annotated[
        bool, typer.Option("--private/--public", help="Visible only to its owner (default).")
    ] = True,
    json: JsonOpt = False,
    *,
    risk: RiskInput,
) -> None:
    """Create a recorder and print its webhook URL (once) and an example alert message.

    Example: jtrades recorder create nq-trend --user alice --symbol MNQ1! --size 2 --tp 20:1,40 --sl 30
    """

    async def go(db: Database) -> tuple[Recorder, str]:
        _check_name(name)
        sym = _check_symbol(symbol)
        risk_settings = settings_for_recorder(risk)
        token = new_webhook_token()
        async with transaction(db) as conn:
            rec = await store.create(
                conn,
                user_name=user,
                name=name,
                symbol=sym,
                token_hash=hash_token(token),
                is_private=private,
                settings=risk_settings,
                actor=actor(),
            )
        return rec, token

    rec, token = run(go)
    warn_unknown_product(rec.symbol)
    _print_token(json, rec, token, f"recorder {rec.name!r} created for {rec.user_name}")


@app.command("list")
def list_cmd(as_user: AsOpt = None, json: JsonOpt = False) -> None:
    """List recorders: all of them, or those USER may see with --as.

    Example: jtrades recorder list --as alice
    """

    async def go(db: Database) -> list[Recorder]:
        return await store.list_visible(db.pool, as_user_id=await _as_user_id(db, as_user))

    recs = run(go)
    emit(
        json,
        [recorder_json(r) for r in recs],
        "recorders",
        ["name", "owner", "symbol", "visibility", "recording", "size", "tp", "sl"],
        [
            (
                r.name,
                r.user_name,
                r.symbol,
                "private" if r.is_private else "public",
                r.recording_enabled,
                r.settings.size,
                describe({"tp": r.settings.tp})["tp"],
                f"{r.settings.sl} {r.settings.sl_units}" if r.settings.sl else "none",
            )
            for r in recs
        ],
    )


@app.command("show")
def show_cmd(name: NameArg, as_user: AsOpt = None, json: JsonOpt = False) -> None:
    """Show a recorder and every risk setting (as the option you would type).

    Example: jtrades recorder show nq-trend --json
    """

    async def go(db: Database) -> Recorder:
        return await store.get(db.pool, name, as_user_id=await _as_user_id(db, as_user))

    rec = run(go)
    info = {
        "owner": rec.user_name,
        "symbol": rec.symbol,
        "visibility": "private" if rec.is_private else "public",
        "recording": "on" if rec.recording_enabled else "off",
    }
    rows = list(info.items())
    rows += [(f"--{k}", v) for k, v in describe(values_of(rec.settings)).items()]
    emit(json, recorder_json(rec), f"recorder {rec.name}", ["setting", "value"], rows)


@app.command("edit")
@risk_options
def edit_cmd(
    name: NameArg,
    symbol: Annotated[
        str | None, typer.Option("--symbol", metavar="TICKER", help="Change what it trades.")
    ] = None,
    json: JsonOpt = False,
    *,
    risk: RiskInput,
) -> None:
    """Change risk settings; the result is validated as a whole, followers' overrides included.

    Example: jtrades recorder edit nq-trend --tp 20:1,40:1,60 --size 3 --window 08:30-15:00
    """

    async def go(db: Database) -> tuple[Recorder, str, list[str]]:
        """The recorder as updated, the symbol it had (a new one may warrant a warning), and
        the followers that keep the units of their own distances."""
        if not risk.given() and symbol is None:
            raise InvalidInput("nothing to change: give at least one risk option or --symbol")
        async with transaction(db) as conn:
            rec = await store.lock(conn, name)
            new = settings_for_recorder(risk, rec.settings)
            kept = await trader_store.check_followers(
                conn, rec.id, new, before=rec.settings, actor=actor()
            )
            sym = _check_symbol(symbol) if symbol is not None else rec.symbol
            if root_of(sym) != root_of(rec.symbol):
                _refuse_held_root(rec, await store.followers_positions(conn, rec))
            updated = await store.update_settings(
                conn, rec, symbol=sym, settings=new, actor=actor()
            )
            return updated, rec.symbol, kept

    rec, before, kept = run(go)
    if symbol is not None and rec.symbol != before:
        warn_unknown_product(rec.symbol)
    for line in kept:
        err.print(f"warning: {line}: its values stay what they meant")
    done(json, f"recorder {rec.name!r} updated", {"recorder": recorder_json(rec)})


@app.command("private")
def private_cmd(
    name: NameArg,
    state: Annotated[str, typer.Argument(metavar="on|off", help="on = private, off = public.")],
    json: JsonOpt = False,
) -> None:
    """Make a recorder private (only its owner sees it) or public (any approved user may follow).

    Example: jtrades recorder private nq-trend off
    """
    flag = {"on": True, "off": False, "true": True, "false": False, "yes": True, "no": False}

    async def go(db: Database) -> Recorder:
        value = flag.get(state.strip().lower())
        if value is None:
            raise InvalidInput(f"private: {state!r} is not on or off")
        async with transaction(db) as conn:
            rec = await store.lock(conn, name)
            await store.set_private(conn, rec, value, actor=actor())
            return await store.get_by_id(conn, rec.id)

    rec = run(go)
    done(
        json,
        f"recorder {rec.name!r} is now {'private' if rec.is_private else 'public'}",
        {"recorder": recorder_json(rec)},
    )


@app.command("rotate-token")
def rotate_token_cmd(name: NameArg, json: JsonOpt = False) -> None:
    """Replace the webhook token: the new URL is shown once, the old one stops working.

    Example: jtrades recorder rotate-token nq-trend
    """

    async def go(db: Database) -> tuple[Recorder, str]:
        token = new_webhook_token()
        async with transaction(db) as conn:
            rec = await store.lock(conn, name)
            await store.set_token_hash(conn, rec, hash_token(token), actor=actor())
        return rec, token

    rec, token = run(go)
    _print_token(
        json,
        rec,
        token,
        f"new webhook token for {rec.name!r}; update the TradingView alert "
        "(a running daemon picks it up)",
    )


@app.command("delete")
def delete_cmd(
    name: NameArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete even while other users' traders follow it (they go with it) or its"
            " followers hold positions (no alert reaches them afterwards).",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Delete a recorder, its traders and its signal history.

    Example: jtrades recorder delete nq-trend
    """

    async def go(db: Database) -> tuple[str, int]:
        async with transaction(db) as conn:
            rec = await store.lock(conn, name)
            return rec.name, await store.delete(conn, rec, actor=actor(), force=force)

    rec_name, traders = run(go)
    done(
        json,
        f"recorder {rec_name!r} deleted ({traders} trader(s) removed)",
        {"name": rec_name, "traders_deleted": traders},
    )


def _set_recording(name: str, enabled: bool, json: bool) -> None:
    async def go(db: Database) -> Recorder:
        async with transaction(db) as conn:
            rec = await store.lock(conn, name)
            await store.set_recording(conn, rec, enabled, actor=actor())
            return await store.get_by_id(conn, rec.id)

    rec = run(go)
    done(
        json,
        f"recording {'enabled' if enabled else 'disabled'} for {rec.name!r}"
        + ("" if enabled else ": its signals are logged and rejected"),
        {"recorder": recorder_json(rec)},
    )


@app.command("enable-recording")
def enable_recording_cmd(name: NameArg, json: JsonOpt = False) -> None:
    """Accept this recorder's signals again.

    Example: jtrades recorder enable-recording nq-trend
    """
    _set_recording(name, True, json)


@app.command("disable-recording")
def disable_recording_cmd(name: NameArg, json: JsonOpt = False) -> None:
    """Keep logging this recorder's signals but reject them (no orders).

    Example: jtrades recorder disable-recording nq-trend
    """
    _set_recording(name, False, json)
