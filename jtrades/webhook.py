"""The webhook pipeline up to the engine: allowlist, body limit, token, parse, dedup, answer.

Every delivery leaves a ``signals`` row, whatever becomes of it. The order of checks is fixed:
IP allowlist (403), a body that cannot be read (400 ``bad_body``), body size (413), a URL no
webhook is at (404 ``not_found``), token (401 none, 404 unknown), body (400/422); then the
engine gets the delivery (``store.signals.Delivery``, its id drawn in advance) and stores it
with its orders' intents in one atomic statement that also decides whether the alert is new
(money rule 3). From that statement on, orders may leave, so nothing after it answers 5xx:
TradingView re-sends a delivery answered 5xx, and though dedup would make the re-send harmless,
its answer would hide what happened. An error there is logged and answered 200 ``accepted``
with the error in ``detail``. Before it, any failure is a 503 (nothing stored, nothing sent),
which TradingView re-sends; when the engine fails, the signal's row says which case it was.
A value Postgres refuses is the exception: it would fail every re-send the same way, so it is
refused (422) and the raw body stored.

The raw body is stored with any webhook token in it masked (money rule 8).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from aiohttp import web

from jtrades.config import Settings
from jtrades.db import Database
from jtrades.engine.body_tokens import find_token, mask_signal
from jtrades.engine.dedup import idempotency_key
from jtrades.engine.parsing import parse_payload
from jtrades.engine.signal import Signal
from jtrades.engine.tokens import TokenCache
from jtrades.errors import (
    ConfigChanged,
    InvalidInput,
    InvalidSignal,
    NotFound,
    StorageUnavailable,
)
from jtrades.logging import register_secret
from jtrades.metrics import Metrics
from jtrades.senders import Senders
from jtrades.store import signals as signal_store
from jtrades.webhook_answers import (
    ANSWERED_IN_DOUBT,
    Unanswered,
    duplicate_response,
    error_response,
    failed_after_claim,
    first_result,
    in_doubt_response,
    in_time,
    json_response,
    settle_never_known,
    still_sending,
    summary,
    time_left,
    was_claimed,
)
from jtrades.webhook_engine import SignalEngine
from jtrades.webhook_request import (
    BODY_READ_S,
    Unreadable,
    content_type,
    maskable,
    read_body,
    strip_tokens,
    unreadable_type,
)

log = structlog.get_logger("jtrades.webhook")

# The 503's detail while deliveries are refused (nothing stored or sent; TradingView re-sends).
SHUTTING_DOWN = "the daemon is shutting down"
RETAKING_LOCK = (
    "the daemon lost its database connection and is taking its one-daemon lock again;"
    " nothing was stored or sent"
)


class Webhooks:
    """The webhook pipeline up to the engine: authenticate, store, dedup, hand over, answer."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        tokens: TokenCache,
        engine: SignalEngine,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.tokens = tokens
        self.engine = engine
        self.metrics = metrics or Metrics()
        self.max_body = settings.server.max_body_bytes
        self.answer_within_s = settings.server.answer_within_s
        self.body_read_s = BODY_READ_S
        self.senders = Senders(settings.server.allowed_ips, settings.server.trusted_proxies)
        self.accepting = True
        # False while ``jtrades serve`` is still starting (``/readyz``): set by the daemon once
        # its start is complete; an app built without the daemon is ready as built
        self.started = True
        # the 503's detail while ``accepting`` is False: a stop, or the one-daemon lock being
        # taken again after its database connection was lost (``Daemon._set_accepting``)
        self.refusal = SHUTTING_DOWN
        # first signal id -> its answer, so an in-process duplicate can repeat it exactly
        self._inflight: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._tasks: set[asyncio.Task[web.Response]] = set()
        # signals answered 503 while their claim was in doubt, whose outcome is still to come
        self._answered_in_doubt: set[int] = set()
        self._active = 0  # webhook requests being handled
        self.ids = signal_store.SignalIds(db.pool)
        if hasattr(engine, "defer_intent_outcomes"):
            # The engine leaves its intents' send outcomes to us: they are written with the
            # signal's verdict in one statement (one round trip instead of two).
            engine.defer_intent_outcomes = True

    @property
    def inflight(self) -> int:
        return len(self._tasks)

    # --- lifecycle -----------------------------------------------------------------------

    async def drain(self, timeout_s: float) -> bool:
        """Stop taking deliveries and wait for those in hand; True if all finished in time.

        "In hand" counts requests still before their claim too: one that passed the
        ``accepting`` check a moment before the stop may yet store a signal and dispatch it.
        """
        self.refusal = SHUTTING_DOWN
        self.accepting = False
        deadline = time.monotonic() + timeout_s
        while self._active or self._tasks:
            if time.monotonic() >= deadline:
                log.error("webhook.drain_timeout", requests=self._active, signals=len(self._tasks))
                return False
            await asyncio.sleep(0.01)
        await self.ids.close()
        return True

    # --- handlers ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        self._active += 1
        try:
            response = await self._handle(request)
        except Exception as exc:
            # Only code before the claim can get here (after it, ``_process`` never raises and
            # the duplicate path answers from what it has): nothing was sent, so a 503 is safe
            # and TradingView's re-send is welcome.
            self.metrics.errors += 1
            log.exception("webhook.failed_before_claim", error=type(exc).__name__)
            response = error_response(
                503, "unavailable", "temporary failure; nothing was sent", None
            )
        finally:
            self._active -= 1
        self.metrics.responses[response.status] += 1
        self.metrics.seconds_sum += time.perf_counter() - started
        self.metrics.seconds_count += 1
        log.debug("webhook.answered", status=response.status, ms=_ms(started))
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        received_at = datetime.now(UTC)
        remote = self.senders.address(request)
        ctype = content_type(request.headers.get("Content-Type"))
        if not self.accepting:
            # Shutting down, or taking the one-daemon lock again: TradingView re-sends a 503,
            # and nothing was stored or sent.
            return error_response(503, "unavailable", self.refusal, None)

        if not self.senders.allowed(remote):
            return await self._refuse(
                403, "forbidden", "sender address not allowed", received_at, remote, ctype, b""
            )

        path_token = (request.match_info.get("token") or "").strip() or None
        # ``stray``: the rest of a /webhook/… URL no other route takes (``<token>/extra``); all
        # of it and each of its parts are masked, as any one of them may be the token
        stray = request.match_info.get("stray")
        if stray is not None:
            in_path = [stray, *(p.strip() for p in stray.split("/") if p.strip())]
        else:
            in_path = [path_token] if path_token else []
        try:
            body, oversize = await read_body(request, self.max_body, self.body_read_s)
        except Unreadable as exc:
            if exc.hung_up:  # the sender's doing, and nobody is left to answer: not an error
                log.info("webhook.sender_hung_up", received=len(exc.partial))
            return await self._refuse(
                400, "bad_body", exc.detail, received_at, remote, ctype,
                strip_tokens(exc.partial, *in_path),
            )  # fmt: skip
        if oversize is not None:
            return await self._refuse(
                413,
                "too_large",
                f"body exceeds {self.max_body} bytes",
                received_at,
                remote,
                ctype,
                strip_tokens(body, *in_path),
                info={"size": oversize, "truncated_to": len(body)},
            )
        if stray is not None:
            return await self._stray(in_path, body, received_at, remote, ctype)

        signal: Signal | None = None
        invalid: InvalidSignal | None = None
        try:
            signal = parse_payload(body, ctype)
        except InvalidSignal as exc:
            invalid = exc

        token = path_token or (signal.token if signal else find_token(body))
        stored_body = strip_tokens(body, path_token, signal.token if signal else None, token)
        if not token:
            return await self._refuse(
                401, "unauthorized", "no webhook token", received_at, remote, ctype, stored_body
            )
        token_hash, recorder_id = await self.tokens.resolve(token)
        if recorder_id is not None:
            # A real token is masked in any later log line (bounded: one per recorder).
            register_secret(token)
        if recorder_id is None:
            return await self._refuse(
                404, "unknown_token", "no recorder has this token", received_at, remote, ctype,
                stored_body,
            )  # fmt: skip
        media = unreadable_type(ctype)
        if media is not None:
            return await self._refuse(
                415, "unsupported_media_type",
                f"a body sent as {media} is not an alert: send JSON or text",
                received_at, remote, ctype, stored_body, recorder_id=recorder_id,
            )  # fmt: skip
        if invalid is not None or signal is None:
            status = invalid.status if invalid is not None else 422
            reason = str(invalid) if invalid is not None else "not a signal"
            return await self._refuse(
                status, "invalid_signal", reason, received_at, remote, ctype, stored_body,
                recorder_id=recorder_id,
            )  # fmt: skip

        # the same tokens as the raw body's, out of everything stored of the signal (its
        # extra fields, its id and the dedup key made of it)
        signal = mask_signal(signal, maskable(path_token, signal.token, token))
        key = idempotency_key(alert_id=signal.alert_id, token_hash=token_hash, body=body)
        try:
            signal_id = await self.ids.take()
        except StorageUnavailable as exc:
            # Fail closed, before anything could be stored or sent: TradingView re-sends a 503.
            log.error("webhook.storage_unavailable", error=str(exc))
            self.metrics.errors += 1
            return error_response(503, "storage_unavailable", "the database is unavailable", None)
        claimed, doubt = asyncio.Event(), asyncio.Event()
        delivery = signal_store.Delivery(
            signal_id=signal_id,
            recorder_id=recorder_id,
            idem_key=key.key,
            window=key.window,
            received_at=received_at,
            remote_addr=remote,
            content_type=ctype,
            raw_body=stored_body,
            signal=signal,
            claimed=claimed,
            in_doubt=doubt,
        )
        task = asyncio.create_task(self._process(delivery), name=f"signal-{signal_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        answer = await in_time(task, claimed, time_left(self.answer_within_s, received_at), doubt)
        if answer is Unanswered.SENDING:
            log.info("webhook.answered_before_orders", signal_id=signal_id)
            return still_sending(signal_id)
        if answer is Unanswered.IN_DOUBT:
            self._answered_in_doubt.add(signal_id)  # its row is to say so (``_settle``)
            return in_doubt_response(signal_id)
        return answer

    async def _process(self, d: signal_store.Delivery) -> web.Response:
        """Hand the delivery to the engine and write its outcome back; raises only when the
        delivery was not stored (nothing sent)."""
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._inflight[d.signal_id] = waiter
        # Duplicates waiting on this one get its answer, or "received" if it is cancelled.
        result = summary(d.signal_id, "received", 0)
        try:
            with structlog.contextvars.bound_contextvars(
                signal_id=d.signal_id, recorder_id=d.recorder_id
            ):
                response, result = await self._run_engine(d)
        finally:
            if not waiter.done():
                waiter.set_result(result)
            self._inflight.pop(d.signal_id, None)
            self._answered_in_doubt.discard(d.signal_id)
        return response

    async def _run_engine(self, d: signal_store.Delivery) -> tuple[web.Response, dict[str, Any]]:
        signal_id = d.signal_id
        result: dict[str, Any]
        unwritten: Any = ()
        try:
            outcome = await self.engine.on_signal(
                signal_id=signal_id,
                recorder_id=d.recorder_id,
                signal=d.signal,
                received_at=d.received_at,
                delivery=d,
            )
        except NotFound:
            # The recorder was deleted between the token check and the insert.
            response = await self._refuse(
                404, "unknown_token", "no recorder has this token", d.received_at,
                d.remote_addr, d.content_type, d.raw_body,
            )  # fmt: skip
            return response, summary(signal_id, "invalid", 0)
        except ConfigChanged as exc:
            # The claim failed whole (nothing stored, nothing sent) because a sub-account or
            # trader was deleted after planning: TradingView re-sends a 503, and the re-send is
            # planned against the configuration as it is now (a 4xx would lose the alert for
            # every other sub-account too).
            log.warning("webhook.config_changed", reason=str(exc))
            response = await self._refuse(
                503, "config_changed", f"{exc} (re-send it)", d.received_at, d.remote_addr,
                d.content_type, d.raw_body, recorder_id=d.recorder_id, verdict="rejected",
            )  # fmt: skip
            return response, summary(signal_id, "rejected", 0)
        except StorageUnavailable as exc:
            if was_claimed(d):  # stored, its orders gone: never a 5xx (it would be sent again)
                self.metrics.errors += 1
                log.error("webhook.storage_lost_after_claim", error=str(exc))
                result, fields = failed_after_claim(signal_id, exc)
                return await self._settle(signal_id, result, fields, ())
            # Fail closed, before anything could be sent: a 503 makes TradingView re-send.
            log.error("webhook.storage_unavailable", error=str(exc))
            self.metrics.errors += 1
            if d.in_doubt is not None and d.in_doubt.is_set():
                await settle_never_known(self.db.pool, signal_id)
            response = error_response(
                503, "storage_unavailable", "the database is unavailable", None
            )
            return response, summary(signal_id, "received", 0)
        except Exception as exc:
            self.metrics.errors += 1
            log.exception("webhook.engine_failed", error=type(exc).__name__)
            # the claim said so itself, or the database does: asked only when it did not, since
            # a database that cannot answer reads as "not stored" and gets a 503
            if not was_claimed(d) and not await signal_store.is_stored(self.db.pool, signal_id):
                # Not stored, so no intent either and nothing sent.
                if isinstance(exc, InvalidInput):
                    # A value the parser let through and Postgres (or its encoder) refuses:
                    # every re-send of a 503 would fail the same way, and leave no row.
                    response = await self._refuse(
                        422, "invalid_signal", "the alert holds a value that cannot be stored",
                        d.received_at, d.remote_addr, d.content_type, d.raw_body,
                        recorder_id=d.recorder_id,
                    )  # fmt: skip
                    return response, summary(signal_id, "invalid", 0)
                # TradingView may re-send.
                response = error_response(
                    503, "unavailable", "temporary failure; nothing was sent", None
                )
                return response, summary(signal_id, "received", 0)
            # Stored, so orders may have left: answer 200, reconciliation settles the rest.
            result, fields = failed_after_claim(signal_id, exc)
        else:
            if outcome.duplicate_of is not None:
                response = await self._duplicate(signal_id, outcome.duplicate_of, d.received_at)
                return response, summary(signal_id, "duplicate", 0)
            result = summary(signal_id, outcome.verdict, outcome.orders)
            if outcome.filter:
                result["filter"] = outcome.filter
            if outcome.reason:
                result["reason"] = outcome.reason
            fields = {
                "verdict": outcome.verdict,
                "filter": outcome.filter,
                # rule 9 (and a CHECK): a rejection always says why
                "reason": outcome.reason
                or (outcome.filter if outcome.verdict == "rejected" else None)
                or ("rejected" if outcome.verdict == "rejected" else None),
                "orders": outcome.orders,
                "detail": outcome.detail or None,
            }
            unwritten = getattr(outcome, "unwritten", ())
        return await self._settle(signal_id, result, fields, unwritten)

    async def _settle(
        self, signal_id: int, result: dict[str, Any], fields: dict[str, Any], unwritten: Any
    ) -> tuple[web.Response, dict[str, Any]]:
        """Write the outcome onto the stored row (a failure is logged: the answer stands)."""
        self.metrics.verdicts[result["verdict"]] += 1
        if signal_id in self._answered_in_doubt:  # TradingView got a 503: the row says so
            fields["http_status"] = 503
            fields["reason"] = fields.get("reason") or ANSWERED_IN_DOUBT
        try:
            await signal_store.set_outcome(self.db.pool, signal_id, **fields, intents=unwritten)
        except Exception as exc:
            self.metrics.errors += 1
            log.error("webhook.outcome_not_stored", error=type(exc).__name__)
        log.info(
            "webhook.signal",
            verdict=result["verdict"],
            orders=result["orders"],
            filter=result.get("filter"),
            reason=result.get("reason"),
        )
        return json_response(200, result), result

    async def _duplicate(
        self, signal_id: int, first_id: int, received_at: datetime
    ) -> web.Response:
        """Answer a duplicate with the first delivery's result (its row is already stored),
        waiting for it only until ``answer_within_s`` after the duplicate arrived: it may have
        waited its turn behind the first (``recorder_turn``) already."""
        self.metrics.verdicts["duplicate"] += 1
        left = time_left(self.answer_within_s, received_at)
        try:
            inflight = self._inflight.get(first_id)
            first = await first_result(self.db.pool, first_id, inflight, left)
        except Exception as exc:
            log.warning("webhook.first_result_unavailable", error=type(exc).__name__)
            first = summary(first_id, "received", 0)
        log.info("webhook.duplicate", duplicate_of=first_id)
        return duplicate_response(signal_id, first_id, first)

    async def _stray(
        self,
        in_path: list[str],  # the stray path, then its parts
        body: bytes,
        received_at: datetime,
        remote: str | None,
        ctype: str | None,
    ) -> web.Response:
        """A POST to a /webhook/… URL no webhook is at (a pasted URL with extra path, a doubled
        slash): not acted on, since which part is the token is a guess, but stored and answered
        in JSON like any refusal, and attributed to the recorder whose token the URL or the body
        carries, so its user sees why the alert did nothing."""
        _whole, *parts = in_path
        candidates = [*parts[:1], find_token(body)]  # the URL's first part, the body's token
        recorder_id: int | None = None
        for candidate in candidates:
            if candidate:
                _, recorder_id = await self.tokens.resolve(candidate)
                if recorder_id is not None:
                    register_secret(candidate)
                    break
        return await self._refuse(
            404, "not_found", "no webhook at this URL: use /webhook/<token>, or /webhook with "
            "the token in the body", received_at, remote, ctype,
            strip_tokens(body, *in_path, *candidates), recorder_id=recorder_id,
        )  # fmt: skip

    async def _refuse(
        self,
        status: int,
        error: str,
        detail: str,
        received_at: datetime,
        remote: str | None,
        ctype: str | None,
        body: bytes,
        *,
        recorder_id: int | None = None,
        info: dict[str, Any] | None = None,
        verdict: str = "invalid",
    ) -> web.Response:
        """Store a refused delivery (verdict ``invalid`` unless told) and answer its error."""
        signal_id: int | None = None
        try:
            signal_id = await signal_store.insert(
                self.db.pool,
                signal_id=await self.ids.take(),
                recorder_id=recorder_id,
                received_at=received_at,
                remote_addr=remote,
                content_type=ctype,
                raw_body=body,
                verdict=verdict,
                http_status=status,
                filter=error,
                reason=detail,
                detail=info,
            )
        except Exception as exc:  # the answer matters more than the log row here
            self.metrics.errors += 1
            log.error("webhook.refusal_not_stored", error=type(exc).__name__)
        self.metrics.verdicts[verdict] += 1
        log.info("webhook.refused", status=status, error=error, reason=detail, signal_id=signal_id)
        return error_response(status, error, detail, signal_id)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
