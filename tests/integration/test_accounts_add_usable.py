"""`accounts add --json` of a demo/live login with no password says "usable": true (and no
refusal), while the daemon refuses it (login_credential: "has no password and is not connected
with OAuth"): the refusal is only computed when a password was given."""

from __future__ import annotations

import asyncpg

from jtrades.config import Settings
from jtrades.security import load_secret_box
from jtrades.store import login_proofs
from tests.integration.test_cli_accounts import Cli
from tests.integration.test_cli_accounts import cli as cli


async def test_add_without_password_is_not_said_usable(
    cli: Cli, pool: asyncpg.Pool, settings: Settings
) -> None:
    out = await cli.ok(
        "accounts",
        "add",
        "alice-live",
        "--user",
        "alice",
        "--env",
        "live",
        "--username",
        "alice_tv",
    )
    box = load_secret_box(settings, create=True)
    daemon_says = await login_proofs.daemon_refusal(pool, box, out["account"]["id"])
    assert daemon_says is not None  # the daemon will not use it
    assert out["usable"] is False, f"--json says usable while the daemon refuses: {daemon_says}"
