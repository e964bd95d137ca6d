"""Broker logins (accounts) and their sub-accounts.

Passwords are sealed with ``jtrades.security.SecretBox`` before they reach this module and come
back out only through ``load_credentials`` (for the daemon's login and ``accounts sync``); every
other read returns flags (``has_password``), never ciphertexts. Each ciphertext is bound to its
login (``password_context``), so a value copied onto another row does not decrypt.

Which rows hold a credential of their login, and which password a login uses, is
``store.login_proofs``.

A paper account gets one sub-account named after its label, whose broker id is the account's
own id (there is no broker to ask).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from jtrades.errors import Conflict, InvalidInput, NotFound
from jtrades.queries import q
from jtrades.security import Sealed, SecretBox
from jtrades.store import Executor, translate_errors
from jtrades.store import flatten as flatten_store

Env = Literal["demo", "live", "paper"]
ENVS: tuple[str, ...] = ("demo", "live", "paper")
# fullmatch, as users._NAME: "$" alone lets a trailing newline through to the schema's CHECK
_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class SubAccountRow:
    """A broker account under a login: ``broker_account_id`` and ``name`` are Tradovate's."""

    id: int
    account_id: int
    broker_account_id: int
    name: str
    active: bool
    halted: bool


@dataclass(frozen=True, slots=True)
class Account:
    """A login as everyone but the credential loader sees it: no secrets, only whether set."""

    id: int
    user_id: int
    user_name: str
    label: str
    env: str
    username: str | None
    has_password: bool
    has_oauth: bool
    oauth_expires_at: datetime | None
    halted: bool
    created_at: datetime
    synced_at: datetime | None
    sub_accounts: tuple[SubAccountRow, ...] = ()


@dataclass(frozen=True, slots=True)
class Credentials:
    """Decrypted login material (already registered with the log redactor)."""

    account_id: int
    label: str
    env: str
    username: str | None
    password: str | None
    oauth_token: str | None
    oauth_expires_at: datetime | None
    # the row proved it holds a credential of its login (``prove_password``, ``vouch_password``)
    password_proven: bool = False

    def __repr__(self) -> str:  # never print a password, even by accident in a traceback
        return f"Credentials(label={self.label!r}, env={self.env!r}, username={self.username!r})"


def password_context(env: str, username: str | None) -> str:
    """Associated data binding a sealed password to its login."""
    return f"accounts.password:{env}:{(username or '').lower()}"


def oauth_context(env: str, username: str | None) -> str:
    return f"accounts.oauth:{env}:{(username or '').lower()}"


def check_label(label: str) -> str:
    if not _LABEL.fullmatch(label):
        raise InvalidInput(
            f"account label {label!r} must start with a letter or digit and use only letters, "
            "digits, '_', '.', '-' (at most 64 characters)"
        )
    return label


def check_new(env: str, username: str | None, has_password: bool) -> None:
    """What each environment needs: a broker login for demo/live, nothing for paper."""
    if env not in ENVS:
        raise InvalidInput(f"env must be one of {', '.join(ENVS)}, not {env!r}")
    if env == "paper":
        # a username was stored and shown as if it were used, though no paper order logs in
        if username is not None:
            raise InvalidInput("paper accounts need no --username (nothing is sent to a broker)")
        if has_password:
            raise InvalidInput("paper accounts need no password (nothing is sent to a broker)")
    elif not username:
        raise InvalidInput(f"a {env} account needs --username (the Tradovate login)")


def _sub(row: Any) -> SubAccountRow:
    return SubAccountRow(**{k: row[k] for k in SubAccountRow.__dataclass_fields__})


async def _with_subs(ex: Executor, rows: Sequence[Any]) -> list[Account]:
    accounts = [Account(**dict(r)) for r in rows]
    if not accounts:
        return []
    with translate_errors():
        sub_rows = await ex.fetch(q("accounts.subs"), [a.id for a in accounts])
    by_account: dict[int, list[SubAccountRow]] = {}
    for r in sub_rows:
        by_account.setdefault(r["account_id"], []).append(_sub(r))
    return [replace(a, sub_accounts=tuple(by_account.get(a.id, ()))) for a in accounts]


async def create(
    ex: Executor,
    *,
    user_id: int,
    label: str,
    env: str,
    username: str | None,
    password: Sealed | None,
) -> Account:
    """Insert a login (run in a transaction); a paper account also gets its one sub-account."""
    check_label(label)
    check_new(env, username, password is not None)
    with translate_errors():
        account_id: int = await ex.fetchval(
            q("accounts.insert"),
            user_id,
            label,
            env,
            username,
            password.ciphertext if password else None,
            password.key_id if password else None,
        )
        if env == "paper":
            await ex.fetchrow(q("accounts.insert_sub"), account_id, account_id, label)
    return await get(ex, label)


async def get(ex: Executor, label: str) -> Account:
    """The account by label (any case), with its sub-accounts; ``NotFound`` otherwise."""
    with translate_errors():
        row = await ex.fetchrow(q("accounts.by_label"), label)
    if row is None:
        raise NotFound(f"no account labelled {label!r}")
    return (await _with_subs(ex, [row]))[0]


async def list_accounts(ex: Executor, *, user_id: int | None = None) -> list[Account]:
    with translate_errors():
        rows = await ex.fetch(q("accounts.list"), user_id)
    return await _with_subs(ex, rows)


async def open_exposure(ex: Executor, account_ids: Sequence[int]) -> list[str]:
    """What these logins still hold at the broker as last mirrored (positions, working
    orders) and their orders whose outcome is still open, one line each (at most 20)."""
    with translate_errors():
        rows = await ex.fetch(q("accounts.open_exposure"), list(account_ids))
    return [
        " ".join(str(v) for v in (f"{r['label']}:{r['sub_name']}", *tuple(r)[2:]) if v is not None)
        for r in rows
    ]


def refuse_exposure(held: list[str], what: str, flatten: str) -> None:
    """Refuse to delete ``what`` while ``held`` is not empty: once its rows are gone, its
    positions and orders go on at the broker out of reach of ``halt --flatten``, the
    protective stops and reconciliation."""
    if held:
        raise Conflict(
            f"{what} still holds, as last seen at the broker: {'; '.join(held)}. Flatten first"
            f" ({flatten}), or pass --force to delete it anyway (what it holds stays at the"
            " broker, out of jtrades' reach)"
        )


async def remove(ex: Executor, label: str, *, force: bool = False) -> Account:
    """Delete a login and its sub-accounts (and the login's stored token when no other account
    names it); refused while an enabled trader trades on it, and (unless ``force``) while it
    holds positions or orders."""
    account = await get(ex, label)
    with translate_errors():
        busy = [r["id"] for r in await ex.fetch(q("accounts.enabled_traders"), account.id)]
    if busy:
        ids = ", ".join(str(i) for i in busy)
        raise Conflict(
            f"account {account.label} is used by enabled trader(s) {ids}; disable them first"
        )
    if not force:
        refuse_exposure(
            await open_exposure(ex, [account.id]),
            f"account {account.label}",
            f"jtrades halt --account {account.label} --flatten",
        )
    with translate_errors():
        await ex.fetchval(q("accounts.delete"), account.id)
    await forget_unnamed_tokens(ex)
    # its flattens, keyed by label, would reach the next login given it (another user's)
    await flatten_store.cancel_for_labels(
        ex, [account.label], datetime.now(UTC), f"account {account.label} removed"
    )
    return account


async def forget_unnamed_tokens(ex: Executor) -> None:
    """Delete the stored tokens of logins no account names any more; run after deleting
    accounts, in the same transaction. A token outlives nothing that could vouch for it:
    ``login_credential`` proves an account's password against the login's other accounts, and
    with none left, the next account naming the login (another user's, any password) was
    handed the token and listed, and could trade, the owner's sub-accounts."""
    with translate_errors():
        await ex.execute(q("accounts.forget_unnamed_tokens"))


@dataclass(frozen=True, slots=True)
class AddedSub:
    """A sub-account recorded by hand, and whether its login's sync vouched for its id
    (None: a paper login, which numbers its own); when not, why (``unverified``)."""

    sub: SubAccountRow
    verified: bool | None
    unverified: str | None = None


def check_listed(
    account: Account, broker_account_id: int, synced: bool, listed: Sequence[int]
) -> bool:
    """Whether a demo/live login's last sync listed ``broker_account_id`` (False: never synced,
    so unknown); ``InvalidInput`` when it was synced and did not list it.

    The engine takes a login's sub-account for the account at the broker with that id under
    that login (``engine.config_cache.account_key``), and the login acts on it: a typed id of
    another login's account, stored unchecked, was a row the login could not even read, and
    until the key named the login, mallory's `halt --account --flatten` reached alice's."""
    if synced and broker_account_id not in listed:
        raise InvalidInput(
            f"{account.env} login {account.username} does not list an account with id"
            f" {broker_account_id} (as its last `jtrades accounts sync` stored): not added; if"
            f" the account was opened since, run `jtrades accounts sync {account.label}`"
        )
    return synced


async def add_sub(ex: Executor, label: str, broker_account_id: int, name: str) -> AddedSub:
    """Record a sub-account by hand (paper accounts, or before a sync is possible): for a
    demo/live login, an id its sync stored (``check_listed``); run in a transaction."""
    if broker_account_id < 1:
        raise InvalidInput("the sub-account id must be a positive integer")
    if not name.strip():
        raise InvalidInput("the sub-account name must not be empty")
    account = await get(ex, label)
    verified: bool | None = None
    if account.env != "paper":
        with translate_errors():
            seen = await ex.fetchrow(q("accounts.login_listed"), account.id)
        if seen is None:  # removed since `get`
            raise NotFound(f"no account labelled {label!r}")
        verified = check_listed(account, broker_account_id, seen["synced"], seen["listed"])
    with translate_errors():
        row = await ex.fetchrow(q("accounts.insert_sub"), account.id, broker_account_id, name)
    return AddedSub(_sub(row), verified, None if verified is not False else unverified(account))


def unverified(account: Account) -> str:
    """Why an id recorded on a demo/live login was not checked: what to do about it. A row
    that holds no credential of its login proves nothing of it (``accounts.login_listed``),
    and told it had never been synced, its user synced another row instead, in vain."""
    if not (account.has_password or account.has_oauth or account.synced_at):
        return (
            f"{account.label} holds no password or OAuth connection of login"
            f" {account.username}; add one (`jtrades accounts set-password {account.label}`"
            f" or `jtrades accounts connect {account.label}`), then `jtrades accounts sync"
            f" {account.label}` checks it lists this id"
        )
    return (
        f"the login was never synced; run `jtrades accounts sync {account.label}` to check it"
        " lists this id"
    )


def new_password_context(account: Account) -> str:
    """The context a new password for ``account`` is sealed under (``password_context``);
    ``InvalidInput`` for an account that takes none: a paper one (no broker to log in to) or
    one with no Tradovate username (its password would be bound to no login)."""
    if account.env == "paper":
        raise InvalidInput(f"{account.label} is a paper account: it has no broker password to set")
    if not account.username:
        raise InvalidInput(
            f"{account.label} has no Tradovate username, so no login to set a password for"
            " (remove it and add it again with --username)"
        )
    return password_context(account.env, account.username)


async def set_password(ex: Executor, account: Account, password: Sealed) -> Account:
    """Replace the stored password of ``account`` (as read by ``get`` in the same transaction)
    with ``password``, sealed under ``new_password_context(account)``.

    ``Conflict`` when the row no longer names that login (removed, or added again under the
    label, meanwhile): the ciphertext would not open there. The daemon's broker registry sees
    the change on its next pass and replaces a session of the login that failed for good. The
    row's proof stays (see the module's docstring); an unproven row is proven by the login's
    proven rows if it now holds their password (``vouch_password``, run by the caller)."""
    new_password_context(account)
    with translate_errors():
        row = await ex.fetchrow(
            q("accounts.set_password"),
            account.id,
            account.env,
            account.username,
            password.ciphertext,
            password.key_id,
        )
    if row is None:
        raise Conflict(f"account {account.label} changed meanwhile; run the command again")
    return await get(ex, account.label)


@dataclass(frozen=True, slots=True)
class SyncResult:
    added: tuple[SubAccountRow, ...]
    kept: tuple[SubAccountRow, ...]
    deactivated: tuple[SubAccountRow, ...]


async def store_synced_subs(
    ex: Executor, account_id: int, found: Sequence[tuple[int, str]]
) -> SyncResult:
    """Make the stored sub-accounts match the broker's list (run in a transaction).

    Sub-accounts the broker no longer lists are deactivated, not deleted: traders' links and
    history stay, and nothing is sent to them while inactive. A row whose name the broker now
    gives another id is renamed "name (id N)" first (``accounts.free_sub_names``).
    """
    added: list[SubAccountRow] = []
    kept: list[SubAccountRow] = []
    with translate_errors():
        await ex.execute(
            q("accounts.free_sub_names"),
            account_id,
            [b for b, _ in found],
            [name for _, name in found],
        )
        for broker_id, name in found:
            row: Any = await ex.fetchrow(q("accounts.upsert_sub"), account_id, broker_id, name)
            (added if row["inserted"] else kept).append(_sub(row))
        gone = await ex.fetch(
            q("accounts.deactivate_missing_subs"), account_id, [b for b, _ in found]
        )
        await ex.execute(q("accounts.mark_synced"), account_id)
    return SyncResult(tuple(added), tuple(kept), tuple(_sub(r) for r in gone))


async def existing_ids(ex: Executor, ids: Sequence[int]) -> set[int]:
    """Which of ``ids`` are still stored accounts (``accounts remove`` deletes the row)."""
    with translate_errors():
        rows = await ex.fetch(q("accounts.existing_ids"), list(ids))
    return {int(r["id"]) for r in rows}


async def load_credentials(ex: Executor, box: SecretBox, account_id: int) -> Credentials:
    """Decrypt a login's password and OAuth token (``SecretKeyMissing`` names a lost key id)."""
    with translate_errors():
        row = await ex.fetchrow(q("accounts.credentials"), account_id)
    if row is None:
        raise NotFound(f"no account with id {account_id}")
    password = oauth = None
    if row["password_enc"] is not None:
        password = box.open(
            row["password_enc"],
            row["password_key_id"],
            password_context(row["env"], row["username"]),
        )
    if row["oauth_token_enc"] is not None:
        oauth = box.open(
            row["oauth_token_enc"], row["oauth_key_id"], oauth_context(row["env"], row["username"])
        )
    return Credentials(
        row["id"], row["label"], row["env"], row["username"], password, oauth,
        row["oauth_expires_at"], bool(row["password_proven"]) and password is not None,
    )  # fmt: skip
