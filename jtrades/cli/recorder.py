"""``jtrades recorder``."""

from __future__ import annotations

import typer

app = typer.Typer(help="Manage recorder.", no_args_is_help=True)
