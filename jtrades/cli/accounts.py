"""``jtrades accounts``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
