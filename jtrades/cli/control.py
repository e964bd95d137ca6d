"""Top-level ``jtrades`` commands: ``halt``, ``resume`` (the kill switch) and ``status``.

The kill switch is written to the database; the running daemon picks it up within seconds
through its configuration fingerprint. A halt blocks every entry; closes still pass, so a halted
account can always be taken flat. ``halt --flatten`` requests accumulate on the flag until the
daemon has carried them out (``store.flatten``); ``resume`` cancels those it covers. The flag is
rewritten only under its row lock, so nothing the daemon committed meanwhile is undone.
``status`` reads the daemon's heartbeat row: a heartbeat older than a few intervals means the
daemon is not running (or hangs); on the daemon's own host, so does its process being gone
(``kill -9``), at once. A user's times are shown in that user's zone (DESIGN §4), the others
(the daemon's start, a flatten request's) in UTC, saying so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from jtrades.cli.common import (
    JsonOpt,
    actor,
    done,
    emit,
    err,
    fail,
    print_json,
    print_table,
    run,
    transaction,
    utc_clock,
    zoned,
)
from jtrades.cli.listings import POSITION_COLUMNS, position_cells
from jtrades.db import Database
from jtrades.engine import config_cache
from jtrades.errors import NotFound
from jtrades.session_health import SESSION_DOWN_ALERT_S
from jtrades.store import accounts as account_store
from jtrades.store import audit
from jtrades.store import flatten as flatten_store
from jtrades.store import status as status_store
from jtrades.store import trading as trading_store

# The daemon beats every 5 s; three missed beats and we call it down.
ALIVE_WITHIN_S = 15.0

AccountOpt = Annotated[
    str | None,
    typer.Option("--account", help="Only this Tradovate login (label); default: everything."),
]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("halt")(halt)
    app.command("resume")(resume)
    app.command("status")(status)


def halt(
    account: AccountOpt = None,
    flatten: Annotated[
        bool,
        typer.Option(
            "--flatten",
            help="Also ask the daemon to close open positions and cancel the orders still working.",
        ),
    ] = False,
    json: JsonOpt = False,
) -> None:
    """Kill switch: block every new entry (closes still pass), for everything or one login.

    Example: jtrades halt --account apex-1
    """

    async def go(db: Database) -> dict[str, Any]:
        now = datetime.now(UTC)
        by = actor()
        request: str | None = None
        covered = False
        async with transaction(db) as conn:
            if account:
                label = await status_store.set_account_halted(conn, account, True)
                target = f"account:{label}"
            else:
                label = None
                target = "all"
            if flatten or not account:
                flag = await status_store.lock_halted(conn, create=True) or {}
                # finished requests are not carried along; pending ones always are
                flattens = flatten_store.carried(flag)
                if flatten:
                    before = set(flattens)
                    flattens, request = flatten_store.add(flattens, now, label, by)
                    covered = request in before
                # an account's halt leaves the global switch as it was
                value: dict[str, Any] = {
                    k: flag[k] for k in ("halted", "on", "by", "at") if k in flag
                }
                if not account:
                    value = {"halted": True, "by": by, "at": now.isoformat()}
                if flattens:
                    value[flatten_store.FLATTENS] = flattens
                await status_store.set_halted(conn, value)
            detail = {"flatten": flatten, "request": request} if flatten else None
            await audit.record(conn, by, "halt", target, detail)
            positions = await status_store.open_positions(conn)
            beat = await status_store.get(conn)
        return {
            "halted": target,
            "flatten": flatten,
            "flatten_request": request,
            "flatten_pending_already": covered,
            "daemon_alive": _alive(beat),
            "open_positions": positions,
        }

    result = run(go)
    open_now = [
        p
        for p in result["open_positions"]
        if account is None or p.account.lower() == account.lower()
    ]
    positions = _positions(open_now)
    if json:
        print_json({**result, "open_positions": positions.data})
        return
    err.print(f"halted: {result['halted']} (new entries are refused; closes still pass)")
    if flatten:
        asked = _when(result["flatten_request"])
        if not result["daemon_alive"]:
            # Still exit 0: the kill switch is on and the request is stored, which is what was
            # asked; a failure would read as "nothing written" and invite a retry. The daemon
            # carries the request out when it starts.
            already = "already " if result["flatten_pending_already"] else ""
            err.print(
                f"flatten {already}requested at {asked}, queued: daemon not running: nothing is"
                " closed until `jtrades serve` starts"
            )
        else:
            err.print(
                f"flatten already requested at {asked} covers this: the daemon is closing positions"
                if result["flatten_pending_already"]
                else f"flatten requested at {asked}: the daemon closes these positions"
            )
        err.print("progress: `jtrades status --json`")
    if open_now:
        positions.print()


def resume(account: AccountOpt = None, json: JsonOpt = False) -> None:
    """Lift the kill switch, for everything or one login; ends the pending flattens it covers
    (of that login; or of everything). Without --account it lifts the global switch only: a
    login halted on its own (`halt --account`) stays halted, and is named, until `resume
    --account`, and the flatten asked for it goes on.

    Example: jtrades resume --account apex-1
    """

    async def go(db: Database) -> dict[str, Any]:
        now = datetime.now(UTC)
        by = actor()
        async with transaction(db) as conn:
            if account:
                try:
                    label = await status_store.set_account_halted(conn, account, False)
                except NotFound:
                    # a login deleted while its flatten was pending (before deleting ended
                    # them): only its flattens are left to end, or nothing can
                    gone = await flatten_store.cancel_for_labels(
                        conn, [account], now, f"resume --account {account} ({by}): no such login"
                    )
                    if not gone:
                        raise
                    await audit.record(
                        conn, by, "resume", f"account:{account}", {"cancelled_flattens": gone}
                    )
                    global_on, _ = await status_store.halted(conn)
                    still = [a for a, _u in await status_store.halted_accounts(conn)]
                    return {"resumed": f"account:{account} (no such login)", "halted_by_others": [],
                            "cancelled_flattens": gone, "still_flattening": [], "flattens_kept": [],
                            "still_halted": still, "global_halted": global_on}  # fmt: skip
                target = f"account:{label}"
                flag = await status_store.lock_halted(conn, create=False)
                before = flatten_store.requests(flag)
                flattens, ended = flatten_store.cancel(
                    before, now, label, f"resume --account {label} ({by})"
                )
                if flattens != before and flag is not None:
                    await status_store.set_halted(conn, {**flag, flatten_store.FLATTENS: flattens})
                # a flatten of everything still covers this login: say so, it keeps closing
                covering = [
                    k for k, r in flatten_store.pending(flag or {}).items() if not r.get("account")
                ]
            else:
                covering = []
                flag = await status_store.lock_halted(conn, create=True) or {}
                # each login's own switch was thrown on purpose: lifting everything does not
                # lift it, nor end the flatten asked for with it
                halted_on_own = [a for a, _u in await status_store.halted_accounts(conn)]
                # the requests it ends stay on the flag, cancelled, until the next halt
                flattens, ended, kept = flatten_store.resume_all(
                    flatten_store.carried(flag), now, f"resume ({by})", halted_on_own
                )
                value: dict[str, Any] = {"halted": False, "by": by, "at": now.isoformat()}
                if flattens:
                    value[flatten_store.FLATTENS] = flattens
                await status_store.set_halted(conn, value)
                target = "all"
            # each login's own switch was thrown on purpose, one by one: lifting everything
            # does not lift it, it says which remain
            still = [a for a, _u in await status_store.halted_accounts(conn)]
            # and lifting one login's leaves the global switch refusing its entries all the same
            global_on, _ = await status_store.halted(conn)
            await audit.record(
                conn, by, "resume", target, {"cancelled_flattens": ended} if ended else None
            )
        # another row of the same account at the broker still halted stops it all the same
        others = (
            config_cache.halted_by_others(await trading_store.load_config(db.pool), label)
            if account
            else []
        )
        return {
            "resumed": target,
            "halted_by_others": others,
            "cancelled_flattens": ended,
            "still_flattening": covering,
            "flattens_kept": [] if account else kept,
            "still_halted": still,
            "global_halted": global_on,
        }

    result = run(go)
    ended = result["cancelled_flattens"]
    also = f"; flatten cancelled: {', '.join(ended)}" if ended else ""
    if result["still_flattening"]:
        also += (
            "; a flatten of everything is still pending and keeps closing this login's"
            " positions (`jtrades resume` ends it)"
        )
    if result["still_halted"] and not account:
        halted = ", ".join(result["still_halted"])
        also += f"; still halted: {halted} (resume --account LABEL to lift)"
    if result["flattens_kept"]:
        also += (
            f"; their flatten goes on (requested at {', '.join(result['flattens_kept'])}:"
            " `resume --account LABEL` ends it)"
        )
    if result["halted_by_others"]:
        also += (
            f"; {', '.join(result['halted_by_others'])} (the same account at the broker) is"
            " still halted: entries on it stay refused until it is resumed too"
        )
    if account and result["global_halted"]:
        also += "; the global kill switch is still on: entries stay refused (`jtrades resume`)"
    done(json, f"resumed: {result['resumed']}{also}", result)


def status(
    json: JsonOpt = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 1 unless the daemon is alive and ready, with a broker session for every"
            " login it trades, none down over a minute (monitoring).",
        ),
    ] = False,
) -> None:
    """Daemon health (from its heartbeat), broker sessions (and logins that have none, with
    why), kill switches and open positions.

    Example: jtrades status --json
    """

    async def go(db: Database) -> dict[str, Any]:
        beat = await status_store.get(db.pool)
        on, flag = await status_store.halted(db.pool)
        return {
            "beat": beat,
            "halted": on,
            "halt_flag": flag,
            "halted_accounts": await status_store.halted_accounts(db.pool),
            "positions": await status_store.open_positions(db.pool),
            "labels": {a.id: a.label for a in await account_store.list_accounts(db.pool)},
            "database": db.url_for_display,
        }

    data = run(go)
    beat: status_store.DaemonStatus | None = data["beat"]
    detail: dict[str, Any] = beat.detail if beat else {}
    down = _down(beat)
    alive = down is None
    daemon = {
        "alive": alive,
        "state": "running" if alive else ("not running" if beat else "never started"),
        "reason": down,  # why not alive (None when it is)
        "pid": beat.pid if beat else None,
        "started_at": beat.started_at if beat else None,
        "heartbeat_age_s": round(beat.age_s, 1) if beat else None,
        "ready": bool(detail.get("ready")) if alive else False,
        "listening": f"{detail.get('host')}:{detail.get('port')}" if alive else None,
        "version": detail.get("version"),
        "inflight": detail.get("inflight", 0) if alive else 0,
        "config_changes": detail.get("config_changes") if alive else None,
        "sessions": detail.get("sessions", []) if alive else [],
        "failed_sessions": detail.get("failed_sessions", []) if alive else [],
    }
    failure = None
    if check and not (alive and daemon["ready"]):
        failure = f"daemon {down or 'not ready'}"
    elif check and daemon["failed_sessions"]:
        failure = _failed_line(daemon["failed_sessions"])
    elif check and (outage := _down_sessions(daemon["sessions"])):
        failure = _down_line(outage)
    if failure is not None and not json:
        fail(failure)
    flattens = [
        {**r, "state": flatten_store.state(r)}
        for r in flatten_store.requests(data["halt_flag"]).values()
    ]
    positions = _positions(data["positions"])
    if json:
        print_json(
            {
                "daemon": daemon,
                "halted": data["halted"],
                "halt_flag": data["halt_flag"],
                "flattens": flattens,
                "halted_accounts": [{"account": a, "user": u} for a, u in data["halted_accounts"]],
                "positions": positions.data,
                "database": data["database"],
            }
        )
        if failure is not None:  # a monitor gets the details too, when they matter most
            fail(failure)
        return
    rows = [
        (k, v)
        for k, v in daemon.items()
        if k not in ("sessions", "failed_sessions") and not (k == "reason" and alive)
    ]
    rows.append(("sessions", len(daemon["sessions"])))
    if daemon["failed_sessions"]:
        rows.append(("logins without a session", len(daemon["failed_sessions"])))
    rows.append(("kill switch", "ON (entries refused)" if data["halted"] else "off"))
    if data["halted_accounts"]:
        rows.append(("halted accounts", ", ".join(a for a, _u in data["halted_accounts"])))
    rows.extend(("flatten", _flatten_line(r)) for r in flattens)
    rows.append(("database", data["database"]))
    print_table("daemon", ["", ""], rows)
    if daemon["sessions"] or daemon["failed_sessions"]:
        labels: dict[int, str] = data["labels"]
        opened = [(_label(s, labels), s.get("env"), _session_state(s)) for s in daemon["sessions"]]
        failed = [
            (_label(f, labels), f.get("env"), _failed_state(f)) for f in daemon["failed_sessions"]
        ]
        emit(False, None, "broker sessions", ["account", "env", "state"], opened + failed)
    if data["positions"]:
        positions.print()
    else:
        err.print("no open positions")


def _alive(beat: status_store.DaemonStatus | None) -> bool:
    """A daemon running and beating: a stopped one leaves its last row behind."""
    return _down(beat) is None


def _down(beat: status_store.DaemonStatus | None) -> str | None:
    """Why the daemon is not alive, or None when it is: it never wrote its row, said it stopped,
    has not beaten for ``ALIVE_WITHIN_S``, or (seen from its own host) its process is gone. A
    ``kill -9`` leaves a fresh heartbeat behind for up to ``ALIVE_WITHIN_S``: on another host
    only its age tells, on this one the process does, at once."""
    if beat is None:
        return "never started"
    age = round(beat.age_s, 1)
    if beat.detail.get("state") != "running":
        return f"stopped (last heartbeat {age}s ago)"
    if beat.age_s > ALIVE_WITHIN_S:
        return f"no heartbeat for {age}s"
    gone = status_store.process_gone(beat)
    return None if gone is None else f"{gone} (last heartbeat {age}s ago)"


def _when(stored: Any) -> str:
    """A time stored as ISO-8601 text (a flatten request's) as the tables show a time of no
    user's: in UTC, saying so; anything else as it is."""
    try:
        at = datetime.fromisoformat(stored)
    except (TypeError, ValueError):
        return str(stored)
    return utc_clock(at) if at.tzinfo is not None else str(stored)


def _flatten_line(r: dict[str, Any]) -> str:
    when = _when(r.get("requested_at"))
    what = f"{r.get('account') or 'everything'}, requested {when}: {r['state']}"
    if r["state"] == "cancelled":
        return f"{what} ({r.get('cancelled')})"
    progress = r.get("progress")
    if isinstance(progress, dict):
        left, refused = len(progress.get("left", [])), len(progress.get("refused", []))
        closed, cancelled = progress.get("closed", 0), progress.get("cancelled", 0)
        what += (
            # a liquidation cancels its contract's working orders itself: "0 cancelled" read
            # as the exits still working
            f" ({closed} closed with their orders, {cancelled} more cancelled, {left} left,"
            f" {refused} refused by the broker, as of {_when(progress.get('at'))})"
        )
    return what


@dataclass
class _Positions:
    """Open positions with their times in each owner's zone, as ``positions list`` shows them
    (DESIGN §4): ``data`` for JSON (ISO-8601 with that zone's offset, and its ``timezone``),
    the table's title, columns and cells for people."""

    data: list[dict[str, Any]]
    title: str
    columns: list[str]
    cells: list[list[Any]]

    def print(self) -> None:
        print_table(self.title, self.columns, self.cells)


def _positions(positions: list[status_store.OpenPosition]) -> _Positions:
    data = [asdict(p) for p in positions]
    title, columns, cells = zoned(
        data,
        "open positions",
        POSITION_COLUMNS,
        position_cells(data),
        times=["updated_at"],
    )
    return _Positions(data, title, columns, cells)


def _label(session: dict[str, Any], labels: dict[int, str]) -> str:
    """The account a heartbeat's session is of, by the label its user gave it (the heartbeat
    names it by ``accounts.id``, which no command takes); one removed since: its old id."""
    account_id = session.get("account_id")
    label = labels.get(account_id) if isinstance(account_id, int) else None
    return label or session.get("account") or f"#{account_id} (removed)"


def _failed_state(failure: dict[str, Any]) -> str:
    """A login with no session, as the heartbeat said (its error has no secret in it)."""
    return f"no session ({failure.get('account')}): {failure.get('error')}"


def _failed_line(failed: list[dict[str, Any]]) -> str:
    """``--check``'s one line for logins with no session: their sub-accounts are not traded
    (their alerts answer "not traded"), so the daemon is not healthy for them."""
    each = "; ".join(_failed_state(f) for f in failed)
    return f"daemon running, but {len(failed)} login(s) have no broker session: {each}"


def _down_sessions(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sessions down past ``SESSION_DOWN_ALERT_S`` (a reconnect of a moment is not an
    outage: a monitor would flap), or down for a time the heartbeat does not say (an older
    daemon's)."""
    return [
        s
        for s in sessions
        if s.get("up") is False and (s.get("down_s") is None or s["down_s"] >= SESSION_DOWN_ALERT_S)
    ]


def _down_line(down: list[dict[str, Any]]) -> str:
    """``--check``'s one line for sessions down: their sub-accounts' alerts answer "not traded"
    and their positions are not watched."""
    each = "; ".join(
        f"account {s['account_id']} ({s.get('env')})"
        + (f" down {s['down_s']} s" if s.get("down_s") is not None else " down")
        for s in down
    )
    return f"daemon running, but {len(down)} broker session(s) are down: {each}"


def _session_state(session: dict[str, Any]) -> str:
    """A broker session as the heartbeat saw it (a daemon before this field: unknown)."""
    up = session.get("up")
    if up is None:
        return "unknown"
    if up:
        return "up"
    held = session.get("held")
    if held:  # connected, but Tradovate asked it to send nothing for a while
        until = session.get("held_until")
        return f"held ({held}" + (f" until {until})" if until else ")")
    return "down (reconnecting)"
