"""``jtrades accounts``: broker logins (demo, live, paper) and their sub-accounts.

Passwords come only from standard input (never argv, which other users can read in ``ps``), are
encrypted before they reach the database, and are never printed again.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import structlog
import typer

from jtrades.cli.common import (
    SECRET_READER,
    JsonOpt,
    actor,
    done,
    emit,
    fail,
    read_secret_stdin,
    refuse_stray_args,
    run,
    run_plain,
    settings,
    transaction,
    zoned,
)
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.errors import InvalidInput
from jtrades.security import load_secret_box
from jtrades.store import accounts as store
from jtrades.store import audit, sealed, users
from jtrades.store import login_proofs as proofs
from jtrades.store.accounts import Account, SubAccountRow, SyncResult

log = structlog.get_logger(__name__)

app = typer.Typer(
    help="Broker accounts: add, sync, list, add-sub, set-password, remove.",
    no_args_is_help=True,
)


class EnvChoice(StrEnum):
    demo = "demo"
    live = "live"
    paper = "paper"


LabelArg = Annotated[str, typer.Argument(help="Account label (letters, digits, _ . -).")]
COLUMNS = ["label", "user", "env", "username", "password", "oauth", "sub-accounts", "halted",
           "synced"]  # fmt: skip


def _subs_cell(subs: tuple[SubAccountRow, ...]) -> str:
    return ", ".join(
        f"{s.name} ({s.broker_account_id})" + ("" if s.active else " inactive")
        + (" halted" if s.halted else "")
        for s in subs
    )  # fmt: skip


def _row(a: Account) -> list[Any]:
    return [
        a.label, a.user_name, a.env, a.username,
        "set" if a.has_password else None, "set" if a.has_oauth else None,
        _subs_cell(a.sub_accounts) or None, a.halted, a.synced_at,
    ]  # fmt: skip


@app.command("add", context_settings=SECRET_READER)
def add(
    ctx: typer.Context,
    label: LabelArg,
    user: Annotated[str, typer.Option("--user", help="Owner (a registered user).")],
    env_choice: Annotated[EnvChoice, typer.Option("--env", help="Broker environment.")],
    username: Annotated[
        str | None, typer.Option("--username", help="Tradovate login (not for paper).")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the Tradovate password from standard input."),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Add a broker login for a user (password encrypted at rest; paper needs no credentials).

    A paper account gets one sub-account named after its label.
    For demo and live, run `accounts sync LABEL` or `accounts add-sub` next.

    Example: jtrades accounts add al-demo --user alice --env demo --username al --password-stdin
    """
    refuse_stray_args(ctx)
    env = env_choice.value
    run_plain(lambda: store.check_label(label))
    run_plain(lambda: store.check_new(env, username, password_stdin))
    password = read_secret_stdin("password") if password_stdin else None

    async def go(db: Database) -> tuple[Account, str | None]:
        sealed = box = None
        if password is not None:
            box = load_secret_box(settings(), create=True)
            sealed = box.seal(password, store.password_context(env, username))
        log.debug(
            "accounts.add",
            label=label,
            env=env,
            username=username,
            password_set=password is not None,
            key_id=sealed.key_id if sealed else None,
        )
        async with transaction(db) as c:
            owner = await users.get(c, user)
            account = await store.create(
                c, user_id=owner.id, label=label, env=env, username=username, password=sealed
            )
            refusal = None
            if box is not None:  # a login is one password: another one is refused, unwritten
                differ = await proofs.login_mismatches(c, box, account.id)
                proofs.refuse_mismatch(env, account.username, differ)
                await proofs.vouch_password(c, box, account.id)  # a proven row's: proven
                refusal = await proofs.daemon_refusal(c, box, account.id)
            elif env != "paper":  # new, so not connected with OAuth yet either
                refusal = proofs.no_credential(account.label)
            await audit.record(
                c,
                actor(),
                "accounts.add",
                account.label,
                {"user": owner.name, "env": env, "username": username,
                 "password_set": sealed is not None,
                 "key_id": sealed.key_id if sealed else None, "refused": refusal is not None},
            )  # fmt: skip
        return account, refusal

    account, refusal = run(go)
    subs = f", sub-account {account.sub_accounts[0].name}" if account.sub_accounts else ""
    line = f"added {account.env} account {account.label} for {account.user_name}{subs}"
    if refusal is not None:
        line += f"; but the daemon will not use it yet: {refusal}"
    done(json, line, {"account": account, "usable": refusal is None, "refusal": refusal})


@app.command("set-password", context_settings=SECRET_READER)
def set_password(
    ctx: typer.Context,
    label: LabelArg,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read the new Tradovate password from standard input."
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Replace the stored Tradovate password of a demo/live account (after a password change).

    Nothing is sent to Tradovate here. A running daemon whose session of the login failed (the
    old password refused) logs in with the new one on its next reconciliation pass
    (trading.reconcile_interval_s), without a restart. An account proven one of the login's
    stays one; a new account's password proves nothing until a session or `accounts sync`
    with it succeeds, or another proven account of the login holds the same one.

    Example: jtrades accounts set-password alice-demo --password-stdin < tv-password.txt
    """
    refuse_stray_args(ctx)
    if not password_stdin:
        fail(
            "give the new password on standard input with --password-stdin (never as an"
            " argument: other users can read a command line)"
        )
    run_plain(lambda: store.check_label(label))
    password = read_secret_stdin("password")

    async def go(db: Database) -> tuple[Account, tuple[str, ...], str | None]:
        async with transaction(db) as c:
            account = await store.get(c, label)
            context = store.new_password_context(account)
            box = load_secret_box(settings(), create=True)
            sealed = box.seal(password, context)
            log.debug(
                "accounts.set_password",
                label=account.label,
                env=account.env,
                username=account.username,
                key_id=sealed.key_id,
            )
            updated = await store.set_password(c, account, sealed)
            await proofs.vouch_password(c, box, account.id)  # a proven row's password: proven
            differ = await proofs.login_mismatches(c, box, account.id)
            # what the daemon itself will say of the login (``login_credential``): the other
            # accounts all OAuth-connected leave a password nothing to be checked against
            refusal = None if differ else await proofs.daemon_refusal(c, box, account.id)
            await audit.record(
                c,
                actor(),
                "accounts.set_password",
                account.label,
                {"user": account.user_name, "env": account.env, "username": account.username,
                 "had_password": account.has_password, "key_id": sealed.key_id,
                 "same_login_differs": list(differ), "refused": refusal is not None},
            )  # fmt: skip
        return updated, differ, refusal

    account, differ, refusal = run(go)
    line = (
        f"stored a new password for {account.env} account {account.label} (login"
        f" {account.username}); a running daemon whose session of the login failed logs in"
        " with it on its next reconciliation pass"
    )
    if differ:
        line += (
            f"; {', '.join(differ)} of the same login still hold(s) another password: set it"
            " there too (a login's accounts must hold the same one)"
        )
    if refusal is not None:
        line += f"; but the daemon will not use it yet: {refusal}"
    done(
        json,
        line,
        {"account": account, "same_login_differs": list(differ), "usable": refusal is None,
         "refusal": refusal},
    )  # fmt: skip


@app.command("list")
def list_cmd(
    user: Annotated[str | None, typer.Option("--user", help="Only this user's accounts.")] = None,
    json: JsonOpt = False,
) -> None:
    """List broker accounts and their sub-accounts (secrets are never shown).

    Example: jtrades accounts list --user alice --json
    """

    async def go(db: Database) -> tuple[list[Account], dict[int, str]]:
        owner_id = (await users.get(db.pool, user)).id if user else None
        found = await store.list_accounts(db.pool, user_id=owner_id)
        return found, {u.id: u.timezone for u in await users.list_users(db.pool)}

    found, zones = run(go)
    # each login's times in its owner's zone, named (the JSON keeps them as stored, with offset)
    title, columns, cells = zoned(
        [{"timezone": zones.get(a.user_id)} for a in found],
        "accounts",
        COLUMNS,
        [_row(a) for a in found],
        times=[],
    )
    emit(json, found, title, columns, cells, empty="no accounts")


@app.command("remove")
def remove(
    label: LabelArg,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Remove it even while it holds positions or orders at the broker (they stay"
            " there, out of jtrades' reach).",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Remove a broker account, its sub-accounts and their order history.

    Refused while an enabled trader trades on it (disable the trader first), and while it
    holds positions or working orders as last seen at the broker (flatten first, or --force).

    Example: jtrades accounts remove alice-demo
    """

    async def go(db: Database) -> Account:
        async with transaction(db) as c:
            account = await store.remove(c, label, force=force)
            await audit.record(
                c,
                actor(),
                "accounts.remove",
                account.label,
                {"user": account.user_name, "env": account.env,
                 "sub_accounts": [s.name for s in account.sub_accounts]},
            )  # fmt: skip
        return account

    account = run(go)
    done(json, f"removed account {account.label}", {"account": account.label})


@app.command("add-sub")
def add_sub(
    label: LabelArg,
    broker_id: Annotated[
        int,
        typer.Option(
            "--id", help="The broker's account id (Tradovate accountId).", min=1, max=2**63 - 1
        ),
    ],
    name: Annotated[str, typer.Option("--name", help="The broker's account name (accountSpec).")],
    json: JsonOpt = False,
) -> None:
    """Record a sub-account by hand (paper accounts, or when sync is not possible).

    For a demo/live login that has been synced (by any of its accounts), only an id the sync
    stored is taken; a login never synced takes any id, unverified (sync it to check).

    Example: jtrades accounts add-sub alice-demo --id 123456 --name DEMO123456
    """

    async def go(db: Database) -> store.AddedSub:
        async with transaction(db) as c:
            added = await store.add_sub(c, label, broker_id, name)
            await audit.record(
                c,
                actor(),
                "accounts.add_sub",
                label,
                {"id": broker_id, "name": name, "verified": added.verified},
            )
        return added

    added = run(go)
    sub = added.sub
    line = f"added sub-account {sub.name} ({sub.broker_account_id}) to {label}"
    if added.unverified is not None:
        line += f" (unverified: {added.unverified})"
    done(json, line, {"sub": sub, "verified": added.verified})


async def sync_account(db: Database, cfg: Settings, label: str) -> tuple[Account, SyncResult]:
    """Log in to Tradovate as the account's login, list its sub-accounts and store them.

    Sub-accounts the broker no longer lists are kept but marked inactive. The login reuses (and
    stores) the daemon's token for that login, so a sync normally spends no login, when the
    token is this account's to use (its OAuth connection, or the password the token's login
    used); else it logs in with the account's password. A login that succeeded proves the
    password (``proofs.prove_password``), as does a proven account of the login holding the
    same one (``proofs.vouch_password``): the row is one of its login's accounts from then on.
    """
    account = await store.get(db.pool, label)
    if account.env == "paper":
        raise InvalidInput(
            f"{account.label} is a paper account: there is no broker to sync "
            "(use `jtrades accounts add-sub`)"
        )
    if not account.username:
        raise InvalidInput(f"{account.label} has no Tradovate username")
    # Imported here: only sync needs the HTTP client stack, every other command starts faster.
    from jtrades.broker.tradovate.accounts import list_login
    from jtrades.broker.tradovate.auth import AccessToken

    box = load_secret_box(cfg, create=not account.has_password)
    await proofs.vouch_password(db.pool, box, account.id)
    creds = await proofs.login_credential(db.pool, box, account.id)
    log.debug("accounts.sync.login", label=account.label, env=account.env, username=creds.username)
    oauth = None
    if creds.oauth_token is not None and creds.oauth_expires_at is not None:
        oauth = AccessToken(creds.oauth_token, creds.oauth_expires_at)
    listing = await list_login(
        cfg,
        account.env,
        account.username,
        creds.password,
        oauth_token=oauth,
        db=db.pool,
        cipher=box,
    )
    found = listing.subs
    async with transaction(db) as c:
        if creds.password is not None and listing.password_proven:
            await proofs.prove_password(c, box, account.id, creds.password)
        result = await store.store_synced_subs(
            c, account.id, [(s.account_id, s.name) for s in found]
        )
        await audit.record(
            c,
            actor(),
            "accounts.sync",
            account.label,
            {"added": [s.name for s in result.added], "kept": [s.name for s in result.kept],
             "deactivated": [s.name for s in result.deactivated]},
        )  # fmt: skip
    return await store.get(db.pool, account.label), result


@app.command("sync")
def sync(label: LabelArg, json: JsonOpt = False) -> None:
    """Log in to Tradovate and record the login's sub-accounts (ids and names).

    Sub-accounts that disappeared at the broker are kept, marked inactive.

    Example: jtrades accounts sync alice-demo
    """

    async def go(db: Database) -> tuple[Account, SyncResult]:
        return await sync_account(db, settings(), label)

    account, result = run(go)
    parts = [
        f"{len(result.added)} new",
        f"{len(result.kept)} unchanged",
        f"{len(result.deactivated)} now inactive",
    ]
    done(
        json,
        f"synced {account.label}: " + ", ".join(parts) + " — " + _subs_cell(account.sub_accounts),
        {"account": account, "added": result.added, "kept": result.kept,
         "deactivated": result.deactivated},
    )  # fmt: skip


@app.command("connect")
def connect(label: LabelArg, json: JsonOpt = False) -> None:
    """Connect a demo/live account with Tradovate OAuth: prints the sign-in link to open.

    The person signs in at Tradovate, which redirects to the daemon's /oauth/callback
    (tradovate.oauth_redirect_url); the daemon stores the token, encrypted. The link is valid
    for 15 minutes.

    Example: jtrades accounts connect alice-live
    """
    from datetime import UTC, datetime

    from jtrades.oauth import authorize_url

    async def go(db: Database) -> str:
        cfg = settings()
        account = await store.get(db.pool, label)
        if account.env == "paper":
            raise InvalidInput(f"{account.label} is a paper account: there is no broker to connect")
        if not cfg.tradovate.oauth_client_id or not cfg.tradovate.oauth_redirect_url:
            raise InvalidInput(
                "set tradovate.oauth_client_id and tradovate.oauth_redirect_url first"
            )
        box = load_secret_box(cfg, create=True)
        url = authorize_url(cfg.tradovate, box, account.id, datetime.now(UTC))
        async with db.pool.acquire() as c:
            await audit.record(c, actor(), "accounts.connect", account.label, {})
        return url

    url = run(go)
    if json:
        done(json, "", {"label": label, "url": url})
    else:
        typer.echo(url)
        done(False, f"open this link to connect {label}; the daemon's /oauth/callback finishes it")


@app.command("reseal")
def reseal(json: JsonOpt = False) -> None:
    """Re-encrypt every stored credential under the current secret key (after a rotation).

    Rotate: put a new key first in secrets.key_file (keep the old line below it), run this,
    then delete the old line. All or nothing: a credential that does not open stops it.

    Example: jtrades accounts reseal
    """

    async def go(db: Database) -> tuple[sealed.ResealReport, str]:
        box = load_secret_box(settings(), create=False)
        async with transaction(db) as c:
            report = await sealed.reseal(c, box)
            await audit.record(
                c,
                actor(),
                "accounts.reseal",
                report.key_id,
                {"passwords": report.passwords, "oauth_tokens": report.oauth_tokens,
                 "access_tokens": report.access_tokens,
                 "access_tokens_dropped": report.access_tokens_dropped,
                 "keys_in_use": report.keys_in_use},
            )  # fmt: skip
        return report, box.source

    report, source = run(go)
    done(json, _reseal_text(report, source), {"reseal": report})


def _reseal_text(r: sealed.ResealReport, source: str) -> str:
    moved = [
        f"{n} {what}{'' if n == 1 else 's'}"
        for n, what in (
            (r.passwords, "password"),
            (r.oauth_tokens, "OAuth token"),
            (r.access_tokens, "access token"),
        )
        if n
    ]
    lines = [
        f"re-sealed {', '.join(moved)} under key {r.key_id}" if moved else "nothing to re-seal"
    ]
    if r.access_tokens_dropped:
        lines.append(
            f"dropped {r.access_tokens_dropped} cached access token(s) that no longer open "
            "(the daemon logs in again)"
        )
    others = r.others_in_use
    if others:
        keys = ", ".join(f"{k} ({n})" for k, n in sorted(others.items()))
        lines.append(
            f"still sealed under other keys: {keys}; keep their lines in {source} (a daemon "
            "started with the old key order writes under it: restart it, then reseal again)"
        )
    elif r.keys_in_use:
        lines.append(
            f"every stored secret is under key {r.key_id}: other keys in {source} can be removed"
        )
    return "\n".join(lines)
