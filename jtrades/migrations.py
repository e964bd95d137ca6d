"""Forward-only SQL migrations: the shipped ``sql/migrations`` files, applied in order.

Apart from the connection layer (``jtrades.db``) because they are a job of their own: finding
and numbering the files, applying the pending ones under an advisory lock, and reporting which
are applied (``jtrades db status``); the daemon, the CLI and the tests run them on whatever
connection they hold.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

import asyncpg
import structlog
from asyncpg.pool import PoolConnectionProxy

from jtrades.db_errors import describe_error
from jtrades.errors import ConfigError, StorageUnavailable

log = structlog.get_logger(__name__)

# A plain connection or one borrowed from a pool: migrations accept either.
Conn: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Serialises concurrent migration runs (two processes starting at once) inside Postgres.
_MIGRATION_LOCK = 0x6A747264


def sql_dir() -> Path:
    """The shipped ``sql/`` folder: inside the wheel, or at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "sql", here.parent / "sql"):
        if (candidate / "migrations").is_dir():
            return candidate
    raise ConfigError(f"SQL files not found next to {here}: the installation is incomplete")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def migrations() -> list[Migration]:
    found = []
    for path in sorted((sql_dir() / "migrations").iterdir()):
        m = _MIGRATION_NAME.match(path.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), path))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise ConfigError(f"migrations must be numbered 0001, 0002, … without gaps: {versions}")
    return found


async def migrate(conn: Conn) -> list[Migration]:
    """Apply pending migrations, each in its own transaction; returns those applied now.

    A driver error becomes ``StorageUnavailable`` naming the migration that failed (the
    database cannot be used as it is: fail closed, and say why in one line)."""
    applied_now: list[Migration] = []
    step = "setup"
    try:
        # The lock comes before anything else, even CREATE TABLE IF NOT EXISTS: two processes
        # creating the table at once on a fresh database both pass the "if not exists" and one
        # fails on pg_type's unique index.
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY, name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            rows = await conn.fetch("SELECT version, name FROM schema_migrations")
            done = {r["version"] for r in rows}
            _refuse_newer(rows)
            for mig in migrations():
                if mig.version in done:
                    continue
                step = f"{mig.version:04d}_{mig.name}"
                async with conn.transaction():
                    await conn.execute(mig.sql())
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        mig.version,
                        mig.name,
                    )
                log.info("db.migrated", version=mig.version, name=mig.name)
                applied_now.append(mig)
        finally:
            # A connection that died with the lock has given it back already; the error that
            # killed it is the one to report, not this one.
            with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        raise StorageUnavailable(
            f"database migration {step} failed: {describe_error(exc)}"
        ) from None
    return applied_now


def _refuse_newer(applied: list[Any]) -> None:
    """A database a newer jtrades migrated (a release rolled back) holds a schema this code does
    not know: refused at the start in one line, not at the first alert on the hot path."""
    known = {m.version for m in migrations()}
    newer = sorted((r["version"], r["name"]) for r in applied if r["version"] not in known)
    if newer:
        names = ", ".join(f"{v:04d}_{n}" for v, n in newer)
        raise StorageUnavailable(
            f"the database was migrated by a newer jtrades ({names}); this version knows"
            f" migrations up to {max(known):04d}: run the newer release, or restore a backup"
            " taken before the upgrade"
        )


async def migration_status(conn: Conn) -> list[dict[str, Any]]:
    """Each migration this jtrades knows, applied or not, then any a newer one applied (named
    so: the start refuses such a database, and this is where an operator sees why)."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    rows = []
    if exists:
        rows = await conn.fetch("SELECT version, name, applied_at FROM schema_migrations")
    applied = {r["version"]: r["applied_at"] for r in rows}
    known = migrations()
    versions = {m.version for m in known}
    newer = sorted((r for r in rows if r["version"] not in versions), key=lambda r: r["version"])
    return [
        {"version": m.version, "name": m.name, "applied_at": applied.get(m.version)} for m in known
    ] + [
        {
            "version": r["version"],
            "name": f"{r['name']} (newer than this jtrades)",
            "applied_at": r["applied_at"],
        }
        for r in newer
    ]
