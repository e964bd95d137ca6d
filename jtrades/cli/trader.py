"""``jtrades trader``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage trader.", no_args_is_help=True)
