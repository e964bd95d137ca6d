"""Migrations replayed on an empty database build exactly sql/schema.sql."""

from __future__ import annotations

import asyncio
import re
import uuid

import asyncpg
import pytest

from jtrades.errors import StorageUnavailable
from jtrades.migrations import migrate, migration_status, migrations, sql_dir
from tests.cli import invoke

CATALOG = """
SELECT 'column' AS kind, table_name || '.' || column_name AS name,
       concat_ws(' ', data_type, domain_name, is_nullable, column_default) AS def
FROM information_schema.columns WHERE table_schema = 'public' AND table_name <> 'schema_migrations'
UNION ALL
SELECT 'constraint', conrelid::regclass || '.' || conname, pg_get_constraintdef(oid)
FROM pg_constraint WHERE connamespace = 'public'::regnamespace
  AND conrelid <> 'schema_migrations'::regclass
UNION ALL
SELECT 'index', indexname, indexdef FROM pg_indexes
WHERE schemaname = 'public' AND tablename <> 'schema_migrations'
UNION ALL
SELECT 'trigger', tgrelid::regclass || '.' || tgname, pg_get_triggerdef(oid)
FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'function', proname, md5(prosrc) FROM pg_proc WHERE pronamespace = 'public'::regnamespace
ORDER BY 1, 2
"""


async def _catalog(pg_server, setup) -> list[tuple[str, str, str]]:
    name = f"jt_schema_{uuid.uuid4().hex[:12]}"
    admin = await pg_server.admin()
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        conn = await asyncpg.connect(pg_server.dsn(name))
        try:
            await setup(conn)
            return [tuple(r) for r in await conn.fetch(CATALOG)]
        finally:
            await conn.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_migrations_build_schema_sql(pg_server) -> None:
    async def by_migrations(conn):
        await migrate(conn)

    async def by_schema(conn):
        await conn.execute((sql_dir() / "schema.sql").read_text())
        await conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY)")

    migrated = await _catalog(pg_server, by_migrations)
    declared = await _catalog(pg_server, by_schema)
    assert len(migrated) > 50
    assert migrated == declared


async def test_migrate_is_idempotent_and_recorded(pool) -> None:
    async with pool.acquire() as conn:
        assert await migrate(conn) == []  # the template already holds them all
        status = await migration_status(conn)
    assert [s["version"] for s in status] == [m.version for m in migrations()]
    assert all(s["applied_at"] is not None for s in status)


async def _fresh_db(pg_server) -> str:
    name = f"jt_fresh_{uuid.uuid4().hex[:12]}"
    admin = await pg_server.admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return name


async def _drop_db(pg_server, name: str) -> None:
    admin = await pg_server.admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_concurrent_migrations_on_a_fresh_database(pg_server) -> None:
    """Two daemons (or a daemon and `db migrate`) starting at once on an empty database: every
    one succeeds, and each migration is applied exactly once."""
    for _ in range(3):
        name = await _fresh_db(pg_server)
        try:
            conns = [await asyncpg.connect(pg_server.dsn(name)) for _ in range(4)]
            try:
                results = await asyncio.gather(*(migrate(c) for c in conns), return_exceptions=True)
                rows = await conns[0].fetch("SELECT version FROM schema_migrations ORDER BY 1")
            finally:
                for c in conns:
                    await c.close()
        finally:
            await _drop_db(pg_server, name)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert errors == []
        applied = sorted(m.version for r in results if isinstance(r, list) for m in r)
        assert applied == [m.version for m in migrations()]
        assert [r["version"] for r in rows] == applied


async def test_failed_migration_is_a_jtrades_error(pg_server) -> None:
    """A database that already holds a table of another application: the driver's error becomes
    the project's own, naming the migration (the CLI turns it into one line)."""
    name = await _fresh_db(pg_server)
    try:
        conn = await asyncpg.connect(pg_server.dsn(name))
        try:
            first = migrations()[0]
            table = _first_created_table(first.sql())
            await conn.execute(f"CREATE TABLE {table} (x int)")
            with pytest.raises(StorageUnavailable, match=f"{first.version:04d}_{first.name}"):
                await migrate(conn)
            # the lock was given back: another run is not stuck behind it
            held = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
            assert await conn.fetchval(held) == 0
        finally:
            await conn.close()
    finally:
        await _drop_db(pg_server, name)


def test_failed_migration_is_one_line_in_the_cli(pg_server, data_dir) -> None:
    async def prepare() -> str:
        name = await _fresh_db(pg_server)
        conn = await asyncpg.connect(pg_server.dsn(name))
        try:
            await conn.execute(
                f"CREATE TABLE {_first_created_table(migrations()[0].sql())} (x int)"
            )
        finally:
            await conn.close()
        return name

    name = asyncio.run(prepare())
    try:
        for args in (["db", "migrate"], ["users", "list", "--json"]):
            r = invoke(args, db_url=pg_server.dsn(name), data_dir=data_dir)
            assert r.exit_code == 1, r.stderr
            assert "migration" in r.error_line()
    finally:
        asyncio.run(_drop_db(pg_server, name))


def _first_created_table(sql: str) -> str:
    m = re.search(r"CREATE TABLE (?:IF NOT EXISTS )?([a-z_]+)", sql)
    assert m is not None
    return m.group(1)
