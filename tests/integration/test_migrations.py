"""Migrations replayed on an empty database build exactly sql/schema.sql."""

from __future__ import annotations

import uuid

import asyncpg

from jtrades.db import migrate, migration_status, migrations, sql_dir

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
