"""Test fixtures on a real Postgres.

The server on 127.0.0.1:5432 when it answers (override with JTRADES_TEST_DSN), else an embedded
pgserver in a temporary folder. Migrations run once into a template database; every test that
asks for ``db_url`` gets a fresh database cloned from it, dropped afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings

from jtrades.config import Settings
from jtrades.db import Database, connect
from jtrades.embedded_db import EmbeddedPostgres, socket_host
from jtrades.migrations import migrate, migrations

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

# pytest-xdist starts its workers with COLUMNS=80. rich fixes a console's width from COLUMNS when
# the console is made, and the CLI's consoles are made once at import, so every in-process CLI
# run of a worker would wrap its tables at 80 columns whatever width the test gives it.
os.environ.pop("COLUMNS", None)

# Hypothesis fails an example that takes longer than its deadline (200 ms), a wall-clock limit:
# on two cores shared by the test workers a ladder check took 273 ms and failed the run. Speed is
# measured by the benchmarks, never by a test.
settings.register_profile("jtrades", deadline=None)
settings.load_profile("jtrades")


def _server_answers(dsn: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=2)
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


class PgServer:
    """Where test databases are created: ``dsn(dbname)`` gives a URL for one."""

    def __init__(self, admin_dsn: str | None, socket_host: str | None) -> None:
        self.admin_dsn = admin_dsn
        self.socket_host = socket_host

    def dsn(self, dbname: str) -> str:
        if self.socket_host:
            return f"postgresql://postgres@/{dbname}?host={self.socket_host}"
        assert self.admin_dsn is not None
        return self.admin_dsn.rsplit("/", 1)[0] + "/" + dbname

    async def admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.dsn("postgres"))


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    dsn = os.environ.get("JTRADES_TEST_DSN", DEFAULT_DSN)
    if _server_answers(dsn):
        yield PgServer(dsn, None)
        return
    embedded = EmbeddedPostgres(tmp_path_factory.mktemp("embedded-pg"))
    uri = embedded.start()
    try:
        yield PgServer(None, socket_host(uri))
    finally:
        embedded.stop()


def _schema_fingerprint() -> str:
    h = hashlib.sha256()
    for mig in migrations():
        h.update(mig.sql().encode())
    return h.hexdigest()[:12]


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> str:
    """A migrated template, named by the migrations' hash so a changed schema gets a new one."""
    name = f"jt_tmpl_{_schema_fingerprint()}"

    async def build() -> None:
        admin = await pg_server.admin()
        try:
            # Serialise template creation across concurrent test runs on one server.
            await admin.execute("SELECT pg_advisory_lock(74736)")
            exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await admin.execute(f'CREATE DATABASE "{name}_build"')
                conn = await asyncpg.connect(pg_server.dsn(f"{name}_build"))
                try:
                    await migrate(conn)
                finally:
                    await conn.close()
                await admin.execute(f'ALTER DATABASE "{name}_build" RENAME TO "{name}"')
            await admin.execute("SELECT pg_advisory_unlock(74736)")
        finally:
            await admin.close()

    asyncio.run(build())
    return name


@pytest.fixture
async def db_url(pg_server: PgServer, template_db: str) -> AsyncIterator[str]:
    name = f"jt_test_{uuid.uuid4().hex[:16]}"
    admin = await pg_server.admin()
    try:
        await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    finally:
        await admin.close()
    yield pg_server.dsn(name)
    admin = await pg_server.admin()
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[asyncpg.Pool]:
    from jtrades.db import _init_connection

    p = await asyncpg.create_pool(db_url, min_size=1, max_size=4, init=_init_connection)
    assert p is not None
    try:
        yield p
    finally:
        await p.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    return d


@pytest.fixture
def settings(db_url: str, data_dir: Path) -> Settings:
    # answers carry the verdict the tests read, however loaded the machine (the bound has
    # tests of its own: test_webhook_answer_bound)
    server = {"answer_within_s": 30}
    return Settings(data_dir=data_dir, database={"url": db_url}, server=server)  # type: ignore[arg-type]


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The daemon's own connection setup (pool, lane parameters) on the test database."""
    db = await connect(settings)
    try:
        yield db
    finally:
        await db.close()
