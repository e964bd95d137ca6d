"""``jtrades signals|orders|positions|trades list``: what the daemon received and did."""

from __future__ import annotations

import typer

signals_app = typer.Typer(help="Signals received, with verdicts.", no_args_is_help=True)
orders_app = typer.Typer(help="Orders sent to brokers.", no_args_is_help=True)
positions_app = typer.Typer(help="Open positions per sub-account.", no_args_is_help=True)
trades_app = typer.Typer(help="Closed trades with P&L.", no_args_is_help=True)
