"""A fresh install that uses OAuth only: no password was ever stored, so no secret key exists
when `jtrades serve` starts. `accounts connect` then creates data_dir/secret.key and prints the
sign-in link, but the daemon's /oauth/callback loaded its key once at start (None) and answers
every callback 503 "no secret key" until the daemon is restarted."""

from __future__ import annotations

import asyncio
import os
import re
import socket
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import aiohttp

from jtrades.config import Settings
from jtrades.daemon import Daemon
from tests.integration.test_cli_accounts import Cli
from tests.integration.test_oauth_callback import sim_code
from tests.simutil import LOGIN, running_sim

REDIRECT = "https://example.com/oauth/callback"


async def test_callback_after_connect_created_the_key(
    settings: Settings, db_url: str, data_dir: Path
) -> None:
    assert "JTRADES_SECRET_KEY" not in os.environ
    assert not (data_dir / "secret.key").exists()
    async with running_sim() as sim:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        tv = settings.tradovate.model_copy(
            update={
                "demo_rest_url": sim.rest_url,
                "demo_ws_url": sim.ws_url,
                "oauth_client_id": "cid",
                "oauth_redirect_url": REDIRECT,
            }
        )
        srv = settings.server.model_copy(update={"host": "127.0.0.1", "port": port})
        lg = settings.log.model_copy(update={"level": "error"})
        daemon = Daemon(settings.model_copy(update={"tradovate": tv, "server": srv, "log": lg}))
        running = asyncio.create_task(daemon.run())
        try:
            for _ in range(400):
                if daemon.port is not None and daemon.hooks is not None:
                    break
                await asyncio.sleep(0.05)
            assert daemon.port is not None

            env = dict(sim.tradovate_env())
            env["JTRADES_TRADOVATE__OAUTH_CLIENT_ID"] = "cid"
            env["JTRADES_TRADOVATE__OAUTH_REDIRECT_URL"] = REDIRECT
            cli = Cli(db_url, data_dir, env)
            r = await cli("users", "register", "alice", "--email", "alice@example.com")
            assert r.exit_code == 0, r.stderr
            r = await cli(
                "accounts",
                "add",
                "alice-demo",
                "--user",
                "alice",
                "--env",
                "demo",
                "--username",
                LOGIN,
            )
            assert r.exit_code == 0, r.stderr
            r = await cli("accounts", "connect", "alice-demo")
            assert r.exit_code == 0, r.stderr
            url = re.search(r"https://trader\.tradovate\.com/oauth\?\S+", r.stdout).group(0)
            assert (data_dir / "secret.key").exists()  # connect made the key
            state = parse_qs(urlparse(url).query)["state"][0]
            code = await sim_code(sim)
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"http://127.0.0.1:{daemon.port}/oauth/callback",
                    params={"code": code, "state": state},
                ) as r,
            ):
                text = await r.text()
                assert r.status == 200, f"{r.status}: {text}"
        finally:
            daemon.request_stop("test")
            await asyncio.wait_for(running, 30)
