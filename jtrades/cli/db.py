"""``jtrades db``: apply and inspect schema migrations."""

from __future__ import annotations

import typer

from jtrades.cli.common import JsonOpt, emit, err, run
from jtrades.db import Database
from jtrades.migrations import migrate, migration_status

app = typer.Typer(help="Database schema: migrate, status.", no_args_is_help=True)


@app.command("migrate")
def migrate_cmd(json: JsonOpt = False) -> None:
    """Apply pending migrations (also done automatically by `jtrades serve`).

    Example: jtrades db migrate
    """

    async def go(db: Database) -> list[dict[str, object]]:
        async with db.pool.acquire() as conn:
            applied = await migrate(conn)
        err.print(f"database: {db.url_for_display}")
        return [{"version": m.version, "name": m.name} for m in applied]

    applied = run(go, migrate=False)
    emit(
        json,
        {"applied": applied},
        "applied migrations",
        ["version", "name"],
        [(a["version"], a["name"]) for a in applied],
        empty="schema is up to date",
    )


@app.command("status")
def status_cmd(json: JsonOpt = False) -> None:
    """Show each migration and whether it is applied.

    Example: jtrades db status --json
    """

    async def go(db: Database) -> list[dict[str, object]]:
        async with db.pool.acquire() as conn:
            return await migration_status(conn)

    rows = run(go, migrate=False)
    emit(
        json,
        rows,
        "migrations",
        ["version", "name", "applied"],
        [(r["version"], r["name"], r["applied_at"] or "pending") for r in rows],
    )
