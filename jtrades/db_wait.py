"""The database of ``jtrades serve`` at start: a ``database.url`` not reachable yet is waited for.

Apart from ``jtrades.daemon`` because the daemon composes parts, and this one is a loop of its
own with its own bounds and its own way of being told (the log, a person, systemd): the daemon
gives it the settings, a way to run a step unless a stop signal comes first, and its stop-aware
sleep, and gets the ``Database`` back, or None when a stop signal came first.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable

import structlog

from jtrades.aio import within
from jtrades.config import Settings
from jtrades.config_values import redact_url
from jtrades.db import Database, DatabaseUnreachable, connect
from jtrades.systemd import extend_timeout, notify

log = structlog.get_logger("jtrades.daemon")  # its events are the daemon's (README)

# The wait for a database.url that cannot be reached at start (``open_database``).
START_CONNECT_S = 15.0  # one attempt (asyncpg's own default is 60 s)
START_RETRY_FIRST_S = 0.5
START_RETRY_MAX_S = 10.0
WAIT_LOG_EVERY_S = 60.0  # the same reason logged again at most this often
WAIT_ALERT_S = 60.0  # waited this long: an error, so a person is notified
START_AFTER_WAIT_S = 120.0  # the rest of the start, as the unit's TimeoutStartSec gives it


async def open_database(
    settings: Settings,
    until_stopped: Callable[[Awaitable[Database]], Awaitable[asyncio.Future[Database] | None]],
    sleep: Callable[[float], Awaitable[bool]],
) -> Database | None:
    """The database; None when a stop signal came first.

    ``until_stopped`` runs a step to its end (its future, done) unless a stop signal comes first
    (None, and the step cancelled); ``sleep`` waits a number of seconds or until stop (True
    when it is time to stop).

    An embedded server is started once (its failures are not the database being away: they
    are one line and exit 1); a stop signal ends its start, the wait for a server found
    still starting included. A ``database.url`` that cannot be reached (refused, no route,
    no answer within ``START_CONNECT_S``, the server starting up or shutting down) is
    waited for, as the running daemon waits out an outage: exiting spent the unit's
    restarts (StartLimitBurst=5 in a few seconds) and left it failed until someone ran
    ``systemctl reset-failed``. Tried again with backoff up to ``START_RETRY_MAX_S``;
    logged as ``daemon.waiting_for_database`` once per reason, then at most once a minute,
    an error after ``WAIT_ALERT_S`` (notified); systemd is told (STATUS, and
    EXTEND_TIMEOUT_USEC so TimeoutStartSec does not end the wait). What waiting cannot fix
    (a wrong password, an unknown role or database, a malformed URL) is not waited for.
    """
    if not settings.database.url:
        abandon = threading.Event()
        started = await until_stopped(connect(settings, abandon=abandon))
        if started is None:
            abandon.set()  # its thread would hold the exit up for the rest of its wait
            return None
        return started.result()
    display = redact_url(settings.database.url)
    began = time.monotonic()
    delay = START_RETRY_FIRST_S
    said: dict[str, float] = {}  # reason -> when it was last logged
    alerted = False
    waited = False
    while True:
        attempt = within(connect(settings), START_CONNECT_S)
        done = await until_stopped(attempt)
        if done is None:
            return None
        try:
            db = done.result()
        except DatabaseUnreachable as exc:
            reason = str(exc).removeprefix("cannot reach the database: ")
        except TimeoutError:
            reason = f"no answer within {START_CONNECT_S:g} s"
        else:
            if waited:
                log.info("daemon.database_reached", waited_s=round(time.monotonic() - began))
                notify(f"STATUS=database reached; starting\n{extend_timeout(START_AFTER_WAIT_S)}")
            return db
        waited = True
        now = time.monotonic()
        if reason not in said or now - said[reason] >= WAIT_LOG_EVERY_S:
            said[reason] = now
            log.warning(
                "daemon.waiting_for_database",
                reason=reason,
                database=display,
                retry_in_s=delay,
                effect="not started: alerts are not taken until the database answers",
            )
        if not alerted and now - began >= WAIT_ALERT_S:
            alerted = True
            log.error(
                "daemon.database_unreachable",
                waited_s=round(now - began),
                reason=reason,
                database=display,
                effect="jtrades serve is not running: no alert is taken and open"
                " positions are not watched until the database answers",
            )
        notify(
            f"STATUS=waiting for the database ({reason}); trying again\n"
            + extend_timeout(delay + START_CONNECT_S + 15)
        )
        if await sleep(delay):
            return None
        delay = min(delay * 2, START_RETRY_MAX_S)
