"""Whether an account row holds a credential of its Tradovate login, and which password the
login uses: the proofs behind "rows of one login are one account at the broker".

A stored password proves nothing of its login until Tradovate accepted it (a login or session
with it succeeded: ``prove_password``) or a row of the login already proven stores the very
same one (``vouch_password``): `accounts set-password` stores any password, so a row another
user typed with the owner's username and a guess was merged with the owner's rows and refused
the owner's own login. Only a proven row (or an OAuth connection) is one of its login's
accounts (``engine.config_cache``, ``accounts.login_listed``), and its password is what the
login's other passwords are compared with. The proof is the row's and sticks: a later
set-password keeps it (a new password differing from the login's is refused the login by
``login_credential``); cleared by each password write, the rows of a shared login changed
while the daemon ran were never proven again and came apart at the broker.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from typing import Any

from jtrades.errors import InvalidInput, SecretKeyMissing
from jtrades.queries import q
from jtrades.security import SecretBox
from jtrades.store import Executor, translate_errors
from jtrades.store.accounts import Credentials, load_credentials, password_context


async def login_mismatches(ex: Executor, box: SecretBox, account_id: int) -> tuple[str, ...]:
    """Labels of the other proven accounts of this account's login whose password is not this
    one's (or does not open): ``login_credential`` refuses an unproven password that differs.
    An unproven password is compared with nothing: another user's guess must not block the
    owner's rows. OAuth-only accounts hold none."""
    mine = await load_credentials(ex, box, account_id)
    with translate_errors():
        others = await ex.fetch(q("accounts.same_login"), account_id)
    differ: list[str] = []
    for other in others:
        if not other["password_proven"]:
            continue
        try:
            theirs = await load_credentials(ex, box, other["id"])
        except SecretKeyMissing:
            differ.append(other["label"])
            continue
        if theirs.password is None or mine.password is None:
            continue
        if not same_password(theirs.password, mine.password):
            differ.append(theirs.label)
    return tuple(differ)


def refuse_mismatch(env: str, username: str | None, differ: Sequence[str]) -> None:
    """Refuse (``InvalidInput``) a password the login's accounts ``differ`` do not hold
    (``login_mismatches``: their proven passwords), for `accounts add`: stored, the
    daemon would refuse it the login (``login_credential``)."""
    if differ:
        raise InvalidInput(
            f"not added: {', '.join(differ)} of login {username} ({env}) hold(s) another password"
            " proven for that login (or one the secret key does not open), and a login's"
            " accounts share its token, so they must hold the same one: give that password, or"
            " change theirs first with `jtrades accounts set-password`"
        )


def no_credential(label: str) -> str:
    """Why the daemon will not use a demo/live account holding no credential of its login."""
    return (
        f"{label} has no password and is not connected with OAuth: give it the"
        " login's password (accounts set-password) or connect it (accounts connect)"
    )


async def daemon_refusal(ex: Executor, box: SecretBox, account_id: int) -> str | None:
    """Why the daemon will not use this account's login (``login_credential``), or None."""
    try:
        await login_credential(ex, box, account_id)
    except InvalidInput as exc:
        return str(exc)
    return None


def same_password(a: str, b: str) -> bool:
    """Whether two passwords are one (constant time: never a timing oracle on a password)."""
    return hmac.compare_digest(a.encode(), b.encode())


def vouches(other: Any) -> bool:
    """Whether a row of the login (an ``accounts.same_login`` row) vouches for a password equal
    to the one it stores: its own is proven, or it is connected with OAuth (proof of the login,
    checked when stored) and stores one beside. An unproven password alone vouches for nothing
    (two rows of one made-up password agreed), and an OAuth-only row for no password."""
    return bool(other["password_proven"] or (other["has_oauth"] and other["has_password"]))


async def unproven_passwords(ex: Executor, account_ids: Sequence[int]) -> list[int]:
    """Which of these demo/live rows hold a password not proven yet (the registry's pass)."""
    with translate_errors():
        rows = await ex.fetch(q("accounts.unproven_passwords"), list(account_ids))
    return [r["id"] for r in rows]


async def prove_password(ex: Executor, box: SecretBox, account_id: int, password: str) -> bool:
    """Record that ``password`` proves this account's login (Tradovate accepted it in a session
    or login, or a proven row of the login stores it: ``vouch_password``), if the account
    still holds that very password (a set-password meanwhile stored one nobody has tried);
    whether it was recorded now."""
    with translate_errors():
        row = await ex.fetchrow(q("accounts.credentials"), account_id)
    if row is None or row["password_enc"] is None or row["password_proven"]:
        return False
    held = box.open(
        row["password_enc"], row["password_key_id"], password_context(row["env"], row["username"])
    )
    if not same_password(held, password):
        return False
    with translate_errors():
        done = await ex.fetchval(q("accounts.prove_password"), account_id, row["password_enc"])
    return done is not None


async def vouch_password(ex: Executor, box: SecretBox, account_id: int) -> bool:
    """Prove this row's password, with no login, when a row of its login already proven stores
    the very same one (``vouches``); whether it was proven now. After the upgrade, a row with
    both OAuth and the password opened the session with OAuth, nothing proved its password, and
    another user's row with the same, right, one was refused for good. A lost key: False."""
    try:
        creds = await load_credentials(ex, box, account_id)
        if creds.env == "paper" or creds.password is None or creds.password_proven:
            return False
        for _label, theirs, _proven in await _vouchers(ex, box, account_id):
            if same_password(theirs, creds.password):
                return await prove_password(ex, box, account_id, creds.password)
    except SecretKeyMissing:
        return False
    return False


async def _vouchers(ex: Executor, box: SecretBox, account_id: int) -> list[tuple[str, str, bool]]:
    """(label, stored password, whether proven) of the login's other rows that ``vouches``."""
    with translate_errors():
        others = await ex.fetch(q("accounts.same_login"), account_id)
    out: list[tuple[str, str, bool]] = []
    for other in others:
        if vouches(other):
            theirs = await load_credentials(ex, box, other["id"])
            if theirs.password is not None:  # None: cleared since the query
                out.append((theirs.label, theirs.password, theirs.password_proven))
    return out


async def login_credential(ex: Executor, box: SecretBox, account_id: int) -> Credentials:
    """``load_credentials``, for an account about to use its login's shared token or session:
    ``InvalidInput`` unless it holds a credential of the login. A token and a session are kept
    per login, not per account, so another user's account naming the same login with no
    password, or a wrong one, was handed the owner's token and listed or traded the owner's
    sub-accounts. An OAuth connection is proof (its token's user is checked when stored); a
    password must be the one the login's other proven accounts hold (a login is one password;
    ``prove_password``), or one a row connected with OAuth stores beside its connection.

    Only proven passwords are compared with (a differing one refuses: fail closed): another
    user's guess refused the owner's own login when compared too, and two unproven rows
    agreeing (a made-up password twice) vouched for each other. An unproven password passes
    only where Tradovate itself will check it (no proven password to compare it with, no OAuth
    connection whose token it would be handed) or equal to one an OAuth row stores."""
    creds = await load_credentials(ex, box, account_id)
    if creds.env == "paper" or creds.oauth_token is not None:
        return creds
    if creds.password is None:
        raise InvalidInput(no_credential(creds.label))
    with translate_errors():
        connected = any(
            o["has_oauth"] for o in await ex.fetch(q("accounts.same_login"), account_id)
        )
    compared = matched = False
    for label, theirs, proven in await _vouchers(ex, box, account_id):
        same = same_password(theirs, creds.password)
        if proven and not same:
            raise InvalidInput(
                f"{creds.label}'s password for {creds.username} ({creds.env}) is not the one"
                f" {label} holds for that login (an account proven one of the login's): the"
                " login's token is shared, so its accounts must hold the same password"
            )
        compared, matched = compared or proven, matched or same
    if connected and not (compared or matched or creds.password_proven):
        raise InvalidInput(
            f"the other accounts of {creds.username} ({creds.env}) are connected with OAuth and"
            f" store no password equal to {creds.label}'s, so it cannot be checked: connect it"
            " with OAuth too"
        )
    return creds
