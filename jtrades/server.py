"""The daemon's HTTP edge: ``POST /webhook/{token}`` (and ``POST /webhook`` with the token in the
body; the pipeline is ``jtrades.webhook``), ``/healthz``, ``/readyz``, ``/metrics`` and
``/oauth/callback``.

The access log names the route (``/webhook/{token}``), never the path, so tokens stay out of logs
(money rule 8). Every POST under ``/webhook`` reaches the webhook code, even to a URL no webhook
is at (``/webhook/<token>/extra``): every delivery is stored with its verdict, and errors are
JSON; so is the 405 for another method (a browser's GET), which stores nothing.
"""

from __future__ import annotations

import contextlib
import html
import logging
from datetime import UTC, datetime

import structlog
from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest

from jtrades.aio import within
from jtrades.config import Settings
from jtrades.db import Database
from jtrades.errors import JtradesError, SecretKeyMissing, StorageUnavailable
from jtrades.logging import scrub
from jtrades.metrics import Metrics
from jtrades.security import SecretBox, load_secret_box
from jtrades.store import status as status_store
from jtrades.webhook import Webhooks
from jtrades.webhook_answers import error_response, json_response
from jtrades.webhook_engine import SignalEngine

__all__ = ["Metrics", "OAuthCallback", "SignalEngine", "Webhooks", "build_app", "start_http"]

log = structlog.get_logger("jtrades.server")
access_log = structlog.get_logger("jtrades.access")


_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class RouteAccessLogger(AbstractAccessLogger):
    """One ``http.request`` line per request naming the route, never the path (tokens)."""

    def log(self, request: BaseRequest, response: web.StreamResponse, time: float) -> None:
        route = "<unmatched>"
        try:
            match_info = request.match_info  # type: ignore[attr-defined]
        except (AttributeError, AssertionError):
            # a request aiohttp could not parse (a header too long, bad chunking) never met the
            # router, and the property asserts: the line is still written, its route unmatched
            match_info = None
        if match_info is not None and match_info.route.resource is not None:
            route = match_info.route.resource.canonical
        # Health probes every few seconds would drown the log: they go to debug unless failing.
        quiet = route in _PROBES and response.status < 400
        (access_log.debug if quiet else access_log.info)(
            "http.request",
            method=request.method,
            route=route,
            status=response.status,
            ms=round(time * 1000, 2),
            remote=request.remote,
        )


WEBHOOKS = web.AppKey("webhooks", Webhooks)


async def _healthz(_request: web.Request) -> web.Response:
    return json_response(200, {"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    hooks = request.app[WEBHOOKS]
    checks: dict[str, bool] = {}
    try:
        checks["database"] = await within(status_store.ping(hooks.db.pool), 2.0)
    except (TimeoutError, StorageUnavailable, OSError):
        checks["database"] = False
    checks.update(_process_checks(hooks))
    ok = all(checks.values())
    return json_response(200 if ok else 503, {"ready": ok, "checks": checks})


def _process_checks(hooks: Webhooks) -> dict[str, bool]:
    """``/readyz``'s checks but the database's: ``jtrades_ready`` in ``/metrics`` is them, so
    an alert rule on the gauge sees a daemon that answers every alert 503 (stopping, starting,
    the one-daemon lock being taken again) as ``/readyz`` does, without a query per scrape."""
    return {
        "tokens": hooks.tokens.loaded,
        "engine": hooks.engine.ready(),
        "accepting": hooks.accepting,
        "started": hooks.started,
    }


async def _metrics(request: web.Request) -> web.Response:
    hooks = request.app[WEBHOOKS]
    text = hooks.metrics.render(
        inflight=hooks.inflight,
        tokens=len(hooks.tokens),
        ready=all(_process_checks(hooks).values()),
        config_version=hooks.engine.config_version(),
    )
    return web.Response(text=text, content_type="text/plain")


class OAuthCallback:
    """``GET /oauth/callback?code=…&state=…``: finish ``jtrades accounts connect`` in a browser."""

    def __init__(self, db: Database, settings: Settings, box: SecretBox | None) -> None:
        self.db = db
        self.settings = settings
        self.box = box

    async def handle(self, request: web.Request) -> web.Response:
        from jtrades.oauth import complete

        q = request.query
        if q.get("error"):
            why = scrub(str(q.get("error_description") or q["error"]))[:200]
            return _page(400, f"Tradovate did not connect the account: {why}")
        code, state = q.get("code", ""), q.get("state", "")
        if not code or not state:
            return _page(400, "This link is missing its code or state.")
        if self.box is None:
            # made since the start: `accounts connect` creates the key when none exists
            with contextlib.suppress(SecretKeyMissing):
                self.box = load_secret_box(self.settings, create=False)
        if self.box is None:
            return _page(503, "The daemon has no secret key, so it cannot store the token.")
        try:
            label = await complete(
                self.db.pool,
                self.box,
                self.settings.tradovate,
                state=state,
                code=code,
                now=datetime.now(UTC),
            )
        except JtradesError as exc:
            log.warning("oauth.failed", error=type(exc).__name__, reason=str(exc))
            return _page(400, f"The account was not connected: {scrub(str(exc))}")
        except Exception as exc:
            log.exception("oauth.crashed", error=type(exc).__name__)
            return _page(502, "The account was not connected (internal error); try again.")
        return _page(200, f"Account {label} is connected. You can close this window.")


def _page(status: int, message: str) -> web.Response:
    text = html.escape(message)
    body = f"<!doctype html><title>jtrades</title><p>{text}</p>\n"
    return web.Response(status=status, text=body, content_type="text/html")


async def _method_not_allowed(request: web.Request) -> web.Response:
    """A webhook URL opened with another method (a browser's GET): a JSON refusal as the
    README promises for every refusal, where aiohttp's was a plain-text 405. Nothing is
    stored, and the path (it may hold the token) is not repeated."""
    response = error_response(
        405,
        "method_not_allowed",
        f"{request.method} is not accepted here: a webhook takes alerts sent with POST",
        None,
    )
    response.headers["Allow"] = "POST"
    return response


def _webhook_route(app: web.Application, path: str, hooks: Webhooks) -> None:
    """POST ``path`` to the webhook, any other method to the JSON 405. The catch-all is the
    resource's second route, tried only once POST did not match: the alerts' path is as it was.
    The access log still names the route (``/webhook/{token}``), never the path."""
    app.router.add_post(path, hooks.handle)
    app.router.add_route("*", path, _method_not_allowed)


def build_app(hooks: Webhooks, oauth: OAuthCallback | None = None) -> web.Application:
    """The aiohttp application; the body limit is enforced by ``Webhooks`` while streaming."""
    app = web.Application(client_max_size=hooks.max_body + 1)
    app[WEBHOOKS] = hooks
    if oauth is not None:
        app.router.add_get("/oauth/callback", oauth.handle)
    # "//webhook/…": a base URL ending in "/" joined to "/webhook/…"; the same path, as nginx
    # (merge_slashes) would pass it on
    for root in ("/webhook", "//webhook"):
        _webhook_route(app, root + "/{token}", hooks)
        _webhook_route(app, root + "/{token}/", hooks)  # a URL pasted with a trailing slash
        _webhook_route(app, root, hooks)
        _webhook_route(app, root + "/", hooks)  # the same, token in the body
        # Any other /webhook/… URL: the webhook code answers (a JSON 404 and a stored row), not
        # aiohttp's text 404, which would store nothing; TradingView does not re-send a 4xx.
        _webhook_route(app, root + "/{stray:.+}", hooks)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


def make_runner(app: web.Application) -> web.AppRunner:
    """An AppRunner with the token-free access log (aiohttp's own would print paths)."""
    return web.AppRunner(
        app,
        access_log_class=RouteAccessLogger,
        access_log=logging.getLogger("jtrades.access"),
        handle_signals=False,
        shutdown_timeout=5.0,
    )


async def start_http(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving ``app`` on host:port (0 = any free port); returns the runner and the port."""
    runner = make_runner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    addresses = runner.addresses
    bound = int(addresses[0][1]) if addresses else port
    return runner, bound
