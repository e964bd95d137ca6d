"""Top-level ``jtrades`` commands: sim."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Annotated

import typer

from jtrades import aio
from jtrades.cli.common import err, fail, out
from jtrades.errors import JtradesError

# Longer is no rehearsal of anything, and past ~8e9 s an expiry is beyond year 9999.
MAX_TOKEN_LIFETIME_S = 366 * 86400


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("sim")(sim)


def sim(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", "-p", help="Port to listen on (0 = any free).", min=0, max=65535),
    ] = 8090,
    price: Annotated[
        list[str] | None,
        typer.Option(
            "--price",
            help="Starting price, SYMBOL=PRICE (a root like MNQ or a contract); repeatable.",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", help="Simulator world file (TOML or JSON): logins, accounts, rules."
        ),
    ] = None,
    token_lifetime: Annotated[
        float | None,
        typer.Option("--token-lifetime", help="Access-token lifetime in seconds (default 4800)."),
    ] = None,
) -> None:
    """Run a local Tradovate-protocol simulator for rehearsals and tests.

    Example: jtrades sim --port 8090 --price MNQ=21500
    """
    from jtrades.sim.app import serve
    from jtrades.sim.config import default_config, load_config, parse_price
    from jtrades.sim.world import Simulator

    try:
        cfg = load_config(config) if config else default_config()
        for item in price or []:
            symbol, sep, value = item.partition("=")
            if not sep or not symbol:
                fail(f"--price wants SYMBOL=PRICE, got {item!r}")
            parsed = parse_price(value.strip())
            if not math.isfinite(float(parsed)):  # 1e400: a Decimal, but no double (the wire's)
                fail(f"--price {item!r} is past what a price on the wire can hold")
            cfg.prices[symbol.strip().upper()] = parsed
        if token_lifetime is not None:
            # written so that nan fails too (every comparison with nan is false)
            if not 0 < token_lifetime <= MAX_TOKEN_LIFETIME_S:
                fail(
                    f"--token-lifetime must be a number of seconds above 0 and at most"
                    f" {MAX_TOKEN_LIFETIME_S} (a year)"
                )
            cfg.token_lifetime_s = token_lifetime
        world = Simulator(cfg)
        for symbol in cfg.prices:
            if not world.contracts_for(symbol):
                fail(f"unknown symbol {symbol!r} in --price")
    except JtradesError as exc:
        fail(str(exc))

    def ready(bound: int) -> None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
        rest, ws = f"http://{shown}:{bound}/v1", f"ws://{shown}:{bound}/v1/websocket"
        err.print(f"jtrades sim: Tradovate simulator listening on http://{host}:{bound}")
        for lg in cfg.logins:
            secret = f" / password {lg.password}" if config is None else ""
            accounts = ", ".join(a.name for a in lg.accounts)
            err.print(f"  login {lg.name}{secret}: {accounts}")
        fronts = ", ".join(f"{c.name}={world.exchange.prices[c.id]}" for c in world.front.values())
        err.print(f"  front months: {fronts}")
        err.print("  control: POST /sim/price, GET /sim/state, GET /sim/stats, POST /sim/fault")
        err.print("Point jtrades at it with these environment variables:")
        for side in ("DEMO", "LIVE"):
            out.print(f"export JTRADES_TRADOVATE__{side}_REST_URL={rest}")
            out.print(f"export JTRADES_TRADOVATE__{side}_WS_URL={ws}")
        err.print("or in jtrades.toml, under [tradovate]:")
        err.print(f'  demo_rest_url = "{rest}"\n  demo_ws_url = "{ws}"')
        err.print("Ctrl-C stops it.")

    with contextlib.suppress(KeyboardInterrupt):
        try:
            aio.run(serve(world, host, port, ready))
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror}")
