"""structlog's configuration, one per thread, while a CLI command runs in-process.

structlog keeps one configuration per process. ``ainvoke`` runs a command in a worker thread
while the test's engine runs on the event loop's; the command configures logging onto its own
captured streams, and for as long as it ran, every event the engine logged went there. A test
waiting for a one-shot event under ``structlog.testing.capture_logs`` (``engine.flatten_abandoned``,
logged as the engine heard the command's change) never saw it, and failed after 30 s on a loaded
machine. Here every ``structlog.configure`` made by the command's thread applies to that thread
only, and the others log as they did before it started.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, MutableMapping
from typing import Any

import structlog

_lock = threading.Lock()
_configs: dict[int, dict[str, Any]] = {}  # thread ident → the configuration it set
_base: dict[str, Any] = {}  # every other thread's
_real_configure = structlog.configure
_users = 0


def _configure(**changes: Any) -> None:
    """``structlog.configure`` while routed: the calling thread's configuration changes."""
    with _lock:
        me = threading.get_ident()
        target = _configs.get(me, _base)
        target.update({k: v for k, v in changes.items() if v is not None})


def _route(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The only processor while routed: hand the event to the calling thread's configuration
    (its own level filter, processors and output), then drop it from the routing chain."""
    with _lock:
        cfg = dict(_configs.get(threading.get_ident(), _base))
    target = structlog.wrap_logger(
        cfg["logger_factory"](),
        processors=cfg["processors"],
        wrapper_class=cfg["wrapper_class"],
        context_class=cfg["context_class"],
        cache_logger_on_first_use=False,
    )
    fields = dict(event_dict)
    event = fields.pop("event", None)
    getattr(target, method)(event, **fields)
    raise structlog.DropEvent


@contextlib.contextmanager
def own_configuration() -> Iterator[None]:
    """Within: the calling thread's ``structlog.configure`` applies to it alone."""
    global _users
    me = threading.get_ident()
    with _lock:
        if _users == 0:
            _base.clear()
            _base.update(structlog.get_config())
            structlog.configure = _configure  # type: ignore[assignment]
            _real_configure(
                processors=[_route],
                wrapper_class=structlog.make_filtering_bound_logger(0),
                cache_logger_on_first_use=False,
            )
        _users += 1
        _configs[me] = dict(_base)
    try:
        yield
    finally:
        with _lock:
            del _configs[me]
            _users -= 1
            if _users == 0:
                structlog.configure = _real_configure
                _real_configure(**_base)
