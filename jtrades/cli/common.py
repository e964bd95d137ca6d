"""What every CLI command shares: open resources, run a coroutine, print data or one-line errors.

Data goes to stdout (a rich table for people, JSON with ``--json``); status and errors go to
stderr. A ``JtradesError`` becomes ``error: <message>`` and exit 1, never a traceback; so does a
driver error no store function translated (``database error: <class>: <message>``, scrubbed).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
import orjson
import typer
from asyncpg.pool import PoolConnectionProxy
from rich.console import Console
from rich.table import Table
from rich.text import Text

from jtrades import logging as jlog
from jtrades.config import Settings, load_settings
from jtrades.db import Database, connect
from jtrades.errors import JtradesError
from jtrades.money import cents
from jtrades.store import translate_errors

T = TypeVar("T")

# No markup nor emoji codes: what is printed quotes names people typed and text from alerts,
# where "[/x]" made rich raise and "[b]" or ":x:" changed what was shown.
out = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)

PIPED_WIDTH = 1000  # what a table may take when stdout is no terminal
_NUMBER = re.compile(r"[-+]?[0-9][0-9.,]*")  # an id, a quantity, a price, money

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        "-c",
        # $JTRADES_CONFIG is read by load_settings itself, so every entry point agrees.
        help="jtrades.toml to read (default: $JTRADES_CONFIG, ./jtrades.toml, then XDG).",
    ),
]


@dataclass
class CliState:
    config: Path | None = None


STATE = CliState()


def actor() -> str:
    """Who is acting, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def settings() -> Settings:
    return load_settings(STATE.config)


def fail(message: str) -> NoReturn:
    err.print(Text.assemble(("error:", "bold red"), " ", jlog.scrub(message)))
    raise typer.Exit(1)


# What the driver and the network raise when the database fails under a command: a store
# function turns them into ``StorageUnavailable``; any that escapes one (a bug) is still one line.
DB_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


def db_error_line(exc: BaseException) -> str:
    """``database error: <class>: <first line of its message>`` (``fail`` scrubs it)."""
    said = str(exc).strip().splitlines()
    return f"database error: {type(exc).__name__}" + (f": {said[0]}" if said else "")


def run(fn: Callable[[Database], Awaitable[T]], *, migrate: bool = True) -> T:
    """Load settings, open the database (migrated), run ``fn``, close; errors → one line, exit 1
    (a database that fails under the command as one that cannot be reached)."""
    try:
        cfg = settings()
        # Commands stay quiet (warnings and up) unless debug logging is asked for explicitly.
        jlog.configure(cfg.log.format, "debug" if cfg.log.level == "debug" else "warning")

        async def main() -> T:
            db = await connect(cfg, migrate_now=migrate)
            try:
                return await fn(db)
            finally:
                await db.close()

        return asyncio.run(main())
    except JtradesError as exc:
        fail(str(exc))
    except DB_ERRORS as exc:
        fail(db_error_line(exc))


@contextlib.asynccontextmanager
async def transaction(db: Database) -> AsyncIterator[PoolConnectionProxy[Any]]:
    """A pooled connection in a transaction, committed when the block ends without error.

    Its own statements (the acquire, BEGIN, COMMIT) fail as the store's do (``translate_errors``:
    a connection lost, a timeout → ``StorageUnavailable``), and an error in the block is the one
    raised, not the rollback's on a connection that is gone (``async with conn.transaction()``
    replaced "terminating connection due to administrator command" with the InterfaceError of its
    exit, a traceback)."""
    with translate_errors():
        async with db.pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                yield conn
            except BaseException:
                with contextlib.suppress(*DB_ERRORS):
                    await tx.rollback()
                raise
            await tx.commit()


def run_plain(fn: Callable[[], T]) -> T:
    """Run a function that needs no database, with the same error handling."""
    try:
        return fn()
    except JtradesError as exc:
        fail(str(exc))


def jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "__dataclass_fields__"):
        return {k: jsonable(getattr(value, k)) for k in value.__dataclass_fields__}
    return value


def print_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(jsonable(data), option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def clock(value: datetime, zone: tzinfo) -> str:
    """A time as a table shows it, in ``zone``: a listing's rows name their owner's (DESIGN §4,
    "Times are in the user's time zone"), where the machine's (a VPS in UTC) misled. In the
    hour the clocks go back, with its offset: 06:30Z and 07:30Z both read 01:30 in Chicago on
    the night of the change, and ``--since`` refuses either without one."""
    local = value.astimezone(zone)
    if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
        return local.isoformat(sep=" ", timespec="seconds")
    return local.strftime(TIME_FORMAT)


def utc_clock(value: datetime) -> str:
    """A time of no user's (the daemon's start, a migration's, a flatten request's) as a table
    shows it: in UTC, saying so. In the machine's zone, unnamed, it read as the user's zone
    next to rows that are in it (``status``: the daemon "started" hours after its position)."""
    return f"{clock(value, UTC)} UTC"


def owner_zone(name: str | None) -> ZoneInfo | None:
    """A row owner's zone; None for a row with no owner (a signal no recorder took) or with a
    name stored before names were checked (OSError: a tzdata folder, an overlong name)."""
    try:
        return ZoneInfo(name) if name else None
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def operator_zone() -> ZoneInfo:
    """Where a row with no zone of its own is shown: the operator's ``[trading] timezone``."""
    return ZoneInfo(settings().trading.timezone)


def zoned(
    data: list[dict[str, Any]],
    title: str,
    columns: Sequence[str],
    cells: list[list[Any]],
    *,
    times: Sequence[str],
) -> tuple[str, list[str], list[list[Any]]]:
    """Every time in its row owner's zone (``data[i]["timezone"]``, then named there as the
    zone used): the ``times`` keys of the JSON rows (ISO-8601 with that zone's offset) and each
    time in ``cells``, in the machine's zone a New York user on a UTC VPS read a 10:00 exit as
    15:00. Returns the table's title (naming the zone), columns (a "zone" one when the rows
    span several) and cells."""
    operator = cache(operator_zone)
    zones = [owner_zone(r.get("timezone")) or operator() for r in data]
    for r, zone in zip(data, zones, strict=True):
        r["timezone"] = zone.key
        for key in times:
            if isinstance(r.get(key), datetime):
                r[key] = r[key].astimezone(zone)
    cells = [
        [clock(v, zone) if isinstance(v, datetime) else v for v in row]
        for row, zone in zip(cells, zones, strict=True)
    ]
    names = sorted({z.key for z in zones})
    if len(names) > 1:
        title, columns = f"{title} (times in each user's zone)", [*columns, "zone"]
        cells = [[*row, zone.key] for row, zone in zip(cells, zones, strict=True)]
    elif names:
        title = f"{title} (times in {names[0]})"
    return title, list(columns), cells


def emit_zoned(
    json_mode: bool,
    data: list[dict[str, Any]],
    title: str,
    columns: Sequence[str],
    cells: list[list[Any]],
    *,
    times: Sequence[str],
    empty: str,
) -> None:
    """``emit`` with every time in its row owner's zone (``zoned``)."""
    title, columns, cells = zoned(data, title, columns, cells, times=times)
    emit(json_mode, data, title, columns, cells, empty=empty)


def money(value: Decimal | float | None) -> str | None:
    """Dollars as a table shows them: always two decimals (the database keeps what each source
    wrote, ``27.000`` next to ``24.0``, and the P&L column read as if of different precisions).
    ``--json`` keeps the exact stored value."""
    if value is None:
        return None
    return cents(Decimal(str(value)))


def price(value: Decimal | float | None) -> str | None:
    """A price as a table shows it: its shortest exact form (``21500.0`` and ``21500`` are the
    same price, printed once one way), never in exponent notation (``2.15E+4``)."""
    if value is None:
        return None
    text = f"{Decimal(str(value)).normalize():f}"
    return "0" if text == "-0" else text


# C0 and C1 control characters: text from alerts (a ticker, a refusal quoting a value) is
# shown in an operator's terminal, where ESC sequences cleared the screen, erased rows or set
# the clipboard (rich's Text keeps ESC)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """``text`` with its control characters shown as escapes (``\\x1b``), not obeyed."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):  # a time of no user's (zoned() renders a user's)
        return utc_clock(value)
    return visible(str(jsonable(value)))


def print_table(
    title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str = "none"
) -> None:
    rows = list(rows)
    if not rows:
        err.print(f"{title}: {empty}")
        return
    cells = [[cell(v) for v in r] for r in rows]
    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        # folded, never cut: rich cut what did not fit with "…", and at 80 columns a trade's
        # entry, exit and P&L read "215…", "2151…", "-12…"; numbers are kept whole while the
        # text columns give up room
        numbers = [r[i] for r in cells if _NUMBER.fullmatch(r[i])]
        if numbers and len(numbers) == len(cells):
            table.add_column(c, overflow="fold", min_width=max(map(len, numbers)))
        else:
            table.add_column(c, overflow="fold")
    for r in cells:
        table.add_row(*r)
    if out.is_terminal or "COLUMNS" in os.environ:
        out.print(table)
        return
    # piped or redirected (rich then assumes 80 columns): the width the table needs
    width, out.width = out.width, PIPED_WIDTH
    try:
        out.print(table)
    finally:
        out.width = width


def emit(
    json_mode: bool,
    data: Any,
    title: str,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    empty: str = "none",
) -> None:
    """Print ``data`` as JSON, or ``rows`` as a table."""
    if json_mode:
        print_json(data)
    else:
        print_table(title, columns, rows, empty=empty)


def done(json_mode: bool, message: str, data: dict[str, Any] | None = None) -> None:
    """Report a successful change: JSON on stdout, or a line on stderr for people."""
    if json_mode:
        print_json({"ok": True, **(data or {})})
    else:
        err.print(message)


# For a command that reads a secret from standard input: extra positional arguments reach it
# (``refuse_stray_args``) instead of Click's usage error, which echoes them ("Got unexpected
# extra argument (…)"), and one of them may be the password typed on the command line.
SECRET_READER: dict[str, Any] = {"allow_extra_args": True}


def refuse_stray_args(ctx: typer.Context) -> None:
    """A usage error (exit 2, DESIGN §4) for a command made with ``SECRET_READER`` that was
    given arguments it does not take, without repeating them (money rule 8)."""
    if ctx.args:
        err.print(
            Text.assemble(
                ("error:", "bold red"),
                " unexpected argument(s), not shown (one may be a password): the password is"
                " read only from standard input, with --password-stdin",
            )
        )
        raise typer.Exit(2)


def read_secret_stdin(what: str) -> str:
    """Read a secret from stdin (one line), refusing an empty one or one that is not UTF-8.

    A password file in Latin-1 fails in readline (a strict stdin) or, decoded with surrogates
    (the C locale's surrogateescape), later where the password is encoded: here, either way,
    as one line instead of a traceback."""
    try:
        value = sys.stdin.readline().rstrip("\r\n")
        value.encode("utf-8")
    except UnicodeError:
        fail(f"the {what} on standard input is not UTF-8")
    if not value:
        fail(f"no {what} on standard input")
    return value
