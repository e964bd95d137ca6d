"""Which ``Broker`` serves a sub-account: the paper broker for ``paper`` logins, the Tradovate
session pool (one WebSocket per login, shared by all its sub-accounts) for ``demo``/``live``.

One ``PaperBroker`` per paper login keeps logins apart exactly like separate Tradovate sessions
would (money rule 5): an order of one login can never touch another's state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import structlog

from jtrades.broker.base import Broker, Contract, SubAccount
from jtrades.broker.paper import PaperBroker
from jtrades.broker.paper_restore import restore_orders
from jtrades.broker.tradovate.lifecycle import State
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.instruments import InstrumentResolver
from jtrades.errors import JtradesError, TransientBrokerError
from jtrades.logging import scrub
from jtrades.store import accounts as account_store
from jtrades.store import intents as intent_store
from jtrades.store import trading as trading_store

if TYPE_CHECKING:
    from jtrades.engine.config_cache import LinkConfig, Snapshot

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class SessionFailure:
    """A login the daemon has no session of, and why (never a secret)."""

    account_id: int
    account: str  # its label
    env: str
    error: str


class BrokerRegistry:
    """Broker sessions by login (``accounts.id``)."""

    def __init__(self, db: Database | None, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._paper: dict[int, PaperBroker] = {}
        self._numbered: set[int] = set()  # paper logins whose ids go on from the stored ones
        self._restored: set[int] = set()  # sub_accounts.id of paper sub-accounts restored
        self._restoring = asyncio.Lock()
        self._pool: Any = None  # jtrades.broker.tradovate.pool.TradovatePool, made on first use
        self._tradovate: dict[int, Broker] = {}  # accounts.id -> its login's session
        self._tv_env: dict[int, tuple[str, Broker]] = {}
        self._wanted: set[int] = set()
        self._synced_once = False
        self._resolver = InstrumentResolver()
        # sessions seen unsynced (or lost mid-lookup): their provisional contracts go once they
        # are synced again (id(broker) → broker, held so the id is not reused meanwhile)
        self._unsynced: dict[int, Broker] = {}
        self._box: Any = None
        self._closed = False
        # the last connect failure logged per login: a login refused for good is asked again
        # on every pass, and says so once per new reason, not once per pass
        self._failures: dict[int, str] = {}
        self._logins: dict[int, tuple[str, str]] = {}  # accounts.id -> (label, env), as linked

    # --- lookup ---------------------------------------------------------------------------

    def paper(self, account_id: int) -> PaperBroker:
        b = self._paper.get(account_id)
        if b is None:
            b = self._paper[account_id] = PaperBroker()
        return b

    def synced_for(self, links: Iterable[LinkConfig]) -> Broker:
        """A session with a synced view of the account at the broker ``links`` name (two
        users' rows of one account: any of their logins reads, and sends for, the account);
        raises when none has one (``TransientBrokerError``, or why the last could not)."""
        error: Exception = TransientBrokerError("live view not synced")
        for link in links:
            try:
                broker = self.broker_for(link)
            except Exception as exc:
                error = exc
                continue
            if broker.is_synced(link.broker_account_id):
                return broker
            error = TransientBrokerError("live view not synced")
        raise error

    def broker_for(self, link: LinkConfig) -> Broker:
        """The session of this link's login; raises ``TransientBrokerError`` when none is up."""
        if link.env == "paper":
            return self.paper(link.account_id)
        broker = self._tradovate.get(link.account_id)
        if broker is None:
            raise TransientBrokerError(
                f"no Tradovate session for account {link.label} ({link.env})"
            )
        return broker

    def attach(self, account_id: int, env: str, broker: Broker) -> None:
        """Use an already open session for a login (benchmarks, embedding); ``sync_accounts``
        then leaves it alone."""
        self._tradovate[account_id] = broker
        self._tv_env[account_id] = (env, broker)

    def sessions(self) -> list[tuple[int, str, Broker]]:
        """Every open session as (accounts.id, env, broker): reconciliation walks these."""
        out: list[tuple[int, str, Broker]] = [(aid, "paper", b) for aid, b in self._paper.items()]
        out.extend((aid, env, b) for aid, (env, b) in self._tv_env.items())
        return out

    async def resolve_contract(self, link: LinkConfig, broker: Broker, ticker: str) -> Contract:
        """``MNQ1!`` → the tradable contract, through the instrument resolver.

        A lookup made while the session was reconnecting fails and leaves a provisional (table)
        contract in the resolver for a minute; the first resolution after the session is synced
        again drops those, so it asks the broker at once (see ``InstrumentResolver``). A 429 or
        a penalty on a synced session leaves them for their minute: asking sooner extends it."""
        account = link.broker_account_id
        synced = broker.is_synced(account)
        if synced and self._unsynced.pop(id(broker), None) is not None:
            dropped = self._resolver.forget(broker, provisional_only=True)
            if dropped:
                log.info("instrument.fallbacks_dropped", account=link.label, contracts=dropped)
        try:
            return await self._resolver.resolve(ticker, broker)
        finally:
            if not synced or not broker.is_synced(account):
                self._unsynced[id(broker)] = broker

    def contract_cached(self, link: LinkConfig, ticker: str) -> bool:
        """Whether ``resolve_contract`` for ``link`` would answer from the resolver's cache (a
        paper login, or a session whose answer is cached); a login with no session yet is not."""
        if link.env == "paper":
            return True  # the paper broker's own table: no round trip
        broker = self._tradovate.get(link.account_id)
        return broker is not None and self._resolver.cached(ticker, broker)

    def note_price(self, link: LinkConfig, contract: Contract, price: Decimal) -> None:
        """A signal's price is the paper broker's market: fills and triggers happen at it."""
        if link.env == "paper":
            self.paper(link.account_id).on_price(contract.symbol, price)

    def note_fill_price(self, link: LinkConfig, contract: Contract, price: Decimal) -> None:
        """A signal's price for a month it does not name (held across the roll): on paper, what
        the sub-account's market orders of that month fill at, not a market its stops and
        limits trigger at (``paper_market``). A real broker has the month's own market."""
        if link.env == "paper":
            self.paper(link.account_id).fill_at(link.broker_account_id, contract.symbol, price)

    def restored(self, link: LinkConfig) -> bool:
        """Whether ``link`` may be traded now: not a paper sub-account whose stored positions
        and orders are still to be put back (``reach``). One linked while the daemon runs is
        restored by a task of its own (``Engine._on_config_change``) while the new
        configuration is already live: an alert traded it from a flat book, its fill took a
        stored one's id (dropped by the mirror as known) and the restore then overwrote the
        position. A set lookup: the hot path awaits nothing once it is restored."""
        return link.env != "paper" or self._db is None or link.sub_account_id in self._restored

    # --- lifecycle ------------------------------------------------------------------------

    async def sync_accounts(self, snap: Snapshot) -> None:
        """Open sessions for the logins the configuration uses, for those a pending
        ``halt --flatten`` reaches (a login no trader links any more may still hold a
        position), and for those of sub-accounts with an open intent (reconciliation looks an
        intent up through its login's session: a trader deleted after a crash left its intent
        pending for good); restore a paper login's positions and open orders once (its state
        is in memory: without its orders, its exits were gone after every restart while the
        orders table still said Working)."""
        links = [*snap.links_by_sub.values(), *snap.flattening(), *await self._open_intents(snap)]
        self._wanted = {lk.account_id for lk in links if lk.env != "paper"}
        await self._drop_removed()
        await self.reach(links)
        self._synced_once = True

    async def _drop_removed(self) -> None:
        """Detach the sessions of accounts ``accounts remove`` deleted, and close each one no
        other account of its login still uses: kept, the WebSocket stayed open at the broker
        (one of the login's sessions), its token renewed, and `status` listed it, until a
        restart. A session attached from outside (``attach``) is detached, not closed."""
        if self._db is None or not self._tv_env:
            return
        asked = sorted(self._tv_env)
        try:
            stored = await account_store.existing_ids(self._db.pool, asked)
        except JtradesError as exc:  # asked again at the next configuration sync
            log.warning("broker.removed_accounts_unknown", error=str(exc))
            return
        # only those asked about: a login reached while the query ran was not among them
        for account_id in [aid for aid in asked if aid not in stored and aid in self._tv_env]:
            _, broker = self._tv_env.pop(account_id)
            self._tradovate.pop(account_id, None)
            self._logins.pop(account_id, None)
            self._failures.pop(account_id, None)
            shared = any(b is broker for _, b in self._tv_env.values())
            closed = not shared and self._pool is not None and await self._pool.release(broker)
            log.info("broker.account_removed", account_id=account_id, session_closed=closed)

    async def _open_intents(self, snap: Snapshot) -> list[LinkConfig]:
        """The sub-accounts holding an open intent, linked or not; none when the database
        cannot say (the configured logins are still reached, and the next pass asks again)."""
        if self._db is None:
            return []
        try:
            subs = await intent_store.open_sub_accounts(self._db.pool)
        except JtradesError as exc:
            log.warning("broker.open_intents_unknown", error=str(exc))
            return []
        return [snap.subs[sid] for sid in sorted(subs) if sid in snap.subs]

    async def reach(self, links: Iterable[LinkConfig]) -> None:
        """Make the sessions of ``links`` ready to be traded: each paper sub-account's stored
        state restored (once: under a lock, so a flatten never reads a paper login halfway
        restored and takes it for flat), and a Tradovate session opened for each login that
        has none, or whose session was refused for good (a failure is logged; the next call
        tries again)."""
        paper_subs: dict[int, dict[int, SubAccount]] = {}
        tradovate: set[int] = set()
        for link in links:
            if link.env == "paper":
                paper_subs.setdefault(link.account_id, {})[link.sub_account_id] = SubAccount(
                    link.broker_account_id, link.sub_name
                )
            else:
                tradovate.add(link.account_id)
                self._logins[link.account_id] = (link.label, link.env)
        if self._db is not None and any(
            sid not in self._restored for subs in paper_subs.values() for sid in subs
        ):
            async with self._restoring:
                for account_id, by_sub in paper_subs.items():
                    await self._restore_paper(account_id, by_sub)
        if tradovate:
            await self._prove_unproven(sorted(tradovate))
        missing = [aid for aid in sorted(tradovate) if self._needs_session(aid)]
        if missing:
            await asyncio.gather(*(self._connect(aid) for aid in missing))

    def _needs_session(self, account_id: int) -> bool:
        """No session yet, one that failed for good after it was attached (a password changed
        at Tradovate, a captcha, an OAuth token expired), or one the pool closed to replace it
        (its replacement not ready within the wait): asked of the pool again, which returns its
        session of the login, replaces a failed one once the stored credentials have changed,
        and refuses at once while they have not. Kept as it was, the login stayed untradeable
        until a restart, whatever the user fixed."""
        broker = self._tradovate.get(account_id)
        if broker is None:
            return True
        session = getattr(broker, "session", None)
        return session is not None and session.state in (State.FAILED, State.CLOSED)

    async def _restore_paper(self, account_id: int, subs: dict[int, SubAccount]) -> None:
        """Put the stored positions and open orders of a paper login's sub-accounts not
        restored yet into its broker; a sub-account linked later in the run (or reached by a
        flatten only) is restored then, one restored already never again (its state lives on
        in memory)."""
        assert self._db is not None
        by_sub = {sid: a for sid, a in subs.items() if sid not in self._restored}
        if not by_sub:
            return
        broker = self.paper(account_id)
        if account_id not in self._numbered:
            broker.number_after(await trading_store.paper_ids_used(self._db.pool, account_id))
            self._numbered.add(account_id)
        for row in await trading_store.positions(self._db.pool, list(by_sub)):
            if row["net_pos"]:
                broker.restore_position(
                    by_sub[row["sub_account_id"]].account_id,
                    row["symbol"],
                    int(row["net_pos"]),
                    row["net_price"],
                )
        await restore_orders(broker, self._db.pool, by_sub)
        self._restored.update(by_sub)

    async def _connect(self, account_id: int) -> None:
        """Open (or join) the Tradovate session of one login; failures are logged and retried
        at the next configuration sync (its sub-accounts are not traded meanwhile)."""
        if self._db is None:
            return
        pool = self._tradovate_pool()
        if pool is None:  # logged by ``_tradovate_pool``; shown by ``failures``
            self._failures[account_id] = "the Tradovate session pool could not be made"
            return
        try:
            from jtrades.security import load_secret_box
            from jtrades.store.login_proofs import login_credential

            if self._box is None:
                self._box = load_secret_box(self._settings, create=False)
            creds = await login_credential(self._db.pool, self._box, account_id)
            if not creds.username:
                return
            oauth = None
            if creds.oauth_token and creds.oauth_expires_at is not None:
                # An account connected with OAuth: its token is an ordinary bearer token.
                from jtrades.broker.tradovate.auth import AccessToken

                oauth = AccessToken(creds.oauth_token, creds.oauth_expires_at)
            broker = await pool.broker(
                creds.env,
                creds.username,
                creds.password,
                oauth_token=oauth,
                wait_s=self._settings.tradovate.request_timeout_s,
            )
        except Exception as exc:
            reason = str(exc)
            if self._failures.get(account_id) != reason:
                log.error("broker.session_failed", account_id=account_id, error=reason)
            self._failures[account_id] = reason
            return
        self._failures.pop(account_id, None)
        self._tradovate[account_id] = broker
        self._tv_env[account_id] = (creds.env, broker)
        if creds.password is not None and not creds.password_proven:
            await self._prove_password(pool, account_id, creds.env, creds.username, creds.password)

    async def _prove_unproven(self, account_ids: list[int]) -> None:
        """Prove what can be proven of these rows' passwords not proven yet (one query; none
        once they are): by a proven row of the login storing the same one (``vouch_password``,
        before the connect, whose ``login_credential`` then takes it), else, for a row attached
        to a live session, by the session's token (``_prove_password``). A live session never
        logs in again (its token is renewed), so a row left unproven at its connect was never
        proven while the daemon ran, and was not one of its login's accounts meanwhile."""
        if self._db is None:
            return
        try:
            from jtrades.security import load_secret_box
            from jtrades.store.accounts import load_credentials
            from jtrades.store.login_proofs import unproven_passwords, vouch_password

            unproven = await unproven_passwords(self._db.pool, account_ids)
            if unproven and self._box is None:
                self._box = load_secret_box(self._settings, create=False)
            for aid in unproven:
                if await vouch_password(self._db.pool, self._box, aid):
                    log.info("broker.password_vouched", account_id=aid)
                elif not self._needs_session(aid) and self._pool is not None:
                    creds = await load_credentials(self._db.pool, self._box, aid)
                    if creds.username and creds.password is not None:
                        await self._prove_password(
                            self._pool, aid, creds.env, creds.username, creds.password
                        )
        except Exception as exc:  # logged; the next pass tries again
            log.warning("broker.password_proofs_unchecked", error=str(exc))

    async def _prove_password(
        self, pool: Any, account_id: int, env: str, username: str, password: str
    ) -> None:
        """Record that Tradovate accepted the account's password, when the session it was
        handed holds a token a login with that very password obtained (a session opened or
        joined with OAuth proves nothing of a password beside it). Until then the row is not
        one of its login's accounts (``engine.config_cache.account_key``); a failure here is
        logged and the next pass tries again (``_prove_unproven``)."""
        if not pool.password_proven(env, username, password):
            return
        assert self._db is not None
        try:
            from jtrades.store.login_proofs import prove_password

            if await prove_password(self._db.pool, self._box, account_id, password):
                log.info("broker.password_proven", account_id=account_id)
        except Exception as exc:
            log.warning("broker.password_proof_unrecorded", account_id=account_id, error=str(exc))

    def ready(self) -> bool:
        """Sessions were attempted for every configured login. A login that cannot connect
        does not make the daemon unready (its sub-accounts are simply not traded, and it is
        retried on every reconciliation pass): ``connected()`` tells which ones are up."""
        return not self._closed and self._synced_once

    @staticmethod
    def session_up(broker: Broker) -> bool:
        """Whether a session can trade now: a Tradovate one connected and synced (not
        reconnecting), and not held (a penalty ticket, a captcha or a 429: it refuses every
        request for up to an hour though its socket stays READY; reported up, `status`
        showed it up and `status --check` passed); a paper one always. Any hold counts, a
        429's first (10 s, ``penalty_hold.RATE_LIMIT_FIRST_S``) included: nothing is sent
        while it lasts, and the outage judgement (``session_health``: down a minute before
        `status --check` fails) already lets a short one pass without an alarm."""
        session = getattr(broker, "session", None)
        if session is None:
            return True
        return bool(session.ready) and BrokerRegistry.session_hold(broker) is None

    @staticmethod
    def session_hold(broker: Broker) -> dict[str, Any] | None:
        """What holds a session's requests, for the heartbeat (``session_detail``): ``held``
        (``penalty``, ``captcha`` or ``rate_limit``), ``held_reason`` (secrets cut out) and
        ``held_until`` (ISO 8601, UTC); None when nothing does (or for a paper session)."""
        held_of = getattr(getattr(broker, "session", None), "held", None)
        held = held_of() if callable(held_of) else None
        if held is None:
            return None
        until = datetime.now(UTC) + timedelta(seconds=held.left_s)
        return {
            "held": held.kind,
            "held_reason": scrub(held.reason),
            "held_until": until.isoformat(timespec="seconds"),
        }

    def connected(self) -> dict[int, bool]:
        """accounts.id of each configured Tradovate login → whether its session is attached
        and not refused for good."""
        return {aid: not self._needs_session(aid) for aid in sorted(self._wanted)}

    def failures(self) -> list[SessionFailure]:
        """The configured Tradovate logins with no session to trade on, refused for good or
        not opened at all (the last error of each; secrets cut out), for ``jtrades status``:
        ``sessions()`` lists only the sessions that opened, so a login refused at the start
        (its sub-accounts answered "no Tradovate session") was shown nowhere."""
        out: list[SessionFailure] = []
        for aid in sorted(self._wanted):
            if not self._needs_session(aid):
                continue
            error = self._failures.get(aid)
            broker = self._tradovate.get(aid)
            session = getattr(broker, "session", None)
            if error is None and session is not None and session.state is State.FAILED:
                error = session.last_error or "Tradovate login failed"
            if error is not None:
                label, env = self._logins.get(aid, (str(aid), ""))
                out.append(SessionFailure(aid, label, env, scrub(error)))
        return out

    async def close(self) -> None:
        self._closed = True
        for b in self._paper.values():
            await b.close()
        if self._pool is not None and hasattr(self._pool, "close"):
            await self._pool.close()

    # --- optional parts written elsewhere -------------------------------------------------

    def _tradovate_pool(self) -> Any:
        if self._pool is None and self._db is not None:
            try:
                from jtrades.broker.tradovate.pool import TradovatePool
                from jtrades.security import load_secret_box

                if self._box is None:
                    self._box = load_secret_box(self._settings, create=False)
                self._pool = TradovatePool(self._settings.tradovate, self._db.pool, self._box)
            except Exception as exc:
                log.error("broker.pool_unavailable", error=str(exc))
                return None
        return self._pool
