"""The ``jtrades`` command: one Typer app composed of a sub-app per domain noun."""

from __future__ import annotations

import typer

from jtrades.cli import accounts, control, db, listings, recorder, serve, sim, trader, users
from jtrades.cli.common import STATE, ConfigOpt

app = typer.Typer(
    name="jtrades",
    help="TradingView alerts to Tradovate futures orders, for many users and accounts.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _root(config: ConfigOpt = None) -> None:
    """jtrades: run `jtrades serve` for the daemon; every other command manages its database."""
    STATE.config = config


app.add_typer(users.app, name="users")
app.add_typer(accounts.app, name="accounts")
app.add_typer(recorder.app, name="recorder")
app.add_typer(trader.app, name="trader")
app.add_typer(listings.signals_app, name="signals")
app.add_typer(listings.orders_app, name="orders")
app.add_typer(listings.positions_app, name="positions")
app.add_typer(listings.trades_app, name="trades")
app.add_typer(db.app, name="db")
serve.register(app)
sim.register(app)
control.register(app)


def main() -> None:
    app()
