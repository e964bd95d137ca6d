"""``jtrades serve``: run the daemon (webhooks in, orders out) until SIGINT/SIGTERM."""

from __future__ import annotations

import structlog
import typer

from jtrades.cli.common import STATE, ConfigOpt, fail, settings
from jtrades.errors import JtradesError


def register(app: typer.Typer) -> None:
    """Add this module's commands to the root app."""
    app.command("serve")(serve)


def serve(config: ConfigOpt = None) -> None:
    """Run the daemon: migrate the database, connect broker sessions, take webhooks.

    With no database.url it starts an embedded Postgres in data_dir; a database.url that does
    not answer yet is waited for. Stops cleanly (exit 0) on SIGINT or SIGTERM; SIGHUP reloads
    nothing (restart to apply jtrades.toml). Under systemd it reports readiness and pings the
    watchdog, and data_dir must be set in the config file (the CLI then finds the same one).

    Example: jtrades serve --config /etc/jtrades/jtrades.toml
    """
    from jtrades.config import config_path
    from jtrades.daemon import serve as run_daemon

    if config is not None:
        STATE.config = config
    try:
        cfg = settings()
        run_daemon(cfg, config_path(STATE.config))
    except JtradesError as exc:
        if exc.logged and cfg.log.format == "json":
            # ``daemon.failed`` said it, as JSON: a plain "error:" line broke the journal's
            # one JSON object per line
            raise typer.Exit(1) from None
        fail(str(exc))
    except Exception:
        # A loop that failed takes the daemon down (``daemon._LoopFailed``, in a group), which
        # logged ``daemon.crashed``; its traceback goes through the log too, so in JSON mode it
        # is one scrubbed JSON line, not Python's raw dump over dozens of journal lines.
        structlog.get_logger("jtrades.daemon").error("daemon.crash_traceback", exc_info=True)
        raise typer.Exit(1) from None
