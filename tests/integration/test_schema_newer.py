"""An older jtrades (a release rolled back) on a database a newer one migrated: its migrations
are forward-only and recorded, so the database holds versions this code has never heard of.
Running on a schema it does not know fails at the first alert, on the hot path; it is refused at
the start with a line saying what to do."""

from __future__ import annotations

import asyncpg
import pytest

from jtrades.errors import StorageUnavailable
from jtrades.migrations import migrate, migration_status, migrations


async def test_a_schema_newer_than_this_code_is_refused_at_start(pool: asyncpg.Pool) -> None:
    newest = migrations()[-1].version
    async with pool.acquire() as conn:
        await migrate(conn)  # all of this version's: applied
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_a_newer_release')",
            newest + 1,
        )
        with pytest.raises(StorageUnavailable) as refused:
            await migrate(conn)
        said = str(refused.value)
        assert f"{newest + 1:04d}_from_a_newer_release" in said, said
        assert f"up to {newest:04d}" in said, said
        # the refusal gave the migration lock back: another process can take it
        assert await conn.fetchval("SELECT pg_try_advisory_lock(hashtext('x'))")
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                " AND pid = pg_backend_pid()"
            )
            == 1
        )  # only the one taken just above


async def test_db_status_names_the_newer_migration(pool: asyncpg.Pool) -> None:
    newest = migrations()[-1].version
    async with pool.acquire() as conn:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, 'from_a_newer_release')",
            newest + 1,
        )
        rows = await migration_status(conn)
    assert [r["version"] for r in rows] == [*range(1, newest + 1), newest + 1]
    assert rows[-1]["name"] == "from_a_newer_release (newer than this jtrades)"
    assert all(r["applied_at"] is not None for r in rows)
