"""What a ``halt --flatten`` pass could not close, and why (``Leftover``): the request stays
pending while there is any, and ``jtrades status`` shows each."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from jtrades.broker.base import Broker
from jtrades.broker.tradovate.client import TradovateBroker
from jtrades.engine.config_cache import LinkConfig


@dataclass(frozen=True, slots=True)
class Leftover:
    """A position a pass did not close (or the broker refused to), and why."""

    sub_account_id: int | None  # None: an account of the login with no sub-account row
    symbol: str | None  # None: the account's positions could not be read
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"sub_account_id": self.sub_account_id, "symbol": self.symbol, "why": self.why}

    def __str__(self) -> str:
        sub = f"sub {self.sub_account_id}" if self.sub_account_id is not None else "no row"
        return f"{sub} {self.symbol or '(positions unknown)'}: {self.why}"


def rowless(broker: Broker, link: LinkConfig, rows: Iterable[LinkConfig]) -> list[Leftover]:
    """What the login ``link`` reached holds on accounts no sub-account row names (one opened
    at Tradovate after the last `accounts sync`): the flatten cannot write an intent for them
    (rule 1), and marked done without a word, it left a position open under the kill switch."""
    if not isinstance(broker, TradovateBroker):  # a paper login has its rows' accounts only
        return []
    view = broker.session.view
    named = {
        r.broker_account_id
        for r in rows
        if (r.env, r.username) == (link.env, link.username) and r.has_credential
    }
    out = []
    for acct in view.account_ids:
        if acct in named or not view.is_synced(acct):
            continue
        held = sorted({x.symbol for x in view.positions(acct) if x.net_pos})
        working = sorted({o.symbol or "?" for o in view.working_orders(acct) if o.status.is_open})
        for symbol in dict.fromkeys([*held, *working]):
            why = (
                f"{view.account_name(acct) or acct} of login {link.label} has no sub-account"
                f" row: `jtrades accounts sync {link.label}`, and the flatten closes it"
            )
            out.append(Leftover(None, symbol, why))
    return out


def never_synced(labels: Iterable[str], label: str | None) -> list[Leftover]:
    """The logins within a flatten's reach (``label``; None: every login) with no sub-account
    row at all: no row, no session, so their positions are never read. Passed over, the
    request was marked done at once with a login's position open under the kill switch."""
    return [
        Leftover(
            None,
            None,
            f"login {name} has no sub-account rows: `jtrades accounts sync {name}`, and the"
            " flatten closes what it holds",
        )
        for name in labels
        if label is None or name.lower() == label.lower()
    ]
