"""An account connected with OAuth only (no password), as `accounts connect` + the callback
leave it, cannot be synced: `accounts sync` never hands the account's own OAuth token to the
token cache, so with no daemon session having stored one in broker_tokens it fails."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import asyncpg

from jtrades.config import Settings
from jtrades.oauth import complete
from jtrades.security import load_secret_box
from tests.integration.test_cli_accounts import Cli
from tests.integration.test_oauth_callback import sim_code
from tests.simutil import LOGIN, running_sim


async def test_sync_of_an_oauth_only_account(
    db_url: str, data_dir: Path, pool: asyncpg.Pool
) -> None:
    async with running_sim() as sim:
        env = dict(sim.tradovate_env())
        env["JTRADES_TRADOVATE__OAUTH_CLIENT_ID"] = "cid"
        env["JTRADES_TRADOVATE__OAUTH_REDIRECT_URL"] = "https://example.com/oauth/callback"
        cli = Cli(db_url, data_dir, env)
        await cli.ok("users", "register", "alice", "--email", "alice@example.com")
        await cli.ok(
            "accounts", "add", "alice-demo", "--user", "alice", "--env", "demo", "--username", LOGIN
        )
        url = (await cli.ok("accounts", "connect", "alice-demo"))["url"]
        state = parse_qs(urlparse(url).query)["state"][0]
        cfg = Settings(data_dir=data_dir, database={"url": db_url})  # type: ignore[arg-type]
        tv = cfg.tradovate.model_copy(
            update={
                "demo_rest_url": sim.rest_url,
                "oauth_client_id": "cid",
                "oauth_redirect_url": "https://example.com/oauth/callback",
            }
        )
        box = load_secret_box(cfg, create=False)
        label = await complete(
            pool, box, tv, state=state, code=await sim_code(sim), now=datetime.now(UTC)
        )
        assert label == "alice-demo"
        assert await pool.fetchval("SELECT count(*) FROM broker_tokens") == 0

        r = await cli("accounts", "sync", "alice-demo", "--json")
        assert r.exit_code == 0, (
            f"an OAuth-connected account must sync with its own token: {r.stderr.strip()}"
        )
        names = {s["name"] for s in r.json()["account"]["sub_accounts"]}
        assert names == {"SIM1", "SIM2"}
